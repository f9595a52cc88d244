"""Transforms (albumentations, exactly the recipe's) and the Dataset/DataLoader that feed training and inference.

Augmentation is reproducible whatever the number of workers: the training sampler hands each
worker (index, seed) pairs, and the transform is re-seeded per sample. A resumed epoch therefore
sees the same crops, angles and flips as the uninterrupted one.
"""
from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from kit.io import MAX_PIXELS, channels_of, image_stat, load_rgb, save_npy
from kit.cpus import num_workers

log = logging.getLogger(__name__)
UNREADABLE = -2  # the label an unreadable test image comes with (unreadable_ok); -1 is an unlabelled one


def _to_size(size: int, mode: str) -> list:
    """The first steps: size x size, by squashing (the recipe) or by keeping the aspect ratio and padding."""
    if mode == "squash":
        return [A.Resize(size, size)]
    # longest side to `size`, then black bars: a 2:1 image keeps its shape instead of being squashed to 1:1
    return [A.LongestMaxSize(max_size=size), A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0)]


# Both transforms end in uint8 (3, H, W) tensors: a quarter of float32's bytes between the workers and
# the device. The model normalises on the device (kit.model.Classifier, with the config's mean and std).
def train_transform(resize: int, img_size: int, rotate: float, hflip: float, mode: str = "squash") -> A.Compose:
    return A.Compose([
        *_to_size(resize, mode),
        A.RandomCrop(img_size, img_size),
        A.Rotate(limit=rotate, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),  # every image; Rotate defaults to p=0.5
        A.HorizontalFlip(p=hflip),
        ToTensorV2(),
    ])


def eval_transform(img_size: int, mode: str = "squash") -> A.Compose:
    return A.Compose([*_to_size(img_size, mode), ToTensorV2()])


def train_transform_of(cfg, hflip: float | None = None) -> A.Compose:
    """The training transform a config describes (the one place its keys become a transform); `hflip`: hflip=auto's
    decided probability (kit/train/flip.py)."""
    p = cfg.hflip if hflip is None else hflip
    if p == "auto":
        raise ValueError("hflip=auto is decided before training (kit/train/flip.py); pass the decided probability")
    return train_transform(cfg.resize, cfg.img_size, cfg.rotate, p, cfg.resize_mode)


def eval_transform_of(cfg) -> A.Compose:
    """The validation/test transform a config describes."""
    return eval_transform(cfg.img_size, cfg.resize_mode)


def dataset_of(cfg, root: Path, paths, labels, transform: A.Compose, unreadable_ok: bool = False) -> "ImageDataset":
    """An ImageDataset reading images as the config says (cache, draft decodes, size guard)."""
    return ImageDataset(root=root, paths=paths, labels=labels, transform=transform, max_pixels=cfg.max_pixels,
                        cache_dir=cfg.cache_dir if cfg.cache else None, draft=cfg.cache_draft,
                        memory_mb=cfg.memory_cache_mb, unreadable_ok=unreadable_ok)


def cache_step(transform: A.Compose) -> A.BasicTransform:
    """The step whose output a cache stores for `transform`: its first, a Resize or a LongestMaxSize.

    The cached image is exactly what that step makes of the decoded one, and the step is
    deterministic and leaves an image of its own output size unchanged, so a cached run sees the
    pixels of an uncached one.
    """
    first = transform.transforms[0] if len(transform.transforms) else None
    if not isinstance(first, (A.Resize, A.LongestMaxSize)):
        raise ValueError(f"the image cache needs a transform that starts with A.Resize or A.LongestMaxSize, "
                         f"not {type(first).__name__}; set cache=false for this transform")
    return first


def _tag(step: A.BasicTransform) -> str:
    return f"{step.height}x{step.width}" if isinstance(step, A.Resize) else f"max{step.max_size}"


