"""Scores, computed with scikit-learn so that they mean what the competition means."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, top_k_accuracy_score


def topk(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Top-k accuracy over all classes (scores: (N, classes)); 1.0 when there are no more than k classes."""
    n_classes = scores.shape[1]
    if n_classes <= k:
        return 1.0
    return float(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(n_classes)))


def chance_top1(labels: np.ndarray, z: float = 3.0) -> float:
    """The top-1 a model that learnt nothing can reach on these labels by luck.

    Always answering the most common class scores its share p; z binomial standard deviations
    over len(labels) images on top of that is where "within noise of chance" ends.
    """
    p = float(np.bincount(labels).max() / len(labels))
    return p + z * float(np.sqrt(p * (1 - p) / len(labels)))


METRICS = {"accuracy": lambda y_true, y_pred: float(accuracy_score(y_true, y_pred))}


def score(metric: str, y_true, y_pred) -> float:
    return METRICS[metric](y_true, y_pred)
