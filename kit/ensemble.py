"""Fold and experiment ensembles, and the submission CSV they produce.

An ensemble averages logits (merge=logits) or softmax probabilities (merge=probs). Its CV comes
from the same members' out-of-fold predictions, so CV and leaderboard describe the same model.
Submissions are checked before they are written: every test id once and no other, in the order
and format of sample_submission.csv, every label a known class, the right header.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.metrics import accuracy_score

from kit.config import Config, shaping
from kit.io import atomic_path, atomic_write_bytes, atomic_write_text, load_npz, locked, sha256_file
from kit.layout import Layout, summarize
from kit.metrics import topk


@dataclass
class Result:
    """One experiment's (or several experiments') ensembled test and out-of-fold scores."""

    name: str
    cfgs: list[Config]
    layout: Layout
    classes: list[str]
    folds: list[int]
    test_scores: np.ndarray  # (N_test, classes), in layout.test order
    oof_ids: np.ndarray  # (N_oof,) training image paths, sorted
    oof_labels: np.ndarray  # (N_oof,) class indices
    oof_scores: np.ndarray  # (N_oof, classes)
    fold_top1: list[float]
    holdout_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (N_holdout, classes)
    holdout_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    checkpoints: dict = field(default_factory=dict)  # path -> sha256
    epochs: float = 0.0  # mean epochs run per fold
    fingerprint: str = ""
    # OOF top-1 of each fold's last epoch (plain, no TTA): how much choosing the best epoch on the
    # validation fold itself flatters the CV. None for ensembles of experiments.
    last_epoch_top1: float | None = None
    warning: str = ""  # e.g. folds whose stage 1 ended at chance level
    blend: dict = field(default_factory=dict)  # a blend's weights and how they were fitted (kit/blend.py)

    @property
    def holdout_top1(self) -> float | None:
        if not len(self.holdout_labels):
            return None
        return float(accuracy_score(self.holdout_labels, self.holdout_scores.argmax(1)))

    @property
    def cv(self) -> dict:
        return {"top1": float(accuracy_score(self.oof_labels, self.oof_scores.argmax(1))),
                "top5": topk(self.oof_labels, self.oof_scores, 5), "fold_std": float(np.std(self.fold_top1))}


def average(arrays: list[np.ndarray], merge: str) -> np.ndarray:
    """Mean of logits, or of softmax probabilities."""
    stack = np.stack(arrays).astype(np.float64)  # (members, N, classes)
    if merge == "probs":
        stack = softmax(stack, axis=-1)
    return stack.mean(axis=0)


def from_folds(cfg: Config, layout: Layout, meta: dict, folds: list[int], test_files: list[Path],
               oof_files: list[Path], holdout_files: list[Path] = ()) -> Result:
    """One experiment's fold logits (test, out-of-fold, holdout; all through the same TTA) as one Result."""
    test = [load_npz(f) for f in test_files]
    ids = layout.test["id"].to_numpy().astype(str)
    for f, t in zip(test_files, test):
        assert np.array_equal(t["ids"], ids), f"{f}: test ids differ from the data's"
    oof = [load_npz(f) for f in oof_files]
    oof_ids = np.concatenate([o["ids"] for o in oof])
    order = np.argsort(oof_ids, kind="stable")  # sorted by path, so experiments align row by row
    logits = np.concatenate([o["logits"] for o in oof])
    oof_scores = softmax(logits, axis=-1) if cfg.merge == "probs" else logits
    fold_dirs = [cfg.exp_dir / f"fold{k}" for k in folds]
    histories = [pd.read_csv(d / "history.csv") for d in fold_dirs]
    n = np.array([len(o["labels"]) for o in oof])
    last = [float(h["val_top1"].iloc[-1]) for h in histories]  # each fold's last weights, no TTA
    held = [load_npz(f) for f in holdout_files]
    return Result(
        name=cfg.name, cfgs=[cfg], layout=layout, classes=list(meta["classes"]), folds=folds,
        test_scores=average([t["logits"] for t in test], cfg.merge),
        oof_ids=oof_ids[order], oof_labels=np.concatenate([o["labels"] for o in oof])[order],
        oof_scores=oof_scores[order], fold_top1=[float(accuracy_score(o["labels"], o["logits"].argmax(1))) for o in oof],
        checkpoints={str(d / "best.pt"): sha256_file(d / "best.pt") for d in fold_dirs},
        epochs=float(np.mean([len(h) for h in histories])), fingerprint=meta["fingerprint"],
        last_epoch_top1=float(np.dot(n, last) / n.sum()), warning=_warning(cfg.exp_dir, folds),
        **({"holdout_scores": average([h["logits"] for h in held], cfg.merge), "holdout_labels": held[0]["labels"]}
           if held else {}),
    )


def _warning(exp_dir: Path, folds: list[int]) -> str:
    cv = exp_dir / "cv.json"
    at_chance = [k for k in json.loads(cv.read_text()).get("chance_level_folds", []) if k in folds] if cv.is_file() else []
    return f"chance level in fold(s) {', '.join(map(str, at_chance))}" if at_chance else ""


def as_probs(scores: np.ndarray, merge: str) -> np.ndarray:
    """Fold-ensembled scores as probabilities: averaged logits go through softmax, averaged probabilities are."""
    return scores if merge == "probs" else softmax(scores, axis=-1)


