"""Timing, tables and the JSON record shared by the benchmark scripts."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).replace(" ", "-")
    return f"cpu{os.cpu_count()}-{platform.machine()}"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_step(model, optimizer, batch, criterion, amp_ctx=contextlib.nullcontext, scaler=None):
    """One training step as a closure for rate(): batch() -> (x, target), loss in fp32, then the optimizer
    (through the GradScaler when one is given)."""
    def step():
        x, target = batch()
        with amp_ctx():
            loss = criterion(model(x).float(), target)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    return step


def rate(fn, items_per_call: int, calls: int, warmup: int = 1) -> float:
    """items/s of fn() over `calls` timed calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return items_per_call * calls / (time.perf_counter() - t0)


def table(title: str, rows: list[dict]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(f"{r[c]}") for r in rows)) for c in cols}
    lines = [title, "  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(f"{r[c]}".ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def record(name: str, rows: list[dict], out_dir: Path = Path("bench/results")) -> Path:
    """Merge rows under `name` into bench/results/<machine>-<date>.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{machine()}-{date.today().isoformat()}.json"
    data = json.loads(path.read_text()) if path.is_file() else {"machine": machine(), "torch": torch.__version__}
    data[name] = rows
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
