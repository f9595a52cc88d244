"""full_fit: one more model on every training image, for the epochs the folds chose.

    stage1, stage2 = refit.epochs(exp, n_folds, seeds, metric)     # from the folds' history.csv

The folds' validation picked each one's best epoch; the refit has no validation images left to pick with, so it
trains the median of those epochs, per stage, with the same plan (rate, flip, start): stage 1 runs the median of
the folds' stage-1 best epochs (its cosine over that many), stage 2 the median of their stage-2 best epochs,
counting 0 for a fold whose best stayed in stage 1 (so that a median of 0 skips stage 2, as those folds' best
weights did). An epoch of the refit is an epoch of K/(K-1) times the images, so it takes that many more steps.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from kit.experiment import Experiment, scores
from kit.metrics import Metric

log = logging.getLogger(__name__)


def best_epochs(history: pd.DataFrame, metric: Metric) -> tuple[int, int]:
    """(stage 1's best epoch, counted from 1; stage 2's, or 0 where no stage-2 epoch beat stage 1's best) of one
    fold's history.csv, as its early stopping and best.pt chose them (the first, on a tie)."""
    score, stage = scores(history).to_numpy(), history["stage"].to_numpy()
    one, two = score[stage == 1], score[stage == 2]
    first = metric.best(one) + 1
    later = metric.best(two) if len(two) else -1
    return first, later + 1 if later >= 0 and metric.better(two[later], one[first - 1]) else 0


def epochs(exp: Experiment, n_folds: int, seeds: int, metric: Metric) -> tuple[int, int]:
    """The refit's (stage 1, stage 2) epochs: per stage, the median over every fold (and seed) of its best epoch."""
    chosen = np.array([best_epochs(m.read_history(), metric) for k in range(n_folds) for m in exp.members(k, seeds)])
    out = tuple(int(np.floor(np.median(chosen[:, i]) + 0.5)) for i in (0, 1))
    out = (max(1, out[0]), out[1])
    log.info("%s full_fit: %d + %d epochs on every training image (the median of the folds' best epochs: stage 1 "
             "%s, stage 2 %s)", exp.name, *out, chosen[:, 0].tolist(), chosen[:, 1].tolist())
    return out
