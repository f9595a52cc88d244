"""A second-level model on experiments' out-of-fold predictions and the competition's tabular columns.

    python -m kit stack --exp A [B ...]         # make stack EXP="A B"; tabular=off leaves the columns out

The features of an image are each member's probabilities for it (out of fold for a training image,
the fold ensemble's for a test image) and the columns kit/data/tabular.py finds beside the images (age,
site, lesion measurements, photo flags). The learner is scikit-learn's HistGradientBoosting: gradient-
boosted trees with missing values and categorical columns handled natively, no new dependency, and at
this size (thousands of rows, tens of columns) as accurate as LightGBM; its parameters are fixed and
recorded (a small learning rate, shallow leaves, early stopping on a tenth of its rows where they are
enough). Its CV is nested on the same folds: each fold's rows are predicted by a learner fitted on the
other folds' rows, whose member predictions were themselves out of fold. The submission's learner is
fitted on every training row. The result is written like a blend: a leaderboard row, a manifest (members,
columns, learner and parameters).
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
from kit.data import tabular
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


def _fit_predict(x_fit: pd.DataFrame, y_fit: np.ndarray, x_new: pd.DataFrame, task: str, n_out: int) -> np.ndarray:
    """(len(x_new), n_out) probabilities (a regression: values) of learners fitted on (x_fit, y_fit)."""
    if task == "regression":
        return _learner(task, len(x_fit)).fit(x_fit, y_fit.ravel()).predict(x_new).reshape(-1, 1)
    if task == "multilabel":  # one binary learner per class
        out = np.zeros((len(x_new), n_out))
        for c in range(n_out):
            col = y_fit[:, c]
            out[:, c] = (_learner(task, len(x_fit)).fit(x_fit, col).predict_proba(x_new)[:, 1] if len(set(col)) > 1
                         else col[0])
        return out
    model = _learner(task, len(x_fit)).fit(x_fit, y_fit)
    out = np.zeros((len(x_new), n_out))
    out[:, model.classes_] = model.predict_proba(x_new)  # a class no row of this fit had keeps probability 0
    return out


def features(results: list[Result], tab: tabular.Tabular | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(OOF rows' features, test rows' features): the members' probabilities, then the tabular columns."""
    first = results[0]
    oof, test = {}, {}
    for r in results:
        p_oof, p_test = r.probs(r.oof_scores), r.probs(r.test_scores)
        for c in range(p_oof.shape[1]):
            oof[f"{r.name}:{first.classes[c]}"], test[f"{r.name}:{first.classes[c]}"] = p_oof[:, c], p_test[:, c]
    x_oof, x_test = pd.DataFrame(oof), pd.DataFrame(test)
    if tab is not None:
        row_of = {p: i for i, p in enumerate(first.layout.train["path"])}
        rows = [row_of[p] for p in first.oof_ids]
        x_oof = pd.concat([x_oof, tab.train.iloc[rows].reset_index(drop=True)], axis=1)
        x_test = pd.concat([x_test, tab.test.reset_index(drop=True)], axis=1)
    return x_oof, x_test


def stack(results: list[Result], tab: tabular.Tabular | None) -> Result:
    """The stacked Result: test probabilities from a learner fitted on every OOF row; OOF the nested predictions."""
    ens.check_compatible(results, "stack")
    first = results[0]
    task, n_out, y, fold_of = first.layout.task, len(first.classes), first.oof_labels, first.oof_folds
    x_oof, x_test = features(results, tab)
    held = np.zeros((len(y), n_out))
    for k in np.unique(fold_of):
        fit, score = fold_of != k, fold_of == k
        held[score] = _fit_predict(x_oof[fit], y[fit], x_oof[score], task, n_out)
    test = _fit_predict(x_oof, y, x_test, task, n_out)
    per_class = " (one per class)" if task == "multilabel" else ""
    record = {"method": "stack: scikit-learn HistGradientBoosting" + per_class
              + ", nested on the folds", "members": [r.name for r in results],
              "columns": tab.kinds if tab is not None else {}, "test_file": tab.test_file if tab is not None else "",
              "params": {**PARAMS, "early_stopping_from_rows": EARLY_ROWS}}
    return ens.scored(dataclasses.replace(
        first, **ens.combined_fields(results, "stack-" + "+".join(r.name for r in results)),
        test_scores=test, oof_scores=held, scores_are_probs=True,
        holdout_scores=np.zeros((0, n_out)), holdout_labels=first.holdout_labels[:0], blend=record))


def run(cfgs: list[Config]) -> Path:
    """The `stack` command: predict each experiment (reusing up-to-date logits), stack, write the submission."""
    device = start(cfgs[0], "stack")
    results = [predict.predict_experiment(cfg, device) for cfg in cfgs]
    tab = tabular.find(results[0].layout) if cfgs[0].tabular else None
    if tab is None and len(results) < 2:
        why = "tabular=off" if not cfgs[0].tabular else f"{cfgs[0].data} has no tabular columns beside its images"
        raise ValueError(f"stack: one experiment and no columns ({why}): a second level would learn nothing the "
                         "experiment does not; name two or more experiments (--exp A B), or use make blend")
    log.info("stack: %s", tab.said if tab is not None else "no tabular columns (tabular=off)" if not cfgs[0].tabular
             else "no tabular columns beside the images: the members' predictions alone")
    r = stack(results, tab)
    path = submission.write(r)
    best = results[r.metric.best([x.cv["score"] for x in results])]
    log.info("stack %s: nested CV %s %.4f (best experiment alone, %s: %.4f)", path.name, r.metric.name,
             r.cv["score"], best.name, best.cv["score"])
    leaderboard.show(leaderboard.path_of(cfgs[0]), r.fingerprint)
    return path
