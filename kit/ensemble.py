"""Fold and experiment ensembles: one Result of test, out-of-fold and holdout scores.

An ensemble averages logits (merge=logits) or softmax probabilities (merge=probs). Its CV comes
from the same members' out-of-fold predictions, so CV and leaderboard describe the same model.
kit/submission.py turns a Result into the submission file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import softmax
from sklearn.metrics import accuracy_score

from kit.config import Config
from kit.experiment import Experiment
from kit.io import load_npz, sha256_file
from kit.layout import Layout
from kit.metrics import topk


@dataclass
class Result:
    """One experiment's (or several experiments') ensembled test and out-of-fold scores."""

    name: str
    cfgs: list[Config]
    layout: Layout
    classes: list[str]
    folds: list[int]
    test_scores: np.ndarray  # (N_test, classes), in layout.test order
    oof_ids: np.ndarray  # (N_oof,) training image paths, sorted
    oof_labels: np.ndarray  # (N_oof,) class indices
    oof_scores: np.ndarray  # (N_oof, classes)
    fold_top1: list[float]
    holdout_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N_holdout, classes)
    holdout_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    checkpoints: dict = field(default_factory=dict)  # path -> sha256
    epochs: float = 0.0  # mean epochs run per fold
    fingerprint: str = ""
    # OOF top-1 of each fold's last epoch (plain, no TTA): how much choosing the best epoch on the
    # validation fold itself flatters the CV. None for ensembles of experiments.
    last_epoch_top1: float | None = None
    warning: str = ""  # e.g. folds whose stage 1 ended at chance level
    blend: dict = field(default_factory=dict)  # a blend's weights and how they were fitted (kit/blend.py)

    @property
    def holdout_top1(self) -> float | None:
        if not len(self.holdout_labels):
            return None
        return float(accuracy_score(self.holdout_labels, self.holdout_scores.argmax(1)))

    @property
    def cv(self) -> dict:
        return {"top1": float(accuracy_score(self.oof_labels, self.oof_scores.argmax(1))),
                "top5": topk(self.oof_labels, self.oof_scores, 5), "fold_std": float(np.std(self.fold_top1))}


def average(arrays: list[np.ndarray], merge: str) -> np.ndarray:
    """Mean of logits, or of softmax probabilities."""
    stack = np.stack(arrays).astype(np.float64)  # (members, N, classes)
    if merge == "probs":
        stack = softmax(stack, axis=-1)
    return stack.mean(axis=0)


def from_folds(cfg: Config, layout: Layout, meta: dict, folds: list[int], test_files: list[Path],
               oof_files: list[Path], holdout_files: list[Path] = ()) -> Result:
    """One experiment's fold logits (test, out-of-fold, holdout; all through the same TTA) as one Result."""
    test = [load_npz(f) for f in test_files]
    ids = layout.test["id"].to_numpy().astype(str)
    for f, t in zip(test_files, test):
        assert np.array_equal(t["ids"], ids), f"{f}: test ids differ from the data's"
    oof = [load_npz(f) for f in oof_files]
    oof_ids = np.concatenate([o["ids"] for o in oof])
    order = np.argsort(oof_ids, kind="stable")  # sorted by path, so experiments align row by row
    logits = np.concatenate([o["logits"] for o in oof])
    oof_scores = softmax(logits, axis=-1) if cfg.merge == "probs" else logits
    exp = Experiment.of(cfg)
    best = [exp.fold(k).best for k in folds]
    held = [load_npz(f) for f in holdout_files]
    return Result(
        name=cfg.name, cfgs=[cfg], layout=layout, classes=list(meta["classes"]), folds=folds,
        test_scores=average([t["logits"] for t in test], cfg.merge),
        oof_ids=oof_ids[order], oof_labels=np.concatenate([o["labels"] for o in oof])[order],
        oof_scores=oof_scores[order], fold_top1=[float(accuracy_score(o["labels"], o["logits"].argmax(1))) for o in oof],
        checkpoints={str(p): sha256_file(p) for p in best},
        epochs=float(np.mean([len(exp.fold(k).read_history()) for k in folds])), fingerprint=meta["fingerprint"],
        last_epoch_top1=exp.last_epoch_top1(folds, [len(o["labels"]) for o in oof]), warning=exp.warning(folds),
        **({"holdout_scores": average([h["logits"] for h in held], cfg.merge), "holdout_labels": held[0]["labels"]}
           if held else {}),
    )


def as_probs(scores: np.ndarray, merge: str) -> np.ndarray:
    """Fold-ensembled scores as probabilities: averaged logits go through softmax, averaged probabilities are."""
    return scores if merge == "probs" else softmax(scores, axis=-1)


def combine_scores(scores: list[np.ndarray], merges: list[str]) -> np.ndarray:
    """Experiments' fold-ensembled scores averaged: as they are when all merged alike, else as probabilities."""
    if len(set(merges)) > 1:
        scores = [as_probs(s, m) for s, m in zip(scores, merges)]
    return np.mean(scores, axis=0)


def check_compatible(results: list[Result], verb: str) -> None:
    """Experiments combine row by row only when trained on the same folds and classes."""
    first = results[0]
    for r in results[1:]:
        if r.classes != first.classes or not np.array_equal(r.oof_ids, first.oof_ids):
            raise ValueError(f"cannot {verb} {first.name} and {r.name}: trained on other folds or classes")


def combined_fields(results: list[Result], name: str) -> dict:
    """What every combination of experiments (an average, a blend) takes from its members alike."""
    return dict(name=name, cfgs=[c for r in results for c in r.cfgs],
                checkpoints={k: v for r in results for k, v in r.checkpoints.items()},
                epochs=float(np.mean([r.epochs for r in results])), last_epoch_top1=None,
                warning="; ".join(f"{r.name}: {r.warning}" for r in results if r.warning))


def combine(results: list[Result]) -> Result:
    """Several experiments' results averaged (as probabilities when their merges differ)."""
    check_compatible(results, "ensemble")
    first = results[0]
    merges = [r.cfgs[0].merge for r in results]
    return dataclasses.replace(
        first, **combined_fields(results, "+".join(r.name for r in results)),
        test_scores=combine_scores([r.test_scores for r in results], merges),
        oof_scores=combine_scores([r.oof_scores for r in results], merges),
        holdout_scores=(combine_scores([r.holdout_scores for r in results], merges)
                        if len(first.holdout_labels) else first.holdout_scores),
        fold_top1=[float(np.mean(v)) for v in zip(*(r.fold_top1 for r in results))],
    )
