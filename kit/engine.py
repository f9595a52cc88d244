"""The loops training and inference share: checkpoint I/O, one training epoch, logits for a loader.

    from kit.engine import load_checkpoint, predict_logits     # what predict, blend and bundle use
    from kit.engine import train_one_epoch, validate           # what train adds

Nothing here knows folds, files or configs: callers pass the model, the loader and the settings.
Training (kit/train.py) and inference (kit/predict.py, kit/inference.py) both import this module
and neither imports the other.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from tqdm import tqdm

from kit.io import atomic_path
from kit.metrics import topk
from kit.runtime import Dist, sum_over_ranks

SYNC_EVERY = 25  # steps between host syncs (loss check, progress bar): each .item() stalls a GPU's queue


def save_checkpoint(path: Path, model, **extra) -> None:
    """Atomic torch.save of plain data, loadable with weights_only=True."""
    model = getattr(model, "_orig_mod", model)  # the uncompiled module's keys
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), **extra}, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ValueError(f"{path} is unreadable ({type(e).__name__}); delete it and run again") from None


def epoch_steps(loader, max_steps: int) -> int:
    """Optimizer steps in one epoch: the whole loader, or max_steps when set (smoke tests)."""
    return min(len(loader), max_steps) if max_steps else len(loader)


def train_one_epoch(model, loader, optimizer, scaler, mixup, criterion, amp_ctx, device, max_steps, where,
                    dist: Dist = Dist(), after_step=None):
    """One pass over loader. Returns (mean loss, train top-1 against the dominant mixed label, img/s).

    Loss and accuracy add up on the device; the host reads them every SYNC_EVERY steps and at the
    end, which is also when a non-finite loss is caught (last.pt still holds the last good epoch).
    `after_step(step)` runs after each optimizer step (the EMA update).
    Under torchrun the check reads the sum over all ranks, so every rank stops at the same step
    instead of one raising while the others wait in the next all-reduce.
    """
    model.train()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, t0, checked = 0, time.perf_counter(), 0
    steps = epoch_steps(loader, max_steps)
    bar = tqdm(loader, total=steps, desc=where, leave=False, disable=not sys.stderr.isatty())
    for step, (x, y) in enumerate(bar):
        if step >= steps:
            break
        x, y = x.to(device, non_blocking=True).float(), y.to(device, non_blocking=True)  # x: uint8 pixels until here
        x, target = mixup(x, y)  # target: (B, classes) soft labels; mixing pixels = mixing normalised images
        with amp_ctx():
            logits = model(x)
            loss = criterion(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if after_step is not None:
            after_step(step)
        total_loss += loss.detach() * len(x)
        correct += (logits.argmax(1) == target.argmax(1)).sum()
        seen += len(x)
        if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
            mean = sum_over_ranks(total_loss, dist).item() / (seen * dist.world)  # the one host sync in SYNC_EVERY
            if not math.isfinite(mean):
                raise ValueError(f"{where} step {checked}-{step}: loss is {mean}; stopped, last.pt keeps the last good "
                                 "epoch (lower the learning rate, or check the images and labels)")
            checked = step + 1
            bar.set_postfix(loss=f"{mean:.3f}", acc=f"{correct.item() / seen:.3f}",
                            ips=f"{seen / (time.perf_counter() - t0):.0f}")
    return total_loss.item() / max(seen, 1), correct.item() / max(seen, 1), seen / (time.perf_counter() - t0)


@torch.inference_mode()
def predict_logits(model, loader, amp_ctx, device) -> np.ndarray:
    """(N, classes) float32 logits in loader order."""
    model.eval()
    out = []
    for x, _ in loader:
        with amp_ctx():
            out.append(model(x.to(device, non_blocking=True).float()).float().cpu())  # float: TTA scales interpolate
    return torch.cat(out).numpy()


def validate(model, loader, amp_ctx, device, labels: np.ndarray) -> dict:
    logits = predict_logits(model, loader, amp_ctx, device)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {"val_loss": loss, "val_top1": accuracy_score(labels, logits.argmax(1)), "val_top5": topk(labels, logits, 5)}
