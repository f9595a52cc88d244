"""Test-time augmentation: the views the `tta` key may name, as ttach transforms.

    python -c "from kit.tta import transforms; print(len(transforms(('hflip', 'scales'), 448)))"   # 6 views

This module is the vocabulary: config.py checks `tta` against VIEWS, and kit/predict/inference.py wraps a
model in the views' composition. Nothing heavy is imported until `transforms` runs.
"""
from __future__ import annotations

# name -> the ttach transform it means, given ttach and the image size
VIEWS = {
    "hflip": lambda tta, size: tta.HorizontalFlip(),
    "vflip": lambda tta, size: tta.VerticalFlip(),
    "rot90": lambda tta, size: tta.Rotate90(angles=[0, 90, 180, 270]),
    "scales": lambda tta, size: tta.Scale(scales=[1, 0.875, 1.125]),
    "five_crops": lambda tta, size: tta.FiveCrops(int(size * 0.875), int(size * 0.875)),  # the usual 224/256 ratio
}


# tta=auto's candidates, fewest forward passes first (a tie goes to the cheaper): the views that suit most
# photos; rot90 and five_crops stay for the user to name
AUTO_TTA = ((), ("hflip",), ("vflip",), ("scales",), ("hflip", "vflip"), ("hflip", "scales"))


def tag(views: tuple[str, ...]) -> str:
    """A view set as one word: hflip+scales, or none (auto: auto)."""
    return views if views == "auto" else "+".join(views) or "none"


def untag(word: str) -> tuple[str, ...]:
    """The view set `tag` made this word of."""
    return () if word == "none" else tuple(word.split("+"))


def transforms(views: tuple[str, ...], img_size: int):
    """The named views composed (their product); () is the identity alone. A ttach.Compose."""
    import ttach
    return ttach.Compose([VIEWS[v](ttach, img_size) for v in views])
