"""What turns an ensemble's probabilities into a submission's values, fitted on the out-of-fold predictions.

    thresholds   multi-label: a tag is predicted where its probability >= its class's threshold, fitted
                 for the metric (threshold=0), or one fixed value (threshold=0.3)
    temperature  single-label: the logits divided by T before the softmax, T fitted to lower the log
                 loss (temperature=fit); mixup and label smoothing train models less sure than they could be.
                 Not fitted where it would change a ranking metric (a one-vs-rest AUC: `changes_ranking`)

A regression's predicted values are written as they are: nothing is fitted.

Each is fitted twice: on every out-of-fold row, for the test images (`fit`), and nested for the
CV (`nested`): fold k's rows get what was fitted on the other folds only, so a CV never scores
values fitted on its own rows (as blend.py does with its weights).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from kit.metrics import EPS, METRICS, Metric

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # candidate thresholds
MIN_POSITIVES = 10  # a class with fewer out-of-fold positives keeps the global threshold: too few to fit its own


def fit_thresholds(metric: Metric, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(classes,) thresholds: the best global one on GRID, then one pass of per-class coordinate ascent."""
    t = np.full(probs.shape[1], GRID[metric.best([metric(y, probs, g) for g in GRID])])
    for c in np.flatnonzero(y.sum(0) >= MIN_POSITIVES):
        trial = np.tile(t, (len(GRID), 1))
        trial[:, c] = GRID
        t[c] = GRID[metric.best([metric(y, probs, row) for row in trial])]
    return t


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Single-label probabilities as if the logits had been divided by temperature."""
    return softmax(np.log(np.clip(probs, EPS, 1)) / temperature, axis=1)


def fit_temperature(y: np.ndarray, probs: np.ndarray) -> float:
    """The temperature that minimises the log loss of these probabilities (searched over 0.05 to 20)."""
    log_loss = METRICS["log_loss"]
    found = minimize_scalar(lambda lt: log_loss(y, temper(probs, np.exp(lt))), bounds=(np.log(0.05), np.log(20)),
                            method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def fit(metric: Metric, task: str, y: np.ndarray, probs: np.ndarray, threshold: float, temperature: str) -> dict:
    """The post-processing fitted on (y, probs): {"thresholds": list or None, "temperature": float or None}."""
    post = {"thresholds": None, "temperature": None}
    if task == "multilabel":
        objective = metric if metric.decides else METRICS["f1_samples"]  # tags need decisions even for an AUC
        post["thresholds"] = ([threshold] * probs.shape[1] if threshold > 0
                              else fit_thresholds(objective, y, probs).tolist())
    elif temperature == "fit" and task == "single" and not changes_ranking(metric, probs.shape[1]):
        post["temperature"] = fit_temperature(y, probs)
    return post


def changes_ranking(metric: Metric, n_classes: int) -> bool:
    """Whether a temperature could change this metric's score other than through the probabilities' values.

    It keeps every image's top class and order of classes (accuracy, F1, QWK, MAP@k), and, with two classes,
    the order of images by the second's probability (a binary AUC). A one-vs-rest AUC over more classes ranks
    each class's probability across images, and that order a temperature changes: it is not fitted there.
    """
    return metric.per_fold and n_classes > 2


def apply(post: dict, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
    """(probabilities, thresholds) after the post-processing: tempered probabilities, per-class thresholds."""
    if post.get("temperature"):
        probs = temper(probs, post["temperature"])
    thresholds = np.asarray(post["thresholds"]) if post.get("thresholds") else 0.5
    return probs, thresholds


def nested(metric: Metric, task: str, y: np.ndarray, probs: np.ndarray, fold_of: np.ndarray, threshold: float,
           temperature: str) -> tuple[np.ndarray, np.ndarray | float]:
    """(probabilities, thresholds per row) for the CV: each fold's rows processed by what the other folds fitted."""
    out, rows_t = probs.copy(), np.full(probs.shape, 0.5)
    for k in np.unique(fold_of):
        fit_on, score = fold_of != k, fold_of == k
        if not fit_on.any():  # a single fold: nothing else to fit on
            continue
        post = fit(metric, task, y[fit_on], probs[fit_on], threshold, temperature)
        out[score], t = apply(post, probs[score])
        rows_t[score] = t
    return out, rows_t
