"""How long the folds step takes to find a real download's parts: 20,000 images laid out as Cassava's download
(train.csv of image_id.jpg, train_images/, test_images/, a sample, tfrecord folders), and as ISIC 2024's (every
image inside train-image.hdf5, a metadata CSV, patients as groups); no training.

    python -m bench.discovery [--images 20000] [--layout files hdf5]     # or: python -m bench --only discovery

Timed: kit/data/layout.scan (the rules of kit/data/discover.py: every file walked, the label file chosen,
every id resolved), then the whole `kit folds` (scan, every image decoded to check it, the split, the files
written). The images are 8x8 JPEGs, so decoding is the least it can be; the data is built once in a
temporary folder, outside the timings.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def build(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    tiles = [Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)) for _ in range(5)]
    (root / "train_images").mkdir(parents=True)
    (root / "test_images").mkdir()
    (root / "train_tfrecords").mkdir()
    ids = [f"{1000015157 + i}.jpg" for i in range(n)]
    labels = [str(i % 5) for i in range(n)]
    for i, name in enumerate(ids):
        tiles[i % 5].save(root / "train_images" / name)
    pd.DataFrame({"image_id": ids, "label": labels}).to_csv(root / "train.csv", index=False)
    tiles[0].save(root / "test_images" / "2216849948.jpg")
    pd.DataFrame({"image_id": ["2216849948.jpg"], "label": [4]}).to_csv(root / "sample_submission.csv", index=False)
    for k in range(16):
        (root / "train_tfrecords" / f"ld_train{k:02d}-1338.tfrec").write_bytes(b"\0" * 64)
    return root


def build_hdf5(root: Path, n: int) -> Path:
    """ISIC 2024's layout: every training image inside train-image.hdf5 (isic_id -> JPEG bytes), the test ones in
    test-image.hdf5, train-metadata.csv with patients."""
    import io

    import h5py
    rng = np.random.default_rng(0)
    tiles = []
    for _ in range(5):
        buf = io.BytesIO()
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
        tiles.append(np.void(buf.getvalue()))
    root.mkdir(parents=True)
    ids = [f"ISIC_{15670 + i:07d}" for i in range(n)]
    with h5py.File(root / "train-image.hdf5", "w") as f:
        for i, key in enumerate(ids):
            f.create_dataset(key, data=tiles[i % 5])
    with h5py.File(root / "test-image.hdf5", "w") as f:
        f.create_dataset("ISIC_0015657", data=tiles[0])
    pd.DataFrame({"isic_id": ids, "target": [i % 2 for i in range(n)],
                  "patient_id": [f"IP_{i // 20}" for i in range(n)]}).to_csv(root / "train-metadata.csv", index=False)
    pd.DataFrame({"isic_id": ["ISIC_0015657"], "target": [0.3]}).to_csv(root / "sample_submission.csv", index=False)
    return root


def run(size: str = "cpu", n: int = 20_000, layouts: tuple[str, ...] = ("files", "hdf5")) -> list[dict]:
    from kit.config import load_config
    from kit.data import folds
    from kit.data.layout import scan
    logging.getLogger("kit").setLevel(logging.WARNING)
    rows = []
    for kind in layouts:
        with tempfile.TemporaryDirectory(prefix="kit-discovery-") as tmp:
            data = build(Path(tmp) / "cassava", n) if kind == "files" else build_hdf5(Path(tmp) / "isic", n)
            extra = {} if kind == "files" else {"submission": "prob"}
            t0 = time.perf_counter()
            layout = scan(data, **extra)
            t_scan = time.perf_counter() - t0
            cfg = load_config(None, {"data": str(data), "work_dir": f"{tmp}/folds", "n_folds": 5, **extra})
            t0 = time.perf_counter()
            folds.make_folds(cfg)
            t_folds = time.perf_counter() - t0
        rows += [{"layout": kind, "images": len(layout.train), "step": "scan (discovery)", "seconds": round(t_scan, 2)},
                 {"layout": kind, "images": len(layout.train), "step": "kit folds (scan + decode check + split)",
                  "seconds": round(t_folds, 2)}]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--layout", nargs="+", default=["files", "hdf5"], choices=["files", "hdf5"])
    args = p.parse_args()
    for row in run(n=args.images, layouts=tuple(args.layout)):
        print(row)


if __name__ == "__main__":
    main()
