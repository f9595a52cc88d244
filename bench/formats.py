"""Formats: each Kaggle submission shape on the quick preset, its CV in its metric beside the held-out score.

    python -m bench --only formats

Each shape (kit.synth.SHAPES: the files of a real competition of that shape) is written to a
temporary folder and run through folds, train and predict with no task, submission or metric key,
as `make folds train predict DATA=...` runs it. Recorded per shape: the detected task, format and
metric, the CV (out-of-fold, nested thresholds) and the local private score of the held-out test
images in that metric. For the formats scored by a log loss, the same folds are predicted again
with temperature=fit: its CV and private score beside the plain ones decide its default.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path

from kit import folds, leaderboard, predict, train
from kit.config import PRESETS, load_config
from kit.synth import SHAPES, write_competition

SIZE = dict(classes=6, per_class=30, n_test=120, side=64)


def _row(board_path: Path, file: Path) -> dict:
    row = leaderboard.load(board_path).set_index("file").loc[file.name]
    return {"metric": row["metric"], "cv": float(row["cv"]), "private": float(row["private"]),
            "public": float(row["public"])}


def _one(shape: str, tmp: Path) -> list[dict]:
    data = write_competition(tmp / "data", shape, **SIZE)
    cfg = load_config(PRESETS / "quick.yaml", {"data": str(data), "work_dir": str(tmp / "folds"),
                                             "submissions_dir": str(tmp / "subs")})
    t0 = time.perf_counter()
    folds.make_folds(cfg)
    f = folds.load(cfg)
    train.run([cfg])
    sub = predict.run([cfg])[0]
    minutes = (time.perf_counter() - t0) / 60
    board = tmp / "subs" / "leaderboard.csv"
    out = [{"shape": shape, "found": f"{f.layout.task} {f.layout.submission}", **_row(board, sub),
            "temperature": "off", "minutes": round(minutes, 1)}]
    if out[0]["metric"] == "log_loss" and f.layout.task == "single":
        tempered = predict.run([dataclasses.replace(cfg, temperature="fit")])[0]
        out.append({**out[0], **_row(board, tempered), "temperature": "fit", "minutes": 0.0})
    return out


def run(size: str) -> list[dict]:
    logging.getLogger("kit").setLevel(logging.WARNING)  # one table, not every epoch
    rows = []
    for shape in SHAPES:
        with tempfile.TemporaryDirectory() as tmp:
            for row in _one(shape, Path(tmp)):
                rows.append(row)
                print(row, flush=True)
    return rows
