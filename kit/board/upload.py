"""`make submit`: the file to upload (FILE=, or the best CV of the experiments), the upload through the kaggle CLI
(a CSV, or a code competition's pushed kernel version), and its ref on its leaderboard row.

    python -m kit submit --exp A B --comp SLUG [--file F]     # make submit COMP=slug [EXP=...] [FILE=...]

leaderboard.py owns leaderboard.csv and picks the file; kaggle.py talks to the CLI; this module joins them.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from kit.board.leaderboard import data_of, load, path_of, pick, record_upload
from kit.config import Config

log = logging.getLogger(__name__)


def describe(row: pd.Series) -> str:
    return (f"{row['experiments']} cv={row['cv']} metric={row['metric']} folds={row['folds']} tta={row['tta']} "
            f"sha={row['sha256'][:8]}")


def submit(cfgs: list[Config], comp: str, file: str = "", notebook: str = "notebook", asked: bool = False) -> str:
    """Upload FILE, or the best-CV submission of these experiments (named before it goes); record the ref. A code
    competition whose kernel was pushed (<notebook>/<slug>/pushed.json) submits that kernel version instead, and
    the row is that of the file the kernel writes (the bundle's submission, byte for byte). `asked`: the
    experiments were named (EXP=): a kernel of others is refused, never submitted in their place."""
    from kit.board import kaggle
    if not comp:
        raise ValueError("no competition: pass COMP=slug (make) or --comp slug")
    submissions_dir = Path(cfgs[0].submissions_dir)
    path = path_of(cfgs[0])
    board = load(path)
    pushed = Path(notebook) / comp / "pushed.json"
    kernel = json.loads(pushed.read_text()) if pushed.is_file() and not file else None
    sub = (submissions_dir / kernel["file"] if kernel else Path(file) if file else
           pick(board, [c.name for c in cfgs], submissions_dir, data_of(cfgs[0]), cfgs[0].metric))
    rows = board[board["file"] == sub.name]
    if kernel and asked:
        _check_kernel_is_asked(kernel, rows, [c.name for c in cfgs], pushed, comp)
    message = describe(rows.iloc[0]) if len(rows) else sub.stem
    if not file:
        log.info("submitting %s, %s: %s", f"kernel {kernel['kernel']} version {kernel['version']} (it writes "
                 f"{sub.name})" if kernel else sub.name, "the bundle's" if kernel else "the best CV of " +
                 " ".join(c.name for c in cfgs), message)
    ref = kaggle.submit_kernel(comp, kernel["kernel"], kernel["version"], message) if kernel else \
        kaggle.submit(comp, sub, message)
    record_upload(path, sub.name, ref, message)
    log.info("submitted %s to %s (ref %s)", sub.name, comp, ref or "?")
    return ref


def _check_kernel_is_asked(kernel: dict, rows: pd.DataFrame, asked: list[str], pushed: Path, comp: str) -> None:
    """A pushed kernel predicts one experiment's (or ensemble's) file; EXP= naming others must not spend a daily
    submission on it."""
    has = rows["experiments"].iloc[0].split() if len(rows) else []
    if not has or not set(has) <= set(asked):
        raise ValueError(f"the kernel pushed for {comp} ({pushed}) predicts {' + '.join(has) or kernel['file']}, not "
                         f"{' '.join(asked)}: push theirs first (make notebook notebook-push COMP={comp} "
                         f"EXP=\"{' '.join(asked)}\"), or submit without EXP=")
