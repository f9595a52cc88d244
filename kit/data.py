"""Transforms (albumentations, exactly the recipe's) and the Dataset/DataLoader that feed training and inference.

Augmentation is reproducible whatever the number of workers: the training sampler hands each
worker (index, seed) pairs, and the transform is re-seeded per sample. A resumed epoch therefore
sees the same crops, angles and flips as the uninterrupted one.
"""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations asks PyPI for updates at import

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, Sampler

from kit.io import load_rgb


def train_transform(resize: int, img_size: int, rotate: float, hflip: float, mean, std) -> A.Compose:
    return A.Compose([
        A.Resize(resize, resize),
        A.RandomCrop(img_size, img_size),
        A.Rotate(limit=rotate, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),  # every image; Rotate defaults to p=0.5
        A.HorizontalFlip(p=hflip),
        A.Normalize(mean=mean, std=std),
        ToTensorV2(),
    ])


def eval_transform(img_size: int, mean, std) -> A.Compose:
    return A.Compose([A.Resize(img_size, img_size), A.Normalize(mean=mean, std=std), ToTensorV2()])


class ImageDataset(Dataset):
    """Images under `root` at relative `paths`, with integer `labels` (-1 for unlabelled test images)."""

    def __init__(self, root: str | Path, paths, labels, transform: A.Compose, max_pixels: int = 100_000_000):
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64) if labels is not None else np.full(len(self.paths), -1)
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        if seed is not None:
            self.transform.set_random_seed(seed)
        image = load_rgb(self.root / self.paths[i], self.max_pixels)  # (H, W, 3) uint8
        x = self.transform(image=image)["image"]  # (3, H, W) float32, normalised
        return x, int(self.labels[i])


class SeededSampler(Sampler):
    """A seeded shuffle that yields (index, per-sample augmentation seed); call set_epoch before each epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        base = (self.seed * 1_000_003 + self.epoch) % 2**31
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(base)).tolist()
        return iter((i, (base * 7919 + i) % 2**32) for i in order)


def train_loader(ds: ImageDataset, batch_size: int, workers: int, seed: int, pin: bool) -> DataLoader:
    # drop_last: timm's Mixup needs an even batch, and a 1-image batch would break BatchNorm
    # generator: worker seeds must not draw from the global RNG, or a resumed run would get other dropout masks
    return DataLoader(ds, batch_size=batch_size, sampler=SeededSampler(len(ds), seed), drop_last=True,
                      num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def eval_loader(ds: ImageDataset, batch_size: int, workers: int, pin: bool) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin,
                      generator=torch.Generator().manual_seed(0))
