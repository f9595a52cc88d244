"""Scores as competitions define them: one table of metrics, each with its direction, computed with scikit-learn.

    python -c "from kit.metrics import METRICS; print(sorted(METRICS))"

Every metric takes (y, probs, thresholds):
  y           single-label: (N,) class indices; multi-label: (N, classes) 0/1; regression: (N, 1) values
  probs       (N, classes): softmax probabilities (single-label) or per-class sigmoid ones (multi-label);
              any scores that rank the classes will do for the ranking metrics; regression: (N, 1)
              predicted values (the model's outputs as they are: `probs_of`)
  thresholds  multi-label only: a class is predicted where probs >= thresholds (a number, one per class,
              or one per image and class), and each image's most likely one always (`decide`);
              single-label decisions are the top class
Early stopping, best weights, CV, blends, the leaderboard's order and `make submit` read the
direction from here (`better`): no score is compared with a bare `>` elsewhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import expit, softmax
from scipy.stats import binom
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, fbeta_score,
                             log_loss, roc_auc_score, top_k_accuracy_score)

EPS = 1e-15  # Kaggle clips probabilities to [EPS, 1 - EPS] before a log loss


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    tasks: tuple[str, ...]  # "single", "multilabel", "regression"
    fn: Callable  # (y, probs, thresholds) -> float
    decides: bool = False  # scores hard decisions (top class, or probs >= thresholds), not the probabilities
    # a ranking of scores (AUC): out-of-fold rows of k fold models, each on its own scale, do not rank together, so
    # a CV is the mean of each fold's own score (weighted by its rows) instead of one score of the pooled rows
    per_fold: bool = False

    def __call__(self, y, probs, thresholds=0.5) -> float:
        return float(self.fn(np.asarray(y), np.asarray(probs, dtype=np.float64), thresholds))

    def better(self, a: float, b: float) -> bool:
        """Whether score a is strictly better than score b."""
        return a > b if self.higher_is_better else a < b

    def best(self, scores) -> int:
        """The index of the best of these scores (the first, on a tie)."""
        return int(np.argmax(scores) if self.higher_is_better else np.argmin(scores))


def fold_scores(metric: Metric, y: np.ndarray, probs: np.ndarray, fold_of: np.ndarray,
                thresholds=0.5) -> tuple[list[float], list[int]]:
    """(each fold's score, its rows). thresholds: a number, per class, or per row and class."""
    scores, sizes = [], []
    for k in np.unique(fold_of):
        rows = fold_of == k
        scores.append(metric(y[rows], probs[rows], thresholds[rows] if np.ndim(thresholds) == 2 else thresholds))
        sizes.append(int(rows.sum()))
    return scores, sizes


def cv_score(metric: Metric, y: np.ndarray, probs: np.ndarray, fold_of: np.ndarray, thresholds=0.5,
             folds: tuple[list[float], list[int]] | None = None) -> float:
    """The CV of out-of-fold rows: one score of the pooled rows, or (per_fold metrics) the row-weighted mean of
    each fold's score (`folds`, from fold_scores, when the caller has them already)."""
    if not metric.per_fold:
        return metric(y, probs, thresholds)
    scores, sizes = folds or fold_scores(metric, y, probs, fold_of, thresholds)
    return float(np.average(scores, weights=sizes))


def probs_of(logits: np.ndarray, task: str) -> np.ndarray:
    """Model outputs as probabilities: softmax over the classes, or each class's sigmoid (multi-label); a
    regression's outputs are its predicted values already (kit/model.py scales them to the target's units)."""
    logits = np.asarray(logits, dtype=np.float64)
    if task == "regression":
        return logits
    return expit(logits) if task == "multilabel" else softmax(logits, axis=-1)


def decide(probs: np.ndarray, thresholds=0.5) -> np.ndarray:
    """Multi-label decisions (N, classes) 0/1: probs >= thresholds, and every image's most likely tag at least.

    The one rule for a tag decision: what a tags submission holds (kit/board/formats.py), so the CV, the
    thresholds fitted for it and early stopping all score exactly what the file will say.
    """
    chosen = (probs >= thresholds).astype(np.int64)
    if len(probs):
        chosen[np.arange(len(probs)), np.asarray(probs).argmax(1)] = 1
    return chosen


def clip_probs(probs: np.ndarray, single: bool) -> np.ndarray:
    """Probabilities as Kaggle scores them: clipped to [EPS, 1 - EPS], rows renormalised (single-label)."""
    p = np.clip(probs, EPS, 1 - EPS)
    return p / p.sum(1, keepdims=True) if single else p


def _log_loss(y, p, t):
    if y.ndim == 1:
        return log_loss(y, clip_probs(p, True), labels=np.arange(p.shape[1]))
    q = clip_probs(p, False)
    return np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)))  # the mean over classes of each one's log loss


