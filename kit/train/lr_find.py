"""stage1_lr=auto: the learning rate from a range test on the data (Smith 2017; fastai's lr_find).

    python -m kit train --exp quick stage1_lr=auto data=...   # <work_dir>/<exp>/plan.json (its lr) and lr_find.png

Before stage 1 of the first fold, the freshly initialised model takes STEPS SGD steps on fold 0's
training part (its augmentation, mixup and loss), the learning rate rising exponentially from
START to END; the loss is smoothed, and the test ends once it passes 4x its minimum. The choice
is the rate at the smoothed minimum, divided by 10 (fastai's "minimum/10": the loss still falls
steeply there, far from divergence). Every fold uses that one value, so the folds stay comparable.
The result is kept under a key of every weight-shaping setting and the folds: a rerun reuses it,
any other setting computes it again. Seeded like an epoch of fold 0: the same on the CPU each time.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from kit import figures
from kit.engine import forever

log = logging.getLogger(__name__)

START, END, STEPS = 1e-5, 1.0, 100
SMOOTHING = 0.98  # of the loss's exponential moving average
DIVERGED = 4.0  # the test stops once the smoothed loss passes this multiple of its minimum


def sweep(trainer, steps: int = STEPS) -> dict:
    """The range test on a fresh model of `trainer` (kit/train/trainer.py), with the experiment's optimizer, as
    its fold's first epoch draws its batches. Returns {lr, lrs, losses}."""
    model = trainer.model()
    optimizer = trainer.optimizer(model, START)
    trainer.seed_epoch(0, 0)
    model.train()
    lrs, losses, mean, lowest = [], [], 0.0, math.inf
    for i, (x, y) in zip(range(steps), forever(trainer.train_dl)):
        lr = START * (END / START) ** (i / max(steps - 1, 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = trainer.step(model, optimizer, x, y)
        mean = SMOOTHING * mean + (1 - SMOOTHING) * loss.item()
        smoothed = mean / (1 - SMOOTHING ** (i + 1))  # bias-corrected
        if not math.isfinite(smoothed) or smoothed > DIVERGED * lowest:
            break
        lrs.append(lr)
        losses.append(smoothed)
        lowest = min(lowest, smoothed)
    if not losses:
        raise ValueError(f"stage1_lr=auto: the loss was not finite at lr={START:g}; check the images and labels, "
                         "or set stage1_lr= to a number")
    at = int(np.argmin(losses))
    return {"lr": lrs[at] / 10, "min_loss_lr": lrs[at], "lrs": lrs, "losses": losses}


def record(found: dict, png_path) -> dict:
    """Plot the range test (lr_find.png) and say what it chose; returns `found` (the record to keep)."""
    figures.plot_lr_find(found, png_path)
    log.info("stage1_lr=auto: %.3g (loss lowest at %.3g, %d steps of the range test): %s", found["lr"],
             found["min_loss_lr"], len(found["lrs"]), png_path)
    return found
