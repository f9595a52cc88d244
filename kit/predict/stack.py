"""A second-level model on experiments' out-of-fold predictions and the competition's tabular columns.

    python -m kit stack --exp A [B ...]         # make stack EXP="A B"; tabular=off leaves the columns out

The features of an image are each member's probabilities for it (out of fold for a training image,
the fold ensemble's for a test image) and the columns kit/data/tabular.py finds beside the images (age,
site, lesion measurements, photo flags). (The learner run on each fold's members and averaged after, which
gives the test rows inputs like the OOF rows, was 0.7 points ahead held out over three draws of bench/stack.py:
inside one draw's noise, and not worth carrying each fold's probabilities through bundles yet.) The learner is
scikit-learn's HistGradientBoosting: gradient-boosted trees with missing values and categorical columns handled
natively and no new dependency (bench/stack.py sets it beside LightGBM on the same features, folds and
parameters: the same score within noise, LightGBM's fit in half the seconds, both small beside the members'
training; docs/BENCHMARKS.md); its parameters are fixed and recorded (a small learning rate, shallow leaves,
early stopping on a tenth of its rows where they are enough). Its CV is nested on the same folds: each fold's
rows are predicted by a learner fitted on the other folds' rows, whose member predictions were themselves out
of fold. The submission's learner is fitted on every training row. The result is written like a blend: a
leaderboard row, a manifest (members, columns, learner and parameters).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kit.board import leaderboard, submission
from kit.board.result import Result
from kit.config import Config
from kit.data import folds, tabular
from kit.predict import ensemble as ens
from kit.predict import predict
from kit.predict.inference import start

log = logging.getLogger(__name__)

PARAMS = dict(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, min_samples_leaf=10, l2_regularization=1.0,
              random_state=0)
EARLY_ROWS = 1000  # rows from which a tenth is held out inside each fit to stop the boosting early


def _learner(task: str, rows: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    kind = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    early = dict(early_stopping=True, validation_fraction=0.1, n_iter_no_change=20) if rows >= EARLY_ROWS else \
        dict(early_stopping=False, max_iter=100)
    return kind(**{**PARAMS, **early, "categorical_features": "from_dtype"})


@dataclasses.dataclass
class Learner:
    """The second level fitted on some rows: per class a model (multi-label), one model, or a constant where a
    class never varied in the rows; `predict` gives (rows, n_out) probabilities (a regression: values)."""
    task: str
    n_out: int
    features: list[str]  # the columns it was fitted on, in order
    models: list  # fitted scikit-learn estimators, or a float for a constant

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        x = x[self.features]
        if self.task == "regression":
            return self.models[0].predict(x).reshape(-1, 1)
        if self.task == "multilabel":
            return np.stack([m.predict_proba(x)[:, 1] if not isinstance(m, float) else np.full(len(x), m)
                             for m in self.models], axis=1)
        out = np.zeros((len(x), self.n_out))
        out[:, self.models[0].classes_] = self.models[0].predict_proba(x)  # a class no fitted row had keeps 0
        return out


def fit(x: pd.DataFrame, y: np.ndarray, task: str, n_out: int) -> Learner:
    if task == "regression":
        models = [_learner(task, len(x)).fit(x, y.ravel())]
    elif task == "multilabel":  # one binary learner per class
        models = [_learner(task, len(x)).fit(x, y[:, c]) if len(set(y[:, c])) > 1 else float(y[0, c])
                  for c in range(n_out)]
    else:
        models = [_learner(task, len(x)).fit(x, y)]
    return Learner(task, n_out, list(x.columns), models)


def member_columns(name: str, classes, probs: np.ndarray) -> dict:
    """One member's feature columns: its probability of each class, named <experiment>:<class>."""
    return {f"{name}:{c}": probs[:, i] for i, c in enumerate(classes)}


