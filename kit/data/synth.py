"""Synthetic image-classification data sets of any shape, built in seconds (tests and `bench --only robustness`).

    python -c "from kit.synth import write_synthetic; write_synthetic('data/synth', classes=100, per_class=10)"

Class c is a noisy sine grating: its orientation is one of 10 angles and its brightness and hue
one of 10 levels (100 classes fill the grid; fewer are spread over it, as far apart as it allows);
brightness alone tells the levels apart in grayscale. Any
number of classes up to 100, images per class, colour mode (RGB, L, RGBA with partly transparent
pixels), aspect ratio (square or 2:1), and either data layout (folder, or Kaggle CSV). The gratings'
classes are orientations, so a horizontal flip changes most of them (write_photo_regions: classes a
flip keeps).
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ANGLES = 10  # orientations; with 10 brightness levels, 100 classes at most
# The robustness matrix: data sets of other shapes than the demo's (tests/test_learning.py, bench
# robustness), each with the overrides a user would need (none so far).
MATRIX = {
    "2 classes x 20, RGB, square, folder": (dict(classes=2, per_class=20), {}),
    "100 classes x 10, RGB, 2:1, csv": (dict(classes=100, per_class=10, aspect=2.0, layout="csv"), {}),
    "10 classes x 50, grayscale, square, folder": (dict(classes=10, per_class=50, mode="L"), {}),
    "100 classes x 5, RGBA, 2:1, folder": (dict(classes=100, per_class=5, mode="RGBA", aspect=2.0), {}),
}


def _look(c: int, classes: int) -> tuple[int, int]:
    """(brightness level, orientation) of class c: spread over the 10 x 10 grid, as far apart as it allows."""
    if classes <= ANGLES:
        level = c * ANGLES // classes
        return level, level * 3 % ANGLES  # 3 is coprime with 10: every class its own orientation too
    g = c * ANGLES * ANGLES // classes
    return g % ANGLES, g // ANGLES


def _image(c: int, classes: int, width: int, height: int, mode: str, rng: np.random.Generator) -> Image.Image:
    level, turn = _look(c, classes)
    angle = np.pi * turn / ANGLES
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)  # (H, W) 0..1
    bright = 0.3 + 0.07 * level
    tint = np.array(colorsys.hsv_to_rgb(level / ANGLES, 0.6, 1.0)) if mode != "L" else np.ones(3)
    rgb = 255 * bright * (0.4 + 0.6 * wave[..., None]) * tint  # (H, W, 3)
    rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(rgb[..., 0], mode="L")
    if mode == "RGBA":
        alpha = np.where(rng.random((height, width)) < 0.1, 128, 255).astype(np.uint8)  # some see-through pixels
        return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    return Image.fromarray(rgb, mode="RGB")


def _usage(n_test: int, classes: int) -> np.ndarray:
    """Public or Private for test image i, whose class is i % classes: in blocks of one image a class, so that every
    class is on both sides (alternate images would put the odd classes on one side, the even on the other)."""
    return np.where(np.arange(n_test) // classes % 2, "Public", "Private")


def write_photo_regions(root: str | Path, classes: int = 8, per_class: int = 20, n_test: int = 0, side: int = 48,
                        seed: int = 0) -> Path:
    """Photographs' textures, a class a flip keeps: scikit-learn's two sample photos (a temple, a flower), each cut
    into a grid of classes // 2 regions; an image is a random crop (60-90% of its region's height and width) of
    its class's region, resized to side x side, with noise. Folder layout; test images (n_test, default 2 per
    class) come with solution.csv."""
    from sklearn.datasets import load_sample_images
    assert classes % 2 == 0 and classes >= 2, f"classes={classes}: an even number (half from each photo)"
    rng, root = np.random.default_rng(seed), Path(root)
    photos = load_sample_images().images
    rows = int(np.floor(np.sqrt(classes // 2)))
    while (classes // 2) % rows:
        rows -= 1
    cols = classes // 2 // rows
    names = [f"r{c:02d}" for c in range(classes)]

    def draw(c: int) -> Image.Image:
        photo = photos[c % 2]
        r, q = divmod(c // 2, cols)
        h, w = photo.shape[0] // rows, photo.shape[1] // cols
        ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
        y, x = r * h + int(rng.integers(0, h - ch + 1)), q * w + int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((side, side), Image.BILINEAR)
        return Image.fromarray(np.clip(np.asarray(crop) + rng.normal(0, 8, (side, side, 3)), 0, 255).astype(np.uint8))

    for c in range(classes):
        for i in range(per_class):
            _save(draw(c), root / "train" / names[c] / f"{i}.png")
    n_test = n_test or 2 * classes
    labels = [names[i % classes] for i in range(n_test)]
    for i, label in enumerate(labels):
        _save(draw(names.index(label)), root / "test" / f"t{i:04d}.png")
    pd.DataFrame({"image_name": [f"t{i:04d}" for i in range(n_test)], "label": labels,
                  "Usage": _usage(n_test, classes)}).to_csv(root / "solution.csv",
                                                                                      index=False)
    return root


def write_synthetic(root: str | Path, classes: int = 10, per_class: int = 20, n_test: int = 0, mode: str = "RGB",
                    aspect: float = 1.0, side: int = 48, layout: str = "folder", seed: int = 0) -> Path:
    """Write the data set into root; test images (n_test, default 2 per class) come with solution.csv."""
    assert 1 < classes <= ANGLES * ANGLES, f"classes={classes}: 2 to {ANGLES * ANGLES}"
    rng = np.random.default_rng(seed)
    root = Path(root)
    width, height = int(round(side * aspect)), side
    names = [f"c{c:03d}" for c in range(classes)]
    train_rows = []
    for c in range(classes):
        for i in range(per_class):
            rel = f"train/{names[c]}/{i}.png" if layout == "folder" else f"train/{names[c]}_{i}.png"
            _save(_image(c, classes, width, height, mode, rng), root / rel)
            train_rows.append({"id": Path(rel).stem, "label": names[c]})
    n_test = n_test or 2 * classes
    test = [{"id": f"t{i:04d}", "label": names[i % classes]} for i in range(n_test)]
    for row in test:
        _save(_image(names.index(row["label"]), classes, width, height, mode, rng), root / "test" / f"{row['id']}.png")
    usage = _usage(n_test, classes)
    if layout == "csv":
        pd.DataFrame(train_rows).to_csv(root / "train.csv", index=False)
        sample = pd.DataFrame({"id": [r["id"] for r in test], "label": names[0]})
        sample.to_csv(root / "sample_submission.csv", index=False)
        solution = pd.DataFrame({"id": [r["id"] for r in test], "label": [r["label"] for r in test], "Usage": usage})
    else:
        solution = pd.DataFrame({"image_name": [r["id"] for r in test], "label": [r["label"] for r in test],
                                 "Usage": usage})
    solution.to_csv(root / "solution.csv", index=False)
    return root


# Kaggle competition shapes: the files, columns and placeholder values of a real competition of each shape
SHAPES = {
    "label": "Cassava Leaf Disease: train.csv image_id,label; sample image_id,label",
    "probs": "Dog Breed Identification: train.csv id,breed; sample id + one column per breed",
    "onehot": "Plant Pathology 2020: train.csv image_id + one 0/1 column per class (one 1 a row); sample the same",
    "prob": "Aerial Cactus Identification: train.csv id,has_cactus (0/1); sample id,has_cactus 0.5",
    "tags": "Planet Amazon: train.csv image_name,tags (space-separated); sample image_name,tags",
    "multihot": "RANZCR CLiP: train.csv StudyInstanceUID + 0/1 class columns (any number of 1s) + PatientID",
    "topk": "Humpback Whale Identification: train.csv Image,Id; sample Image,Id with 5 space-separated ids",
}


def _tag_image(tags: list[int], n_tags: int, side: int, rng: np.random.Generator) -> Image.Image:
    """A noisy grey image with a coloured square for each tag present, each tag at its own place."""
    img = np.clip(rng.normal(110, 25, (side, side, 3)), 0, 255)
    cell = side // 3
    for t in tags:
        y, x = divmod(t % 9, 3)
        colour = 255 * np.array(colorsys.hsv_to_rgb(t / n_tags, 0.9, 1.0))
        img[y * cell:(y + 1) * cell - 2, x * cell:(x + 1) * cell - 2] = colour
    return Image.fromarray(np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8))


def _tag_sets(n: int, n_tags: int, rng: np.random.Generator, most: int) -> list[list[int]]:
    """n tag sets of 1 to `most` tags (at least every tag alone first, so that each tag is seen)."""
    sets = [[t] for t in range(n_tags)]
    while len(sets) < n:
        k = int(rng.integers(1, most + 1))
        sets.append(sorted(rng.choice(n_tags, size=k, replace=False).tolist()))
    return sets[:n]


def write_competition(root: str | Path, shape: str, classes: int = 4, per_class: int = 16, n_test: int = 24,
                      side: int = 32, seed: int = 0) -> Path:
    """A small Kaggle-style data set of one SHAPE: train/, test/, train.csv, sample_submission.csv, solution.csv.

    Single-label shapes draw class c as in write_synthetic; multi-label ones (tags, multihot) draw
    each tag as a coloured square in its own place. Training images carry one or two tags, test
    images up to three: combinations that never occur in training.
    """
    assert shape in SHAPES, f"shape={shape}: one of {', '.join(SHAPES)}"
    rng, root = np.random.default_rng(seed), Path(root)
    names = ["0", "1"] if shape == "prob" else [f"c{c:03d}" for c in range(classes)]
    multi = shape in ("tags", "multihot")
    if multi:
        train_sets = _tag_sets(len(names) * per_class, len(names), rng, 2)
        test_sets = _tag_sets(n_test, len(names), np.random.default_rng(seed + 1), 3)
        draw = lambda tags: _tag_image(tags, len(names), side, rng)  # noqa: E731
    else:
        train_sets = [[c] for c in range(len(names)) for _ in range(per_class)]
        test_sets = [[i % len(names)] for i in range(n_test)]
        draw = lambda tags: _image(tags[0], len(names), side, side, "RGB", rng)  # noqa: E731
    id_col, label_col = {"label": ("image_id", "label"), "probs": ("id", "breed"), "onehot": ("image_id", ""),
                         "prob": ("id", "has_cactus"), "tags": ("image_name", "tags"),
                         "multihot": ("StudyInstanceUID", ""), "topk": ("Image", "Id")}[shape]
    train_ids = [f"tr{i:05d}" for i in range(len(train_sets))]
    test_ids = [f"te{i:05d}" for i in range(n_test)]
    for name, tags in zip(train_ids, train_sets):
        _save(draw(tags), root / "train" / f"{name}.png")
    for name, tags in zip(test_ids, test_sets):
        _save(draw(tags), root / "test" / f"{name}.png")

    def truth(ids, sets) -> pd.DataFrame:  # the labels in train.csv's shape
        if label_col:
            return pd.DataFrame({id_col: ids, label_col: [" ".join(names[t] for t in s) for s in sets]})
        return pd.DataFrame({id_col: ids, **{c: [int(i in s) for s in sets] for i, c in enumerate(names)}})

    train = truth(train_ids, train_sets)
    if shape == "multihot":
        train["PatientID"] = [f"p{i % 7}" for i in range(len(train))]  # a column that is not a class
    train.to_csv(root / "train.csv", index=False)
    placeholder = {"label": names[0], "prob": 0.5, "tags": " ".join(names[:2]), "topk": " ".join(names[:min(5, len(names))])}
    if shape in ("probs", "onehot", "multihot"):
        sample = pd.DataFrame({id_col: test_ids, **{c: 1 / len(names) for c in names}})
    else:
        sample = pd.DataFrame({id_col: test_ids, label_col: placeholder.get(shape, names[0])})
    sample.to_csv(root / "sample_submission.csv", index=False)
    solution = truth(test_ids, test_sets)
    solution["Usage"] = np.where(np.arange(n_test) // len(names) % 2, "Public", "Private")  # every class in both
    solution.to_csv(root / "solution.csv", index=False)
    return root


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
