"""submissions/leaderboard.csv: one row per submission file, merged, never losing a row.

    python -m kit leaderboard                      # print the table and write leaderboard.png
    python -m kit leaderboard --comp SLUG          # first merge Kaggle's public/private scores
    python -m kit submit --exp A B --comp SLUG     # upload the best-CV submission of A, B (or A+B)

This module owns leaderboard.csv: its columns and every write to it (a locked read-modify-write
through `upsert`, where a known value is never replaced by an empty one). kaggle.py hands it
tables and refs and imports nothing from here.

Public and private scores are filled locally when a solution file (id, label, Usage) exists,
or from Kaggle. The table is sorted by CV: "trust your CV" means CV should rank like private.
Each row's cv_top1 is the out-of-fold top-1 of exactly what its file holds (same TTA, same
merge); cv_last_top1 is the same folds scored with each fold's last epoch, so cv_top1 -
cv_last_top1 shows how much choosing the best epoch on the validation fold flatters the CV.
`run` names the entry of the file's manifest (<file>.json, "runs") that the row describes.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from kit import folds, report
from kit.config import Config
from kit.experiment import Experiment
from kit.io import atomic_write_text, locked, sha256_file
from kit.metrics import score

log = logging.getLogger(__name__)
COLUMNS = ["file", "run", "experiments", "backbone", "head", "folds", "tta", "merge", "image_size", "epochs", "cv_top1",
           "cv_top5", "cv_last_top1", "fold_std", "holdout_top1", "public", "private", "created_at", "sha256",
           "kaggle_ref", "kaggle_status", "description", "warning", "pseudo", "data"]
SHOWN = ["file", "experiments", "backbone", "folds", "tta", "cv_top1", "cv_last_top1", "cv_top5", "public", "private",
         "kaggle_status", "warning"]


def path_of(cfg: Config) -> Path:
    """<submissions_dir>/leaderboard.csv."""
    return Path(cfg.submissions_dir) / "leaderboard.csv"


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


def record(path: Path, r, sub_path: Path, run: int) -> None:
    """Add or refresh the row of one submission file, as made by run `run` of its manifest."""
    cfg = r.cfgs[0]
    sub = pd.read_csv(sub_path, dtype=str, keep_default_na=False)
    public, private = local_scores(r, sub, cfg.metric)
    cv = r.cv
    row = {
        "file": sub_path.name, "run": run, "experiments": " ".join(c.name for c in r.cfgs),
        "backbone": " ".join(c.backbone for c in r.cfgs), "head": " ".join(c.head for c in r.cfgs),
        "folds": len(r.folds), "tta": " ".join("+".join(c.tta) or "none" for c in r.cfgs),
        "merge": " ".join(c.merge for c in r.cfgs),
        "image_size": " ".join(str(c.img_size) for c in r.cfgs), "epochs": f"{r.epochs:.1f}",
        "cv_top1": f"{cv['top1']:.5f}", "cv_top5": f"{cv['top5']:.5f}", "fold_std": f"{cv['fold_std']:.5f}",
        "cv_last_top1": "" if r.last_epoch_top1 is None else f"{r.last_epoch_top1:.5f}",
        "holdout_top1": "" if r.holdout_top1 is None else f"{r.holdout_top1:.5f}",
        "public": public, "private": private, "sha256": sha256_file(sub_path), "warning": r.warning,
        "data": data_tag(r.fingerprint),
    }
    with locked(path):
        board = load(path)
        if not (board["file"] == row["file"]).any():
            row["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if cfg.pseudo_from and len(r.cfgs) == 1:
            row["pseudo"] = _pseudo_gain(board, r, row)
        save(upsert(board, row), path)


def _pseudo_gain(board: pd.DataFrame, r, row: dict) -> str:
    """'from SRC >= T, N test images a fold: CV +x, private +y' against SRC's newest row with the same TTA."""
    cfg = r.cfgs[0]
    counts = Experiment.of(cfg).pseudo_images(r.folds)
    text = f"from {cfg.pseudo_from} >= {cfg.pseudo_threshold:g}, {np.mean(counts or [0]):.0f} test images a fold"
    src = board[(board["experiments"] == cfg.pseudo_from) & (board["tta"] == row["tta"])]
    if src.empty:
        return text
    src = src.sort_values("created_at").iloc[-1]
    gains = [f"{col} {float(row[col]) - float(src[col]):+.4f}" for col in ("cv_top1", "public", "private")
             if row.get(col) not in ("", None) and src[col] != ""]
    return f"{text}: {', '.join(gains)} (vs {src['file']})"


def _match(board: pd.DataFrame, sub: pd.Series) -> int | None:
    """The row of a Kaggle submission: by ref, else the row of its file not yet given a ref."""
    by_ref = board.index[board["kaggle_ref"] == sub["ref"]]
    if len(by_ref):
        return by_ref[0]
    by_file = board.index[(board["file"] == sub["fileName"]) & (board["kaggle_ref"] == "")]
    return by_file[0] if len(by_file) else None


def merge_kaggle(board: pd.DataFrame, subs: pd.DataFrame) -> pd.DataFrame:
    """Kaggle's scores and status into the rows they belong to; submissions made elsewhere get rows of their own.

    Kaggle leaves scores empty while a submission is pending, and the private score until the
    competition ends: an empty value never replaces a score already known (e.g. a local one).
    """
    for _, sub in subs.iterrows():
        values = {"kaggle_ref": sub["ref"], "kaggle_status": sub["status"], "public": sub["publicScore"],
                  "private": sub["privateScore"], "description": sub["description"]}
        i = _match(board, sub)
        if i is None:  # made outside the kit (or another machine): keep it, under a name that can't collide
            taken = (board["file"] == sub["fileName"]).any()
            name = f"{sub['fileName']}#{sub['ref']}" if taken else sub["fileName"]
            board = upsert(board, {"file": name, "experiments": "(kaggle)", "created_at": sub["date"], **values})
        else:
            board = upsert(board, {"file": board.loc[i, "file"], **values})
    return board


