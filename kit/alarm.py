"""Training that does not learn says so: chance level, the not-learning check, and what to change.

    python -c "import numpy as np; from kit.alarm import chance_top1; print(chance_top1(np.array([0, 1] * 4)))"

A fold's validation top-1 is "at chance" when always answering its most common class could reach
it by luck (kit/metrics.py, chance_top1). Training warns once after the warm-up when nothing has
been learnt yet, early stopping never ends a stage still at chance, and a fold whose stage 1
ends there is listed in cv.json and on the leaderboard (kit/experiment.py).
"""
from __future__ import annotations

import math

import pandas as pd

from kit.metrics import chance_top1

__all__ = ["chance_top1", "learning", "stage1_at_chance", "causes"]


def learning(best: float, chance: float, train_loss: float, n_classes: int) -> bool:
    """Whether a fold has learnt something: above chance on validation, and a train loss below guessing's."""
    return best > chance and train_loss < math.log(n_classes)  # ln(classes): the loss of equal probabilities


def stage1_at_chance(history: pd.DataFrame, labels) -> bool:
    """Whether a fold's stage 1 (its history.csv rows) never rose above chance level on its validation labels."""
    return bool(history.loc[history["stage"] == 1, "val_top1"].max() <= chance_top1(labels))


def causes(cfg) -> str:
    """The likely causes of a fold that does not learn, with the keys to change."""
    weaker = "0.2" if cfg.mixup_alpha > 0.2 else "0, off"  # advice the preset does not already follow
    return (f"Likely causes: a learning rate too high or too low (stage1_lr={cfg.stage1_lr}; try 10x lower), "
            f"too short a warm-up (warmup_epochs={cfg.warmup}), images too small to tell the classes apart "
            f"(img_size={cfg.img_size}, resize_mode={cfg.resize_mode}), or mixup too strong for this data "
            f"(mixup_alpha={cfg.mixup_alpha}; try {weaker})")
