"""Training from images inside an HDF5 file against the same images as files: the loader's images per second.

    python -m bench.hdf5_loader [--images 2000] [--workers 0 2]     # or: python -m bench --only hdf5_loader

The same JPEGs (256x192 photo-like noise, what a dermoscopy tile or a camera-trap thumbnail weighs) written
once as files and once into one HDF5 file, as ISIC 2024 ships them; each read through kit's ImageDataset
with the recipe's train transform at 224 px, a DataLoader of batch 32, one pass after one warm pass.
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def build(root: Path, n: int) -> tuple[list[str], list[str]]:
    import h5py
    rng = np.random.default_rng(0)
    (root / "files").mkdir(parents=True)
    names = [f"ISIC_{i:07d}" for i in range(n)]
    with h5py.File(root / "images.hdf5", "w") as f:
        for i, name in enumerate(names):
            arr = (rng.random((192, 256, 3)) * 64 + i % 5 * 40).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "JPEG", quality=90)
            (root / "files" / f"{name}.jpg").write_bytes(buf.getvalue())
            f.create_dataset(name, data=np.void(buf.getvalue()))
    return [f"files/{n}.jpg" for n in names], [f"images.hdf5/{n}" for n in names]


def rate(root: Path, paths: list[str], workers: int) -> float:
    from kit.data.loaders import ImageDataset, eval_loader, train_transform
    ds = ImageDataset(root=root, paths=paths, labels=np.zeros(len(paths), dtype=np.int64),
                      transform=train_transform(232, 224, 15, 0.5))
    loader = eval_loader(ds, 32, workers, False)
    for _ in loader:  # warm: the page cache, the workers' start
        break
    t0 = time.perf_counter()
    n = sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - t0)


def run(size: str = "cpu", n: int = 2000, workers: tuple[int, ...] = (0, 2)) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kit-hdf5-") as tmp:
        files, members = build(Path(tmp), n)
        for w in workers:
            a, b = rate(Path(tmp), files, w), rate(Path(tmp), members, w)
            rows.append({"workers": w, "files img/s": round(a, 1), "hdf5 img/s": round(b, 1),
                         "hdf5 / files": round(b / a, 2)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = p.parse_args()
    for row in run(n=args.images, workers=tuple(args.workers)):
        print(row)


if __name__ == "__main__":
    main()
