"""How long the folds step takes to find a real download's parts: 20,000 images laid out as Cassava's download
(train.csv of image_id.jpg, train_images/, test_images/, a sample, tfrecord folders), no training.

    python -m bench.discovery [--images 20000]     # or: python -m bench --only discovery

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


def run(size: str = "cpu", n: int = 20_000) -> list[dict]:
    from kit.config import load_config
    from kit.data import folds
    from kit.data.layout import scan
    logging.getLogger("kit").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kit-discovery-") as tmp:
        data = build(Path(tmp) / "cassava", n)
        t0 = time.perf_counter()
        layout = scan(data)
        t_scan = time.perf_counter() - t0
        cfg = load_config(None, {"data": str(data), "work_dir": f"{tmp}/folds", "n_folds": 5})
        t0 = time.perf_counter()
        folds.make_folds(cfg)
        t_folds = time.perf_counter() - t0
    return [{"images": len(layout.train), "step": "scan (discovery)", "seconds": round(t_scan, 2)},
            {"images": len(layout.train), "step": "kit folds (scan + decode check + split)", "seconds": round(t_folds, 2)}]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    args = p.parse_args()
    for row in run(n=args.images):
        print(row)


if __name__ == "__main__":
    main()
