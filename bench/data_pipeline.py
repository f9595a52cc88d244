"""Data pipeline: decoded and augmented img/s in one worker (one thread), the recipe's transforms.

    python -m bench --only data_pipeline

On generated JPEGs (500x375 and 1024x768): a torchvision/PIL pipeline doing the same steps,
the kit's pipeline (PIL decode + albumentations), and the kit's cached path (460x460 uint8).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from bench.common import rate
from kit.data.loaders import ImageDataset, load_resized, train_transform


def make_jpegs(folder: Path, size: tuple[int, int], n: int) -> list[str]:
    """Photo-like JPEGs: smooth gradients plus texture, quality 90."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    names = []
    for i in range(n):
        base = np.stack([(xx * (i + 1) % 256), (yy * 2 % 256), ((xx + yy) % 256)], -1).astype(np.float32)
        img = np.clip(cv2.GaussianBlur(base, (0, 0), 3) + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.jpg", quality=90)
        names.append(f"img{i}.jpg")
    return names


def torchvision_pipeline():
    """The same steps in torchvision; uint8 out, like the kit's (both normalise on the device)."""
    tf = v2.Compose([v2.PILToTensor(), v2.Resize((460, 460), antialias=False), v2.RandomCrop(448),
                     v2.RandomRotation(15), v2.RandomHorizontalFlip()])
    return lambda path: tf(Image.open(path).convert("RGB"))


def run(size: str) -> list[dict]:
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # one worker = one thread
    try:
        return _run(48 if size == "cpu" else 128)
    finally:
        torch.set_num_threads(threads[0])  # the benchmarks after this one get the machine back
        cv2.setNumThreads(threads[1])


def cache_build(tmp: Path, n: int) -> list[dict]:
    """Filling the 460 px cache from 2048x1536 photos: full decode, and reduced-size (draft) decode."""
    folder = tmp / "2048x1536"
    folder.mkdir()
    names = make_jpegs(folder, (2048, 1536), n)
    out = {}
    for draft in (False, True):
        cache = tmp / f"cache_draft{int(draft)}"
        ips = rate(lambda: [load_resized(folder / p, A.Resize(460, 460), cache, 10**9, draft) for p in names],  # noqa: B023
                   n, 1, warmup=0)
        out[draft] = (ips, np.stack([load_resized(folder / p, A.Resize(460, 460), cache, 10**9, draft) for p in names]))
    diff = float(np.abs(out[True][1].astype(np.int16) - out[False][1]).mean())
    return [{"jpeg": "2048x1536", "pipeline": f"cache build, {'draft' if d else 'full'} decode",
             "img_per_s": round(out[d][0], 1), "x_torchvision": "-",
             "mean_abs_diff": round(diff, 2) if d else 0.0} for d in (False, True)]


def _run(n: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for wh in ((500, 375), (1024, 768)):
            folder = Path(tmp) / f"{wh[0]}x{wh[1]}"
            folder.mkdir()
            names = make_jpegs(folder, wh, n)
            tv = torchvision_pipeline()
            base = rate(lambda: [tv(folder / p) for p in names], n, 2)
            tf = train_transform(460, 448, 15, 0.5)
            plain = ImageDataset(root=folder, paths=names, labels=None, transform=tf)
            kit = rate(lambda: [plain[(i, i)] for i in range(n)], n, 2)
            cached = ImageDataset(root=folder, paths=names, labels=None, transform=tf, cache_dir=Path(tmp) / "cache")
            fast = rate(lambda: [cached[(i, i)] for i in range(n)], n, 2)  # the warm-up call fills the cache
            for name, ips in (("torchvision/PIL", base), ("kit: PIL + albumentations", kit),
                              ("kit: 460x460 cache + albumentations", fast)):
                rows.append({"jpeg": f"{wh[0]}x{wh[1]}", "pipeline": name, "img_per_s": round(ips, 1),
                             "x_torchvision": round(ips / base, 2), "mean_abs_diff": 0.0})
        rows += cache_build(Path(tmp), max(n // 3, 8))
    return rows
