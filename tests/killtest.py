"""Kill the pipeline (folds -> train -> predict, in one `kit run` as `make` runs it) with SIGKILL at random moments,
resume, compare.

    .venv/bin/python tests/killtest.py --trials 10      # make reliability
    .venv/bin/python tests/killtest.py --keys seeds=2 full_fit=true   # a seed ensemble and a refit, killed alike
    (tests/test_reliability.py runs fewer trials in CI)

After every kill, every output file must still be readable (checkpoints with weights_only=True,
npz, CSV, JSON, YAML). After the last resume, each fold's best score, cv.json and the submission
CSV bytes must equal those of an uninterrupted run with the same seed (CPU).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

# A tiny model on the demo digits: the whole pipeline runs in seconds, so kills land in every stage.
TINY = ["backbone=test_resnet", "spinal_width=16", "n_folds=3", "stage1_epochs=3", "stage2_epochs=2",
        "workers=0", "max_epoch_steps=6", "batch_size=16", "eval_batch_size=128", "tta=[hflip]"]
PYTHON = sys.executable


def chain(data: Path, out: Path, keys: tuple[str, ...] = ()) -> list[str]:
    """The three stages in one process (`make`'s `kit run`: one start-up of torch, not three, so that the kills
    land in the stages' work rather than in imports; tests/test_smoke.py checks it writes what they write)."""
    args = ["--exp", "demo", f"data={data}", f"work_dir={out / 'folds'}", f"submissions_dir={out / 'subs'}", *TINY,
            *keys]
    return [PYTHON, "-m", "kit", "run", *args]


def readable(out: Path) -> list[str]:
    """Every output under out that can't be read back (temporary .tmp files excluded)."""
    bad = []
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        try:
            if p.suffix == ".pt":
                torch.load(p, weights_only=True)
            elif p.suffix == ".npz":
                with np.load(p) as z:
                    [z[k] for k in z.files]
            elif p.suffix == ".csv":
                pd.read_csv(p)
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".yaml":
                yaml.safe_load(p.read_text())
        except Exception as e:  # noqa: BLE001 - any failure to read is the finding
            bad.append(f"{p}: {type(e).__name__}")
    return bad


def run_once(cmd: list[str], env: dict, kill_after: float | None) -> int | None:
    """Run cmd; SIGKILL its process group after kill_after seconds. Returns the exit code, None if killed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def stage_reached(out: Path, refit: bool = False) -> str:
    """Where a kill landed, from the outputs it left: folds, train, the refit, predict, or after the end."""
    if not (out / "folds" / "folds.json").is_file():
        return "folds"
    if not (out / "folds" / "demo" / "cv.json").is_file():
        return "train"
    if refit and not (out / "folds" / "demo" / "full" / "oof.npz").is_file() \
            and not list((out / "subs").glob("demo-*.csv")):
        return "train (the refit)"
    return "predict" if not list((out / "subs").glob("demo-*.json")) else "the last step (leaderboard)"


def results(out: Path) -> dict:
    exp = out / "folds" / "demo"
    best = {}  # a fold's (a seed's) best score; the refit's (no validation: its score is NaN) weights' digest
    for p in sorted(exp.glob("*/best.pt")):
        ckpt = torch.load(p, weights_only=True)
        best[p.parent.name] = ckpt["score"] if p.parent.name.startswith("fold") else hashlib.sha256(
            b"".join(t.numpy().tobytes() for t in ckpt["model"].values())).hexdigest()
    subs = {p.name: p.read_bytes() for p in (out / "subs").glob("demo-*.csv")}
    return {"best": best, "cv": json.loads((exp / "cv.json").read_text()), "subs": subs}


def killtest(root: Path, trials: int, seed: int = 0, kills: int = 2, keys: tuple[str, ...] = ()) -> list[str]:
    """Returns a list of problems (empty: passed).

    Each trial starts from nothing, is killed `kills` times, the j-th at a moment drawn uniformly in the j-th of
    `kills` equal slices of the uninterrupted run's duration (so kills land in folds, train and predict in
    proportion to their time, spread over them), resumes to the end, and is compared with the uninterrupted run.
    `keys` are added to every run (e.g. seeds=2 full_fit=true).
    """
    env = dict(os.environ)
    data = root / "data"
    subprocess.run([PYTHON, "-m", "kit", "demo-data", "--out", str(data)], env=env, check=True, capture_output=True)
    t0 = time.perf_counter()
    if run_once(chain(data, root / "ref", keys), env, None) != 0:
        return ["the uninterrupted run failed"]
    duration = time.perf_counter() - t0
    ref = results(root / "ref")
    rng, problems, landed = random.Random(seed), [], []
    for trial in range(trials):
        out = root / f"trial{trial}"
        for j in range(kills):  # kill j in the j-th of `kills` equal slices of the run: spread over the stages
            at = rng.uniform(0.5 + (duration - 0.5) * j / kills, 0.5 + (duration - 0.5) * (j + 1) / kills)
            code = run_once(chain(data, out, keys), env, at)
            where = stage_reached(out, "full_fit=true" in keys) if code is None else "not killed (finished first)"
            landed.append(where)
            problems += [f"trial {trial} (kill at {at:.1f}s): unreadable {b}" for b in readable(out)]
            if code not in (None, 0):
                problems.append(f"trial {trial}: resumed run exited {code}")
        if run_once(chain(data, out, keys), env, None) != 0:
            problems.append(f"trial {trial}: the final resume failed")
            continue
        cut = results(out)
        problems += [f"trial {trial}: {key} differs from the uninterrupted run" for key in ref if ref[key] != cut[key]]
    where = ", ".join(f"{n} in {stage}" for stage, n in sorted(Counter(landed).items()))
    print(f"{trials} trials x {kills} kills, uninterrupted run {duration:.1f}s; kills landed: {where}; "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default="", help="work folder (default: a temporary one)")
    p.add_argument("--keys", nargs="*", default=[], help="config keys added to every run (e.g. seeds=2 full_fit=true)")
    args = p.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        problems = killtest(Path(args.dir or tmp), args.trials, args.seed, keys=tuple(args.keys))
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
