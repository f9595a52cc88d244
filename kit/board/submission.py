"""Submission files: the CSV a competition expects (kit/board/formats.py makes it), its manifest, and its leaderboard row.

    submissions/<name>-<sha8>.csv    never overwritten: the same predictions give the same file
    submissions/<name>-<sha8>.json   the manifest: one entry ("run") per command that made these bytes
    submissions/<name>-<sha8>.zip    with zip=true (Codabench-style platforms)

Every submission, from predict, blend, export or a bundle, is written here, checked first
(kit/board/formats.py): every test id once and no other, in the order and format of sample_submission.csv.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from kit import tracking
from kit.board import formats, leaderboard
from kit.board.result import Result
from kit.config import Config, shaping, shaping_key
from kit.io import atomic_path, atomic_write_bytes, atomic_write_text, locked
from kit.experiment import Experiment


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


def run_record(cfgs: list[Config], checkpoints: dict, folds: list[int], cv: dict, **extra) -> dict:
    """One manifest entry: every key that shapes the submission, the weights, the scores, and what made it."""
    return {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "experiments": [c.name for c in cfgs], "settings": [shaping(c, "ensemble") for c in cfgs],
            "checkpoints": checkpoints, "folds": folds, "cv": cv, **extra, "git": _git(), "versions": versions()}


def _same_run(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("experiments", "settings", "checkpoints", "folds", "blend", "tta_auto"))


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


def save(data: bytes, name: str, out_dir: Path, run: dict, zip: bool) -> tuple[Path, int]:
    """<out_dir>/<name>-<sha8>.csv (+ .zip) unless there already, and `run` in its manifest.

    Returns the CSV's path and the number of this run in its manifest (<name>-<sha8>.json).
    """
    sha = hashlib.sha256(data).hexdigest()
    path = out_dir / f"{name}-{sha[:8]}.csv"
    if not path.is_file():
        atomic_write_bytes(path, data)
    number = record_run(path.with_suffix(".json"), sha, run)
    if zip and not path.with_suffix(".zip").is_file():
        with atomic_path(path.with_suffix(".zip")) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(zipfile.ZipInfo(path.name, date_time=(2020, 1, 1, 0, 0, 0)), data)  # fixed time: same bytes
    return path, number


def plans(cfgs, fingerprint: str) -> dict:
    """{experiment: its plan (kit/train/plan.py), as Experiment.decided reads it} for those that have one: what the
    manifest and the bundle record."""
    found = {c.name: Experiment.of(c).decided(shaping_key(c, "weights", fingerprint)) for c in cfgs}
    return {name: decided for name, decided in found.items() if decided}


def _decided(plan: dict, field: str) -> dict:
    """{experiment: the value it trained with} for those whose plan decided `field` (stage1_lr, hflip)."""
    return {name: p[field] for name, p in plan.items() if field in p}


def write(r: Result) -> Path:
    """The submission of a Result (predict, blend, export): its CSV, manifest and leaderboard row."""
    cfg = r.cfgs[0]
    data = formats.to_bytes(formats.table(r.layout, *r.submitted(r.test_scores), r.post.get("blank_below", 0.0)),
                            r.layout)
    extra = {"last_epoch_score": r.last_epoch_score, "holdout_score": r.holdout_score, "post": r.post,
             "data_fingerprint": r.fingerprint, "trained_on": r.trained_on, **({"blend": r.blend} if r.blend else {}),
             **({"tta_auto": r.tta_choice} if r.tta_choice else {}),
             **({"plan": plan} if (plan := plans(r.cfgs, r.fingerprint)) else {}),
             **({"stage1_lr_auto": found} if (found := _decided(plan, "stage1_lr")) else {}),
             **({"hflip_auto": found} if (found := _decided(plan, "hflip")) else {}),
             **({"grouped_by": r.layout.group} if r.layout.group else {})}
    path, number = save(data, r.name, Path(cfg.submissions_dir), run_record(r.cfgs, r.checkpoints, r.folds, r.cv, **extra),
                        cfg.zip)
    leaderboard.record(leaderboard.path_of(cfg), r, path, number)
    tracking.submission(r.cfgs, path, path.with_suffix(".json"))
    return path
