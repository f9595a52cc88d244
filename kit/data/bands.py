"""Radar bands as images (Statoil/C-CORE Iceberg): a JSON list of records, each with `band_1` and `band_2` (75 x 75
floats in dB), an `id` and, for training, the label; written once as PNGs the other rules then read.

    bands.to_images(Path("data/statoil-iceberg-classifier-challenge"))    # -> DATA/kit-bands/{train,test}/<id>.png

As the competition's winners made them: the two bands and their mean as three channels, each clipped to
the training records' 0.1-99.9 percentiles of dB (both bands pooled) and scaled to 0-255, the same scaling
for the test records; it is recorded in DATA/kit-bands/done.json. The training records' other fields become
DATA/kit-bands/train.csv (id, the label, inc_angle, ...), the label file. Nothing is rewritten while the JSON
files keep their size and time.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kit.io import atomic_write_text

log = logging.getLogger(__name__)
BANDS_DIR = "kit-bands"
BANDS = ("band_1", "band_2")


def _is_band_file(path: Path) -> bool:
    """A JSON list whose first record holds band_1 (read from its first kilobytes only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
    except OSError:
        return False
    return head.startswith(b"[") and b'"band_1"' in head


def find(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json") if BANDS_DIR not in p.parts and _is_band_file(p))


def _image(record: dict, lo: float, hi: float, side: int) -> np.ndarray:
    """(side, side, 3) uint8: band_1, band_2 and their mean, each clipped to [lo, hi] dB and scaled to 0-255."""
    b1, b2 = (np.asarray(record[b], dtype=np.float64).reshape(side, side) for b in BANDS)
    x = np.stack([b1, b2, (b1 + b2) / 2], axis=-1)
    return (np.clip((x - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def to_images(root: Path) -> list[str]:
    """Write every band file's records as PNGs (see the module's docstring); the names of the files read."""
    files = find(root)
    if not files:
        return []
    out = root / BANDS_DIR
    stamp = {p.relative_to(root).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    done = out / "done.json"
    if done.is_file() and json.loads(done.read_text()).get("files") == stamp:
        return list(stamp)
    tables = {p: json.loads(p.read_text()) for p in files}
    train = [p for p, rows in tables.items() if rows and set(rows[0]) - {*BANDS, "id", "inc_angle"}]
    if not train:
        raise ValueError(f"{root}: band files {', '.join(stamp)} hold no labelled records (a field beside id, "
                         "band_1, band_2, inc_angle)")
    pooled = np.concatenate([np.asarray(r[b], dtype=np.float64) for p in train for r in tables[p] for b in BANDS])
    lo, hi = (float(v) for v in np.percentile(pooled, [0.1, 99.9]))
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise ValueError(f"{root} is read-only ({e.strerror}): its band files become images in {out}; copy the data "
                         "folder somewhere writable") from None
    from PIL import Image
    labels = []
    for path, rows in tables.items():
        side = "train" if path in train else "test"
        (out / side).mkdir(exist_ok=True)
        n = int(round(len(rows[0][BANDS[0]]) ** 0.5))
        for r in rows:
            Image.fromarray(_image(r, lo, hi, n)).save(out / side / f"{r['id']}.png")
        if side == "train":
            labels.append(pd.DataFrame([{k: v for k, v in r.items() if k not in BANDS} for r in rows]).astype(str))
    atomic_write_text(out / "train.csv", pd.concat(labels).to_csv(index=False, lineterminator="\n"))
    scaling = (f"band_1, band_2 and their mean as RGB, each clipped to [{lo:.2f}, {hi:.2f}] dB (the training "
               "records' 0.1-99.9 percentiles) and scaled to 0-255")
    atomic_write_text(done, json.dumps({"files": stamp, "scaling": scaling}, indent=2) + "\n")
    log.info("%s: %s written as images into %s (once): %s", root, ", ".join(stamp), out, scaling)
    return list(stamp)
