"""Formats: each Kaggle submission shape on the quick preset, its CV in its metric beside the held-out score.

    python -m bench --only formats

Each shape (kit.synth.SHAPES: the files of a real competition of that shape) is written to a
temporary folder and run through folds, train and predict with no task, submission or metric key,
as `make folds train predict DATA=...` runs it. Recorded per shape: the detected task, format and
metric, the CV (out-of-fold, nested thresholds) and the local private score of the held-out test
images in that metric. For the formats scored by a log loss, the same folds are predicted again
with temperature=off: the default (fit) against the ensemble's probabilities as they are. The
shapes' data sets are easy (the quick preset learns them without a mistake, where a temperature
can only sharpen); a last, harder one (40 classes of 10 small images) tests the temperature where
mistakes are left.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path

from kit.board import leaderboard
from kit.config import PRESETS, load_config
from kit.data import folds
from kit.data.synth import SHAPES, write_competition
from kit.predict import predict
from kit.train import loop as train

SIZE = dict(classes=6, per_class=30, n_test=120, side=64)
HARD = dict(classes=40, per_class=10, n_test=200, side=32)  # the temperature's test: a task with mistakes left


def _row(board_path: Path, file: Path) -> dict:
    row = leaderboard.load(board_path).set_index("file").loc[file.name]
    return {"metric": row["metric"], "cv": float(row["cv"]), "private": float(row["private"]),
            "public": float(row["public"])}


def _one(shape: str, tmp: Path, size: dict = SIZE) -> list[dict]:
    data = write_competition(tmp / "data", shape, **size)
    cfg = load_config(PRESETS / "quick.yaml", {"data": str(data), "work_dir": str(tmp / "folds"),
                                             "submissions_dir": str(tmp / "subs")})
    t0 = time.perf_counter()
    folds.make_folds(cfg)
    f = folds.load(cfg)
    train.run([cfg])
    sub = predict.run([cfg])[0]
    minutes = (time.perf_counter() - t0) / 60
    board = tmp / "subs" / "leaderboard.csv"
    out = [{"shape": shape + (" (hard)" if size is HARD else ""), "found": f"{f.layout.task} {f.layout.submission}", **_row(board, sub),
            "temperature": cfg.temperature, "minutes": round(minutes, 1)}]
    if out[0]["metric"] == "log_loss" and f.layout.task == "single":  # the default (fit) against off
        plain = predict.run([dataclasses.replace(cfg, temperature="off")])[0]
        out.append({**out[0], **_row(board, plain), "temperature": "off", "minutes": 0.0})
    return out


def run(size: str) -> list[dict]:
    logging.getLogger("kit").setLevel(logging.WARNING)  # one table, not every epoch
    rows = []
    for shape, size in [*((s, SIZE) for s in SHAPES), ("probs", HARD)]:
        with tempfile.TemporaryDirectory() as tmp:
            for row in _one(shape, Path(tmp), size):
                rows.append(row)
                print(row, flush=True)
    return rows