def features(results: list[Result], tab: tabular.Tabular | None,
             holdout: list[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """(OOF rows' features, test rows' features, holdout rows' features or None): the members' probabilities, then
    the tabular columns. `holdout`: the holdout rows' paths, in the order of the members' holdout scores."""
    first = results[0]
    sides = {"oof": {}, "test": {}, "holdout": {}}
    for r in results:
        for side, scores in (("oof", r.oof_scores), ("test", r.test_scores), ("holdout", r.holdout_scores)):
            p = r.probs(scores) if len(scores) else scores
            sides[side] |= member_columns(r.name, first.classes, p) if len(scores) else {}
    x_oof, x_test = pd.DataFrame(sides["oof"]), pd.DataFrame(sides["test"])
    x_hold = pd.DataFrame(sides["holdout"]) if len(holdout) and len(first.holdout_scores) else None
    if tab is not None:
        row_of = {p: i for i, p in enumerate(first.layout.train["path"])}
        x_oof = pd.concat([x_oof, tab.train.iloc[[row_of[p] for p in first.oof_ids]].reset_index(drop=True)], axis=1)
        x_test = pd.concat([x_test, tab.test.reset_index(drop=True)], axis=1)
        if x_hold is not None and not set(holdout) <= set(row_of):
            x_hold = None  # holdout images of a val/ folder beside a label file: no columns to give them
        if x_hold is not None:
            x_hold = pd.concat([x_hold, tab.train.iloc[[row_of[p] for p in holdout]].reset_index(drop=True)], axis=1)
    return x_oof, x_test, x_hold


def stack(results: list[Result], tab: tabular.Tabular | None) -> tuple[Result, Learner]:
    """The stacked Result (test probabilities from a learner fitted on every OOF row; OOF the nested predictions)
    and that learner, which a bundle carries."""
    ens.check_compatible(results, "stack")
    first = results[0]
    task, n_out, y, fold_of = first.layout.task, len(first.classes), first.oof_labels, first.oof_folds
    table = folds.load(first.cfgs[0]).table
    x_oof, x_test, x_hold = features(results, tab, list(table.loc[table["role"] == "holdout", "path"]))
    held = np.zeros((len(y), n_out))
    for k in np.unique(fold_of):
        rows, other = fold_of != k, fold_of == k
        held[other] = fit(x_oof[rows], y[rows], task, n_out).predict(x_oof[other])
    final = fit(x_oof, y, task, n_out)
    test = final.predict(x_test)
    per_class = " (one per class)" if task == "multilabel" else ""
    record = {"method": "stack: scikit-learn HistGradientBoosting" + per_class
              + ", nested on the folds", "members": [r.name for r in results],
              "columns": tab.kinds if tab is not None else {}, "test_file": tab.test_file if tab is not None else "",
              "params": {**PARAMS, "early_stopping_from_rows": EARLY_ROWS}}
    return ens.scored(dataclasses.replace(
        first, **ens.combined_fields(results, "stack-" + "+".join(r.name for r in results)),
        test_scores=test, oof_scores=held, scores_are_probs=True,
        **({"holdout_scores": final.predict(x_hold)} if x_hold is not None else
           {"holdout_scores": np.zeros((0, n_out)), "holdout_labels": first.holdout_labels[:0]}),
        blend=record)), final


def prepare(cfgs: list[Config], device) -> tuple[list[Result], tabular.Tabular | None]:
    """Each experiment's result (reusing up-to-date logits) and the competition's columns, or one line that says
    why there is nothing to stack."""
    results = [predict.predict_experiment(cfg, device) for cfg in cfgs]
    tab = tabular.find(results[0].layout) if cfgs[0].tabular else None
    if tab is None and len(results) < 2:
        why = "tabular=off" if not cfgs[0].tabular else f"{cfgs[0].data} has no tabular columns beside its images"
        raise ValueError(f"stack: one experiment and no columns ({why}): a second level would learn nothing the "
                         "experiment does not; name two or more experiments (--exp A B), or use make blend")
    log.info("stack: %s", tab.said if tab is not None else "no tabular columns (tabular=off)" if not cfgs[0].tabular
             else "no tabular columns beside the images: the members' predictions alone")
    return results, tab


def run(cfgs: list[Config]) -> Path:
    """The `stack` command: predict each experiment, stack, write the submission."""
    results, tab = prepare(cfgs, start(cfgs[0], "stack"))
    r, _ = stack(results, tab)
    path = submission.write(r)
    best = results[r.metric.best([x.cv["score"] for x in results])]
    log.info("stack %s: nested CV %s %.4f (best experiment alone, %s: %.4f)", path.name, r.metric.name,
             r.cv["score"], best.name, best.cv["score"])
    leaderboard.show(leaderboard.path_of(cfgs[0]), r.fingerprint)
    return path
