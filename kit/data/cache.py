"""The fast data path: resize every image once, to the sizes the transforms start from.

    python -m kit cache --exp resnest50d_spinalnet data=...   # then train/predict with cache=true

Training images are cached at `resize` (the random crop's input), validation and test images at
`img_size`: whatever the first step of each transform makes of them (squashed, or aspect kept).
The cache is keyed by source file and step (cache/<sha1>_<H>x<W>.npy, or _max<N>.npy with
resize_mode=pad), so every fold and experiment shares it, and a changed image gets a new entry.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit.config import Config
from kit.data import folds as folds_command
from kit.data.loaders import cache_step, eval_transform_of, load_resized, train_transform_of
from kit.cpus import num_workers

log = logging.getLogger(__name__)


def build(root: Path, paths: list[str], step, cache_dir: Path, max_pixels: int, workers: int,
          draft: bool = False) -> None:
    with ThreadPoolExecutor(max(workers, 1)) as pool:  # decoding and cv2.resize release the GIL
        list(pool.map(lambda p: load_resized(root / p, step, cache_dir, max_pixels, draft), paths))


def run(cfgs: list[Config]) -> Path:
    """The `cache` command: every image of the folds and the test set, resized once for each config's transforms."""
    for cfg in cfgs:
        build_for(cfg)
    return Path(cfgs[0].cache_dir)


def build_for(cfg: Config) -> Path:
    f = folds_command.load(cfg)
    table, layout = f.table, f.layout
    cache_dir, workers = Path(cfg.cache_dir), num_workers(cfg.workers)
    # the steps come from the transforms themselves (their first, sizing step), as the datasets read them
    # (the flip comes after the sizing step: hflip=auto's choice does not change what is cached)
    train_step, eval_step = cache_step(train_transform_of(cfg, hflip=0.0)), cache_step(eval_transform_of(cfg))
    build(layout.root, list(table["path"]), train_step, cache_dir, cfg.max_pixels, workers, cfg.cache_draft)
    build(layout.root, list(table["path"]) + list(layout.test["path"]), eval_step, cache_dir, cfg.max_pixels,
          workers, cfg.cache_draft)
    log.info("cached %d training and %d test images in %s; use cache=true", len(table), len(layout.test), cache_dir)
    return cache_dir
