"""The CPU allocator: training speed and peak memory of each malloc the kit can use without root.

    python -m bench.allocator [--sizes 448 32] [--only NAME ...]

Each variant runs in its own process (GLIBC_TUNABLES and LD_PRELOAD act at process start):
the recipe's model (resnest50d + SpinalNet) at 448 px, batch 16: one untimed training step, one
timed, a validation forward at eval_batch_size 64, one more timed step (memory freed by the large
evaluation batch must serve training again); and the demo's model at 32 px. Reported: training
img/s, peak RSS, and CPU seconds spent in the kernel (page faults of memory given back and taken
again). Rows are recorded in bench/results/ as "allocator".
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEP = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456"


def variants() -> dict[str, dict]:
    """name -> environment; the preloadable libraries only where found."""
    from kit.allocator import allocator_env, find_library
    out = {
        "glibc": {},
        "glibc hugetlb=1": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
        "glibc keep (mmap/trim 4G, top_pad 256M)": {"GLIBC_TUNABLES": KEEP},
        "glibc keep + mmap_max=0": {"GLIBC_TUNABLES": KEEP + ":glibc.malloc.mmap_max=0"},
        "kit default": allocator_env("auto", {}),
    }
    out["glibc hugetlb + mmap 256M, trim 512M"] = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold="
                                                   "268435456:glibc.malloc.trim_threshold=536870912"}
    for name in ("tcmalloc", "mimalloc"):
        lib = find_library(name)
        if lib:
            out[name] = {"LD_PRELOAD": lib}
    if find_library("mimalloc"):  # memory given back after 60 s instead of 10 ms (its default), with and without THP
        out["mimalloc purge 60 s"] = {"LD_PRELOAD": find_library("mimalloc"), "MIMALLOC_PURGE_DELAY": "60000"}
        out["mimalloc purge 60 s, large pages"] = {**out["mimalloc purge 60 s"], "MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}
    return out


def _workload(size: int) -> dict:
    """Run in the child: timed training steps around one large evaluation batch."""
    import torch

    from bench.common import train_step
    from kit.model import create_model
    torch.manual_seed(0)
    if size >= 224:
        model, batch, eval_batch, classes = create_model("resnest50d", "spinal", 100), 16, 64, 100
    else:
        model, batch, eval_batch, classes = create_model("resnest14d", "spinal", 10, spinal_width=128), 32, 256, 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    y = torch.randint(0, classes, (batch,))
    steps = 1 if size >= 224 else 10

    step = train_step(model, opt, lambda: (x, y), torch.nn.functional.cross_entropy)

    def train(n: int) -> float:
        model.train()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return time.perf_counter() - t0

    train(steps)  # warm-up: first-touch of weights, optimizer state
    seconds = train(steps)
    model.eval()
    with torch.inference_mode():
        model(torch.randint(0, 256, (eval_batch, 3, size, size), dtype=torch.uint8))
    seconds += train(steps)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"train_img_s": round(2 * steps * batch / seconds, 3), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
            "kernel_s": round(usage.ru_stime, 1), "user_s": round(usage.ru_utime, 1)}


def measure(name: str, env: dict, size: int) -> dict:
    child_env = {**os.environ, **env, "KIT_ALLOCATOR": "off"}  # exactly this variant: no re-exec in the child
    for key in ("GLIBC_TUNABLES", "LD_PRELOAD"):
        if key not in env:
            child_env.pop(key, None)
    out = subprocess.run([sys.executable, "-m", "bench.allocator", "--child", str(size)], env=child_env,
                         capture_output=True, text=True)
    if out.returncode:
        return {"allocator": name, "size": size, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return {"allocator": name, "size": size, **json.loads(out.stdout.strip().splitlines()[-1])}


def _tree_pss(pid: int) -> int:
    """Proportional set size of a process and all its descendants, in bytes (shared pages counted once)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:"))) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue  # the process ended meanwhile
    return total


def fold_memory(mode: str, tmp: Path) -> dict:
    """`kit train` at 448 px (2 workers, eval_batch_size 64): seconds and peak PSS of it and its workers."""
    from kit.data.synth import write_synthetic
    data = tmp / "data"
    if not data.is_dir():
        write_synthetic(data, classes=4, per_class=34, side=448, aspect=1.25)  # 560 x 448 PNGs
    keys = [f"data={data}", f"work_dir={tmp / mode}", "pretrained=false", "n_folds=2", "stage1_epochs=2",
            "stage2_epochs=0", "max_epoch_steps=2", "workers=2", "eval_batch_size=64", "warmup_epochs=0"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES", "KIT_ALLOCATOR_APPLIED")}
    env["KIT_ALLOCATOR"] = mode
    subprocess.run([sys.executable, "-m", "kit", "folds", "--exp", "resnest50d_spinalnet", *keys], env=env,
                   check=True, capture_output=True)
    t0, peak = time.perf_counter(), 0
    proc = subprocess.Popen([sys.executable, "-m", "kit", "train", "--exp", "resnest50d_spinalnet", *keys, "--fold", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        peak = max(peak, _tree_pss(proc.pid))
        time.sleep(0.5)
    first = next((line for line in proc.stderr.read().splitlines() if "train: device" in line), "?")
    return {"allocator": f"KIT_ALLOCATOR={mode}", "size": "448 fold", "seconds": round(time.perf_counter() - t0),
            "peak_pss_gb": round(peak / 2**30, 2), "returncode": proc.returncode,
            "runs_under": first.split("allocator ")[-1]}


def run(size: str = "cpu", sizes=(448, 32), only=None) -> list[dict]:
    rows = []
    for s in sizes:
        for name, env in variants().items():
            if only and name not in only:
                continue
            rows.append(measure(name, env, s))
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.allocator", description=__doc__.split("\n")[0])
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--sizes", type=int, nargs="+", default=[448, 32])
    p.add_argument("--only", nargs="+", default=None, help="variant names (default: all found)")
    p.add_argument("--fold", nargs="+", default=None, metavar="MODE",
                   help="instead: `kit train` at 448 px under each KIT_ALLOCATOR mode (e.g. off auto), peak PSS with workers")
    args = p.parse_args()
    if args.child:
        print(json.dumps(_workload(args.child)))
        return
    from bench.common import record, table
    if args.fold:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [fold_memory(mode, Path(tmp)) for mode in args.fold]
        print(table("\n== allocator over a fold", rows))
        print(f"-> {record('allocator_fold', rows)}")
        return
    rows = run(sizes=args.sizes, only=args.only)
    print(table("\n== allocator", rows))
    print(f"-> {record('allocator', rows)}")


if __name__ == "__main__":
    main()
