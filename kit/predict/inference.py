"""A trained fold's weights as a model, wrapped in test-time augmentation, run over images.

    python -m kit predict --exp demo          # kit/predict/predict.py: every fold, cached logits, submission
    python -m kit predict --bundle bundle     # kit/predict/bundle.py: the same from an exported bundle

What predict, blend and bundle share to turn a checkpoint and a list of images into logits. It
imports the engine (kit/engine.py), never training.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import ttach
from torch import nn

from kit.config import Config, changed
from kit.data.layout import summarize
from kit.data.loaders import dataset_of, eval_loader, eval_transform_of
from kit.engine import load_checkpoint, predict_logits
from kit.model import from_config
from kit import cpus
from kit.cpus import num_workers
from kit.runtime import autocast, describe, pick_device
from kit.tta import transforms as tta_transforms

log = logging.getLogger(__name__)


class BatchedTTA(nn.Module):
    """ttach's ClassificationTTAWrapper (mean merge), with all views of a batch in one forward pass.

    Views are grouped by shape (scales and crops change it), concatenated along the batch and
    split again; a larger batch keeps the GPU busier than len(views) small passes.
    """

    def __init__(self, model: nn.Module, transforms: ttach.Compose, max_images: int = 256):
        super().__init__()
        self.model, self.transforms, self.max_images = model, transforms, max_images

    def forward(self, x):  # x: (B, 3, H, W)
        views = [t.augment_image(x) for t in self.transforms]
        groups: dict[tuple, list[int]] = {}
        for i, v in enumerate(views):
            groups.setdefault(tuple(v.shape), []).append(i)
        outs = [None] * len(views)
        for idx in groups.values():
            batch = torch.cat([views[i] for i in idx])  # (len(idx) * B, 3, h, w)
            # capped: 8 views x 64 images at 448 px would not fit a 16 GB GPU in one pass
            logits = torch.cat([self.model(part) for part in batch.split(self.max_images)])
            for i, part in zip(idx, logits.split(len(x))):
                outs[i] = part
        return torch.stack([t.deaugment_label(o) for t, o in zip(self.transforms, outs)]).mean(0)


def tta_model(model: nn.Module, views: tuple[str, ...], img_size: int, batched: str | bool, device=None,
              max_images: int = 256) -> nn.Module:
    """ttach's wrapper, or BatchedTTA when batched is "on" (or "auto" on CUDA)."""
    if isinstance(batched, str):
        batched = batched == "on" or (batched == "auto" and device is not None and device.type == "cuda")
    transforms = tta_transforms(views, img_size)
    if batched:
        return BatchedTTA(model, transforms, max_images)
    return ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean")


def load_fold_model(ckpt_path: Path, classes: list[str], cfg: Config, device):
    """best.pt as a model in eval mode, refused unless it was trained with this config's weight-shaping keys."""
    ckpt = load_checkpoint(ckpt_path)
    if ckpt["classes"] != list(classes):
        raise ValueError(f"{ckpt_path} was trained for {len(ckpt['classes'])} classes ({summarize(ckpt['classes'])}), "
                         f"but the data has {len(classes)} ({summarize(list(classes))}); retrain or point data= at its data")
    diff = changed(ckpt["cfg"], cfg, "weights")  # model shape and input transforms come from training, never from here
    if diff:
        raise ValueError(f"{ckpt_path} was trained with {'; '.join(diff)}: predict uses the trained values, so drop "
                         "those overrides (or restore the preset), or train them under another name=")
    target = (0.0, 1.0) if "target_scale" in ckpt["model"] else None  # a regression's: loaded with the weights
    model = from_config(cfg, len(classes), pretrained=False, channels=ckpt.get("channels", 3), target=target)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def fold_logits(cfg: Config, ckpt: Path, classes: list[str], root: Path, paths: list[str], labels,
                device, unreadable_ok: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, classes), labels (N,), -1 when unknown) of one checkpoint on `paths`, TTA-merged, batched.
    unreadable_ok: an image that cannot be read is predicted from black, its label UNREADABLE (-2)."""
    model = load_fold_model(ckpt, classes, cfg, device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    wrapped = tta_model(model, cfg.tta, cfg.img_size, cfg.batched_tta, device, cfg.tta_max_images)
    ds = dataset_of(cfg, root, paths, labels, eval_transform_of(cfg), unreadable_ok)
    loader = eval_loader(ds, cfg.eval_batch_size, num_workers(cfg.workers), device.type == "cuda")
    seen: list = []
    logits = predict_logits(wrapped, loader, autocast(device, cfg.amp), device, seen)
    return logits, np.concatenate(seen) if unreadable_ok else ds.labels


def start(cfg: Config, command: str) -> torch.device:
    """The device an inference command runs on, named with its precision and workers in the command's first line."""
    device = pick_device(cfg.device, cfg.deterministic)
    threads = cpus.start(cfg.threads)
    log.info("%s: %s", command, describe(device, cfg.amp, num_workers(cfg.workers), cfg.eval_batch_size, threads))
    return device
