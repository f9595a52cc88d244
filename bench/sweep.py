"""A screened sweep against the default it starts from: python -m bench --only sweep

    KIT_BENCH_SETS="2 classes|10 classes x 15" python -m bench --only sweep   # those of bench/defaults.py's sets
    KIT_BENCH_KEYS="time_budget=5" python -m bench --only sweep                # the default (and each trial) with keys
    KIT_BENCH_TRIALS=10                                                         # trials (default 10)

Per data set of bench/defaults.py (none of them tuned on): the kit's default path (`make folds train predict`
with no EXP), timed; then `kit sweep --screen` of TRIALS trials around it over SPACE (trial 0 is the default
itself, already trained: free), timed. A row: the default's minutes, CV and held-out scores; the sweep's minutes
and their ratio to the default's; the pick (trial, CV, held-out) and the trials pruned.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from bench.defaults import default_path, each_set
from kit.board import leaderboard
from kit.jobs import sweep

# the quick preset's optimisation keys, each range around its own value (so trial 0 is the default)
SPACE = {
    "stage1_lr": {"low": 0.0003, "high": 0.003, "log": True},
    "weight_decay": {"low": 0.01, "high": 0.2, "log": True},
    "mixup_alpha": {"low": 0.0, "high": 0.4},
    "label_smoothing": {"low": 0.0, "high": 0.2},
}


def _row(board, name: str) -> dict:
    row = board[board["experiments"] == name].iloc[-1]
    return {"cv": float(row["cv"]), "public": float(row["public"]), "private": float(row["private"])}


def _one(name: str, shape: dict, tmp: Path) -> dict:
    data, cfg, seconds, _, n_test = default_path(shape, tmp)
    trials = int(os.environ.get("KIT_BENCH_TRIALS", "10"))
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    here = Path.cwd()
    os.chdir(tmp)  # configs/<exp>_best.yaml is written under the working directory
    try:
        t0 = time.perf_counter()
        sweep.run(cfg, trials, space, screen=True)
        swept = time.perf_counter() - t0
    finally:
        os.chdir(here)
    board = leaderboard.load(Path(cfg.submissions_dir) / "leaderboard.csv")
    pick = board[board["sweep"].str.contains(" best t")]["experiments"].iloc[-1]
    default, best = _row(board, cfg.name), _row(board, pick)
    pruned = sum(1 for p in Path(cfg.work_dir).glob(f"{cfg.name}-t*") if not (p / "fold0" / "oof.npz").is_file())
    return {"data": name, "held_out": n_test, "default_min": round(seconds / 60, 1),
            "default_cv": default["cv"], "default_public": default["public"], "default_private": default["private"],
            "trials": trials, "sweep_min": round(swept / 60, 1), "sweep_x_default": round(swept / seconds, 2),
            "pick": pick, "pick_cv": best["cv"], "pick_public": best["public"], "pick_private": best["private"],
            "pruned": pruned, "pick_values": board[board["experiments"] == pick]["sweep"].iloc[-1]}


def run(size: str) -> list[dict]:
    return each_set(_one)
