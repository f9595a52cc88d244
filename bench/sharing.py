"""Several kit trainings on one machine: each one's img/s alone, two at once, four at once.

    python -m bench.sharing                         # 1, 2 and 4 trainings at once, started independently
    python -m bench.sharing --procs 1 2 --epochs 4  # fewer
    python -m bench.sharing --hint                  # each started with KIT_LOCAL_PROCS=N, as make train GPUS=... does

Each training is the demo's preset (resnest14d + SpinalNet at 16 px) on fold 0 of the embedded digits, stage 1
only, in an experiment of its own name over one shared folds/; they start together. A process's speed is
the median img/s of its epochs after the first (history.csv), so the start-up of the others does not
count. Extra KEY=VALUE arguments go to every training (e.g. threads=2 to force the former sizing).
The goal (issue: a machine shared well): each of N processes keeps at least 0.8/N of the alone speed.
Rows are recorded in bench/results/ as "sharing".
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.common import record, table


def _train(work: Path, name: str, epochs: int, procs: int, hint: bool, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    for key in ("KIT_LOCAL_PROCS", "PYTEST_XDIST_WORKER_COUNT", "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS"):
        env.pop(key, None)
    env.update(a.split("=", 1) for a in extra if a.isupper() or a.split("=")[0].isupper())  # OMP_WAIT_POLICY=...
    extra = [a for a in extra if not a.split("=")[0].isupper()]
    if hint:
        env["KIT_LOCAL_PROCS"] = str(procs)
    cmd = [sys.executable, "-m", "kit", "train", "--exp", "demo", "--fold", "0", f"data={work / 'data'}",
           f"work_dir={work / 'folds'}", f"name={name}", f"stage1_epochs={epochs}", "stage2_epochs=0",
           "warmup_epochs=0", "patience=99", *extra]
    log = (work / f"{name}.log").open("w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _speed(work: Path, name: str) -> float:
    history = pd.read_csv(work / "folds" / name / "fold0" / "history.csv")
    return float(history["img_per_s"].iloc[1:].median())


def run(procs: list[int], epochs: int, hint: bool, extra: list[str]) -> list[dict]:
    rows, alone = [], None
    with tempfile.TemporaryDirectory(prefix="kit-sharing-") as tmp:
        work = Path(tmp)
        kit = [sys.executable, "-m", "kit"]
        subprocess.run([*kit, "demo-data", "--out", str(work / "data")], check=True, capture_output=True)
        subprocess.run([*kit, "folds", "--exp", "demo", f"data={work / 'data'}", f"work_dir={work / 'folds'}"],
                       check=True, capture_output=True)
        for n in procs:
            names = [f"share{n}_{i}" for i in range(n)]
            t0 = time.perf_counter()
            running = [_train(work, name, epochs, n, hint, extra) for name in names]
            if any(p.wait() for p in running):
                bad = next(name for name, p in zip(names, running) if p.returncode)
                raise SystemExit(f"{bad} failed: {(work / f'{bad}.log').read_text()[-2000:]}")
            first = (work / f"{names[0]}.log").read_text().splitlines()
            said = next((line.split("train: ", 1)[1] for line in first if "train: device" in line), "")
            speeds = [_speed(work, name) for name in names]
            alone = alone or (speeds[0] if n == 1 else None)
            rows.append({"at once": n, "img/s each": " ".join(f"{s:.0f}" for s in speeds),
                         "worst / alone": f"{min(speeds) / alone:.2f}" if alone else "-",
                         "goal": f"{0.8 / n:.2f}", "wall s": f"{time.perf_counter() - t0:.0f}",
                         "first line": said.split(", batch")[0].replace("device cpu ", "")})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hint", action="store_true", help="start each with KIT_LOCAL_PROCS=N")
    args, extra = ap.parse_known_args()
    rows = run(args.procs, args.epochs, args.hint, extra)
    print(table(f"trainings at once ({'KIT_LOCAL_PROCS=N' if args.hint else 'independent'}"
                f"{', ' + ' '.join(extra) if extra else ''})", rows))
    print(f"recorded in {record('sharing', rows)}")


if __name__ == "__main__":
    main()
