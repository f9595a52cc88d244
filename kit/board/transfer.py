"""A command that moves data (a 100 GB download, a five-fold bundle's upload): no wall-clock limit, a stall limit.

    out = transfer.run(["kaggle", "competitions", "download", slug, "-p", part], watch=part, stall_s=600, show=scrub)

A transfer may take hours; what says it is lost is that no byte moves. Bytes are counted two ways, so both
directions are seen: the size of the folder it writes (`watch`), and the process's own read and write
counters (/proc/<pid>/io on Linux: socket bytes included, so an upload counts). When neither grows for
`stall_s` seconds the process is killed and `Stalled` raised; what it wrote stays where it is (the kaggle
CLI resumes a partial file with a Range request). Its stderr, where the CLI draws its progress bar (bytes,
rate, ETA), is passed through as it comes, each piece through `show` (the credential scrubber).
"""
from __future__ import annotations

import codecs
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

POLL_S = 0.5


class Stalled(Exception):
    """No byte moved for the stall limit; the process was killed."""


def folder_bytes(folder: Path | None) -> int:
    if folder is None or not folder.exists():
        return 0
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:  # renamed or removed under us: the next poll counts it
                pass
    return total


def io_bytes(pid: int) -> int:
    """Bytes the process has read and written, sockets included (0 where /proc does not say)."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0
    fields = dict(line.split(": ") for line in text.splitlines() if ": " in line)
    return int(fields.get("rchar", 0)) + int(fields.get("wchar", 0))


def _pipe(stream, sink: list[str], echo: Callable[[str], None] | None) -> None:
    """Read a pipe to its end in pieces (a progress bar redraws with \\r, never ending its line); echo whole
    lines and redraws only, so that a credential is never split between two pieces the scrubber sees apart."""
    pending, decode = "", codecs.getincrementaldecoder("utf-8")("replace").decode
    while True:
        piece = stream.read1(65536)
        if not piece:
            break
        text = decode(piece)
        sink.append(text)
        pending += text
        cut = max(pending.rfind("\r"), pending.rfind("\n")) + 1
        if echo is not None and cut:
            echo(pending[:cut])
        pending = pending[cut:]
    if echo is not None and pending:
        echo(pending)


def run(cmd: list[str], env: dict, stall_s: float, watch: Path | None = None,
        show: Callable[[str], str] = str) -> subprocess.CompletedProcess:
    """Run `cmd` to its end, however long, unless no byte moves for `stall_s` s (then Stalled)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out: list[str] = []
    err: list[str] = []

    def echo(text: str) -> None:
        sys.stderr.write(show(text))
        sys.stderr.flush()

    readers = [threading.Thread(target=_pipe, args=(proc.stdout, out, None), daemon=True),
               threading.Thread(target=_pipe, args=(proc.stderr, err, echo), daemon=True)]
    for t in readers:
        t.start()
    seen, moved_at = None, time.monotonic()
    while proc.poll() is None:
        now = (folder_bytes(watch), io_bytes(proc.pid))
        if now != seen:
            seen, moved_at = now, time.monotonic()
        elif time.monotonic() - moved_at > stall_s:
            proc.kill()
            proc.wait()
            raise Stalled(f"no byte moved for {stall_s:g} s")
        time.sleep(POLL_S)
    for t in readers:
        t.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), "".join(err))
