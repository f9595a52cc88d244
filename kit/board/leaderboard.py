"""submissions/<data>/leaderboard.csv: one row per submission file, merged, never losing a row.

    python -m kit leaderboard                      # print the table and write leaderboard.png
    python -m kit leaderboard --comp SLUG          # first merge Kaggle's public/private scores
    python -m kit submit --exp A B --comp SLUG     # upload the best-CV submission of A, B (or A+B)

This module owns leaderboard.csv: its columns and every write to it (a locked read-modify-write
through `upsert`, where a known value is never replaced by an empty one). kaggle.py hands it
tables and refs and imports nothing from here.

Public and private scores are filled locally when a solution file (id, label, Usage) exists,
or from Kaggle. The table is sorted by CV: "trust your CV" means CV should rank like private.
Each row's cv is the out-of-fold score, in its metric (the `metric` column), of exactly what its
file holds (same TTA, same merge, thresholds and temperature fitted on the other folds); cv_last
is the same folds scored the same way with each fold's last-epoch weights (final.pt), so cv - cv_last
shows how much choosing the best epoch on the validation fold flatters the CV. Rows are ordered, and picked, in the
metric's direction (kit/metrics.py); cv_top1 and cv_top5 are beside it for single-label data.
`run` names the entry of the file's manifest (<file>.json, "runs") that the row describes.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from kit import figures, tracking
from kit.board import formats
from kit.config import Config
from kit.data import folds
from kit.data.layout import TAG_SEP, Layout, summarize
from kit.io import atomic_write_text, locked, sha256_file
from kit.metrics import Metric, get
from kit.experiment import Experiment
from kit.tta import tag

log = logging.getLogger(__name__)
COLUMNS = ["file", "run", "experiments", "backbone", "head", "folds", "seeds", "full_fit", "tta", "merge", "image_size",
           "epochs", "metric", "cv", "cv_last", "cv_top1", "cv_top5", "fold_std", "tta_cv", "holdout", "public",
           "private", "created_at", "sha256", "kaggle_ref", "kaggle_status", "description", "warning", "pseudo", "sweep",
           "data"]
SHOWN = ["file", "experiments", "backbone", "folds", "tta", "metric", "cv", "cv_last", "public", "private",
         "kaggle_status", "warning"]
REFIT = {False: "", True: "on", "only": "only"}  # the full_fit column: a full-data model joined, or alone
RENAMED = {"cv_last_top1": "cv_last", "holdout_top1": "holdout"}  # columns of boards written before metrics


def path_of(cfg: Config) -> Path:
    """<submissions_dir>/leaderboard.csv."""
    return path_of_dir(cfg.submissions_dir)


def path_of_dir(submissions_dir: str | Path) -> Path:
    return Path(submissions_dir) / "leaderboard.csv"


def drop_rows(path: Path, which) -> list[str]:
    """Remove the rows that which(row) accepts; return their files."""
    if not path.is_file():
        return []
    with locked(path):
        board = load(path)
        gone = board.apply(which, axis=1).astype(bool) if len(board) else board["file"].astype(bool)
        save(board[~gone], path)
        return list(board.loc[gone, "file"])


def load(path: Path) -> pd.DataFrame:
    board = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(columns=COLUMNS)
    board = board.rename(columns=RENAMED)
    for col in COLUMNS:
        if col not in board.columns:
            board[col] = ""
    old = (board["metric"] == "") & (board["cv_top1"] != "")  # a row from before metrics: its CV was top-1
    board.loc[old, "metric"], board.loc[old, "cv"] = "accuracy", board.loc[old, "cv_top1"]
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


def solution_labels(sol: pd.DataFrame, layout: Layout, sub_columns: list[str], path: Path) -> np.ndarray:
    """The true labels of a solution file as targets: from its label column (a class, or space-separated tags),
    or its 0/1 class columns; named like the submission's, else the first column that is not the id or Usage."""
    columns = [c for c in sol.columns[1:] if c != "Usage"]
    if set(layout.classes) <= set(columns):  # one 0/1 column per class
        hot = sol[list(layout.classes)].to_numpy() == "1"
        return hot.argmax(1) if layout.task == "single" else hot.astype(np.int64)
    label = next((c for c in sub_columns[1:] if c in columns), columns[0])
    values = sol[label] if layout.task == "single" else sol[label].str.split().str.join(TAG_SEP)
    unknown = sorted({t for v in values for t in (v.split(TAG_SEP) if layout.task != "single" else [v]) if t}
                     - set(layout.classes))
    if unknown:
        raise ValueError(f"{path}: labels that are not classes of the training data: {summarize(unknown)}")
    return layout.targets(values)


