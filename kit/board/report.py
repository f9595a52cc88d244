"""A competition at a glance: one self-contained page, <submissions_dir>/report.html.

    python -m kit report [--exp ...] data=...     # make report; opens from a file, fetches nothing

The leaderboard of the data set of the folds (best CV first in the metric's direction, the final picks
marked, sortable, each submission's manifest a link beside it), the CV against public and private plot,
and per experiment its cv, its plan (plan.json: the lr finder, the flip probe, the budget), each fold's
curves, the lr finder's plot where it ran, the confusion matrix (single-label) and the worst classes, or the
worst tags with their F1 and AUC (multi-label), the most confused pairs and the worst mistakes' images. Figures are the PNGs the kit already drew, inlined; the page is
rendered from kit/board/templates/report.html.j2 (Jinja2, autoescaped) and written beside, then renamed.
What is missing (a submission file, a figure) is a line on the page and a warning, never a stop.
"""
from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from kit.board import leaderboard
from kit.config import Config
from kit.data.shapes import VALUE_METRICS
from kit.experiment import fold_of_name
from kit.io import atomic_write_text

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"
# the leaderboard's columns on the page: the terminal's (leaderboard.SHOWN) and the fold spread, Kaggle's ref, the date
COLUMNS = ["file", "experiments", "backbone", "folds", "full_fit", "tta", "metric", "cv", "fold_std", "cv_last",
           "public", "private", "kaggle_ref", "kaggle_status", "created_at", "warning", "sweep"]
FIGURES = ("lr_find.png", "confusion_matrix.png", "mistakes.png")  # per experiment; fold<k>/curves.png per fold
VALUES = ("lr_find.png", "predicted.png")  # a regression's (predicted against true), in place of the classes' figures


def _png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _table(path: Path, rows: int = 10) -> list[dict]:
    """The first rows of a CSV the kit wrote (worst first), numbers to 4 places."""
    if not path.is_file():
        return []
    table = pd.read_csv(path, keep_default_na=False).head(rows)
    return [{k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in table.to_dict("records")]


def correlations(summary: list[str]) -> list[str]:
    """leaderboard.summary's correlations of CV with public and private, or for each it lacks, why."""
    lines = [line for line in summary if line.startswith("correlation of CV")]
    return lines + [f"no correlation of CV with {col} yet: it needs 3 submissions with both scores, not all equal"
                    for col in ("public", "private") if not any(f" with {col}:" in line for line in lines)]


def _plan(folder: Path) -> list[dict]:
    """plan.json's decisions (kit/train/plan.py), one row a step: what it decided and the seconds it took."""
    path = folder / "plan.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    return [{"step": step, "seconds": found.get("seconds", ""),
             "decided": ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in found.items()
                                  if k != "seconds" and isinstance(v, (str, int, float, bool)))}
            for step, found in record.items() if isinstance(found, dict)]


def _experiment(folder: Path) -> dict:
    cv = json.loads((folder / "cv.json").read_text()) if (folder / "cv.json").is_file() else {}
    figures, missing = [], []
    folds = sorted((d for d in folder.glob("fold*") if d.is_dir() and fold_of_name(d.name)),
                   key=lambda d: fold_of_name(d.name))
    for d in folds:
        curves = d / "curves.png"
        if curves.is_file():
            figures.append({"name": f"{d.name}: curves", "data": _png(curves)})
        else:
            missing.append(f"{d.name}: no curves.png (the fold has not finished)")
    per_class = _table(folder / "per_class.csv")
    tags = bool(per_class) and "tag" in per_class[0]  # multi-label: per-tag F1 and AUC, no confusion matrix
    values = cv.get("metric") in VALUE_METRICS  # a regression: predicted.png and worst.csv
    for name in VALUES if values else FIGURES:
        if (folder / name).is_file():
            figures.append({"name": name, "data": _png(folder / name)})
        elif name in ("mistakes.png", "predicted.png") or (name == "confusion_matrix.png" and not tags):
            missing.append(f"no {name} (make train writes it after the last fold)")  # lr_find: stage1_lr=auto only
    scores = {k: v for k, v in cv.items() if k in ("metric", "score", "top1", "top5", "cv_last") and v is not None}
    line = ", ".join(f"{k} {v:.5f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
    return {"name": folder.name, "cv_line": line or "no cv.json yet", "figures": figures, "missing": missing,
            "plan": _plan(folder), "per_class": per_class or _table(folder / "worst.csv"),
            "per_class_title": "Worst tags (F1, AUC)" if tags else "Worst predictions" if values else "Worst classes",
            "confused": _table(folder / "confused_pairs.csv")}


def write(cfg: Config) -> Path:
    """<submissions_dir>/report.html for cfg's data set (the experiments of its work_dir)."""
    import jinja2
    subs = Path(cfg.submissions_dir)
    board, _ = leaderboard.one_data_set(leaderboard.load(leaderboard.path_of(cfg)), leaderboard.data_of(cfg))
    metric = leaderboard.metric_of(board, "" if cfg.metric == "auto" else cfg.metric)
    board = leaderboard.ranked(board, metric) if len(board) else board
    rows, gone = [], []
    for r in board.to_dict("records"):
        manifest = Path(r["file"]).with_suffix(".json").name
        r["manifest"] = manifest if (subs / manifest).is_file() else ""
        r["created_at"] = str(r.get("created_at", ""))[:16].replace("T", " ")  # to the minute, as it sorts
        if not (subs / r["file"]).is_file():
            gone.append(f"{r['file']}: the submission file is gone (its row is kept)")
        rows.append(r)
    summary = leaderboard.summary(board, metric) if len(board) else []
    picks = {line.split(": ", 1)[1] for line in summary if line.startswith("final pick")}
    work = Path(cfg.work_dir)
    experiments = [_experiment(d) for d in sorted(work.iterdir()) if d.is_dir() and (d / "config.yaml").is_file()] \
        if work.is_dir() else []
    for e in experiments:
        for line in e["missing"]:
            log.warning("report: %s: %s", e["name"], line)
    for line in gone:
        log.warning("report: %s", line)
    plot = subs / "leaderboard.png"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), autoescape=True)
    html = env.get_template(TEMPLATE.name).render(
        title=f"kit: {Path(cfg.data).name}", data=cfg.data, metric=metric.name, higher=metric.higher_is_better,
        written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), columns=COLUMNS, rows=rows,
        picks=picks, summary=[line for line in summary if not line.startswith("correlation")],
        correlations=correlations(summary), missing_rows=gone,
        board_png=_png(plot) if plot.is_file() else "", experiments=experiments)
    out = subs / "report.html"
    subs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)
    log.info("the report page: %s (%d submissions, %d experiments; opens from the file)", out, len(rows),
             len(experiments))
    return out
