"""`kit stack` against the image models it stacks, and its learner chosen by measurement: python -m bench --only stack

The task: bench/accuracy.py's degraded digits (1,257 training images in 5 folds, 540 held out with labels) as a
competition with tabular columns beside the images, as ISIC or PetFinder hands them over: train.csv and test.csv
hold, per image, `loops` (the closed loops the digit is drawn with, 0 to 2, recorded wrongly one time in five),
`parity` (even or odd, wrong one time in ten), `ink` (a number that moves with the digit, noisy) and `scanner`
(a category that says nothing). Neither the columns alone nor the images alone tell every digit; together they
tell more. Rows, each with its CV (out of fold; a stack's nested on the same folds) and its top-1 on the
held-out images:

    resnest, resnet          the two experiments (the demo's two model families), each its fold ensemble
    blend                    kit blend of the two (weights fitted on OOF, nested CV): the best image-only row
    stack, tabular=off       the second level on the members' probabilities alone
    stack                    with the columns: scikit-learn's HistGradientBoosting (what kit/predict/stack.py uses)
    stack, LightGBM          the same features, folds and parameters through LightGBM (where it is installed:
                             make bench-stack installs it beside the kit, not into it)

"fit s" is the second level's own time (nested CV and the final fit), the images' predictions already made.
"one fold" is the held-out top-1 of each fold's models alone (for the stack: its learner on fold k's member
probabilities), averaged over the folds: what the CV estimates, since each CV row is scored by one fold's model.
The submission's held-out score is above it by the fold ensemble's gain, which no CV of K models sees.

    KIT_BENCH_TASKS="0 1 2" python -m bench --only stack   # the task drawn with seeds 0, 1 and 2 (default: 0)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from bench.accuracy import EPOCHS, _degrade
from kit.config import PRESETS, load_config
from kit.data import folds
from kit.experiment import Experiment
from kit.io import load_npz
from kit.predict import blend, predict, stack
from kit.predict import ensemble as ens
from kit.predict.inference import start
from kit.train import loop as train

LOOPS = {0: 1, 1: 0, 2: 0, 3: 0, 4: 1, 5: 0, 6: 1, 7: 0, 8: 2, 9: 1}


def _columns(labels: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = len(labels)
    loops = np.array([LOOPS[d] for d in labels])
    loops = np.where(rng.random(n) < 0.2, rng.integers(0, 3, n), loops)
    parity = np.where((labels % 2 == 0) ^ (rng.random(n) < 0.1), "even", "odd")
    ink = np.round(labels * 3.0 + rng.normal(0, 6.0, n), 2)
    scanner = rng.choice(["A", "B", "C"], n)
    return pd.DataFrame({"loops": loops, "parity": parity, "ink": ink, "scanner": scanner})


def write_task(root: Path, seed: int = 0) -> pd.DataFrame:
    """train/ and test/ images, train.csv, test.csv, sample_submission.csv under root; returns the held-out labels."""
    digits, rng = load_digits(), np.random.default_rng(seed)
    idx = np.arange(len(digits.target))
    tr, te = train_test_split(idx, test_size=0.3, stratify=digits.target, random_state=seed)
    tables = {}
    for side, rows in (("train", tr), ("test", te)):
        (root / side).mkdir(parents=True)
        ids = [f"{side[:2]}{n:04d}" for n in range(len(rows))]
        for name, i in zip(ids, rows):
            _degrade(digits.images[i], rng).save(root / side / f"{name}.png")
        tables[side] = pd.concat([pd.DataFrame({"image_name": ids, "label": digits.target[rows].astype(str)}),
                                  _columns(digits.target[rows], rng)], axis=1)
    tables["train"].to_csv(root / "train.csv", index=False)
    tables["test"].drop(columns="label").to_csv(root / "test.csv", index=False)
    pd.DataFrame({"image_name": tables["test"]["image_name"], "label": "0"}).to_csv(root / "sample_submission.csv",
                                                                                     index=False)
    return tables["test"][["image_name", "label"]]


def _held_out(sub: Path, solution: pd.DataFrame) -> float:
    s = pd.read_csv(sub, dtype=str).merge(solution, on="image_name", suffixes=("_pred", ""))
    return float(accuracy_score(s["label"], s["label_pred"]))


class _LightGBM:
    """LightGBM behind the interface stack.py's learner has, with its parameters mapped one to one and the same
    early stopping (a tenth of the rows held out, 20 rounds without improvement) where the rows are enough."""

    def __init__(self, task: str, rows: int):
        import lightgbm
        p = stack.PARAMS
        kind = lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier
        self.early = rows >= stack.EARLY_ROWS
        self.model = kind(learning_rate=p["learning_rate"], n_estimators=p["max_iter"] if self.early else 100,
                          num_leaves=p["max_leaf_nodes"], min_child_samples=p["min_samples_leaf"],
                          reg_lambda=p["l2_regularization"], random_state=p["random_state"], verbose=-1)

    @staticmethod
    def _plain(x):  # LightGBM refuses JSON's special characters (the ':' of "resnest:3") in feature names
        return x.set_axis([f"f{i}" for i in range(x.shape[1])], axis=1)

    def fit(self, x, y):
        import lightgbm
        x = self._plain(x)
        if not self.early:
            self.model.fit(x, y)
        else:
            fit, stop = train_test_split(np.arange(len(x)), test_size=0.1, random_state=0)
            self.model.fit(x.iloc[fit], y[fit], eval_set=[(x.iloc[stop], y[stop])],
                           callbacks=[lightgbm.early_stopping(20, verbose=False)])
        self.classes_ = getattr(self.model, "classes_", None)
        return self

    def predict_proba(self, x):
        return self.model.predict_proba(self._plain(x))

    def predict(self, x):
        return self.model.predict(self._plain(x))


def one_fold(cfgs, solution: pd.DataFrame) -> dict[str, float]:
    """{member or "stack": held-out top-1 of each fold's model(s) alone, averaged over the folds}."""
    results, tab = stack.prepare(cfgs, start(cfgs[0], "stack"))
    _, learner = stack.stack(results, tab)
    first = results[0]
    truth = solution.set_index("image_name").loc[first.layout.test["id"].astype(str), "label"].to_numpy()
    top1 = lambda probs: float(np.mean(np.asarray(first.classes)[probs.argmax(1)] == truth))  # noqa: E731
    scores, stacked = {r.name: [] for r in results} | {"stack": []}, []
    for k in first.folds:
        alone = [dataclasses.replace(r, test_scores=ens.average(
            [load_npz(Experiment.of(r.cfgs[0]).fold(k).logits("test"))["logits"]], r.cfgs[0].merge, r.layout.task))
            for r in results]
        for r in alone:
            scores[r.name].append(top1(r.probs(r.test_scores)))
        stacked.append(learner.predict(stack.features(alone, tab)[1]))
        scores["stack"].append(top1(stacked[-1]))
    out = {name: round(float(np.mean(s)), 4) for name, s in scores.items()}
    # the other way to feed the test rows: the learner on each fold's members (inputs like its OOF rows), averaged
    return out | {"stack, folds' inputs averaged after": round(top1(np.mean(stacked, 0)), 4)}


def run(size: str = "cpu") -> list[dict]:
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for seed in [int(x) for x in os.environ.get("KIT_BENCH_TASKS", "0").split()]:
        rows += _task(seed)
    columns = list(dict.fromkeys(k for r in rows for k in r))  # one-fold figures exist for some rows alone
    return [{k: r.get(k, "-") for k in columns} for r in rows]


def _task(seed: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        solution = write_task(tmp / "data", seed)
        paths = {"data": str(tmp / "data"), "work_dir": str(tmp / "folds"), "submissions_dir": str(tmp / "subs")}
        a = load_config(PRESETS / "demo.yaml", {**EPOCHS, **paths, "name": "resnest"})
        b = load_config(PRESETS / "demo_baseline.yaml", {**EPOCHS, **paths, "name": "resnet"})
        t0 = time.perf_counter()
        folds.make_folds(a)
        train.run([a, b])
        print(f"trained both in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        board = lambda: pd.read_csv(tmp / "subs" / "leaderboard.csv")  # noqa: E731

        def row(name: str, make) -> None:
            t = time.perf_counter()
            sub = make()
            cv = float(board().set_index("file").loc[sub.name, "cv_top1"])
            rows.append({"task": seed, "row": name, "cv_top1": round(cv, 4),
                         "held_out_top1": round(_held_out(sub, solution), 4),
                         "fit_s": round(time.perf_counter() - t, 1)})
            rows[-1]["gap"] = round(rows[-1]["cv_top1"] - rows[-1]["held_out_top1"], 4)
            print(rows[-1], flush=True)

        subs = predict.run([a, b])
        for cfg, sub in zip((a, b), subs):
            row(cfg.name, lambda sub=sub: sub)
        row("blend (kit blend, the best image-only row)", lambda: blend.run([a, b]))
        off = [dataclasses.replace(c, tabular=False) for c in (a, b)]
        row("stack, tabular=off (HistGradientBoosting)", lambda: stack.run(off))
        row("stack (HistGradientBoosting)", lambda: stack.run([a, b]))
        alone = one_fold([a, b], solution)
        of_row = {a.name: a.name, b.name: b.name, "stack (HistGradientBoosting)": "stack"}  # row -> its one-fold key
        for r in rows:
            if r["row"] in of_row:
                r["one_fold_held_out"] = alone[of_row[r["row"]]]
                r["cv_minus_one_fold"] = round(r["cv_top1"] - r["one_fold_held_out"], 4)
        rows[-1]["held_out_learner_per_fold"] = alone["stack, folds' inputs averaged after"]
        print("one fold alone:", alone, flush=True)
        try:
            import lightgbm  # noqa: F401
        except ImportError:
            print("LightGBM is not installed: its row is left out (make bench-stack installs it for the bench)")
            return rows
        hgb = stack._learner
        stack._learner = _LightGBM
        try:
            row("stack (LightGBM, the same parameters)", lambda: stack.run([a, b]))
        finally:
            stack._learner = hgb
    return rows
