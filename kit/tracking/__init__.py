"""The tracking floor: experiment trackers a team already runs (the tracking= key), fed what the kit writes to
its own files, as it is written.

    python -m kit train --exp quick tracking=[tensorboard] data=...   # then: tensorboard --logdir <work_dir>
    python -m kit run --exp demo tracking=[tensorboard,mlflow]        # MLFLOW_TRACKING_URI, or a local store

tensorboard (kit/tracking/tensorboard.py): event files in <work_dir>/<exp>/fold<k>/tensorboard/.
mlflow (kit/tracking/mlflow_runs.py): a parent run per experiment, a child per fold, the submissions.

The kit calls these at the points its own files are written: each epoch (history.csv's row), a fold's end
(best.pt, curves.png), an experiment's CV (cv.json), each submission (its CSV and manifest) and the
scores `make leaderboard` learns from Kaggle. Rank 0 writes. A tracker shapes nothing (it may be set or
dropped at any stage), and one whose package is missing or whose server does not answer costs a warning,
never a run.

May import the core only: the train and board floors call it with paths and plain rows.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from kit.config import Config
from kit.tracking import mlflow_runs, tensorboard


_watchers: list = []  # in-process observers of every epoch (kit sweep's pruning): f(cfg, folder, row)


@contextmanager
def watching(watcher):
    """Call watcher(cfg, folder, row) after every epoch trained in this process, while the block runs; what it
    raises (a pruned trial) ends the training there, as any error would."""
    _watchers.append(watcher)
    try:
        yield
    finally:
        _watchers.remove(watcher)


def epoch(cfg: Config, folder: Path, row: dict, main: bool) -> None:
    """One finished epoch of the fold in `folder` (history.csv's row)."""
    if not main:
        return
    for watcher in list(_watchers):
        watcher(cfg, folder, row)
    if "tensorboard" in cfg.tracking:
        tensorboard.epoch(cfg, folder, row)
    if "mlflow" in cfg.tracking:
        mlflow_runs.epoch(cfg, folder, row)


def fold_done(cfg: Config, folder: Path, best: dict) -> None:
    """The fold in `folder` finished (its oof.npz written); `best`: best.pt's record (score, stage, epoch)."""
    if "tensorboard" in cfg.tracking:
        tensorboard.fold_done(folder, best)
    if "mlflow" in cfg.tracking:
        mlflow_runs.fold_done(cfg, folder, best)


def experiment_done(cfg: Config, folder: Path) -> None:
    """The experiment in `folder` has its cv.json (every fold done)."""
    if "mlflow" in cfg.tracking or mlflow_runs.tracked(cfg, folder):
        mlflow_runs.experiment_done(cfg, folder)


def submission(cfgs: list[Config], csv: Path, manifest: Path) -> None:
    """A submission file of cfgs' experiments (one, or a blend's members) and its manifest were written."""
    for cfg in cfgs:
        folder = Path(cfg.work_dir) / cfg.name
        if "mlflow" in cfg.tracking or mlflow_runs.tracked(cfg, folder):
            mlflow_runs.submission(cfg, folder, csv, manifest)


def scores(cfg: Config, board: pd.DataFrame) -> None:
    """Kaggle's refs and public/private scores (leaderboard rows) to the runs of the experiments they name."""
    mlflow_runs.scores(cfg, board)