def _roc_auc(y, p, t):
    """Binary AUC (of the second class); else the mean over classes (one-vs-rest) of each class's AUC, over the
    classes with both outcomes. Undefined (one outcome only): 0.5, a guess's."""
    hot = np.eye(p.shape[1], dtype=np.int64)[y] if y.ndim == 1 else y
    if y.ndim == 1 and p.shape[1] == 2:
        return roc_auc_score(y, p[:, 1]) if 0 < y.sum() < len(y) else 0.5
    both = [c for c in range(p.shape[1]) if 0 < hot[:, c].sum() < len(hot)]
    return np.mean([roc_auc_score(hot[:, c], p[:, c]) for c in both]) if both else 0.5


def partial_auc(y: np.ndarray, p: np.ndarray, min_tpr: float = 0.8) -> float:
    """The area under the ROC curve above `min_tpr` true-positive rate (ISIC 2024's score, 0 to 1 - min_tpr): the
    part of the curve where few positives are missed. As the competition computes it: scikit-learn's
    McClish-standardised AUC up to FPR = 1 - min_tpr on the flipped problem, mapped back to its raw area."""
    pos = p[:, 1] if p.ndim == 2 else p
    if not 0 < y.sum() < len(y):
        return 0.5 * (1 - min_tpr) ** 2  # one outcome only: a guess's area above min_tpr
    max_fpr = 1 - min_tpr
    standard = roc_auc_score(1 - y, 1 - pos, max_fpr=max_fpr)
    return float(0.5 * max_fpr ** 2 + (max_fpr - 0.5 * max_fpr ** 2) / 0.5 * (standard - 0.5))


def global_average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Global Average Precision (Google Landmark Recognition): every image's one prediction (its top class) ranked
    by its confidence across the whole set; the mean over the images with a label of the precision at each
    correct prediction's rank. Confident mistakes cost most; a correct answer ranked low earns little; an image
    with no prediction (a row of zeros: a blank submission row) costs only its own missed point."""
    conf, pred = p.max(1), p.argmax(1)
    order = np.argsort(-conf, kind="stable")
    order = order[conf[order] > 0]  # a row of zeros is no prediction (an image left blank): it is not ranked
    hit = (pred[order] == y[order]).astype(np.float64)
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float((precision * hit).sum() / len(y)) if len(y) else 0.0


def map_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean average precision at k with one true class per image: 1/rank of the true class in the top k, else 0."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k) classes, best first
    hit = top == y[:, None]
    return float((hit / np.arange(1, top.shape[1] + 1)).sum(1).mean())


def _errors(y, p) -> np.ndarray:
    return np.asarray(p, dtype=np.float64).reshape(len(p), -1) - np.asarray(y, dtype=np.float64).reshape(len(y), -1)


def _single(fn):  # scored on the top class
    return lambda y, p, t: fn(y, p.argmax(1))


def _multi(fn):  # scored on probs >= thresholds
    return lambda y, p, t: fn(y, decide(p, t))


def _both(single, multi):
    return lambda y, p, t: single(y, p, t) if y.ndim == 1 else multi(y, p, t)


SINGLE, MULTI, BOTH, VALUE = ("single",), ("multilabel",), ("single", "multilabel"), ("regression",)
METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", True, BOTH, _both(_single(accuracy_score), _multi(accuracy_score)), decides=True),
    Metric("balanced_accuracy", True, SINGLE, _single(balanced_accuracy_score), decides=True),
    Metric("f1_macro", True, BOTH, _both(
        lambda y, p, t: f1_score(y, p.argmax(1), labels=np.arange(p.shape[1]), average="macro", zero_division=0),
        _multi(lambda y, d: f1_score(y, d, average="macro", zero_division=0))), decides=True),
    Metric("f1_micro", True, BOTH, _both(
        lambda y, p, t: f1_score(y, p.argmax(1), labels=np.arange(p.shape[1]), average="micro", zero_division=0),
        _multi(lambda y, d: f1_score(y, d, average="micro", zero_division=0))), decides=True),
    Metric("log_loss", False, BOTH, _log_loss),
    Metric("roc_auc", True, BOTH, _roc_auc, per_fold=True),
    Metric("pauc80", True, SINGLE, lambda y, p, t: partial_auc(y, p, 0.8), per_fold=True),  # two classes
    # ranks confidences across the set, which fold models on their own scales do not share: per fold
    Metric("gap", True, SINGLE, lambda y, p, t: global_average_precision(y, p), per_fold=True),
    Metric("qwk", True, SINGLE, lambda y, p, t: cohen_kappa_score(y, p.argmax(1), labels=np.arange(p.shape[1]),
                                                                  weights="quadratic"), decides=True),
    Metric("f1_samples", True, MULTI, _multi(lambda y, d: fbeta_score(y, d, beta=1, average="samples",
                                                                      zero_division=0)), decides=True),
    Metric("f2_samples", True, MULTI, _multi(lambda y, d: fbeta_score(y, d, beta=2, average="samples",
                                                                      zero_division=0)), decides=True),
    Metric("rmse", False, VALUE, lambda y, p, t: np.sqrt(np.mean(_errors(y, p) ** 2))),  # PetFinder Pawpularity
    Metric("mae", False, VALUE, lambda y, p, t: np.mean(np.abs(_errors(y, p)))),
]}
MAP_AT = re.compile(r"map@([1-9][0-9]?)$")  # map@k, k from 1 to 99


def get(name: str) -> Metric:
    """The metric of this name (map@k for any k); ValueError naming the choices otherwise."""
    if name in METRICS:
        return METRICS[name]
    found = MAP_AT.match(name)
    if found:
        k = int(found.group(1))
        return Metric(name, True, SINGLE, lambda y, p, t: map_at_k(y, p, k))
    raise ValueError(f"metric={name}: not a metric the kit knows; choose from {', '.join(names())}")


def resolve(name: str, task: str, submission: str, top_k: int, named: str = "") -> Metric:
    """The metric= key for data of this task and submission format: auto is the metric the competition names
    (`named`, from competition.json, see kit/board/kaggle.py) where it fits the task, else the format's usual one."""
    if name == "auto" and named and task in get(named).tasks:
        name = named
    if name == "auto":
        name = {"label": "accuracy", "probs": "log_loss" if task == "single" else "roc_auc", "prob": "roc_auc",
                "tags": "f1_samples", "topk": f"map@{top_k}", "labelconf": "gap", "value": "rmse"}[submission]
    metric = get(name)
    if task not in metric.tasks:
        fits = [m.name for m in METRICS.values() if task in m.tasks] + (["map@k"] if task == "single" else [])
        raise ValueError(f"metric={name} does not score a {task} task; set metric= to one of {', '.join(fits)}")
    return metric


