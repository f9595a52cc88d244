"""The loops training and inference share: checkpoint I/O, one training epoch, logits for a loader.

    from kit.engine import load_checkpoint, predict_logits     # what predict, blend and bundle use
    from kit.engine import train_one_epoch, validate           # what train adds

Nothing here knows folds, files or configs: callers pass the model, the loader and the settings.
Training (kit/train/loop.py) and inference (kit/predict/predict.py, kit/predict/inference.py) both import this module
and neither imports the other.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy
from tqdm import tqdm

from kit import cpus
from kit.io import atomic_path
from kit.metrics import Metric, probs_of, topk
from kit.runtime import Dist, sum_over_ranks

log = logging.getLogger(__name__)

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


class ScaledMSE(torch.nn.Module):
    """A regression's loss: the mean squared error in units of the training targets' variance, so that guessing
    their mean costs 1 whatever the target's units, and the recipe's learning rates fit any of them."""

    def __init__(self, std: float):
        super().__init__()
        self.var = max(float(std), 1e-6) ** 2

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred.float(), target.float().view_as(pred)) / self.var


def criterion(targets: np.ndarray, n_classes: int, class_weight: str) -> torch.nn.Module:
    """The training loss for these targets: soft-target cross-entropy ((N,) class indices; mixup and label
    smoothing soften them), binary cross-entropy for multi-label (N, classes) rows (with class_weight=balanced,
    rare classes weigh more), or a regression's (N, 1) float values, ScaledMSE."""
    if targets.dtype.kind == "f":
        return ScaledMSE(targets.std())
    if targets.ndim == 2:  # Mixup(multi_label=True) has smoothed the targets already
        pos = targets.sum(0).clip(min=1)
        neg = (len(targets) - targets.sum(0)).clip(min=1)  # a tag on every image keeps a weight above 0
        weight = torch.tensor(neg / pos, dtype=torch.float32) if class_weight == "balanced" else None
        return BinaryCrossEntropy(smoothing=0.0, pos_weight=weight)
    if class_weight == "balanced":
        counts = np.bincount(targets, minlength=n_classes).clip(min=1)
        return torch.nn.CrossEntropyLoss(weight=torch.tensor(len(targets) / (n_classes * counts), dtype=torch.float32))
    return SoftTargetCrossEntropy()


