"""Scores, computed with scikit-learn so that they mean what the competition means."""
from __future__ import annotations

import numpy as np
from scipy.stats import binom
from sklearn.metrics import accuracy_score, top_k_accuracy_score


def topk(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Top-k accuracy over all classes (scores: (N, classes)); 1.0 when there are no more than k classes."""
    n_classes = scores.shape[1]
    if n_classes <= k:
        return 1.0
    return float(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(n_classes)))


def chance_top1(labels: np.ndarray, alpha: float = 0.01) -> float:
    """The highest top-1 on these labels that is still within noise of guessing.

    Always answering the most common class scores its share p; on n images, guessing that way
    scores more than the returned value with probability at most alpha (the binomial's upper tail;
    about p + 2.3 standard deviations on large folds, exact on small ones: 8 of 8 right with 2
    balanced classes is not chance, 7 of 8 still is).
    """
    n = len(labels)
    p = float(np.bincount(labels).max() / n)
    return float(binom.isf(alpha, n, p)) / n


METRICS = {"accuracy": lambda y_true, y_pred: float(accuracy_score(y_true, y_pred))}


def score(metric: str, y_true, y_pred) -> float:
    return METRICS[metric](y_true, y_pred)
