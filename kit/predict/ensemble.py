"""Fold and experiment ensembles: one Result of test, out-of-fold and holdout scores, and its CV.

An ensemble averages logits (merge=logits) or probabilities (merge=probs: softmax, or each class's
sigmoid for multi-label). Its CV comes from the same members' out-of-fold predictions, so CV and
leaderboard describe the same model; thresholds and temperature (kit/board/calibrate.py) are fitted on
them, nested. kit/board/submission.py turns a Result into the submission file.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score

from kit.board import calibrate
from kit.board.result import Result
from kit.config import Config
from kit.data.layout import Layout
from kit.io import sha256_file
from kit.metrics import Metric, cv_score, fold_scores, probs_of, topk
from kit.experiment import FULL, Experiment, mean_logits


def scored(r: Result) -> Result:
    """r with its post-processing fitted on every OOF row (for the test images) and its CV: the metric of the OOF
    rows, each fold's rows processed by what the other folds fitted; per fold too, and top-1/top-5 (single-label)."""
    cfg, y, probs = r.cfgs[0], r.oof_labels, r.probs(r.oof_scores)
    post = calibrate.fit(r.metric, r.layout.task, y, probs, cfg.threshold, cfg.temperature)
    if r.layout.submission == "labelconf" and cfg.blank_below > 0:
        post["blank_below"] = cfg.blank_below  # kept with what was fitted: the bundle's kernel writes the same rows
    held, t = _held(r, probs)
    folds = fold_scores(r.metric, y, held, r.oof_folds, t)
    cv = {"metric": r.metric.name, "score": cv_score(r.metric, y, held, r.oof_folds, t, folds),
          "fold_std": float(np.std(folds[0])), "folds": [float(s) for s in folds[0]]}
    if r.layout.task == "single":
        cv |= {"top1": float(accuracy_score(y, held.argmax(1))), "top5": topk(y, held, 5)}
    return dataclasses.replace(r, post=post, cv=cv)


def _held(r: Result, probs: np.ndarray):
    """(OOF probabilities, thresholds) with each fold's rows processed by what the other folds fitted."""
    cfg = r.cfgs[0]
    return calibrate.nested(r.metric, r.layout.task, r.oof_labels, probs, r.oof_folds, cfg.threshold, cfg.temperature)


def nested_cv(r: Result, probs: np.ndarray) -> float:
    """The CV `scored` gives, of other OOF probabilities of r's rows (the last epochs' weights)."""
    held, t = _held(r, probs)
    return cv_score(r.metric, r.oof_labels, held, r.oof_folds, t)


def choose(metric: Metric, y: np.ndarray, fold_of: np.ndarray, candidates: dict[str, np.ndarray]) -> dict:
    """tta=auto: which candidate (name -> OOF probabilities, cheapest first) to use, by the metric's CV.

    Returns {"chosen": the best over every fold (for the test images), "per_fold": {fold: the best over the
    *other* folds} (each fold's OOF rows come from it, so the CV of the choice is not optimistic), "cv": each
    candidate's CV}. A tie goes to the earlier, cheaper candidate.
    """
    names = list(candidates)

    def best(rows) -> str:
        return names[metric.best([cv_score(metric, y[rows], candidates[n][rows], fold_of[rows]) for n in names])]

    cv = {n: cv_score(metric, y, candidates[n], fold_of) for n in names}
    every = np.ones(len(y), bool)
    return {"chosen": best(every), "cv": cv,
            "per_fold": {str(k): best(fold_of != k) if (fold_of != k).any() else best(every)  # str: as JSON has it
                         for k in np.unique(fold_of)}}


def average(arrays: list[np.ndarray], merge: str, task: str = "single") -> np.ndarray:
    """Mean of logits, or of probabilities."""
    stack = np.stack(arrays).astype(np.float64)  # (members, N, classes)
    if merge == "probs":
        stack = probs_of(stack, task)
    return stack.mean(axis=0)


Members = list[list[Path]]  # per fold, the logits files of its members (the fold, then its seed replicas)


