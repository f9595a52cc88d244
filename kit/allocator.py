"""The CPU allocator the kit runs under: chosen before the process starts, as malloc must be.

glibc's malloc gives every large tensor back to the kernel when it is freed (mmap/munmap) and
takes it again at the next step, page by page: on a CPU, training at 448 px spent half its time
in the kernel (docs/BENCHMARKS.md, `python -m bench.allocator`). `kit` and `python -m kit`
therefore restart themselves once, at start-up, under a better allocator:

    KIT_ALLOCATOR=auto      mimalloc (the cmeel-mimalloc wheel, a dependency on Linux), else tcmalloc where
                            installed (libtcmalloc_minimal), else glibc as it is (the default)
    KIT_ALLOCATOR=mimalloc  / tcmalloc / glibc-tuned: that one (an error if its library is missing)
    KIT_ALLOCATOR=off       the environment as it is (so is an LD_PRELOAD or GLIBC_TUNABLES already set)

mimalloc keeps freed memory for MIMALLOC_PURGE_DELAY ms before giving it back (10 ms by default;
60 s here, longer than a training step at 448 px) and reuses it for any size; `release_memory()`
hands it back at each switch between training and evaluation. The speed and memory of each
choice, measured side by side, are in docs/BENCHMARKS.md (`python -m bench.allocator`): mimalloc
trained fastest for little more memory; glibc tuned never to give memory back was as fast but far
larger. Linux only; elsewhere, and when
called as a library (`kit.jobs.cli.main()`, in a notebook), nothing changes: only the console entry
points (`kit`, `python -m kit`, `python -m bench`) restart, with the interpreter's own flags. On a
machine with an NVIDIA driver nothing changes either (its benefit there is unmeasured; the host's
share of a GPU step is small). The restarted process takes the preload out of its environment at
once: its DataLoader workers (forked) share the allocator, the programs it starts (the kaggle CLI,
git) do not get it. Nothing here imports torch: the choice is made before the heavy imports.
"""
from __future__ import annotations

import ctypes.util
import functools
import os
import sys
from pathlib import Path

MODES = ("auto", "mimalloc", "tcmalloc", "glibc-tuned", "off")
MIMALLOC = {"MIMALLOC_PURGE_DELAY": "60000", "MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}  # transparent huge pages
# glibc without a preloaded allocator, on request only: transparent huge pages for its heap and
# mmapped blocks. It helped at 448 px and hurt at small sizes, and no glibc setting won at both
# (docs/BENCHMARKS.md).
GLIBC_TUNED = "glibc.malloc.hugetlb=1"
TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
            "/usr/lib64/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")
MARK = "KIT_ALLOCATOR_APPLIED"  # set in the restarted process: never restart twice


def find_library(name: str) -> str:
    """Path of a preloadable allocator library, or ''."""
    if name == "tcmalloc":
        found = [p for p in TCMALLOC if Path(p).is_file()]
        return found[0] if found else ctypes.util.find_library("tcmalloc_minimal") or ""
    if name == "mimalloc":  # the cmeel-mimalloc wheel (PyPI) puts it under site-packages
        for base in sys.path:
            lib = Path(base) / "cmeel.prefix" / "lib" / "libmimalloc.so"
            if lib.is_file():
                return str(lib)
    return ""


def allocator_env(mode: str, environ: dict) -> dict:
    """The variables to add for `mode` ({} when none); ValueError for an unknown mode or a missing library."""
    if mode not in MODES:
        raise ValueError(f"KIT_ALLOCATOR={mode}: expected one of {', '.join(MODES)}")
    if mode == "off" or not sys.platform.startswith("linux") or environ.get("LD_PRELOAD") or environ.get("GLIBC_TUNABLES"):
        return {}  # the user chose already
    if mode == "glibc-tuned":
        return {"GLIBC_TUNABLES": GLIBC_TUNED}
    for name in ("mimalloc", "tcmalloc"):
        if mode in (name, "auto"):
            lib = find_library(name)
            if lib:
                return {"LD_PRELOAD": lib, **(MIMALLOC if name == "mimalloc" else {})}
            if mode == name:
                fix = "pip install cmeel-mimalloc" if name == "mimalloc" else "install libtcmalloc-minimal4 (Debian/Ubuntu)"
                raise ValueError(f"KIT_ALLOCATOR={name}: its library is not installed; {fix}, or use KIT_ALLOCATOR=auto")
    return {}  # auto without either: glibc as it is


@functools.cache
def _process_symbols() -> ctypes.CDLL:
    return ctypes.CDLL(None)  # the process's global symbols, a preloaded allocator's included


def release_memory() -> None:
    """Hand freed memory back to the system now: at a change of phase (training <-> evaluation).

    Kept memory is what makes steps fast, but the evaluation batch's blocks are of other sizes than
    training's: kept across the switch, both would stay resident (a far higher peak over a fold:
    docs/BENCHMARKS.md). mimalloc's mi_collect(force), or glibc's malloc_trim; a no-op elsewhere.
    """
    lib = _process_symbols()
    if hasattr(lib, "mi_collect"):
        lib.mi_collect(ctypes.c_bool(True))
    elif hasattr(lib, "malloc_trim"):
        lib.malloc_trim(ctypes.c_size_t(0))


def loaded() -> list[str]:
    """The allocator libraries mapped into this process (Linux: /proc/self/maps), e.g. ['libmimalloc.so']."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    names = {Path(line.split()[-1]).name for line in maps.splitlines() if "/" in line}
    return sorted(n for n in names if any(a in n for a in ("mimalloc", "tcmalloc", "jemalloc")))


def current(environ: dict = os.environ) -> str:
    """The allocator this process runs under, in words (for the first log line): the library it has loaded."""
    found = loaded()
    if found:
        return found[0].split(".")[0].removeprefix("lib").split("_")[0]
    tunables = environ.get(GLIBC_TUNABLES_APPLIED) or environ.get("GLIBC_TUNABLES", "")
    return f"glibc ({tunables})" if tunables else "glibc"


GLIBC_TUNABLES_APPLIED = "KIT_GLIBC_TUNABLES"  # what the restart set, kept for `current` once it is out of the environment


def restart_under_allocator() -> None:
    """Replace this process by the same command (sys.orig_argv: interpreter flags and all) under the chosen
    allocator, once; return when there is nothing to do. Call it from a console entry point only."""
    if os.environ.get(MARK):
        _forget(os.environ)
        return
    if Path("/proc/driver/nvidia/version").exists():  # a GPU machine: left as it is (see the module's docstring)
        return
    env = allocator_env(os.environ.get("KIT_ALLOCATOR", "auto"), os.environ)
    if not env:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, *sys.orig_argv[1:]]
    extra = {GLIBC_TUNABLES_APPLIED: env["GLIBC_TUNABLES"]} if "GLIBC_TUNABLES" in env else {}
    os.execve(sys.executable, command, {**os.environ, **env, **extra, MARK: ",".join(env)})


def _forget(environ) -> None:
    """In the restarted process: the variables the restart added leave the environment (children do not get them)."""
    for key in environ.pop(MARK).split(","):
        environ.pop(key, None)
