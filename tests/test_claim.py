"""Fold claims on shared filesystems: owner file, heartbeat, takeover.  pytest tests/test_claim.py -q"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

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
