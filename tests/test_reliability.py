"""Reliability: kills, truncated checkpoints, reproducible submissions.  pytest tests/test_reliability.py -q

The full kill test (10 trials x 2 kills) is `make reliability`; the suite runs one trial of 3 kills here.
"""
import hashlib
import json
import logging

import killtest
import pandas as pd
import pytest
import torch
from test_train import _assert_same_run, _fold_result, ref_and_interrupted

from conftest import exp_dir, tiny_cfg, write_folder_data
from kit.config import shaping
from kit.data import folds
from kit.predict import predict
from kit.train import loop as train

EASY = dict(stage1_epochs=4, stage2_epochs=2, n_folds=2)


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("easy"), n_per_class=16, n_test=6)


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_gives_the_same_results(tmp_path):
    """With a seed ensemble and a refit (2 folds x 2 seeds, then the full-data model): kills land in those too."""
    problems = killtest.killtest(tmp_path, trials=1, seed=1, kills=3, keys=("n_folds=2", "seeds=2", "full_fit=true"))
    assert not problems, "\n".join(problems)


def test_truncated_last_pt_falls_back_with_a_warning(tmp_path, easy_data, caplog):
    ref, cut = ref_and_interrupted(tmp_path, easy_data, EASY, epochs=3)
    last = exp_dir(cut) / "fold0" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a truncated copy
    with caplog.at_level(logging.WARNING):
        train.run([cut], only=[0])
    assert "last.pt is unreadable" in caplog.text and "falling back" in caplog.text, caplog.text
    _assert_same_run(_fold_result(ref), _fold_result(cut))


def test_manifest_and_byte_identical_rerun(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, **{**EASY, "stage1_epochs": 2, "stage2_epochs": 1})
    folds.make_folds(cfg)
    train.run([cfg])
    path = predict.run([cfg])[0]
    first = path.read_bytes()
    manifest = json.loads(path.with_suffix(".json").read_text())
    run = manifest["runs"][0]
    assert manifest["sha256"] == hashlib.sha256(first).hexdigest() and len(manifest["runs"]) == 1, manifest
    assert {"settings", "git", "versions", "data_fingerprint", "checkpoints", "cv", "folds"} <= set(run), run
    assert run["settings"][0] == shaping(cfg, "ensemble"), "the run records every key that shaped the file"
    assert len(run["checkpoints"]) == 2, run["checkpoints"]
    assert torch.__version__.startswith(run["versions"]["torch"]), run["versions"]
    for k in range(2):
        (exp_dir(cfg) / f"fold{k}" / "test_logits.npz").unlink()
    path.unlink()
    assert predict.run([cfg])[0].read_bytes() == first, "predict from the same checkpoints must give the same bytes"
    board = pd.read_csv(tmp_path / "submissions" / "leaderboard.csv", dtype=str)
    assert len(board) == 1


def test_stale_temp_files_are_removed(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, **{**EASY, "stage1_epochs": 1, "stage2_epochs": 0})
    folds.make_folds(cfg)
    stale = exp_dir(cfg) / "fold0" / ".last.pt.abc123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint")
    train.run([cfg], only=[0])
    assert not stale.exists()