def combine_scores(scores: list[np.ndarray], merges: list[str]) -> np.ndarray:
    """Experiments' fold-ensembled scores averaged: as they are when all merged alike, else as probabilities."""
    if len(set(merges)) > 1:
        scores = [as_probs(s, m) for s, m in zip(scores, merges)]
    return np.mean(scores, axis=0)


def combine(results: list[Result]) -> Result:
    """Several experiments' results averaged (as probabilities when their merges differ)."""
    first = results[0]
    for r in results[1:]:
        if r.classes != first.classes or not np.array_equal(r.oof_ids, first.oof_ids):
            raise ValueError(f"cannot ensemble {first.name} and {r.name}: trained on other folds or classes")
    merges = [r.cfgs[0].merge for r in results]
    return dataclasses.replace(
        first, name="+".join(r.name for r in results), cfgs=[c for r in results for c in r.cfgs],
        test_scores=combine_scores([r.test_scores for r in results], merges),
        oof_scores=combine_scores([r.oof_scores for r in results], merges),
        holdout_scores=(combine_scores([r.holdout_scores for r in results], merges)
                        if len(first.holdout_labels) else first.holdout_scores),
        fold_top1=[float(np.mean(v)) for v in zip(*(r.fold_top1 for r in results))],
        checkpoints={k: v for r in results for k, v in r.checkpoints.items()},
        epochs=float(np.mean([r.epochs for r in results])), last_epoch_top1=None,
        warning="; ".join(f"{r.name}: {r.warning}" for r in results if r.warning),
    )


def build_submission(r: Result) -> pd.DataFrame:
    return submission_table(r.classes, r.test_scores, r.layout)


def submission_table(classes: list[str], test_scores: np.ndarray, layout: Layout) -> pd.DataFrame:
    preds = np.asarray(classes, dtype=object)[test_scores.argmax(1)]
    id_col, label_col = layout.header
    return pd.DataFrame({id_col: layout.test["id"].to_numpy(), label_col: preds})


def submission_bytes(sub: pd.DataFrame, layout: Layout, classes: list[str]) -> bytes:
    """The CSV as written, checked first against what the competition expects."""
    validate_submission(sub, layout.test["id"], classes, layout.header)
    return sub.to_csv(index=False, lineterminator="\n").encode()


def validate_submission(sub: pd.DataFrame, expected_ids: pd.Series, classes: list[str], header: tuple) -> None:
    """Raise ValueError unless sub is exactly what the competition expects."""
    if tuple(sub.columns) != tuple(header):
        raise ValueError(f"submission header {list(sub.columns)} != expected {list(header)}")
    ids = sub.iloc[:, 0].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"submission repeats ids: {summarize(sorted(set(ids[ids.duplicated()])))}")
    if list(ids) != list(expected_ids.astype(str)):
        missing = sorted(set(expected_ids) - set(ids))
        extra = sorted(set(ids) - set(expected_ids))
        raise ValueError(f"submission ids differ from the test set: missing {summarize(missing) or 'none'}, "
                         f"extra {summarize(extra) or 'none'} (or out of order)")
    unknown = sorted(set(sub.iloc[:, 1]) - set(classes))
    if unknown:
        raise ValueError(f"submission has labels that are not classes: {summarize(unknown)}")


def _git() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def versions() -> dict:
    names = ("torch", "torchvision", "timm", "albumentations", "ttach", "numpy", "scikit-learn", "pandas", "pillow")
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def run_record(r: Result) -> dict:
    """What made one predict run's file: every key that shapes the submission, the weights, the scores."""
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "experiments": [c.name for c in r.cfgs],
        "settings": [shaping(c, "ensemble") for c in r.cfgs], "checkpoints": r.checkpoints, "folds": r.folds,
        "cv": r.cv, "last_epoch_top1": r.last_epoch_top1, "holdout_top1": r.holdout_top1,
        "data_fingerprint": r.fingerprint, "git": _git(), "versions": versions(),
        **({"blend": r.blend} if r.blend else {}),
    }


def _same_run(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("experiments", "settings", "checkpoints", "folds", "blend"))


def record_run(path: Path, csv_sha: str, run: dict) -> int:
    """Add `run` to the manifest at `path` unless an equal run is there; return its number (1-based).

    Two runs with other settings can write the same bytes (e.g. a TTA that changes no argmax): the
    manifest keeps both, and each leaderboard row names the run it describes.
    """
    with locked(path):
        manifest = json.loads(path.read_text()) if path.is_file() else {"sha256": csv_sha, "runs": []}
        runs = manifest["runs"]
        for i, old in enumerate(runs):
            if _same_run(old, run):
                return i + 1
        runs.append(run)
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
        return len(runs)


def write_submission(r: Result) -> tuple[Path, int]:
    """submissions/<name>-<sha8>.csv: the same predictions give the same file, a new one never overwrites.

    Returns the CSV's path and the number of this run in its manifest (<name>-<sha8>.json).
    """
    data = submission_bytes(build_submission(r), r.layout, r.classes)
    sha = hashlib.sha256(data).hexdigest()
    out_dir = Path(r.cfgs[0].submissions_dir)
    path = out_dir / f"{r.name}-{sha[:8]}.csv"
    if not path.is_file():
        atomic_write_bytes(path, data)
    run = record_run(path.with_suffix(".json"), sha, run_record(r))
    if r.cfgs[0].zip and not path.with_suffix(".zip").is_file():
        with atomic_path(path.with_suffix(".zip")) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(zipfile.ZipInfo(path.name, date_time=(2020, 1, 1, 0, 0, 0)), data)  # fixed time: same bytes
    return path, run
