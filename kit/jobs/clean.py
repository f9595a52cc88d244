"""`make clean` (`kit demo-data --clean`): remove what the demo made, and nothing else.

    python -m kit demo-data --clean

Here, on the last floor, because it reaches every earlier one: the demo's data, its folds, its
experiments and its submissions with their leaderboard rows.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from kit.board import leaderboard
from kit.config import output_dir
from kit.data import folds
from kit.data.demo import DEMO
from kit.data.layout import scan
from kit.experiment import Experiment

log = logging.getLogger(__name__)


def demo(out: str | Path = "data/demo", work_dir: str | Path = "", submissions_dir: str | Path = "") -> None:
    """Remove the demo's data and outputs and nothing else: its experiments' folders, the folds when they were
    made from the demo data, its submissions and their leaderboard rows (`make clean`; `make clean-all` is all).
    work_dir and submissions_dir: where the demo wrote (default: its own, folds/demo and submissions/demo)."""
    work_dir = work_dir or output_dir("folds", str(out))
    submissions_dir = submissions_dir or output_dir("submissions", str(out))
    out, work_dir, subs = Path(out), Path(work_dir), Path(submissions_dir)
    demo_data = {str(out), str(out.resolve())}
    tags = {leaderboard.data_tag(folds.fingerprint(work_dir))} if folds.made_from(work_dir) in demo_data else set()
    if (out / "solution.csv").is_file():
        tags.add(leaderboard.data_tag(scan(out).fingerprint()))
    kept = []
    for name in DEMO:
        exp = Experiment.at(work_dir, name)
        trained_on = (yaml.safe_load(exp.config.read_text()) or {}).get("data") if exp.config.is_file() else None
        if trained_on is None or trained_on in demo_data or str(Path(trained_on).resolve()) in demo_data:
            shutil.rmtree(exp.dir, ignore_errors=True)
        else:  # your own run under the demo's name: not the demo's to remove
            kept.append(f"{exp.dir} (data={trained_on})")
    if folds.made_from(work_dir) in demo_data:
        folds.remove(work_dir)
    board = leaderboard.path_of_dir(subs)

    def the_demos(row) -> bool:  # made by the demo's experiments from the demo data (rows older than `data`: "")
        return bool(row["experiments"]) and set(row["experiments"].split()) <= set(DEMO) and row["data"] in tags | {""}

    ours = leaderboard.drop_rows(board, the_demos)
    for file in ours:
        for suffix in (".csv", ".json", ".zip"):
            (subs / file).with_suffix(suffix).unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    log.info("removed the demo's data, folds, experiments %s and %d submission(s); everything else is as it was%s",
             " and ".join(DEMO), len(ours), f" (kept, trained on other data: {'; '.join(kept)})" if kept else "")