def local_scores(r, sub: pd.DataFrame) -> tuple[str, str]:
    """(public, private) in the metric, against the solution file, or empty strings when there is none."""
    cfg = r.cfgs[0]
    path = Path(cfg.solution) if cfg.solution else r.layout.root / "solution.csv"
    if not path.is_file():
        return "", ""
    sol = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "Usage" not in sol.columns:
        raise ValueError(f"{path}: needs a Usage column (Public/Private) beside the id and label")
    # Kaggle solution files name their id column like the submission; fall back to the first column
    sol_id = sub.columns[0] if sub.columns[0] in sol.columns else sol.columns[0]
    sol = sol[[sol_id] + [c for c in sol.columns if c != sol_id]]
    rows = sub.reset_index(drop=True).set_index(sub.columns[0]).reindex(sol[sol_id]).reset_index()
    if rows.iloc[:, 1].isna().any():
        raise ValueError(f"{path}: {int(rows.iloc[:, 1].isna().sum())} solution ids have no prediction")
    y, scores = solution_labels(sol, r.layout, list(sub.columns), path), formats.read(rows, r.layout)
    out = []
    for usage in ("Public", "Private"):
        part = (sol["Usage"] == usage).to_numpy()
        out.append(f"{r.metric(y[part], scores[part]):.5f}" if part.any() else "")
    return out[0], out[1]


def tta_of(cfgs, choices: dict) -> str:
    """Each experiment's TTA, in --exp order: its views, or auto:<the views tta=auto chose for it>."""
    return " ".join(f"auto:{choices[c.name]['chosen']}" if c.name in choices else tag(c.tta) for c in cfgs)


def tta_cv(choices: dict) -> str:
    """tta=auto's candidates' CVs: 'none=0.91 hflip=0.93' for one experiment; 'A: ...; B: ...' for several."""
    cvs = {name: " ".join(f"{n}={v:.5f}" for n, v in c.get("cv", {}).items()) for name, c in choices.items()}
    return next(iter(cvs.values())) if len(cvs) == 1 else "; ".join(f"{name}: {cv}" for name, cv in cvs.items())


def record(path: Path, r, sub_path: Path, run: int) -> None:
    """Add or refresh the row of one submission file, as made by run `run` of its manifest."""
    cfg = r.cfgs[0]
    sub = pd.read_csv(sub_path, dtype=str, keep_default_na=False)
    public, private = local_scores(r, sub)
    cv, number = r.cv, lambda x: "" if x is None else f"{x:.5f}"  # noqa: E731
    row = {
        "file": sub_path.name, "run": run, "experiments": " ".join(c.name for c in r.cfgs),
        "backbone": " ".join(c.backbone for c in r.cfgs), "head": " ".join(c.head for c in r.cfgs),
        "folds": len(r.folds), "seeds": " ".join(str(c.seeds) for c in r.cfgs),
        "full_fit": " ".join(REFIT[c.full_fit] for c in r.cfgs).strip(), "tta": tta_of(r.cfgs, r.tta_choice),
        "tta_cv": tta_cv(r.tta_choice),
        "merge": " ".join(c.merge for c in r.cfgs),
        "image_size": " ".join(str(c.img_size) for c in r.cfgs), "epochs": f"{r.epochs:.1f}",
        "metric": r.metric.name, "cv": number(cv["score"]), "cv_last": number(r.last_epoch_score),
        "cv_top1": number(cv.get("top1")), "cv_top5": number(cv.get("top5")), "fold_std": number(cv["fold_std"]),
        "holdout": number(r.holdout_score), "public": public, "private": private, "sha256": sha256_file(sub_path),
        "warning": r.warning, "data": data_tag(r.fingerprint),
    }
    with locked(path):
        board = load(path)
        if not (board["file"] == row["file"]).any():
            row["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if cfg.pseudo_from and len(r.cfgs) == 1:
            row["pseudo"] = _pseudo_gain(board, r, row)
        save(upsert(board, row), path)


def mark_sweep(path: Path, base: str, trials: dict[str, tuple[int, dict]], best: str) -> None:
    """The sweep column of each trial's rows (experiment name -> (trial number, its values)): `A t3: key=value ..`,
    the best's `A best t3: ..`; a trial without a row (screened on fold 0 alone, pruned) has none."""
    def said(value) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)
    if not path.is_file():
        return
    with locked(path):
        board = load(path)
        for name, (number, params) in trials.items():
            mark = f"{base} {'best ' if name == best else ''}t{number}: " + " ".join(f"{k}={said(v)}"
                                                                                 for k, v in params.items())
            board.loc[board["experiments"] == name, "sweep"] = mark
        save(board, path)