def from_folds(cfg: Config, layout: Layout, metric: Metric, meta: dict, folds: list[int], test_files: Members,
               oof_files: Members, holdout_files: Members = (), last_files: Members = ()) -> Result:
    """One experiment's fold logits (test, out-of-fold, holdout, out-of-fold of the last epochs; all through the
    same TTA) as one scored Result; a fold's members (seeds=N) averaged as logits first."""
    test = [mean_logits(f) for f in test_files]
    ids = layout.test["id"].to_numpy().astype(str)
    for f, t in zip(test_files, test):
        assert np.array_equal(t["ids"], ids), f"{f[0]}: test ids differ from the data's"
    oof = [mean_logits(f) for f in oof_files]
    oof_ids = np.concatenate([o["ids"] for o in oof])
    order = np.argsort(oof_ids, kind="stable")  # sorted by path, so experiments align row by row
    logits = np.concatenate([o["logits"] for o in oof])
    exp = Experiment.of(cfg)
    members = [m for k in [*folds, *([FULL] if cfg.full_fit else [])] for m in exp.members(k, cfg.seeds)]
    held = [mean_logits(f) for f in holdout_files]
    merge, task = cfg.merge, layout.task
    r = scored(Result(
        name=cfg.name, cfgs=[cfg], layout=layout, metric=metric, folds=folds,
        test_scores=average([t["logits"] for t in test], merge, task),
        oof_ids=oof_ids[order], oof_labels=np.concatenate([o["labels"] for o in oof])[order],
        oof_scores=(probs_of(logits, task) if merge == "probs" else logits)[order],
        oof_folds=np.concatenate([np.full(len(o["ids"]), k) for k, o in zip(folds, oof)])[order],
        checkpoints={str(m.best): sha256_file(m.best) for m in members},
        epochs=float(np.mean([len(m.read_history()) for m in members])), fingerprint=meta["fingerprint"],
        warning="; ".join(w for w in (exp.warning(folds), _refit_note(cfg)) if w), scores_are_probs=merge == "probs",
        trained_on=exp.hosts(folds),
        **({"holdout_scores": average([h["logits"] for h in held], merge, task), "holdout_labels": held[0]["labels"]}
           if held else {}),
    ))
    if not last_files:
        return r
    last = np.concatenate([mean_logits(f)["logits"] for f in last_files])[order]  # the rows of oof_files, in order
    return dataclasses.replace(r, last_epoch_score=nested_cv(r, probs_of(last, task)))


def _refit_note(cfg: Config) -> str:
    """What a full_fit row's CV is not (the leaderboard's warning column says it)."""
    if not cfg.full_fit:
        return ""
    return ("full_fit=only: the CV is the folds', not the full-data model's" if cfg.full_fit == "only" else
            "full_fit: the CV is the folds' alone (the full-data model has no out-of-fold rows)")


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
                epochs=float(np.mean([r.epochs for r in results])), last_epoch_score=None,
                trained_on={k: v for r in results for k, v in r.trained_on.items()},
                tta_choice={k: v for r in results for k, v in r.tta_choice.items()},  # every member's, not the first's
                warning="; ".join(f"{r.name}: {r.warning}" for r in results if r.warning))


def mean_scores(parts: list[tuple[np.ndarray, bool]], task: str) -> tuple[np.ndarray, bool]:
    """Experiments' (scores, are they probabilities) averaged: as they are when all are alike, else as
    probabilities. Returns (scores, whether they are probabilities)."""
    kinds = {is_probs for _, is_probs in parts}
    if len(kinds) == 1:
        return np.mean([scores for scores, _ in parts], axis=0), kinds.pop()
    return np.mean([s if is_probs else probs_of(s, task) for s, is_probs in parts], axis=0), True


def combine_scores(results: list[Result], field_name: str) -> tuple[np.ndarray, bool]:
    """The members' scores of one field (test_scores, ...) averaged (see mean_scores)."""
    return mean_scores([(getattr(r, field_name), r.scores_are_probs) for r in results], results[0].layout.task)


def combine(results: list[Result]) -> Result:
    """Several experiments' results averaged (as probabilities when their merges differ), scored anew."""
    check_compatible(results, "ensemble")
    first = results[0]
    test, as_probs = combine_scores(results, "test_scores")
    return scored(dataclasses.replace(
        first, **combined_fields(results, "+".join(r.name for r in results)), test_scores=test,
        oof_scores=combine_scores(results, "oof_scores")[0], scores_are_probs=as_probs,
        holdout_scores=combine_scores(results, "holdout_scores")[0] if len(first.holdout_labels) else first.holdout_scores,
    ))