def cache_path(cache_dir: Path, source: Path, step: A.BasicTransform, draft: bool = False) -> Path:
    """Where `step`'s output for source lives: keyed by the file's path, length and mtime, and the step's size."""
    size, mtime = image_stat(source)
    key = hashlib.sha1(f"{source.resolve()}|{size}|{mtime}".encode()).hexdigest()
    return cache_dir / key[:2] / f"{key}_{_tag(step)}{'d' if draft else ''}.npy"


def load_resized(source: Path, step: A.BasicTransform, cache_dir: Path, max_pixels: int,
                 draft: bool = False) -> np.ndarray:
    """(H, W, 3) uint8: what the sizing `step` makes of the decoded image, computed once and cached.

    draft=True builds the cache from a reduced-size JPEG decode (large photos only): faster, not exact.
    A cache that cannot be written (full disk, read-only folder) still returns the image.
    """
    path = cache_path(cache_dir, source, step, draft)
    try:
        return np.load(path)
    except (OSError, ValueError):
        pass
    side = max(step.height, step.width) if isinstance(step, A.Resize) else step.max_size
    image = step(image=load_rgb(source, max_pixels, side if draft else 0))["image"]
    try:
        save_npy(path, image)
    except OSError as e:
        _warn_once(f"image cache {cache_dir} cannot be written ({e.strerror or e}); decoding images instead")
    return image


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:  # once per process and message, not once per image
    log.warning(message)


class ImageDataset(Dataset):
    """Images under `root` at relative `paths`, with `labels`: (N,) class indices, (N, classes) 0/1 rows
    (multi-label) or (N, 1) float values (a regression); None: -1, unlabelled test images.

    With cache_dir, each image is read from (or written to) a cache holding the output of the
    transform's first step (`cache_step`), so cached and uncached runs give equal tensors.
    With memory_mb, decoded (or cache-read) images are also kept in this process's memory until
    they fill memory_mb; the transform always gets a copy, so the kept image is never changed.
    """

    def __init__(self, *, root: str | Path, paths, labels, transform: A.Compose, max_pixels: int = MAX_PIXELS,
                 cache_dir: str | Path | None = None, draft: bool = False, memory_mb: int = 0,
                 unreadable_ok: bool = False):
        self.root = Path(root)
        self.paths = list(paths)
        # class indices or 0/1 rows as int64; a regression's values (N, 1) stay float
        labels = np.full(len(self.paths), -1) if labels is None else np.asarray(labels)
        self.labels = labels if labels.dtype.kind == "f" else labels.astype(np.int64)
        self.transform = transform
        self.max_pixels = max_pixels
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.step = cache_step(transform) if self.cache_dir else None
        self.draft = draft
        self.memory_left = memory_mb << 20
        self.memory: dict[int, np.ndarray] = {}
        self.unreadable_ok = unreadable_ok  # an image that cannot be read comes as a black one labelled UNREADABLE

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        if seed is not None:
            self.transform.set_random_seed(seed)
        label = self.labels[i]
        try:
            image = self._image(i)  # (H, W, 3) uint8, or (H, W, C) for a stacked image (kit/io.py)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            if not self.unreadable_ok:
                raise
            image = np.zeros((8, 8, channels_of(self.paths[i])), np.uint8)
            label = np.full_like(label, UNREADABLE)[()]
        x = self.transform(image=image)["image"]  # (C, H, W) uint8: normalised on the device, by the model
        return x, label  # a class index, or a 0/1 row

    def _image(self, i: int) -> np.ndarray:
        if i in self.memory:
            return self.memory[i].copy()
        source = self.root / self.paths[i]
        if self.cache_dir is None:
            image = load_rgb(source, self.max_pixels)
        else:
            image = load_resized(source, self.step, self.cache_dir, self.max_pixels, self.draft)
        if image.nbytes <= self.memory_left:
            self.memory_left -= image.nbytes
            self.memory[i] = image.copy()
        return image