def _pseudo_gain(board: pd.DataFrame, r, row: dict) -> str:
    """'from SRC >= T, N test images a fold: CV +x, private +y' against SRC's newest row with the same TTA."""
    cfg = r.cfgs[0]
    counts = Experiment.of(cfg).pseudo_images(r.folds)
    text = f"from {cfg.pseudo_from} >= {cfg.pseudo_threshold:g}, {np.mean(counts or [0]):.0f} test images a fold"
    src = board[(board["experiments"] == cfg.pseudo_from) & (board["tta"] == row["tta"])]
    if src.empty:
        return text
    src = src.sort_values("created_at").iloc[-1]
    gains = [f"{col} {float(row[col]) - float(src[col]):+.4f}" for col in ("cv", "public", "private")
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
    competition ends: an empty value never replaces a score already known (e.g. a local one). A
    submission made elsewhere joins the data set of the kit's rows of the same competition (when
    they name one data set): it scored on the same test images.
    """
    matched = [i for i in (_match(board, sub) for _, sub in subs.iterrows()) if i is not None]
    sets = {board.loc[i, "data"] for i in matched} - {""}
    data = sets.pop() if len(sets) == 1 else ""
    for _, sub in subs.iterrows():
        values = {"kaggle_ref": sub["ref"], "kaggle_status": sub["status"], "public": sub["publicScore"],
                  "private": sub["privateScore"], "description": sub["description"]}
        i = _match(board, sub)
        if i is None:  # made outside the kit (or another machine): keep it, under a name that can't collide
            taken = (board["file"] == sub["fileName"]).any()
            name = f"{sub['fileName']}#{sub['ref']}" if taken else sub["fileName"]
            board = upsert(board, {"file": name, "experiments": "(kaggle)", "created_at": sub["date"], "data": data,
                                   **values})
        else:
            board = upsert(board, {"file": board.loc[i, "file"], **values})
    return board


def sync(path: Path, comp: str) -> None:
    """Merge Kaggle's scores of competition `comp` into the leaderboard at `path`."""
    from kit.board import kaggle
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


def metric_of(board: pd.DataFrame, name: str = "") -> Metric:
    """The metric that orders these rows: `name`, else the newest row's (Kaggle rows record none)."""
    if not name:
        scored = board[board["metric"] != ""]
        name = scored.sort_values("created_at")["metric"].iloc[-1] if len(scored) else "accuracy"
    return get(name)


