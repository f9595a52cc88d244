"""A blend of experiments, its weights fitted on their out-of-fold predictions, with an honest CV.

    python -m kit blend --exp resnest50d_spinalnet resnet50 [--steps 50]

Weights come from greedy forward selection with replacement (Caruana et al., 2004, "Ensemble
selection from libraries of models"): start from nothing and, `steps` times, add the experiment
whose addition most improves the averaged out-of-fold probabilities' metric (the log loss for a
metric of decisions, see `objective`); an experiment's weight is how often it was picked. Chosen over a constrained optimiser of the
log-loss because its weights are non-negative and sum to 1 by construction, each step can move
them by at most 1/steps (little room to overfit a few thousand rows), and near-copies of one
model get a stable split instead of an ill-conditioned one.

The CV of a blend is nested: for each fold, weights fitted on the other folds' out-of-fold rows
score that fold's rows; the leaderboard row shows the metric of those held-out predictions. The
submission uses weights fitted on every out-of-fold row, applied to the test probabilities
(each experiment's fold ensemble, through its TTA), and its manifest records them. The plain
average stays `predict --ensemble`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from pathlib import Path

import numpy as np

from kit.board import leaderboard, submission
from kit.config import Config
from kit.metrics import METRICS, Metric, cv_score
from kit.predict import ensemble as ens
from kit.predict import predict
from kit.predict.inference import start

log = logging.getLogger(__name__)


def objective(metric: Metric) -> Metric:
    """What the weights are fitted to: the metric, or the log loss where the metric scores decisions (accuracy,
    F1, QWK: a handful of flipped rows would make each greedy step a coin toss)."""
    return METRICS["log_loss"] if metric.decides else metric


def caruana(probs: list[np.ndarray], labels: np.ndarray, steps: int, metric: Metric = METRICS["log_loss"],
            fold_of: np.ndarray | None = None) -> np.ndarray:
    """Weights (members,) by greedy forward selection with replacement on `metric` as the CV reports it (`fold_of`:
    each row's fold, so that an AUC is the mean of the folds' own AUCs, not one of the pooled rows); ties to the
    first member."""
    counts, total = np.zeros(len(probs)), np.zeros_like(probs[0])
    fold_of = np.zeros(len(labels), dtype=np.int64) if fold_of is None else fold_of
    for step in range(1, steps + 1):
        best = metric.best([cv_score(metric, labels, (total + p) / step, fold_of) for p in probs])
        counts[best] += 1
        total += probs[best]
    return counts / steps


def nested(probs: list[np.ndarray], labels: np.ndarray, fold_of: np.ndarray, steps: int,
           metric: Metric = METRICS["log_loss"]):
    """(held-out blended probabilities (N, classes), per-fold weights): each fold blended by weights fitted on the others."""
    held, weights = np.zeros_like(probs[0]), {}
    for k in np.unique(fold_of):
        fit, score = fold_of != k, fold_of == k
        weights[str(k)] = caruana([p[fit] for p in probs], labels[fit], steps, metric, fold_of[fit])  # str: as JSON
        held[score] = sum(w * p[score] for w, p in zip(weights[str(k)], probs))
    return held, weights


def mixed(weights, arrays: list[np.ndarray]) -> np.ndarray:
    """Members' probabilities mixed by the blend's weights (what a bundle with `blend` applies too)."""
    return sum(w * a for w, a in zip(weights, arrays))


def blend(results: list[ens.Result], steps: int) -> ens.Result:
    """The blended Result: test and holdout with weights fitted on all OOF rows; OOF the nested predictions."""
    ens.check_compatible(results, "blend")
    first, fit_to = results[0], objective(results[0].metric)
    oof = [r.probs(r.oof_scores) for r in results]
    labels, fold_of = first.oof_labels, first.oof_folds
    weights = caruana(oof, labels, steps, fit_to, fold_of)
    held, per_fold = nested(oof, labels, fold_of, steps, fit_to)
    mix = functools.partial(mixed, weights)
    record = {"method": f"caruana greedy forward selection with replacement, {fit_to.name}, {steps} steps",
              "steps": steps,
              "weights": {r.name: float(w) for r, w in zip(results, weights)},
              "fold_weights": {k: [float(x) for x in w] for k, w in per_fold.items()},
              "in_sample_score": cv_score(first.metric, labels, mix(oof), fold_of)}
    return ens.scored(dataclasses.replace(
        first, **ens.combined_fields(results, "blend-" + "+".join(r.name for r in results)),
        test_scores=mix([r.probs(r.test_scores) for r in results]), oof_scores=held, scores_are_probs=True,
        holdout_scores=(mix([r.probs(r.holdout_scores) for r in results])
                        if len(first.holdout_labels) else first.holdout_scores),
        blend=record))


def steps_of(cfgs: list[Config]) -> int | None:
    """The steps of the newest `kit blend` of these experiments, from the manifests in submissions_dir (None where
    there is none): what `export --blend` refits with, so that the bundle carries that blend's weights."""
    names, newest = [c.name for c in cfgs], ("", None)
    for path in Path(cfgs[0].submissions_dir).glob(f"blend-{'+'.join(names)}-*.json"):
        try:
            runs = json.loads(path.read_text())["runs"]
        except (OSError, ValueError, KeyError):
            continue  # not a manifest of ours: it cannot say which steps
        for run in runs:
            if run.get("experiments") != names or "blend" not in run:
                continue
            said = re.search(r"(\d+) steps$", run["blend"].get("method", ""))  # manifests before "steps" was kept
            steps = run["blend"].get("steps") or (int(said.group(1)) if said else None)
            if steps and run.get("created_at", "") >= newest[0]:
                newest = run.get("created_at", ""), steps
    return newest[1]


def run(cfgs: list[Config], steps: int = 50) -> Path:
    """The `blend` command: predict each experiment (reusing up-to-date logits), blend, write the submission."""
    if len(cfgs) < 2:
        raise ValueError("blend needs at least two experiments: --exp A B [C ...]")
    device = start(cfgs[0], "blend")
    results = [predict.predict_experiment(cfg, device) for cfg in cfgs]  # up-to-date logits are reused
    r = blend(results, steps)
    path = submission.write(r)
    weights = ", ".join(f"{k} {v:.2f}" for k, v in r.blend["weights"].items())
    best = results[r.metric.best([x.cv["score"] for x in results])]
    log.info("blend %s: weights %s; nested CV %s %.4f (weights fitted on the rows they score: %.4f; best "
             "experiment alone, %s: %.4f)", path.name, weights, r.metric.name, r.cv["score"],
             r.blend["in_sample_score"], best.name, best.cv["score"])
    leaderboard.show(leaderboard.path_of(cfgs[0]), r.fingerprint)
    return path
