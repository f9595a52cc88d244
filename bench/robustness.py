"""Robustness: the quick preset on data sets of other shapes (kit.synth.MATRIX), top-1 reached and minutes.

    python -m bench --only robustness            # the quick preset as shipped: 5 folds, 64 px
    python -m bench --only robustness --size gpu # the same (the preset is for CPUs; this records it there too)

Each data set is written to a temporary folder and run through folds, train and predict exactly as
`make folds train predict DATA=... ` does without EXP; CV top-1 and the local test score are recorded.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from kit.board import leaderboard
from kit.config import PRESETS, load_config
from kit.data import folds
from kit.data.synth import MATRIX, write_synthetic
from kit.metrics import chance_top1
from kit.predict import predict
from kit.train import loop as train


def _one(name: str, shape: dict, overrides: dict, tmp: Path) -> dict:
    data = write_synthetic(tmp / "data", side=64, **shape)
    cfg = load_config(PRESETS / "quick.yaml", {**overrides, "data": str(data), "work_dir": str(tmp / "folds"),
                                             "submissions_dir": str(tmp / "subs")})
    t0 = time.perf_counter()
    folds.make_folds(cfg)
    train.run([cfg])
    predict.run([cfg])
    minutes = (time.perf_counter() - t0) / 60
    row = leaderboard.load(tmp / "subs" / "leaderboard.csv").iloc[0]
    labels = pd.read_csv(tmp / "folds" / "folds.csv", dtype=str)["label"].astype("category").cat.codes.to_numpy()
    return {"data": name, "images": len(labels), "chance_up_to": round(chance_top1(labels), 3),
            "cv_top1": float(row["cv_top1"]), "public": float(row["public"]), "private": float(row["private"]),
            "minutes": round(minutes, 1),
            "warning": row["warning"] or "-"}


def run(size: str) -> list[dict]:
    logging.getLogger("kit").setLevel(logging.WARNING)  # one table, not every epoch
    rows = []
    for name, (shape, overrides) in MATRIX.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(_one(name, shape, overrides, Path(tmp)))
            print(rows[-1], flush=True)
    return rows
