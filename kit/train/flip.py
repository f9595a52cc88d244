"""hflip=auto: whether a horizontal flip keeps an image's class, measured on the data before training.

    python -m kit train --exp quick data=...   # the quick preset sets hflip: auto; <work_dir>/<exp>/plan.json (its flip)

A random flip is the default augmentation of image classification, and right for photographs of
things. It is wrong where the class lies in the orientation (digits and letters, left and right
hands, arrows, kit.synth's gratings): there every flipped training image is a mislabelled one, and
on 100 orientation-coded classes it cost more than half the accuracy (docs/BENCHMARKS.md).

Before the first fold, a throwaway copy of fold 0's model trains without flips for 4 epochs of
fold 0's training part (MIN_STEPS to MAX_STEPS steps, at stage 1's rate with a warm-up over the
first half), then predicts fold 0's validation images as they are and flipped. A flip that keeps
the class costs such a model little: its flipped images are images of the same classes. One that
changes the class costs it most of what it learnt (a class-swapping flip, more than all). The flip
is left out (hflip 0) when the flipped images lose more than LOST of the model's skill above the
majority class, by a paired z above Z; otherwise it stays (hflip 0.5, the recipe's), also when the
model learnt too little to tell, which the log line and plan.json say. The errors cost unequally: a
flip wrongly kept mislabels half the images, one wrongly dropped loses an augmentation; hence the
rule's lean towards keeping it (the figures: docs/BENCHMARKS.md, "Defaults chosen from the data"). Every fold uses the choice; it is kept under a key of every weight-shaping setting and
the folds, in the experiment's plan (kit/train/plan.py).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from kit.engine import forever

log = logging.getLogger(__name__)

ON = 0.5  # the flip probability when the flip stays (the recipe's)
MIN_STEPS, MAX_STEPS, EPOCHS = 100, 400, 4
LOST = 0.5  # of the skill above the majority class that flipped images may lose before the flip goes
Z = 2.0  # paired z of that loss (and of the skill itself) needed to act on it


def steps_for(epoch_steps: int) -> int:
    """The probe's training steps: EPOCHS epochs, within [MIN_STEPS, MAX_STEPS]."""
    return min(MAX_STEPS, max(MIN_STEPS, EPOCHS * epoch_steps))


def probe(trainer, lr: float, steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Train a fresh model of `trainer` (kit/train/trainer.py; no flips in its transform) for `steps` steps at `lr`,
    then score its validation images as they are and flipped: (per-image score unflipped, flipped, the
    majority's score). A score is 1/0 for the top class, the share of tags right (multi-label), or less the squared
    error in the targets' variance (a regression: guessing the mean scores -1)."""
    model = trainer.model()
    optimizer = trainer.optimizer(model, lr)
    trainer.seed_epoch(0, 0)
    model.train()
    for i, (x, y) in zip(range(steps), forever(trainer.train_dl)):
        for group in optimizer.param_groups:  # from lr/10 to lr over the first half, as stage 1's warm-up does
            group["lr"] = lr * min(1.0, 0.1 + 0.9 * i / max(steps // 2, 1))
        trainer.step(model, optimizer, x, y)
    model.eval()
    plain, flipped, labels, multilabel = [], [], [], trainer.multilabel
    with torch.inference_mode(), trainer.amp_ctx():
        for x, y in trainer.val_dl:
            x = x.to(trainer.device).float()
            plain.append(model(x).float().cpu())
            flipped.append(model(x.flip(-1)).float().cpu())
            labels.append(y)
    y = torch.cat(labels).numpy()
    return _hits(torch.cat(plain), y, multilabel), _hits(torch.cat(flipped), y, multilabel), _majority(y, multilabel)


def _hits(logits: torch.Tensor, y: np.ndarray, multilabel: bool) -> np.ndarray:
    if y.dtype.kind == "f" and not multilabel:  # a regression: less its squared error in the targets' variance
        return -(((logits.numpy() - y) / max(float(y.std()), 1e-6)) ** 2).mean(1)
    if multilabel:
        return ((logits.sigmoid().numpy() >= 0.5) == (y >= 0.5)).mean(1)
    return (logits.argmax(1).numpy() == y).astype(np.float64)


def _majority(y: np.ndarray, multilabel: bool) -> float:
    if y.dtype.kind == "f" and not multilabel:
        return -1.0  # the mean's score, guessing's
    if multilabel:
        p = (y >= 0.5).mean(0)
        return float(np.maximum(p, 1 - p).mean())
    return float(np.bincount(y).max() / len(y))


def decide(plain: np.ndarray, flipped: np.ndarray, majority: float) -> dict:
    """The flip probability from the probe's per-image scores (see the module's docstring), and the figures."""
    n = len(plain)
    skill = float(plain.mean()) - majority
    noise = math.sqrt(max(majority * (1 - majority), 1 / n) / n)  # the majority score's standard error
    d = plain - flipped
    spread = float(d.std(ddof=1)) if n > 1 else 0.0
    z = float(d.mean()) / (spread / math.sqrt(n)) if spread > 0 else (math.inf if d.mean() > 0 else 0.0)
    z = min(z, 99.0)  # a finite number for plan.json (every image lost by the flip, none gained)
    lost = float(d.mean()) / skill if skill > 0 else 0.0
    figures = {"unflipped": round(float(plain.mean()), 4), "flipped": round(float(flipped.mean()), 4),
               "majority": round(majority, 4), "images": n}
    if skill <= Z * noise:
        return {"hflip": ON, "why": "the probe learnt too little to tell (no skill above the majority class): "
                                    "the flip stays", **figures}
    if lost > LOST and z > Z:
        return {"hflip": 0.0, "why": f"flipped, fold 0's validation images lose {lost:.0%} of the skill above the "
                                     "majority class: a flip changes the class here", **figures,
                "lost": round(lost, 3), "z": round(z, 2)}
    return {"hflip": ON, "why": f"flipped, fold 0's validation images lose {max(lost, 0):.0%} of the skill above "
                                "the majority class: a flip keeps the class", **figures,
            "lost": round(lost, 3), "z": round(z, 2)}


def record(found: dict, path) -> dict:
    """Say what the probe chose; returns `found` (the record plan.json keeps)."""
    log.info("hflip=auto: %g (%s; unflipped %.3f, flipped %.3f, majority %.3f): %s", found["hflip"], found["why"],
             found["unflipped"], found["flipped"], found["majority"], path)
    return found
