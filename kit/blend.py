"""A blend of experiments, its weights fitted on their out-of-fold predictions, with an honest CV.

    python -m kit blend --exp resnest50d_spinalnet resnet50 [--steps 50]

Weights come from greedy forward selection with replacement (Caruana et al., 2004, "Ensemble
selection from libraries of models"): start from nothing and, `steps` times, add the experiment
whose addition most lowers the log-loss of the averaged out-of-fold probabilities; an
experiment's weight is how often it was picked. Chosen over a constrained optimiser of the
log-loss because its weights are non-negative and sum to 1 by construction, each step can move
them by at most 1/steps (little room to overfit a few thousand rows), and near-copies of one
model get a stable split instead of an ill-conditioned one.

The CV of a blend is nested: for each fold, weights fitted on the other folds' out-of-fold rows
score that fold's rows; the leaderboard row shows the top-1 of those held-out predictions. The
submission uses weights fitted on every out-of-fold row, applied to the test probabilities
(each experiment's fold ensemble, through its TTA), and its manifest records them. The plain
average stays `predict --ensemble`.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score

from kit import ensemble as ens
from kit import folds as folds_command
from kit import leaderboard, predict, submission
from kit.config import Config
from kit.inference import start

log = logging.getLogger(__name__)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1.0)).mean())


def caruana(probs: list[np.ndarray], labels: np.ndarray, steps: int) -> np.ndarray:
    """Weights (members,) by greedy forward selection with replacement on the log-loss; ties to the first member."""
    counts, total = np.zeros(len(probs)), np.zeros_like(probs[0])
    for step in range(1, steps + 1):
        best = int(np.argmin([log_loss((total + p) / step, labels) for p in probs]))
        counts[best] += 1
        total += probs[best]
    return counts / steps


def nested(probs: list[np.ndarray], labels: np.ndarray, fold_of: np.ndarray, steps: int):
    """(held-out blended probabilities (N, classes), per-fold weights): each fold blended by weights fitted on the others."""
    held, weights = np.zeros_like(probs[0]), {}
    for k in np.unique(fold_of):
        fit, score = fold_of != k, fold_of == k
        weights[int(k)] = caruana([p[fit] for p in probs], labels[fit], steps)
        held[score] = sum(w * p[score] for w, p in zip(weights[int(k)], probs))
    return held, weights


def blend(results: list[ens.Result], fold_of: np.ndarray, steps: int) -> ens.Result:
    """The blended Result: test and holdout with weights fitted on all OOF rows; OOF the nested predictions."""
    ens.check_compatible(results, "blend")
    merges = [r.cfgs[0].merge for r in results]
    oof = [ens.as_probs(r.oof_scores, m) for r, m in zip(results, merges)]
    labels = results[0].oof_labels
    weights = caruana(oof, labels, steps)
    held, per_fold = nested(oof, labels, fold_of, steps)
    mix = lambda arrays: sum(w * a for w, a in zip(weights, arrays))  # noqa: E731
    first = results[0]
    record = {"method": f"caruana greedy forward selection with replacement, log-loss, {steps} steps",
              "weights": {r.name: float(w) for r, w in zip(results, weights)},
              "fold_weights": {k: [float(x) for x in w] for k, w in per_fold.items()},
              "in_sample_top1": float(accuracy_score(labels, mix(oof).argmax(1)))}
    return dataclasses.replace(
        first, **ens.combined_fields(results, "blend-" + "+".join(r.name for r in results)),
        test_scores=mix([ens.as_probs(r.test_scores, m) for r, m in zip(results, merges)]), oof_scores=held,
        holdout_scores=(mix([ens.as_probs(r.holdout_scores, m) for r, m in zip(results, merges)])
                        if len(first.holdout_labels) else first.holdout_scores),
        fold_top1=[float(accuracy_score(labels[fold_of == k], held[fold_of == k].argmax(1))) for k in np.unique(fold_of)],
        blend=record)


def run(cfgs: list[Config], steps: int = 50) -> Path:
    """The `blend` command: predict each experiment (reusing up-to-date logits), blend, write the submission."""
    if len(cfgs) < 2:
        raise ValueError("blend needs at least two experiments: --exp A B [C ...]")
    device = start(cfgs[0], "blend")
    results = [predict.predict_experiment(cfg, device) for cfg in cfgs]  # up-to-date logits are reused
    table = folds_command.load(cfgs[0]).table.set_index("path")["fold"]
    fold_of = table.loc[results[0].oof_ids].to_numpy()
    r = blend(results, fold_of, steps)
    path = submission.write(r)
    weights = ", ".join(f"{k} {v:.2f}" for k, v in r.blend["weights"].items())
    best = max(results, key=lambda x: x.cv["top1"])
    log.info("blend %s: weights %s; nested CV top-1 %.4f (weights fitted on the rows they score: %.4f; best "
             "experiment alone, %s: %.4f)", path.name, weights, r.cv["top1"], r.blend["in_sample_top1"], best.name,
             best.cv["top1"])
    leaderboard.show(leaderboard.path_of(cfgs[0]), r.fingerprint)
    return path
