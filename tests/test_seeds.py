"""seeds=N: a seed ensemble under one experiment name.  pytest tests/test_seeds.py -q

Each fold is trained N times (seed, seed + 1, ...): fold<k>/ and fold<k>-seed<s>/; their logits are averaged per
fold before the fold average, in cv.json, in predict and in a bundle alike.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import _assert_same_run

from conftest import exp_dir, tiny_cfg, train_interrupted, write_folder_data
from kit.config import load_config
from kit.data import folds
from kit.io import load_npz
from kit.metrics import get, probs_of
from kit.predict import bundle, predict
from kit.train import loop as train

EASY = dict(stage1_epochs=2, stage2_epochs=1, n_folds=2)


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("seeds_data"), n_per_class=10, n_test=6)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, easy_data):
    """An experiment of two seeds, trained and predicted."""
    cfg = tiny_cfg(tmp_path_factory.mktemp("seeded"), easy_data, **EASY, seeds=2)
    folds.make_folds(cfg)
    train.run([cfg])
    return cfg, predict.run([cfg])[0]


def _result(files, k, seed=0):
    d = exp_dir(files) / (f"fold{k}" if seed == 0 else f"fold{k}-seed{seed}")
    best = torch.load(d / "best.pt", weights_only=True)
    return best["score"], best["model"], pd.read_csv(d / "history.csv")


def test_each_fold_is_trained_once_per_seed_with_other_weights(seeded):
    cfg, _ = seeded
    names = sorted(p.parent.name for p in exp_dir(cfg).glob("*/oof.npz"))
    assert names == ["fold0", "fold0-seed1", "fold1", "fold1-seed1"], names
    a, b = _result(cfg, 0)[1], _result(cfg, 0, 1)[1]
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point()), "the second seed trained alike"


def test_cv_json_scores_the_seed_average_of_each_fold(seeded):
    cfg, _ = seeded
    cv = json.loads((exp_dir(cfg) / "cv.json").read_text())
    parts = [[load_npz(exp_dir(cfg) / d / "oof.npz") for d in (f"fold{k}", f"fold{k}-seed1")] for k in range(2)]
    labels = np.concatenate([p[0]["labels"] for p in parts])
    mean = np.concatenate([(p[0]["logits"].astype(np.float64) + p[1]["logits"]) / 2 for p in parts])
    assert cv["seeds"] == 2
    assert cv["score"] == pytest.approx(get(cv["metric"])(labels, probs_of(mean, "single")))
    alone = np.concatenate([p[0]["logits"] for p in parts])
    assert not np.allclose(mean, alone), "the replicas' logits must enter the CV"


def test_predict_averages_the_seeds_and_records_every_member(seeded):
    cfg, path = seeded
    run = json.loads(path.with_suffix(".json").read_text())["runs"][0]
    assert len(run["checkpoints"]) == 4, run["checkpoints"]
    board = pd.read_csv(cfg.submissions_dir + "/leaderboard.csv", dtype=str)
    assert board["seeds"].tolist() == ["2"] and board["folds"].tolist() == ["2"], board
    test = [[load_npz(exp_dir(cfg) / d / "test_logits.npz")["logits"] for d in (f"fold{k}", f"fold{k}-seed1")]
            for k in range(2)]
    r = predict.predict_experiment(cfg, torch.device("cpu"))
    assert np.allclose(r.test_scores, np.mean([(a.astype(np.float64) + b) / 2 for a, b in test], axis=0))


def test_a_bundle_of_seeds_writes_the_same_submission(seeded, tmp_path):
    cfg, path = seeded
    out = bundle.export([cfg], tmp_path / "bundle")
    spec = json.loads((out / "bundle.json").read_text())
    assert [(f["fold"], f.get("seed", 0)) for f in spec["experiments"][0]["folds"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    written = bundle.predict_bundle(out, {"data": cfg.data, "submissions_dir": str(tmp_path / "kernel")})
    assert written.read_bytes() == (tmp_path / "kernel" / "submission.csv").read_bytes()
    exported = spec["submission"]["file"]
    assert written.read_bytes() == (path.parent / exported).read_bytes()


def test_raising_seeds_later_trains_only_the_new_seeds(seeded, tmp_path, easy_data):
    cfg, _ = seeded
    one = tiny_cfg(tmp_path, easy_data, **EASY)
    folds.make_folds(one)
    train.run([one])
    first = {k: (exp_dir(one) / f"fold{k}" / "best.pt").stat().st_mtime_ns for k in range(2)}
    two = tiny_cfg(tmp_path, easy_data, **EASY, seeds=2)
    train.run([two])
    assert {k: (exp_dir(one) / f"fold{k}" / "best.pt").stat().st_mtime_ns for k in range(2)} == first
    for k in range(2):  # the same models as two seeds trained at once
        _assert_same_run(_result(cfg, k), _result(two, k))
        _assert_same_run(_result(cfg, k, 1), _result(two, k, 1))
    with pytest.raises(ValueError, match=r"fold\(s\) \[0, 1\] not trained yet \(all 3 seeds, seeds=3\)"):
        predict.run([tiny_cfg(tmp_path, easy_data, **EASY, seeds=3)])


def test_an_interrupted_seed_resumes_to_the_same_model(seeded, tmp_path, easy_data):
    cfg, _ = seeded
    cut = tiny_cfg(tmp_path, easy_data, **EASY, seeds=2)
    folds.make_folds(cut)
    train_interrupted(cut, epochs=4)  # fold 0's first seed (3 epochs), then one epoch of its second
    assert (exp_dir(cut) / "fold0-seed1" / "last.pt").is_file()
    assert not (exp_dir(cut) / "fold0-seed1" / "oof.npz").exists()
    train.run([cut], only=[0])
    _assert_same_run(_result(cfg, 0, 1), _result(cut, 0, 1))


def test_seeds_below_one_is_one_line():
    with pytest.raises(ValueError, match="seeds"):
        load_config(None, {"seeds": 0})
