"""How long `make` takes on the demo, from clean, here and on a simulated slower machine.

    python -m bench.demo_time                   # make clean; make: wall seconds, each preset's CV and private
    python -m bench.demo_time --slower 3.6      # the same with CPU time cut to 2 cores / 3.6 (root, cgroup)

--slower F runs `make` in a CPU cgroup whose quota is (cores / F) of CPU time per period (cgroup v2
cpu.max, or v1 cpu.cfs_quota_us; root only). It is a pessimistic stand-in for a machine F times
slower: throttled in 20 ms slices, two compute threads lose more than a slower pair of cores would
(measured: an epoch 5x slower at F = 3.6). The venv must already be built; `make clean` removes the
demo's data, folds and submissions first, so run it in a checkout whose outputs can go. Rows are
recorded in bench/results/ as "demo_time".
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import time
from pathlib import Path

PERIOD_US = 20_000


def _cgroup(slower: float) -> Path:
    """A CPU cgroup limited to os.cpu_count() / slower of the CPU time; the file a pid is written to."""
    quota = int(PERIOD_US * os.cpu_count() / slower)
    controllers = Path("/sys/fs/cgroup/cgroup.controllers")  # cgroup v2 mounted at the top
    if controllers.is_file() and "cpu" in controllers.read_text().split():
        group = controllers.parent / "kit-demo-time"
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        return group / "cgroup.procs"
    group = Path("/sys/fs/cgroup/cpu/kit-demo-time")  # cgroup v1
    group.mkdir(exist_ok=True)
    (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
    (group / "cpu.cfs_quota_us").write_text(str(quota))
    return group / "tasks"


def run(slower: float = 1.0) -> list[dict]:
    subprocess.run(["make", "clean"], check=True, capture_output=True)
    procs = _cgroup(slower) if slower > 1 else None

    def enter():  # in the child, before exec: make and everything it starts share the quota
        if procs is not None:
            procs.write_text(str(os.getpid()))

    t0 = time.perf_counter()
    done = subprocess.run(["make"], preexec_fn=enter, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"make failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    with open("submissions/leaderboard.csv", newline="") as f:
        board = list(csv.DictReader(f))
    return [{"slower": slower, "make_s": round(seconds, 1), "preset": r["experiments"], "cv_top1": r["cv_top1"],
             "private": r["private"], "file": r["file"]} for r in board]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.demo_time", description=__doc__.split("\n")[0])
    p.add_argument("--slower", type=float, nargs="+", default=[1.0], help="CPU slow-down factors (1 = as is)")
    args = p.parse_args()
    from bench.common import record, table
    rows = [row for f in args.slower for row in run(f)]
    print(table("== demo_time: make clean; make", rows))
    print(f"-> {record('demo_time', rows)}")


if __name__ == "__main__":
    main()
