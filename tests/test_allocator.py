"""The allocator kit restarts under (kit/allocator.py).  pytest tests/test_allocator.py -q"""
import os
import subprocess
import sys

import pytest

from conftest import TINY
from kit import allocator


def test_off_or_a_users_own_choice_changes_nothing():
    assert allocator.allocator_env("off", {}) == {}
    assert allocator.allocator_env("auto", {"LD_PRELOAD": "/x/libjemalloc.so"}) == {}, "the user's preload wins"
    assert allocator.allocator_env("auto", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {}


def test_auto_prefers_mimalloc_with_its_purge_delay():
    env = allocator.allocator_env("auto", {})
    if not allocator.find_library("mimalloc"):
        pytest.skip("cmeel-mimalloc not installed (it is in requirements.txt)")
    assert env["LD_PRELOAD"].endswith("libmimalloc.so") and env["MIMALLOC_PURGE_DELAY"] == "60000"


def test_unknown_mode_and_missing_library_are_one_line_errors(monkeypatch):
    with pytest.raises(ValueError, match="KIT_ALLOCATOR=jemalloc: expected one of"):
        allocator.allocator_env("jemalloc", {})
    monkeypatch.setattr(allocator, "find_library", lambda name: "")
    with pytest.raises(ValueError, match="KIT_ALLOCATOR=tcmalloc: its library is not installed"):
        allocator.allocator_env("tcmalloc", {})
    assert allocator.allocator_env("auto", {}) == {}, "without mimalloc or tcmalloc: glibc as it is"
    assert allocator.allocator_env("glibc-tuned", {}) == {"GLIBC_TUNABLES": allocator.GLIBC_TUNED}


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_python_m_kit_runs_under_the_chosen_allocator(tmp_path, folder_data, mode):
    keys = [f"{k}={'[]' if v == [] else v}" for k, v in TINY.items() if not isinstance(v, list) or v == []]
    keys += [f"data={folder_data}", f"work_dir={tmp_path}", "stage1_epochs=1", "stage2_epochs=0", "max_epoch_steps=1"]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES", allocator.MARK)}
    env["KIT_ALLOCATOR"] = mode
    subprocess.run([sys.executable, "-m", "kit", "folds", *keys], env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "kit", "train", *keys, "--fold", "0"], env=env, capture_output=True,
                         text=True)
    first = next(line for line in out.stderr.splitlines() if "train: device" in line)
    want = "allocator glibc" if mode == "off" or not sys.platform.startswith("linux") else "allocator "
    assert want in first, first
    if mode == "auto" and allocator.find_library("mimalloc"):
        assert first.endswith("allocator mimalloc"), first


def test_a_library_call_never_replaces_the_calling_process(monkeypatch, capsys):
    """In a notebook, `from kit.jobs.cli import main; main()` must not exec: only the console entry points restart."""
    from kit.jobs import cli
    monkeypatch.delenv(allocator.MARK, raising=False)
    monkeypatch.setenv("KIT_ALLOCATOR", "auto")
    monkeypatch.setattr(sys, "argv", ["kit", "--help-config"])
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail(f"main() replaced the process: {a}"))
    assert cli.main() == 0 and "config keys" in capsys.readouterr().out


def test_the_restart_keeps_the_interpreters_flags_and_children_do_not_inherit_the_preload(monkeypatch):
    if not allocator.find_library("mimalloc") or not sys.platform.startswith("linux"):
        pytest.skip("needs cmeel-mimalloc on Linux")
    monkeypatch.delenv(allocator.MARK, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setenv("KIT_ALLOCATOR", "auto")
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-u", "-X", "dev", "-m", "kit", "train", "--fold", "0"])
    seen = {}
    monkeypatch.setattr(os, "execve", lambda exe, args, env: seen.update(args=args, env=env))
    allocator.restart_under_allocator()
    assert seen["args"] == [sys.executable, "-u", "-X", "dev", "-m", "kit", "train", "--fold", "0"], seen["args"]
    env = dict(seen["env"])
    allocator._forget(env)  # what the restarted process does first
    assert "LD_PRELOAD" not in env and "MIMALLOC_PURGE_DELAY" not in env and allocator.MARK not in env
