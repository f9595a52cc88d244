"""What the predict floor hands the board: one experiment's (or several experiments') ensembled scores.

    from kit.board.result import Result       # made by kit/predict/ensemble.py, written by kit/board/submission.py
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kit.board import calibrate
from kit.config import Config
from kit.data.layout import Layout
from kit.metrics import Metric, probs_of


@dataclass
class Result:
    """One experiment's (or several experiments') ensembled test and out-of-fold scores."""

    name: str
    cfgs: list[Config]
    layout: Layout
    metric: Metric
    folds: list[int]
    test_scores: np.ndarray  # (N_test, classes), in layout.test order: averaged logits, or probabilities
    oof_ids: np.ndarray  # (N_oof,) training image paths, sorted
    oof_labels: np.ndarray  # (N_oof,) class indices, or (N_oof, classes) 0/1 rows for multi-label
    oof_scores: np.ndarray  # (N_oof, classes)
    oof_folds: np.ndarray  # (N_oof,) the fold each row was validated in
    holdout_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N_holdout, classes)
    holdout_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    checkpoints: dict = field(default_factory=dict)  # path -> sha256
    epochs: float = 0.0  # mean epochs run per fold
    fingerprint: str = ""
    # the CV of each fold's last-epoch weights through the same TTA, merge and nested post-processing:
    # how much choosing the best epoch on the validation fold itself flatters the CV. None for ensembles
    # of experiments, and for folds trained without final.pt.
    last_epoch_score: float | None = None
    warning: str = ""  # e.g. folds whose stage 1 ended at chance level
    blend: dict = field(default_factory=dict)  # a blend's weights and how they were fitted (kit/predict/blend.py)
    trained_on: dict = field(default_factory=dict)  # "experiment/fold" -> the hosts its epochs ran on
    # tta=auto: experiment name -> its candidates' CVs and choice (ensemble.choose), for each member that chose
    tta_choice: dict = field(default_factory=dict)
    scores_are_probs: bool = False  # test/oof/holdout scores are probabilities already (merge=probs, blends)
    post: dict = field(default_factory=dict)  # thresholds, temperature: fitted on every OOF row (kit/board/calibrate.py)
    cv: dict = field(default_factory=dict)  # the CV of what the submission holds (see `scored`)

    @property
    def classes(self) -> list[str]:
        return list(self.layout.classes)

    def probs(self, scores: np.ndarray) -> np.ndarray:
        """Scores of this result as probabilities (before the post-processing)."""
        return scores if self.scores_are_probs else probs_of(scores, self.layout.task)

    def submitted(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """(probabilities, thresholds) as the submission has them: post-processed with what the OOF rows fitted."""
        return calibrate.apply(self.post, self.probs(scores))

    @property
    def holdout_score(self) -> float | None:
        if not len(self.holdout_labels):
            return None
        return self.metric(self.holdout_labels, *self.submitted(self.holdout_scores))
