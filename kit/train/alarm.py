"""Training that does not learn says so: chance level, the not-learning check, and what to change.

    python -c "import numpy as np; from kit.metrics import chance_top1; print(chance_top1(np.array([0, 1] * 4)))"

A fold's validation score is "at chance" when it is no better than guessing could be: for accuracy,
always answering the most common class plus luck; for any other metric, a constant predictor
(kit/metrics.py, chance). Training warns once after the warm-up when nothing has been learnt yet,
early stopping never ends a stage still at chance, and a fold whose stage 1 ends there is listed
in cv.json and on the leaderboard (kit/experiment.py: stage1_at_chance).
"""
from __future__ import annotations

import logging
import math

from kit.metrics import Metric

log = logging.getLogger(__name__)


def guess_loss(n_classes: int, multilabel: bool) -> float:
    """The training loss of knowing nothing: equal probabilities (ln classes), 0.5 for every tag (ln 2), a
    regression's mean (1: kit.engine.ScaledMSE)."""
    return math.log(2) if multilabel else math.log(n_classes) if n_classes > 1 else 1.0


def learning(metric: Metric, best: float, chance_score: float, train_loss: float, n_classes: int,
             multilabel: bool) -> bool:
    """Whether a fold has learnt something: better than chance on validation, and a train loss below guessing's."""
    return metric.better(best, chance_score) and train_loss < guess_loss(n_classes, multilabel)


def causes(cfg) -> str:
    """The likely causes of a fold that does not learn, with the keys to change."""
    weaker = "0.2" if cfg.mixup_alpha > 0.2 else "0, off"  # advice the preset does not already follow
    lr = ("stage1_lr=auto: lr_find.png shows the range test; try a number 10x lower" if cfg.stage1_lr == "auto"
          else f"stage1_lr={cfg.stage1_lr}; try 10x lower")
    return (f"Likely causes: a learning rate too high or too low ({lr}), "
            f"too short a warm-up (warmup_epochs={cfg.warmup}), images too small to tell the classes apart "
            f"(img_size={cfg.img_size}, resize_mode={cfg.resize_mode}), or mixup too strong for this data "
            f"(mixup_alpha={cfg.mixup_alpha}; try {weaker})")


def check_learning(fold: str, metric: Metric, best: float, chance_score: float, train_loss: float, n_classes: int,
                   multilabel: bool, cfg) -> None:
    """One warning when, two epochs after the warm-up, nothing has been learnt yet, naming the keys to change."""
    if not learning(metric, best, chance_score, train_loss, n_classes, multilabel):
        log.warning("%s: not learning after the warm-up: best val %s %.4f (chance %.4f), train loss %.3f "
                    "(guessing: %.3f). %s", fold, metric.name, best, chance_score, train_loss,
                    guess_loss(n_classes, multilabel), causes(cfg))


def check_stage1(fold: str, metric: Metric, stage_best: float, chance_score: float, cfg) -> None:
    """One warning when stage 1 ended no better than chance: the CV and the leaderboard row will say so too."""
    if not (stage_best is not None and metric.better(stage_best, chance_score)):
        log.warning("%s: stage 1 ended at chance level (best val %s %.4f, chance %.4f); the CV and the "
                    "leaderboard row will say so. %s", fold, metric.name, stage_best, chance_score, causes(cfg))
