"""Embedded demo data: scikit-learn's digits (1,797 8x8 images, 10 classes) as PNGs in the folder layout.

    python -m kit demo-data            # writes data/demo/{train/<digit>/, test/, solution.csv}

Deterministic: the same files, byte for byte, on every machine. solution.csv holds the test labels
with a Kaggle-style Usage column, so the leaderboard can score public and private splits locally.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)
SIDE = 32  # pixels; the 8x8 digits are upscaled so that a ResNet's strides have something to work on


def _to_png(image: np.ndarray, path: Path) -> None:
    gray = (image / 16.0 * 255.0).round().astype(np.uint8)  # digits pixels are 0..16
    Image.fromarray(gray, mode="L").resize((SIDE, SIDE), Image.BICUBIC).save(path)


def write_demo(out: Path, test_size: float = 0.2, seed: int = 0) -> Path:
    """Write the demo data set into `out` (atomically: built beside it, then renamed)."""
    digits = load_digits()
    idx = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=digits.target, random_state=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for i in train_idx:
            folder = tmp / "train" / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            _to_png(digits.images[i], folder / f"digit_{i:04d}.png")
        (tmp / "test").mkdir()
        names = [f"test_{n:04d}" for n in range(len(test_idx))]  # names that do not give the label away
        for name, i in zip(names, test_idx):
            _to_png(digits.images[i], tmp / "test" / f"{name}.png")
        usage = np.where(np.random.default_rng(seed).random(len(test_idx)) < 0.5, "Public", "Private")
        solution = pd.DataFrame({"image_name": names, "label": digits.target[test_idx].astype(str), "Usage": usage})
        solution.to_csv(tmp / "solution.csv", index=False)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("wrote demo data: %d train and %d test images in %s", len(train_idx), len(test_idx), out)
    return out


DEMO = ("demo", "demo_baseline")  # the demo's experiments (kit/configs/)


def run(out: str | Path = "data/demo") -> Path:
    out = Path(out)
    if (out / "solution.csv").is_file():
        log.info("demo data already in %s", out)
        return out
    if out.exists():
        raise ValueError(f"{out} exists but is not complete demo data; remove it and run again")
    return write_demo(out)
