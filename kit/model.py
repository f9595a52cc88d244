"""A timm backbone (pooled features, num_classes=0) with a SpinalNet or linear head.

SpinalNet (Kabir et al., 2020): the feature vector is split in halves A and B; four layers of
`width`, each Dropout -> Linear -> ReLU; layer 1 sees A, layer 2 sees B + layer-1 output,
layer 3 A + layer-2 output, layer 4 B + layer-3 output; the output layer sees all four.
For resnest50d (2048 features) and width 540: 1024->540, 1564->540 (x3), 2160->classes.

    python -c "from kit.model import create_model; print(create_model('test_resnet', 'spinal', 3, pretrained=False))"
"""
from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

from kit.config import default

log = logging.getLogger(__name__)


class SpinalHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, width: int, dropout: float):
        super().__init__()
        self.half = in_features // 2
        sizes = [self.half, in_features - self.half + width, self.half + width, in_features - self.half + width]
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(n, width), nn.ReLU(inplace=True)) for n in sizes
        )
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * width, num_classes))

    def forward(self, x):  # x: (B, in_features)
        a, b = x[:, : self.half], x[:, self.half :]
        outs = [self.layers[0](a)]
        for i, part in enumerate((b, a, b), start=1):
            outs.append(self.layers[i](torch.cat([part, outs[-1]], dim=1)))
        return self.out(torch.cat(outs, dim=1))  # (B, num_classes)


class Classifier(nn.Module):
    """Pixels in (0..255, any float or integer dtype), logits out: normalisation runs on the device.

    mean and std (RGB, 0..1) are buffers, not state: checkpoints hold the weights alone, and the
    config that trained them (kept in the checkpoint) says which mean and std they expect. A fourth
    channel and beyond (a stacked image's, kit/io.py) is normalised by the mean of the three.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, mean: tuple, std: tuple, channels: int = 3,
                 target: tuple[float, float] | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        if target is not None:  # a regression: the head's output, in the training targets' spread, as a value
            self.register_buffer("target_shift", torch.tensor(float(target[0])))  # state: checkpoints carry them
            self.register_buffer("target_scale", torch.tensor(float(target[1])))
        mean, std = (list(v) + [sum(v) / len(v)] * (channels - len(v)) for v in (mean, std))
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1) * 255, persistent=False)

    def forward(self, x):  # x: (B, channels, H, W) pixels, 0..255
        out = self.head(self.backbone((x.float() - self.mean) / self.std))
        return out * self.target_scale + self.target_shift if hasattr(self, "target_scale") else out


def _backbone(name: str, pretrained: bool, pretrained_file: str, channels: int = 3) -> nn.Module:
    # in_chans: timm makes the first convolution for them, adapting pretrained RGB weights (adapt_input_conv)
    if pretrained_file:
        path = Path(pretrained_file)
        if not path.is_file():
            raise ValueError(f"pretrained_file={path} not found")
        # timm reads the local file (safetensors or .pth) and drops the classifier for num_classes=0
        return timm.create_model(name, pretrained=True, num_classes=0, in_chans=channels,
                                 pretrained_cfg_overlay={"file": str(path)})
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0, in_chans=channels)
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, in_chans=channels)
    except (OSError, RuntimeError, ConnectionError) as e:  # hub errors subclass OSError; offline mode too
        tag = _hub_tag(name)
        raise ValueError(
            f"could not get pretrained weights for {name} ({tag}): {type(e).__name__}. Either run once with internet "
            f"(timm caches them in ~/.cache/huggingface), or download model.safetensors from "
            f"https://huggingface.co/{tag} and pass pretrained_file=PATH; pretrained=false trains from scratch"
        ) from None


def reachable(backbone: str, pretrained_file: str) -> tuple[bool, str]:
    """pretrained=auto: whether ImageNet weights can be had now (pretrained_file, the hub or its cache), and whence."""
    try:
        _backbone(backbone, True, pretrained_file)
    except ValueError as e:
        return False, str(e).split(". Either")[0]
    return True, f"pretrained_file={pretrained_file}" if pretrained_file else f"the hub ({_hub_tag(backbone)})"


def _hub_tag(name: str) -> str:
    try:
        cfg = timm.models.get_pretrained_cfg(name)
        return cfg.hf_hub_id or f"timm/{name}"
    except Exception:  # noqa: BLE001 - only for the message
        return f"timm/{name}"


def create_model(backbone: str, head: str, num_classes: int, *, pretrained: bool = False,
                 pretrained_file: str = "", spinal_width: int = default("spinal_width"),
                 head_dropout: float = default("head_dropout"), mean=default("mean"), std=default("std"),
                 channels: int = 3, target: tuple[float, float] | None = None) -> Classifier:
    """The backbone with its head; the keyword defaults are the recipe's (the config's defaults). channels: the
    images' (3, or a stacked image's, kit/io.py); target: a regression's (mean, std) of the training targets, the
    one output then a value in their units."""
    if not timm.is_model(backbone):
        raise ValueError(f"backbone={backbone!r} is not a timm model; see timm.list_models()")
    body = _backbone(backbone, pretrained, pretrained_file, channels)
    n = body.num_features
    if head == "spinal":
        top = SpinalHead(n, num_classes, spinal_width, head_dropout)
    else:
        top = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(n, num_classes))
    if target is not None:  # a regression starts at the training targets' mean, not at a random value far from it
        last = [m for m in top.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return Classifier(body, top, mean, std, channels, target)


def from_config(cfg, num_classes: int, pretrained: bool | None = None, channels: int = 3,
                target: tuple[float, float] | None = None) -> Classifier:
    """Build the model a config describes for images of `channels` (pretrained=False when loading a checkpoint
    anyway; pretrained=auto is decided by the caller, kit/train/plan.py)."""
    assert pretrained is not None or cfg.pretrained != "auto", "pretrained=auto: decide it first (kit/train/plan.py)"
    return create_model(cfg.backbone, cfg.head, num_classes,
                        pretrained=cfg.pretrained if pretrained is None else pretrained,
                        pretrained_file=cfg.pretrained_file if pretrained is not False else "",
                        spinal_width=cfg.spinal_width, head_dropout=cfg.head_dropout, mean=cfg.mean, std=cfg.std,
                        channels=channels, target=target)