def make_optimizer(model, name: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """sgd: the recipe's (momentum, weight decay on every parameter); any other name is timm's optimizer factory
    (adamw, lamb, ...; no weight decay on biases and norms, as timm does)."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    from timm.optim import create_optimizer_v2
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, momentum=momentum)


def forever(loader):
    """The loader's batches, epoch after epoch (the probes count steps, not epochs)."""
    while True:
        yield from loader


def probe_step(model, optimizer, scaler, mixup, criterion, amp_ctx, device, x, y) -> torch.Tensor:
    """One training step of a probe (kit/train/lr_find.py, kit/train/flip.py): mixup, the loss, a scaled step; the loss."""
    x, target = mixup(x.to(device).float(), y.to(device))
    with amp_ctx():
        loss = criterion(model(x).float(), target)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def epoch_steps(loader, max_epoch_steps: int) -> int:
    """Optimizer steps in one epoch: the whole loader, or max_epoch_steps when set (smoke tests)."""
    return min(len(loader), max_epoch_steps) if max_epoch_steps else len(loader)


def train_one_epoch(model, loader, optimizer, scaler, mixup, criterion, amp_ctx, device, max_epoch_steps, where,
                    dist: Dist = Dist(), after_step=None):
    """One pass over loader. Returns (mean loss over every rank, this rank's train top-1 against the dominant mixed
    label, this rank's img/s).

    Loss and accuracy add up on the device; the host reads them every SYNC_EVERY steps and at the
    end, which is also when a non-finite loss is caught (last.pt still holds the last good epoch). With
    fp16 loss scaling, a step whose loss overflowed is skipped as GradScaler skips it (no update, the
    scale halved) and left out of the mean; only steps that all overflowed since the last check stop
    training. A step whose gradients overflowed under a finite loss is skipped by GradScaler too: the
    warning counts every skipped step, read from the scale it lowered. Without loss scaling (fp32, bf16)
    any non-finite loss stops training: its update has already run.
    `after_step(step)` runs after each optimizer step (the EMA update).
    Under torchrun the check reads the sum over all ranks, so every rank stops at the same step
    instead of one raising while the others wait in the next all-reduce.
    """
    model.train()
    # summed loss, images it counts, steps whose loss overflowed, steps GradScaler skipped (an overflowed loss or
    # gradient): one tensor, read with one host sync
    sums = torch.zeros(4, device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, t0, checked, skipped, total, counted, skipped_steps = 0, time.perf_counter(), 0, 0.0, 0.0, 0.0, 0.0
    scaled = scaler.is_enabled()
    steps = epoch_steps(loader, max_epoch_steps)
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
        scale = scaler._scale.clone() if scaled else None  # GradScaler lowers its scale exactly when it skips a step
        scaler.step(optimizer)
        scaler.update()
        if after_step is not None:
            after_step(step)
        loss = loss.detach().double()
        if scaled:  # a step with an overflowed loss is skipped and left out of the mean; so is one whose gradients
            # overflowed with a finite loss (its loss still counts: it was computed, only the update was not made)
            finite = torch.isfinite(loss)
            sums += torch.stack([torch.where(finite, loss, 0.0) * len(x), finite.double() * len(x), (~finite).double(),
                                 (scaler._scale < scale).double().reshape(())])
        else:
            sums[0] += loss * len(x)
        if logits.shape[1] > 1:  # a regression's one output has no class to be right about
            correct += (logits.argmax(1) == target.argmax(1)).sum()
        seen += len(x)
        if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
            cpus.rebalance()  # another kit process started or ended: this one's share of the CPUs
            total, counted, now_skipped, skipped_steps = sum_over_ranks(sums, dist).tolist()  # the one host sync
            counted = counted if scaled else seen * dist.world
            mean = total / counted if counted else math.nan
            if not math.isfinite(mean) or now_skipped - skipped == (step + 1 - checked) * dist.world:
                what = "overflowed in every step (fp16; GradScaler skipped them all)" if scaled else f"is {mean}"
                raise ValueError(f"{where} step {checked}-{step}: loss {what}; stopped, last.pt keeps the last good "
                                 "epoch (lower the learning rate, or check the images and labels)")
            checked, skipped = step + 1, now_skipped
            bar.set_postfix(loss=f"{mean:.3f}", acc=f"{correct.item() / seen:.3f}",
                            ips=f"{seen / (time.perf_counter() - t0):.0f}")
    if scaled and skipped_steps:
        log.warning("%s: %d of %d steps skipped: the fp16 loss or gradients overflowed (GradScaler lowered its scale "
                    "to %g)", where, skipped_steps, steps * dist.world, scaler.get_scale())
    return total / max(counted, 1), correct.item() / max(seen, 1), seen / (time.perf_counter() - t0)


@torch.inference_mode()
def predict_logits(model, loader, amp_ctx, device, seen: list | None = None) -> np.ndarray:
    """(N, classes) float32 logits in loader order; `seen` gets each batch's labels as the loader gave them."""
    model.eval()
    out = []
    for x, y in loader:
        cpus.rebalance()
        with amp_ctx():
            out.append(model(x.to(device, non_blocking=True).float()).float().cpu())  # float: TTA scales interpolate
        if seen is not None:
            seen.append(np.asarray(y))
    return torch.cat(out).numpy()


def validate(model, loader, amp_ctx, device, labels: np.ndarray, metric: Metric) -> dict:
    """The validation loss and the metric's score (val_score); top-1 and top-5 too for single-label labels (N,).

    Multi-label labels are (N, classes) 0/1: binary cross-entropy, decisions at probability 0.5. A regression's
    are (N, 1) values: the mean squared error, the outputs scored as they are.
    """
    logits = predict_logits(model, loader, amp_ctx, device)
    x, y = torch.from_numpy(logits), torch.from_numpy(labels)
    if labels.dtype.kind == "f":
        return {"val_loss": F.mse_loss(x, y.float()).item(), "val_score": metric(labels, logits)}
    if labels.ndim == 2:
        loss = F.binary_cross_entropy_with_logits(x, y.float()).item()
        return {"val_loss": loss, "val_score": metric(labels, probs_of(logits, "multilabel"))}
    return {"val_loss": F.cross_entropy(x, y).item(), "val_top1": accuracy_score(labels, logits.argmax(1)),
            "val_top5": topk(labels, logits, 5), "val_score": metric(labels, probs_of(logits, "single"))}
