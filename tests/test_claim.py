"""Fold claims on shared filesystems: owner file, heartbeat, takeover.  pytest tests/test_claim.py -q"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from kit import claim

HOLD = """
import sys, time
from kit.claim import claim
with claim(sys.argv[1], wait=False) as got:
    print(got, flush=True)
    time.sleep(60)
"""


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "True"
    return proc


def test_a_live_owner_is_refused_and_a_killed_one_is_taken_over_at_once(tmp_path):
    lock = tmp_path / "fold0" / ".train.lock"
    proc = _holder(lock)
    try:
        with claim.claim(lock, wait=False) as got:
            assert got is False, "a live owner's fold must not be taken"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / "fold0" / ".train.lock.owner").is_file(), "killed: its owner file is left behind"
    with claim.claim(lock, wait=False) as got:
        assert got is True, "its process is gone on this host: free at once"


def test_an_owner_on_another_host_is_taken_over_only_once_its_heartbeat_is_stale(tmp_path):
    lock = tmp_path / ".train.lock"
    owner = tmp_path / ".train.lock.owner"
    owner.write_text(json.dumps({"host": "node-7", "pid": 1, "token": "x"}))
    with claim.claim(lock, wait=False) as got:
        assert got is False, "a fresh heartbeat from another node: live"
    old = time.time() - claim.STALE_S - 60
    os.utime(owner, (old, old))
    with claim.claim(lock, wait=False) as got:
        assert got is True
        assert json.loads(owner.read_text())["pid"] == os.getpid()
    assert not owner.exists(), "released: the owner file goes"


def test_the_owner_file_beats_while_held(tmp_path, monkeypatch):
    monkeypatch.setattr(claim, "HEARTBEAT_S", 0.05)
    lock = tmp_path / ".train.lock"
    with claim.claim(lock, wait=False):
        owner = tmp_path / ".train.lock.owner"
        old = time.time() - 1000
        os.utime(owner, (old, old))
        time.sleep(0.5)
        assert time.time() - owner.stat().st_mtime < 100, "the heartbeat touches the owner file"


def _race(owner, start, wins, done):
    start.wait()
    wins.put(claim._take(owner, f"t{os.getpid()}", claim.STALE_S))
    done.wait(30)  # alive until every claimer has tried: a winner that is gone would be stale


def test_of_claimers_racing_for_a_stale_owner_file_exactly_one_wins(tmp_path):
    """Without flock (as across NFS clients): the rename and O_EXCL create leave one owner."""
    owner = tmp_path / ".train.lock.owner"
    owner.write_text(json.dumps({"host": "node-7", "pid": 1, "token": "x"}))
    old = time.time() - claim.STALE_S - 60
    os.utime(owner, (old, old))
    ctx = multiprocessing.get_context("fork")
    start, wins, done = ctx.Event(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_race, args=(owner, start, wins, done)) for _ in range(8)]
    for p in procs:
        p.start()
    start.set()
    results = [wins.get(timeout=30) for _ in procs]
    done.set()
    for p in procs:
        p.join(30)
    assert results.count(True) == 1, results
    assert json.loads(owner.read_text())["pid"] != 1


def test_a_takeover_marker_left_by_a_killed_claimer_does_not_block_the_fold(tmp_path):
    """A claimer SIGKILLed between creating the takeover marker and replacing the owner file leaves the marker;
    once it is older than a takeover takes, the next claimer removes it and takes the stale owner over."""
    lock, owner = tmp_path / ".train.lock", tmp_path / ".train.lock.owner"
    owner.write_text(json.dumps({"host": "node-7", "pid": 1, "token": "x"}))
    marker = tmp_path / ".train.lock.owner.takeover.x"
    marker.write_text("killed-claimer")
    old = time.time() - claim.STALE_S - 60
    os.utime(owner, (old, old))
    with claim.claim(lock, wait=False) as got:
        assert got is False, "a fresh marker: another claimer is taking it over now"
    os.utime(marker, (old, old))
    with claim.claim(lock, wait=False) as got:
        assert got is True and json.loads(owner.read_text())["pid"] == os.getpid()
    assert not marker.exists()


TAKE_OVER = """
import sys
from kit import claim
claim.fcntl.flock = lambda f, op: None  # another machine: the flock of this one does not reach it (NFS)
with claim.claim(sys.argv[1], wait=False, stale_s=0.0) as got:
    print(got, flush=True)
    sys.stdin.readline()  # hold it until told
"""


def test_an_owner_whose_claim_was_taken_over_stops_writing_and_leaves_the_new_claim(tmp_path, monkeypatch):
    """A stalled owner (its heartbeat looked stale from elsewhere) is taken over while still running: it must not
    write the fold again, and its release must not remove the new owner's file."""
    monkeypatch.setattr(claim, "HEARTBEAT_S", 1000.0)  # the heartbeat stalls (an NFS stall, say)
    lock, owner = tmp_path / ".train.lock", tmp_path / ".train.lock.owner"
    with claim.claim(lock, wait=False) as got:
        assert got is True
        claim.check(lock)  # still ours
        info = json.loads(owner.read_text())
        owner.write_text(json.dumps({**info, "pid": 2 ** 22 + 1, "host": "elsewhere"}))  # as a remote owner's looks
        old = time.time() - 10
        os.utime(owner, (old, old))
        other = subprocess.Popen([sys.executable, "-c", TAKE_OVER, str(lock)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout.readline().strip() == "True", "the other machine takes the stale claim over"
            taken = json.loads(owner.read_text())["token"]
            assert taken != info["token"]
            with pytest.raises(claim.ClaimLost, match="another process took this claim over"):
                claim.check(lock)
        except BaseException:
            other.kill()
            raise
    try:
        assert owner.is_file() and json.loads(owner.read_text())["token"] == taken, "release removed another's claim"
    finally:
        other.communicate("\n", timeout=30)


def test_release_during_a_takeover_leaves_the_file_to_the_takeover(tmp_path):
    lock, owner = tmp_path / ".train.lock", tmp_path / ".train.lock.owner"
    with claim.claim(lock, wait=False):
        token = json.loads(owner.read_text())["token"]
        marker = owner.with_name(f"{owner.name}.takeover.{token}")
        marker.write_text("someone")  # a claimer is between its check and its replace of this owner
    assert owner.is_file(), "released mid-takeover: the file is about to be the other claimer's, not ours to remove"


def test_a_filesystem_without_flock_falls_back_to_the_owner_file_in_one_line(tmp_path, monkeypatch, caplog):
    import errno
    import logging

    def no_flock(f, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))  # NFSv3 without lockd; Lustre noflock: ENOSYS

    monkeypatch.setattr(claim.fcntl, "flock", no_flock)
    lock = tmp_path / "nfs" / ".train.lock"
    with caplog.at_level(logging.WARNING):
        with claim.claim(lock, wait=False) as got:
            assert got is True, "the owner file still claims"
            with claim.claim(lock, wait=False) as second:
                assert second is False, "a second claimer is refused by the owner file alone"
    assert caplog.text.count("has no flock") == 1, caplog.text
