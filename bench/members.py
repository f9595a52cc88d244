"""Seed ensembles and full-data refits against the experiment they start from: python -m bench --only members

The task is bench/accuracy.py's (scikit-learn's digits, degraded, 32 px; 1,257 images in 5 folds, 540 held out
with labels), the experiment its resnest14d + SpinalNet fold ensemble. Rows, each with its CV (out-of-fold top-1;
a refit's is the folds'), its top-1 on the held-out images and the minutes of training it took in all (the
experiment's folds included):

    fold ensemble         seeds=1, full_fit=false: the experiment itself
    seeds=3               each fold trained with three seeds, a fold's logits their mean
    full_fit=true         + one model on every training image for the folds' median best epochs, one more member
    full_fit=only         that model alone
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.accuracy import EPOCHS, _held_out, task_in
from kit.config import PRESETS, load_config
from kit.data import folds
from kit.predict import predict
from kit.train import loop as train


def run(size: str = "cpu") -> list[dict]:
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        solution, paths = task_in(tmp)
        base = load_config(PRESETS / "demo.yaml", {**EPOCHS, **paths, "name": "resnest"})
        folds.make_folds(base)
        board = lambda: pd.read_csv(tmp / "subs" / "leaderboard.csv")  # noqa: E731

        def row(name: str, cfg, minutes: float) -> None:
            t0 = time.perf_counter()
            train.run([cfg])
            minutes += (time.perf_counter() - t0) / 60
            sub = predict.run([cfg])[0]
            cv = float(board().set_index("file").loc[sub.name, "cv_top1"])
            rows.append({"row": name, "cv_top1": round(cv, 4), "held_out_top1": round(_held_out(sub, solution), 4),
                         "train_min": round(minutes, 1)})
            print(rows[-1], flush=True)

        row("fold ensemble (seeds=1)", base, 0.0)
        row("seeds=3 (two more seeds a fold)", dataclasses.replace(base, seeds=3), rows[0]["train_min"])
        row("full_fit=true (folds + the refit)", dataclasses.replace(base, full_fit=True), rows[0]["train_min"])
        row("full_fit=only (the refit alone)", dataclasses.replace(base, full_fit="only"), rows[2]["train_min"])
        row("seeds=3 + full_fit=true (a refit a seed)", dataclasses.replace(base, seeds=3, full_fit=True),
            rows[1]["train_min"])
    return rows
