"""Fold claims that hold on shared filesystems: an owner file with a heartbeat, flock as the fast path.

    with claim(fold_dir / ".train.lock", wait=False) as got:   # got: this process owns the fold
        ...

Two guards, both taken:
1. flock on the lock file: instant and released by the kernel when its process dies, but on a
   network filesystem (NFS) it may hold only among the processes of one machine.
2. the owner file (<lock>.owner), created atomically (O_EXCL, which NFS honours) with the owner's
   host and pid and touched every HEARTBEAT_S seconds by a thread while the claim is held. Another
   claimer takes it over only when it is stale: no heartbeat for STALE_S seconds (KIT_CLAIM_STALE_S,
   default 300), or written on this host by a process that is gone. To take a stale file over, a claimer
   first creates `<owner>.takeover.<its token>` (O_EXCL): of claimers racing for one stale owner exactly
   one creates it, checks that the owner file is still that owner's, and replaces it (rename). Tokens are
   never reused, so a claimer that judged an owner stale long ago and comes late finds another token
   there and backs off. A marker left by a claimer killed mid-takeover is removed once it is older
   than MARKER_STALE_S (a takeover takes milliseconds).
A live owner's fold is never taken; a dead owner's is free again after STALE_S at most (at once on its
own host). Clocks: staleness compares the file's modification time with the filesystem's own clock,
read from a file touched just before, so nodes whose clocks drift do not matter.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)
HEARTBEAT_S = 30.0
STALE_S = float(os.environ.get("KIT_CLAIM_STALE_S", "300"))
POLL_S = 2.0  # how often a waiting claimer looks again
MARKER_STALE_S = 60.0  # a takeover takes milliseconds: a marker this old was left by a claimer that was killed


def _owner(path: Path) -> Path:
    return path.with_name(path.name + ".owner")


def _now_on(folder: Path) -> float:
    """The filesystem's clock: the modification time of a file touched now (a server's clock, on NFS)."""
    probe = folder / f".clock.{socket.gethostname()}.{os.getpid()}"
    probe.touch()
    try:
        return probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _read(owner: Path) -> tuple[os.stat_result, dict]:
    """The owner file's stat and contents ({} when half-written by a claimer that died at once)."""
    st = owner.stat()
    try:
        info = json.loads(owner.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    return st, info if isinstance(info, dict) else {}


def _identity(st: os.stat_result, info: dict) -> str:
    """Which owner a file is: its token, or for a half-written file its inode and birth."""
    return str(info.get("token") or f"i{st.st_ino}.{st.st_ctime_ns}")


def _is_stale(owner: Path, st: os.stat_result, info: dict, stale_s: float) -> bool:
    """Whether an owner file can be taken over: no heartbeat for stale_s, or its process on this host is gone."""
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and not _alive(info["pid"]):
        return True
    return _now_on(owner.parent) - st.st_mtime > stale_s


def _record(token: str) -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": token})


def _create(path: Path, text: str) -> bool:
    """Create `path` holding `text` atomically; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _take(owner: Path, token: str, stale_s: float) -> bool:
    """Own `owner`: create it, or take it over from a stale owner. Of claimers racing, one gets True."""
    if _create(owner, _record(token)):
        return True
    try:
        st, info = _read(owner)
    except FileNotFoundError:  # released meanwhile
        return _create(owner, _record(token))
    if not _is_stale(owner, st, info, stale_s):
        return False
    dead = _identity(st, info)
    marker = owner.with_name(f"{owner.name}.takeover.{dead}")
    if not _create(marker, token) and not (_left_behind(marker) and _create(marker, token)):
        return False  # another claimer is taking this owner over
    try:
        try:
            now = _identity(*_read(owner))
        except FileNotFoundError:
            return _create(owner, _record(token))
        if now != dead:
            return False  # taken over (or released and claimed) since we looked
        tmp = owner.with_name(f"{owner.name}.{token}.tmp")
        tmp.write_text(_record(token))
        os.replace(tmp, owner)
        return True
    finally:
        marker.unlink(missing_ok=True)  # a late claimer that creates it again finds another token in the owner file


def _left_behind(marker: Path) -> bool:
    """Whether a takeover marker is one a claimer killed mid-takeover left (held longer than a takeover takes);
    if so it is removed."""
    try:
        if _now_on(marker.parent) - marker.stat().st_mtime <= MARKER_STALE_S:
            return False
        marker.unlink()
    except FileNotFoundError:
        pass  # its claimer finished meanwhile
    return True


def _mine(owner: Path, token: str) -> bool:
    try:
        return json.loads(owner.read_text()).get("token") == token
    except (OSError, ValueError):
        return False


def _heartbeat(owner: Path, token: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        if _mine(owner, token):
            with contextlib.suppress(OSError):
                os.utime(owner)


class ClaimLost(ValueError):
    """This process's claim was taken over (its heartbeat looked stale from elsewhere): it must stop writing."""


_held: dict[Path, str] = {}  # lock path -> this process's token, while it holds the claim
NO_FLOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)  # NFSv3 without lockd, Lustre `noflock`
_said_no_flock: set[str] = set()


def check(path: str | Path) -> None:
    """Raise ClaimLost if this process held the claim on `path` and another has since taken it over (no-op if
    this process never claimed it). Called before every checkpoint write: two writers of one fold would
    interleave their files."""
    path = Path(path)
    token = _held.get(path)
    if token is not None and not _mine(_owner(path), token):
        raise ClaimLost(f"{path.parent}: another process took this claim over (it saw no heartbeat for "
                        f"{STALE_S:g} s: a stalled filesystem?); this process stops without writing, the other "
                        "goes on (KIT_CLAIM_STALE_S sets the wait)")


def _flock(f, path: Path) -> bool:
    """Take the flock without blocking: True if taken or if this filesystem has none (the owner file then guards
    alone, said once), False if another process holds it."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno not in NO_FLOCK:
            raise
        if str(path.parent) not in _said_no_flock:
            _said_no_flock.add(str(path.parent))
            log.warning("%s: this filesystem has no flock (%s); claims there rest on the owner files alone", path.parent,
                        os.strerror(e.errno))
        return True


def _release(owner: Path, token: str) -> None:
    """Remove the owner file if it is still this process's. A takeover of it needs the marker of this token
    (see _take), so holding that marker while checking and removing means no takeover can land in between."""
    marker = owner.with_name(f"{owner.name}.takeover.{token}")
    if not _create(marker, token):
        return  # a takeover of this owner is under way: the file is, or is about to be, another's
    try:
        if _mine(owner, token):
            owner.unlink(missing_ok=True)
    finally:
        marker.unlink(missing_ok=True)


@contextlib.contextmanager
def claim(path: str | Path, wait: bool, stale_s: float = STALE_S):
    """Yield True owning `path` (flock and owner file), or False at once if another process owns it and not wait;
    with wait, poll until it is free. While held, `check(path)` says whether it still is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner, token = _owner(path), uuid.uuid4().hex
    with open(path, "w") as f:
        while True:
            if _flock(f, path):
                if _take(owner, token, stale_s):
                    break
                with contextlib.suppress(OSError):
                    fcntl.flock(f, fcntl.LOCK_UN)  # another machine owns it: let local claimers look too
            if not wait:
                yield False
                return
            time.sleep(POLL_S)
        stop = threading.Event()
        beat = threading.Thread(target=_heartbeat, args=(owner, token, stop), daemon=True)
        beat.start()
        _held[path] = token
        try:
            yield True
        finally:
            _held.pop(path, None)
            stop.set()
            beat.join()
            _release(owner, token)