KAGGLE = [  # (words in Kaggle's name of a metric, the kit's metric), first match wins
    (("root", "mean", "squared"), "rmse"), (("rmse",), "rmse"), (("mean", "absolute"), "mae"), (("mae",), "mae"),
    (("quadratic", "kappa"), "qwk"), (("balanced", "accuracy"), "balanced_accuracy"), (("accuracy",), "accuracy"),
    (("log", "loss"), "log_loss"), (("logloss",), "log_loss"), (("multiclass", "loss"), "log_loss"),
    (("global", "average", "precision"), "gap"), (("partial", "auc"), "pauc80"), (("auc", "tpr"), "pauc80"), (("auc",), "roc_auc"), (("roc",), "roc_auc"), (("receiver", "operating"), "roc_auc"), (("f2",), "f2_samples"),
    (("fbeta",), "f2_samples"), (("fscore", "beta"), "f2_samples"),
    (("macro", "f1"), "f1_macro"), (("micro", "f1"), "f1_micro"), (("mean", "f1"), "f1_samples"),
]


def from_kaggle(name: str) -> str:
    """The kit's metric for the evaluation metric Kaggle names ('' when none fits): MAP@5, Categorization
    Accuracy, Multi Class Log Loss, AUC, Quadratic Weighted Kappa, ..."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower().replace("-", " ").replace("_", " ")  # CamelCase too
    found = re.search(r"map\s*@\s*(\d+)", text)
    if found:
        return f"map@{found.group(1)}"
    words = set(re.findall(r"[a-z0-9]+", text))
    return next((ours for keys, ours in KAGGLE if set(keys) <= words), "")


def names() -> list[str]:
    return [*METRICS, "map@k (e.g. map@5)"]


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


def chance(metric: Metric, y: np.ndarray, n_classes: int) -> float:
    """The best score on y that is still no better than guessing.

    Single-label accuracy: chance_top1 (always the most common class, plus luck). Any other metric:
    the score of a constant predictor, the prior (each class's share of y) for every image: an AUC
    of 0.5, the prior's log loss, its F1; a regression's mean value. Imbalanced data thus sets its own bar.
    """
    if metric.name == "accuracy" and y.ndim == 1:
        return chance_top1(y)
    if "regression" in metric.tasks:  # the constant that scores best on squared errors: the mean
        return metric(y, np.tile(np.asarray(y, dtype=np.float64).reshape(len(y), -1).mean(0), (len(y), 1)))
    prior = (np.bincount(y, minlength=n_classes) / len(y)) if y.ndim == 1 else y.mean(0)
    return metric(y, np.tile(prior, (len(y), 1)))