def ranked(board: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The rows best CV first in `metric` (rows scored in another metric left out; rows without a CV last)."""
    rows = board[board["metric"].isin([metric.name, ""])]
    cv = pd.to_numeric(rows["cv"], errors="coerce")
    return rows.loc[cv.sort_values(ascending=not metric.higher_is_better, na_position="last").index]


def pick(board: pd.DataFrame, experiments: list[str], submissions_dir: Path, fingerprint: str = "",
         metric: str = "") -> Path:
    """The submission to upload when none is named: the best CV among the rows of these experiments.

    A row belongs to them when it was made from them alone (A, B, or A+B for experiments A and B), on
    their data set (`fingerprint`) when the board holds several. Best is in the rows' metric (the
    `metric` key when they hold several). A tie between files is an error: which to submit is the
    user's call, not the clock's.
    """
    sets = set(board["data"])
    if len(sets) > 1 and data_tag(fingerprint) not in sets:  # never the clock's guess before an upload
        raise ValueError(f"leaderboard.csv holds submissions of {len(sets)} data sets and the folds of work_dir name "
                         f"{'none of them' if fingerprint else 'no data set (no folds.json)'}; name the file to "
                         "upload with FILE=, or set work_dir= to the folds of the data it was made for")
    board = one_data_set(board, fingerprint)[0]
    names = set(experiments)
    ours = [bool(e) and set(e.split()) <= names and (submissions_dir / f).is_file() and c != ""
            for e, f, c in zip(board["experiments"], board["file"], board["cv"])]
    mine = board[ours]
    if mine.empty:
        raise ValueError(f"no submission of {' '.join(experiments)} in {submissions_dir / 'leaderboard.csv'}; "
                         "run `make predict` first, or name one with FILE=")
    used = sorted(set(mine["metric"]))
    if len(used) > 1 and metric in ("", "auto"):
        raise ValueError(f"the submissions of {' '.join(experiments)} are scored in {', '.join(used)}; set metric= "
                         "to the competition's, or name the file with FILE=")
    m = get(used[0] if len(used) == 1 else metric)
    mine = ranked(mine, m)
    covered = pd.to_numeric(mine["folds"], errors="coerce")
    fewer = covered < covered.max()  # a CV over fewer folds (allow_missing_folds) scores fewer images: no comparing
    if fewer.any():
        log.info("%d row(s) over fewer than %d folds left out: their CV covers fewer images", int(fewer.sum()),
                 int(covered.max()))
        mine = mine[~fewer]
    if mine.empty:
        raise ValueError(f"no submission of {' '.join(experiments)} scored in {m.name}; name one with FILE=")
    cv = pd.to_numeric(mine["cv"])
    best = mine[cv == cv.iloc[0]]
    if len(best) > 1:
        raise ValueError(f"{len(best)} submissions share the best CV {cv.iloc[0]:.5f} ({', '.join(best['file'])}); "
                         "name the one to upload with FILE=")
    return submissions_dir / best["file"].iloc[0]


def record_upload(path: Path, file: str, ref: str, description: str) -> None:
    """A file just submitted to Kaggle: its ref and message on its row, pending until sync learns its scores."""
    with locked(path):
        save(upsert(load(path), {"file": file, "kaggle_ref": ref, "kaggle_status": "pending",
                                 "description": description}), path)


def summary(board: pd.DataFrame, metric: Metric) -> list[str]:
    """Correlation of CV with public and private scores, and the two final picks (board: ranked in metric)."""
    num = board[["cv", "public", "private"]].apply(pd.to_numeric, errors="coerce")
    lines = []
    for col in ("public", "private"):
        both = num[["cv", col]].dropna()
        if len(both) >= 3 and both["cv"].std() > 0 and both[col].std() > 0:  # fewer points say nothing
            lines.append(f"correlation of CV with {col}: {np.corrcoef(both['cv'], both[col])[0, 1]:+.3f} "
                         f"over {len(both)} submissions")
    if num["cv"].notna().any():
        lines.append(f"final pick 1 (best CV): {board['file'].iloc[0]}")
    public = num["public"].dropna()
    if len(public):
        best = public.idxmax() if metric.higher_is_better else public.idxmin()
        lines.append(f"final pick 2 (best public): {board.loc[best, 'file']}")
    return lines


def show(path: Path, fingerprint: str = "", metric: str = "") -> None:
    """The table best CV first, its plot, correlations and final picks, of one data set (see one_data_set) and
    one metric (`metric`, or the newest row's)."""
    board = load(path)
    if board.empty:
        print(f"{path}: no submissions yet; run `make predict`")
        return
    board, note = one_data_set(board, fingerprint)
    if note:
        print(note)
    m = metric_of(board, "" if metric == "auto" else metric)
    other = sorted(set(board["metric"]) - {m.name, ""})
    if other:
        print(f"rows scored in {', '.join(other)} are left out: the table is in {m.name} (set metric= for another)")
    # sorted by CV, not by public score: the public split is small, and chasing it overfits
    board = ranked(board, m)
    figures.plot_leaderboard(board, path.with_suffix(".png"))
    print(board[SHOWN].to_string(index=False))
    for line in summary(board, m):
        print(line)


def run(cfgs: list[Config], comp: str = "") -> Path:
    """The `leaderboard` command: with comp, Kaggle's scores merged first; then the table of cfgs' data set."""
    cfg = cfgs[0]
    path = path_of(cfg)
    if comp:
        sync(path, comp)
        tracking.scores(cfg, load(path))
    show(path, data_of(cfg), cfg.metric)
    return path
