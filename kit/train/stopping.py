"""Early stopping: what a fold keeps between epochs (saved in last.pt), and the rule that counts each epoch in.

    python -c "from kit.stopping import FoldState; print(FoldState())"

A fold trains in two stages; each stage stops when its epochs run out, or when its score has not
improved for `patience` epochs. "Improved" is in the metric's direction (kit/metrics.py). The rule
lives apart from the training loop so that it can be read, and tested, on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kit.metrics import Metric


@dataclass
class FoldState:
    """What resuming needs besides the weights; saved in last.pt as plain data."""

    stage: int = 1
    epoch: int = 0  # epochs completed in this stage
    best: float | None = None  # best val score over both stages (the score of best.pt); None before the first
    stage_best: float | None = None  # best val score this stage (early stopping)
    bad_epochs: int = 0  # epochs since stage_best improved
    stopped: bool = False  # this stage is over (epochs run out or early stopping)
    ema_steps: int = 0  # optimizer steps averaged into the EMA this stage (its warm-up decay depends on it)
    history: list = field(default_factory=list)


def early_stopping(state: FoldState, score: float, metric: Metric, chance_score: float, patience: int,
                   grace: int) -> tuple[bool, bool]:
    """Count one epoch's score into state; returns (best of the stage, best of the fold).

    Patience counts only after `grace` epochs of the stage (min_epochs, and stage 1's warm-up), and a
    stage whose best is still at chance level never stops: it has nothing worth keeping yet.
    """
    better = lambda a, b: b is None or metric.better(a, b)  # noqa: E731
    state.epoch += 1
    improved = better(score, state.stage_best)
    if improved:
        state.stage_best, state.bad_epochs = score, 0
    elif state.epoch > grace:
        state.bad_epochs += 1
    best = better(score, state.best)
    if best:
        state.best = score
    state.stopped = state.bad_epochs >= patience and better(state.stage_best, chance_score)
    return improved, best