class SeededSampler(Sampler):
    """A seeded shuffle that yields (index, per-sample augmentation seed); call set_epoch before each epoch.

    With weights, an epoch is n draws with replacement, each image with probability proportional to
    its weight (sampler=balanced). Under DDP (world > 1) each rank yields its slice of every global
    batch of `batch` images, so the ranks together see exactly the batches one process would.
    """

    def __init__(self, n: int, seed: int, batch: int = 1, rank: int = 0, world: int = 1, weights=None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.batch, self.rank, self.world = batch, rank, world
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.n if self.world == 1 else self.n // self.batch * (self.batch // self.world)

    def __iter__(self):
        base = (self.seed * 1_000_003 + self.epoch) % 2**31
        g = torch.Generator().manual_seed(base)
        if self.weights is None:
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        if self.world > 1:
            per = self.batch // self.world
            order = [order[b * self.batch + self.rank * per + j] for b in range(self.n // self.batch) for j in range(per)]
        return iter((i, (base * 7919 + i) % 2**32) for i in order)


def train_loader(ds: ImageDataset, batch_size: int, workers: int, seed: int, pin: bool,
                 rank: int = 0, world: int = 1, weights=None) -> DataLoader:
    """batch_size is the global batch; each of `world` ranks loads batch_size // world of it.

    weights: one per image, to draw images in proportion to (SeededSampler); None shuffles."""
    sampler = SeededSampler(len(ds), seed, batch_size, rank, world, weights)
    # drop_last: timm's Mixup needs an even batch, and a 1-image batch would break BatchNorm
    # generator: worker seeds must not draw from the global RNG, or a resumed run would get other dropout masks
    return DataLoader(ds, batch_size=batch_size // world, sampler=sampler, drop_last=True,
                      num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                      worker_init_fn=_worker_init, generator=torch.Generator().manual_seed(seed))


def eval_loader(ds: ImageDataset, batch_size: int, workers: int, pin: bool) -> DataLoader:
    # persistent: validation runs every epoch, and forking its workers anew each time costs seconds
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin,
                      persistent_workers=workers > 0, worker_init_fn=_worker_init,
                      generator=torch.Generator().manual_seed(0))


def fold_loaders(cfg, root: Path, train_paths, train_targets: np.ndarray, val_paths, val_targets: np.ndarray,
                 pin: bool, rank: int = 0, world: int = 1, where: str = "",
                 hflip: float | None = None) -> tuple[DataLoader, DataLoader]:
    """One fold's training loader (seeded shuffle or balanced draws, augmentation; this rank's share) and
    validation loader. Targets are class indices, or 0/1 rows for multi-label. hflip: as train_transform_of's."""
    workers = num_workers(cfg.workers)
    train_ds = dataset_of(cfg, root, train_paths, train_targets, train_transform_of(cfg, hflip))
    val_ds = dataset_of(cfg, root, val_paths, val_targets, eval_transform_of(cfg))
    if len(train_ds) < cfg.batch_size:
        most = max(2, len(train_ds) // 2 * 2)
        raise ValueError(f"{where}: {len(train_ds)} training images, fewer than batch_size={cfg.batch_size}; "
                         f"set batch_size={min(most, cfg.batch_size)} or lower (even), or use fewer folds")
    if cfg.batch_size % (2 * world):
        raise ValueError(f"batch_size={cfg.batch_size} must split into an even batch on each of {world} processes")
    weights = None
    if cfg.sampler == "balanced":
        if train_targets.ndim != 1:
            raise ValueError("sampler=balanced draws by class: it needs a single-label task (multi-label: use "
                             "class_weight=balanced; a regression has no classes to balance)")
        weights = 1.0 / np.bincount(train_targets)[train_targets]  # every class drawn equally often
    return (train_loader(train_ds, cfg.batch_size, workers, cfg.seed, pin, rank, world, weights),
            eval_loader(val_ds, cfg.eval_batch_size, workers, pin))


def _worker_init(_: int) -> None:
    cv2.setNumThreads(0)  # one OpenCV thread per worker: the workers are the parallelism
