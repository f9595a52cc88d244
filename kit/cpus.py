"""This process's share of the CPUs, when several kit processes compute on one machine.

A kit process that trains or predicts sizes its compute threads (torch's intra-op pool, which is
OpenMP's, every other OpenMP and BLAS pool through threadpoolctl, and OpenCV's) and its loader
workers to its share of the usable CPUs: the CPUs it may use (affinity, cgroup quota:
kit.runtime.usable_cpus) divided by the kit processes computing on them.
That count is the larger of what the launcher says (LOCAL_WORLD_SIZE under torchrun, KIT_LOCAL_PROCS
from `make train GPUS=...` and `kit jobs`, PYTEST_XDIST_WORKER_COUNT in the tests) and the live
entries of a per-user registry every computing kit process joins (<tmp>/kit-<uid>/cpus/<pid>; POSIX
only, elsewhere the launcher's count alone), so two trainings started by hand in two terminals, or a
notebook's predict beside a training, see each other.
A computing process reads the count again every few seconds, so its share grows back when the other
one ends. `threads=N` fixes the number instead.

Why it matters: oversubscribed, OpenMP's waiting threads spin against each other. Two trainings of
the demo at two threads each on a 2-core machine ran at 66 img/s each against 553 alone; sized
here, at 349 and 344 against 497 alone (bench/sharing.py, docs/BENCHMARKS.md).
"""
from __future__ import annotations

import atexit
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from kit.runtime import usable_cpus

log = logging.getLogger(__name__)

CHECK_S = 2.0  # seconds between two counts of the registry while computing
LAUNCHERS = ("LOCAL_WORLD_SIZE", "KIT_LOCAL_PROCS", "PYTEST_XDIST_WORKER_COUNT")


def registry() -> Path:
    """The folder of live kit processes' entries: one file per pid holding the process's start time."""
    return Path(os.environ.get("KIT_CPUS_DIR") or Path(tempfile.gettempdir()) / f"kit-{os.getuid()}" / "cpus")


# POSIX only: on Windows os.kill(pid, 0) ends the process instead of asking whether it lives (and there is no getuid)
REGISTRY = os.name == "posix"


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): a pid reused by another
    process has another; "" where /proc is not there or the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # the fields after the command name, which may hold spaces


def _alive(entry: Path) -> bool:
    try:
        pid = int(entry.name)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process with this pid: not ours
        return False
    try:
        return entry.read_text() == _started(pid)
    except OSError:  # removed meanwhile: it ended
        return False


def live() -> int:
    """Kit processes computing now (this one included once it has joined); entries of ended ones removed."""
    if not REGISTRY:
        return 0
    folder, n = registry(), 0
    for entry in folder.glob("[0-9]*") if folder.is_dir() else ():
        if _alive(entry):
            n += 1
        else:
            entry.unlink(missing_ok=True)
    return n


def launched() -> int:
    """The processes the launcher says share this machine (1 when none says)."""
    return max([int(v) for key in LAUNCHERS if (v := os.environ.get(key, "")).isdigit()] + [1])


class _State:
    requested: int | str = "auto"
    joined: int = 0  # the pid whose entry this process wrote (a forked worker is not it)
    checked: float = 0.0
    threads: int = 0


_state = _State()


def join() -> None:
    """Enter this process in the registry (once); its entry goes at exit, or is pruned by the next count."""
    if _state.joined == os.getpid() or not REGISTRY:
        return
    folder = registry()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{os.getpid()}.tmp"
        tmp.write_text(_started(os.getpid()))
        tmp.replace(folder / str(os.getpid()))
    except OSError as e:  # a read-only /tmp: the launcher's count alone
        log.debug("cpus: no registry at %s (%s)", folder, e)
        return
    _state.joined = os.getpid()
    atexit.register(_leave, os.getpid())


def _leave(pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the handler
        (registry() / str(pid)).unlink(missing_ok=True)


def sharing() -> int:
    """How many kit processes share the usable CPUs now."""
    return max(launched(), live())


def _sized() -> tuple[int, int, int]:
    """(this process's CPUs: the usable ones over the processes sharing them, at least one; the processes; the
    usable CPUs)."""
    n, cpus = sharing(), usable_cpus()
    return max(cpus // n, 1), n, cpus


def share() -> int:
    """This process's CPUs: the usable ones over the processes sharing them, at least one."""
    return _sized()[0]


def num_workers(requested: int | str) -> int:
    """auto: this process's share of the usable CPUs (share()); a number as it is."""
    if requested != "auto" and requested != -1:
        return int(requested)
    return share()


def _apply(threads: int) -> None:
    """torch's pool (OpenMP), every other OpenMP and BLAS pool loaded in the process (threadpoolctl, scikit-learn's),
    and OpenCV's, at `threads`."""
    if threads != _state.threads:
        torch.set_num_threads(threads)
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)  # numpy's OpenBLAS, scikit-learn's OpenMP: until changed again
        try:
            import cv2
            cv2.setNumThreads(threads)
        except ImportError:
            pass
        _state.threads = threads


def start(requested: int | str = "auto") -> str:
    """Join the registry and size this process's threads; the words the run's first line says of them."""
    _state.requested, _state.checked = requested, time.monotonic()
    if requested != "auto":
        _apply(int(requested))
        return f"threads {requested} (threads={requested})"
    join()
    threads, n, cpus = _sized()
    _apply(threads)
    return f"threads {threads} ({cpus} CPUs, {n} kit process{'es' if n > 1 else ''})"


def rebalance() -> None:
    """Count the sharing processes again (at most every CHECK_S seconds) and resize this process's threads."""
    if _state.requested != "auto" or not _state.joined or time.monotonic() - _state.checked < CHECK_S:
        return
    _state.checked = time.monotonic()
    threads, n, cpus = _sized()
    if threads != _state.threads:
        log.info("threads %d -> %d: %d kit processes share %d CPUs", _state.threads, threads, n, cpus)
        _apply(threads)
