"""submissions/leaderboard.csv: one row per submission file, merged, never losing a row.

    python -m kit leaderboard                      # print the table and write leaderboard.png
    python -m kit leaderboard --comp SLUG          # first merge Kaggle's public/private scores

Public and private scores are filled locally when a solution file (id, label, Usage) exists,
or from Kaggle. The table is sorted by CV: "trust your CV" means CV should rank like private.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from kit import report
from kit.config import Config
from kit.io import atomic_write_text, sha256_file
from kit.metrics import score

log = logging.getLogger(__name__)
COLUMNS = ["file", "experiments", "backbone", "head", "folds", "tta", "image_size", "epochs", "cv_top1", "cv_top5",
           "fold_std", "holdout_top1", "public", "private", "created_at", "sha256", "kaggle_ref", "kaggle_status", "description"]
SHOWN = ["file", "experiments", "backbone", "folds", "tta", "cv_top1", "cv_top5", "public", "private", "kaggle_status"]


@contextlib.contextmanager
def locked(path: Path):
    """Serialise read-modify-write of the leaderboard between processes (folds may predict in parallel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def load(path: Path) -> pd.DataFrame:
    board = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(columns=COLUMNS)
    for col in COLUMNS:
        if col not in board.columns:
            board[col] = ""
    return board[COLUMNS + [c for c in board.columns if c not in COLUMNS]]


def save(board: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, board.to_csv(index=False, lineterminator="\n"))


def upsert(board: pd.DataFrame, row: dict) -> pd.DataFrame:
    """Update the row with the same file (only the values given, non-empty), or append it."""
    row = {k: ("" if v is None else str(v)) for k, v in row.items()}  # the CSV is all strings: no NaN surprises
    hit = board.index[board["file"] == row["file"]]
    if len(hit) == 0:
        return pd.concat([board, pd.DataFrame([row])], ignore_index=True).fillna("")
    for k, v in row.items():
        if v != "":  # an empty value never erases one another stage wrote (e.g. Kaggle scores)
            board.loc[hit[0], k] = v
    return board


def local_scores(r, sub: pd.DataFrame, metric: str) -> tuple[str, str]:
    """(public, private) against the solution file, or empty strings when there is none."""
    cfg = r.cfgs[0]
    path = Path(cfg.solution) if cfg.solution else r.layout.root / "solution.csv"
    if not path.is_file():
        return "", ""
    sol = pd.read_csv(path, dtype=str, keep_default_na=False)
    id_col, label_col = sub.columns
    if "Usage" not in sol.columns:
        raise ValueError(f"{path}: needs a Usage column (Public/Private) beside the id and label")
    # Kaggle solution files name their columns like the submission; fall back to position when they don't
    sol_id = id_col if id_col in sol.columns else sol.columns[0]
    sol_label = label_col if label_col in sol.columns else [c for c in sol.columns if c not in (sol_id, "Usage")][0]
    truth = sol.rename(columns={sol_id: "id", sol_label: "true"})[["id", "true", "Usage"]]
    merged = truth.merge(sub.set_axis(["id", "pred"], axis=1), on="id", how="left")  # one row per solution id
    if merged["pred"].isna().any():
        raise ValueError(f"{path}: {int(merged['pred'].isna().sum())} solution ids have no prediction")
    out = []
    for usage in ("Public", "Private"):
        part = merged[merged["Usage"] == usage]
        out.append(f"{score(metric, part['true'], part['pred']):.5f}" if len(part) else "")
    return out[0], out[1]


def record(path: Path, r, sub_path: Path) -> None:
    """Add or refresh the row of one submission file."""
    cfg = r.cfgs[0]
    sub = pd.read_csv(sub_path, dtype=str, keep_default_na=False)
    public, private = local_scores(r, sub, cfg.metric)
    cv = r.cv
    row = {
        "file": sub_path.name, "experiments": " ".join(c.name for c in r.cfgs),
        "backbone": " ".join(c.backbone for c in r.cfgs), "head": " ".join(c.head for c in r.cfgs),
        "folds": len(r.folds), "tta": " ".join("+".join(c.tta) or "none" for c in r.cfgs),
        "image_size": " ".join(str(c.img_size) for c in r.cfgs), "epochs": f"{r.epochs:.1f}",
        "cv_top1": f"{cv['top1']:.5f}", "cv_top5": f"{cv['top5']:.5f}", "fold_std": f"{cv['fold_std']:.5f}",
        "holdout_top1": "" if r.holdout_top1 is None else f"{r.holdout_top1:.5f}",
        "public": public, "private": private, "sha256": sha256_file(sub_path),
    }
    with locked(path):
        board = load(path)
        if not (board["file"] == row["file"]).any():
            row["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        save(upsert(board, row), path)


def summary(board: pd.DataFrame) -> list[str]:
    """Correlation of CV with public and private scores, and the two final picks."""
    num = board[["cv_top1", "public", "private"]].apply(pd.to_numeric, errors="coerce")
    lines = []
    for col in ("public", "private"):
        both = num[["cv_top1", col]].dropna()
        if len(both) >= 3 and both["cv_top1"].std() > 0 and both[col].std() > 0:  # fewer points say nothing
            lines.append(f"correlation of CV with {col}: {np.corrcoef(both['cv_top1'], both[col])[0, 1]:+.3f} "
                         f"over {len(both)} submissions")
    if num["cv_top1"].notna().any():
        lines.append(f"final pick 1 (best CV): {board.loc[num['cv_top1'].idxmax(), 'file']}")
    if num["public"].notna().any():
        lines.append(f"final pick 2 (best public): {board.loc[num['public'].idxmax(), 'file']}")
    return lines


def show(path: Path) -> None:
    board = load(path)
    if board.empty:
        print(f"{path}: no submissions yet; run `make predict`")
        return
    # sorted by CV, not by public score: the public split is small, and chasing it overfits
    order = pd.to_numeric(board["cv_top1"], errors="coerce").fillna(-1).sort_values(ascending=False).index
    board = board.loc[order]
    report.plot_leaderboard(board, path.with_suffix(".png"))
    print(board[SHOWN].to_string(index=False))
    for line in summary(board):
        print(line)


def run(cfg: Config, comp: str = "") -> Path:
    path = Path(cfg.submissions_dir) / "leaderboard.csv"
    if comp:
        from kit import kaggle
        kaggle.sync_scores(path, comp)
    show(path)
    return path
