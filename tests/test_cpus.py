"""Each kit process's share of the CPUs (kit/cpus.py): the launcher's count, the registry of kit processes
computing now, torch's threads sized to it and resized as others start and end, and the key that fixes it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from kit import cpus, runtime
from kit.config import load_config


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """16 usable CPUs, a registry of its own, no launcher's count; torch's threads and the module's state restored."""
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(runtime, "_read", lambda path: "max 100000" if path.endswith("cpu.max") else "")
    monkeypatch.setenv("KIT_CPUS_DIR", str(tmp_path / "cpus"))
    for key in cpus.LAUNCHERS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(cpus, "_state", cpus._State())
    monkeypatch.setattr(cpus, "CHECK_S", 0.0)
    threads = torch.get_num_threads()
    yield tmp_path / "cpus"
    torch.set_num_threads(threads)
    threadpool_limits(threads)


@pytest.fixture
def other(machine):
    """Another kit process computing: a live process with its entry in the registry."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    machine.mkdir(parents=True, exist_ok=True)
    (machine / str(proc.pid)).write_text(cpus._started(proc.pid))
    yield proc
    proc.kill()
    proc.wait()


def test_the_usable_cpus_are_the_affinity_capped_by_the_cgroup_quota(monkeypatch):
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(runtime, "_read", lambda path: "400000 100000" if path.endswith("cpu.max") else "")
    assert runtime.usable_cpus() == 4, "a cgroup quota of 4 CPUs caps 16 in the affinity mask"


def test_workers_and_threads_are_the_launchers_share(machine, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert cpus.num_workers("auto") == 4 and cpus.share() == 4, "16 CPUs over 4 GPU processes"
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("KIT_LOCAL_PROCS", "2")
    assert cpus.num_workers("auto") == 8 and cpus.num_workers(3) == 3
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "8")
    assert cpus.share() == 2, "the largest count any launcher gives"


def test_a_process_started_by_hand_takes_its_share_beside_another(machine, other):
    said = cpus.start("auto")
    assert torch.get_num_threads() == 8, "16 CPUs, two kit processes"
    pools = {Path(p["filepath"]).name: p["num_threads"] for p in threadpool_info()
             if "/torch/" in p["filepath"] or "/numpy" in p["filepath"]}  # OpenCV's OpenBLAS is built single-threaded
    assert len(pools) >= 2 and set(pools.values()) == {8}, "torch's OpenMP and numpy's BLAS at the share too"
    assert said == "threads 8 (16 CPUs, 2 kit processes)"
    assert sorted(p.name for p in machine.iterdir()) == sorted([str(os.getpid()), str(other.pid)])


def test_threads_grow_back_when_the_other_process_ends(machine, other):
    cpus.start("auto")
    assert torch.get_num_threads() == 8
    other.kill()
    other.wait()
    cpus.rebalance()
    assert torch.get_num_threads() == 16
    assert [p.name for p in machine.iterdir()] == [str(os.getpid())], "the ended process's entry pruned"


def test_threads_shrink_when_another_process_starts(machine):
    cpus.start("auto")
    assert torch.get_num_threads() == 16
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (machine / str(proc.pid)).write_text(cpus._started(proc.pid))
        cpus.rebalance()
        assert torch.get_num_threads() == 8
    finally:
        proc.kill()
        proc.wait()


def test_an_entry_whose_pid_now_names_another_process_is_not_counted(machine):
    """A crashed kit process leaves its entry; its pid, reused by an unrelated process, has another start time."""
    machine.mkdir(parents=True)
    (machine / str(os.getppid())).write_text("1")  # a live pid, started at another time than this entry says
    (machine / "999999999").write_text("1")  # a pid no process has
    assert cpus.live() == 0 and not list(machine.iterdir())


def test_the_key_fixes_the_threads(machine, other):
    assert load_config(None, {"threads": 3}).threads == 3
    with pytest.raises(ValueError, match="threads"):
        load_config(None, {"threads": 0})
    assert cpus.start(3) == "threads 3 (threads=3)" and torch.get_num_threads() == 3
    cpus.rebalance()
    assert torch.get_num_threads() == 3, "a fixed number is never resized"


def test_two_kit_processes_started_apart_see_each_other(tmp_path):
    """Two real processes, no launcher: the second counts the first and the first, told, counts the second."""
    env = {**os.environ, "KIT_CPUS_DIR": str(tmp_path / "cpus")}
    for key in cpus.LAUNCHERS:
        env.pop(key, None)
    started = "from kit import cpus; print(cpus.start('auto'), flush=True); "
    waits = ("import sys, time; from pathlib import Path; go = Path(sys.argv[1]); "
             "[time.sleep(0.05) for _ in range(1200) if not go.exists()]; print(cpus.sharing(), flush=True)")
    first = subprocess.Popen([sys.executable, "-c", started + waits, str(tmp_path / "go")], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip().endswith(" CPUs, 1 kit process)")
        second = subprocess.run([sys.executable, "-c", started], env=env, capture_output=True, text=True, timeout=60)
        assert "2 kit processes)" in second.stdout, second.stdout + second.stderr
        (tmp_path / "go").touch()
        assert first.communicate(timeout=60)[0].strip() == "1", "the second's entry left with it"
    finally:
        first.kill()