def sync(path: Path, comp: str) -> None:
    """Merge Kaggle's scores of competition `comp` into the leaderboard at `path`."""
    from kit import kaggle
    subs = kaggle.scores(comp)
    with locked(path):
        save(merge_kaggle(load(path), subs), path)
    log.info("merged %d Kaggle submission(s) of %s into %s", len(subs), comp, path)


def data_tag(fingerprint: str) -> str:
    """How the leaderboard's `data` column names a data set: its fingerprint's first 12 hex digits."""
    return fingerprint[:12]


def data_of(cfg: Config) -> str:
    """The fingerprint of the data cfg's folds were made from ('' before `make folds`)."""
    return folds.fingerprint(cfg.work_dir)


def one_data_set(board: pd.DataFrame, fingerprint: str = "") -> tuple[pd.DataFrame, str]:
    """The rows of the data set with this fingerprint (unknown or '': the newest row's), and a line saying
    so, when the board holds submissions of several: CVs of two data sets do not compare, nor do their picks.

    Rows written before the `data` column existed form a set of their own.
    """
    data = data_tag(fingerprint)
    sets = board["data"].unique()
    if len(sets) <= 1:
        return board, ""
    if data not in sets:
        data = board.sort_values("created_at")["data"].iloc[-1]
    mine = board[board["data"] == data]
    return mine, (f"leaderboard.csv holds submissions of {len(sets)} data sets: the rows, correlations and picks "
                  f"here are data {data or '(not recorded)'}'s, {len(mine)} of {len(board)} rows")


def pick(board: pd.DataFrame, experiments: list[str], submissions_dir: Path, fingerprint: str = "") -> Path:
    """The submission to upload when none is named: the best CV among the rows of these experiments.

    A row belongs to them when it was made from them alone (A, B, or A+B for experiments A and B), on
    their data set (`fingerprint`) when the board holds several. A tie between files is an error: which to
    submit is the user's call, not the clock's.
    """
    board = one_data_set(board, fingerprint)[0]
    names = set(experiments)
    cv = pd.to_numeric(board["cv_top1"], errors="coerce")
    ours = [bool(e) and set(e.split()) <= names and (submissions_dir / f).is_file() and pd.notna(c)
            for e, f, c in zip(board["experiments"], board["file"], cv)]
    mine, cv = board[ours], cv[ours]
    if mine.empty:
        raise ValueError(f"no submission of {' '.join(experiments)} in {submissions_dir / 'leaderboard.csv'}; "
                         "run `make predict` first, or name one with FILE=")
    best = mine[cv == cv.max()]
    if len(best) > 1:
        raise ValueError(f"{len(best)} submissions share the best CV {cv.max():.5f} ({', '.join(best['file'])}); "
                         "name the one to upload with FILE=")
    return submissions_dir / best["file"].iloc[0]


def describe(row: pd.Series) -> str:
    return (f"{row['experiments']} cv={row['cv_top1']} folds={row['folds']} tta={row['tta']} "
            f"sha={row['sha256'][:8]}")


def submit(cfgs: list[Config], comp: str, file: str = "") -> str:
    """Upload FILE, or the best-CV submission of these experiments (named before it goes); record the ref."""
    from kit import kaggle
    if not comp:
        raise ValueError("no competition: pass COMP=slug (make) or --comp slug")
    submissions_dir = Path(cfgs[0].submissions_dir)
    path = path_of(cfgs[0])
    board = load(path)
    sub = Path(file) if file else pick(board, [c.name for c in cfgs], submissions_dir, data_of(cfgs[0]))
    rows = board[board["file"] == sub.name]
    message = describe(rows.iloc[0]) if len(rows) else sub.stem
    if not file:
        log.info("submitting %s, the best CV of %s: %s", sub.name, " ".join(c.name for c in cfgs), message)
    ref = kaggle.submit(comp, sub, message)
    with locked(path):
        save(upsert(load(path), {"file": sub.name, "kaggle_ref": ref, "kaggle_status": "pending",
                                 "description": message}), path)
    log.info("submitted %s to %s (ref %s)", sub.name, comp, ref or "?")
    return ref


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


def show(path: Path, fingerprint: str = "") -> None:
    """The table sorted by CV, its plot, correlations and final picks, of one data set (see one_data_set)."""
    board = load(path)
    if board.empty:
        print(f"{path}: no submissions yet; run `make predict`")
        return
    board, note = one_data_set(board, fingerprint)
    if note:
        print(note)
    # sorted by CV, not by public score: the public split is small, and chasing it overfits
    order = pd.to_numeric(board["cv_top1"], errors="coerce").fillna(-1).sort_values(ascending=False).index
    board = board.loc[order]
    report.plot_leaderboard(board, path.with_suffix(".png"))
    print(board[SHOWN].to_string(index=False))
    for line in summary(board):
        print(line)


def run(cfgs: list[Config], comp: str = "") -> Path:
    """The `leaderboard` command: with comp, Kaggle's scores merged first; then the table of cfgs' data set."""
    cfg = cfgs[0]
    path = path_of(cfg)
    if comp:
        sync(path, comp)
    show(path, data_of(cfg))
    return path
