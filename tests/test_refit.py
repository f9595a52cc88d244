"""full_fit: one more model on every training image, for the epochs the folds chose.  pytest tests/test_refit.py -q"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import exp_dir, tiny_cfg, train_interrupted, write_folder_data
from kit.config import load_config
from kit.data import folds
from kit.experiment import FULL, Experiment
from kit.io import load_npz
from kit.metrics import get
from kit.predict import bundle, predict
from kit.train import loop as train
from kit.train import refit
from kit.train.trainer import Trainer

EASY = dict(stage1_epochs=4, stage2_epochs=2, n_folds=2)


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("refit_data"), n_per_class=16, n_test=6)


@pytest.fixture(scope="module")
def refitted(tmp_path_factory, easy_data):
    """Two folds and the full-data model, trained and predicted (full_fit=true)."""
    cfg = tiny_cfg(tmp_path_factory.mktemp("refitted"), easy_data, **EASY, full_fit=True)
    folds.make_folds(cfg)
    train.run([cfg])
    return cfg, predict.run([cfg])[0]


def _best(cfg, name):
    best = torch.load(exp_dir(cfg) / name / "best.pt", weights_only=True)
    return best["score"], best["model"], pd.read_csv(exp_dir(cfg) / name / "history.csv")


def test_best_epochs_are_each_stages_first_best_and_stage_two_only_where_it_beat_stage_one():
    history = pd.DataFrame({"stage": [1, 1, 1, 1, 2, 2], "val_score": [0.5, 0.7, 0.7, 0.6, 0.65, 0.8]})
    assert refit.best_epochs(history, get("accuracy")) == (2, 2)
    history["val_score"] = [0.5, 0.7, 0.7, 0.6, 0.65, 0.7]  # stage 2 never beat 0.7: its best weights are stage 1's
    assert refit.best_epochs(history, get("accuracy")) == (2, 0)
    history["val_score"] = [0.9, 0.4, 0.5, 0.6, 0.3, 0.35]  # a loss: lower is better
    assert refit.best_epochs(history, get("log_loss")) == (2, 1)


def test_the_full_model_trains_on_every_image_for_the_folds_median_epochs(refitted):
    cfg, _ = refitted
    exp, f = Experiment.of(cfg), folds.load(cfg)
    chosen = [refit.best_epochs(exp.fold(k).read_history(), f.metric) for k in range(2)]
    want = [int(np.floor(np.median([c[i] for c in chosen]) + 0.5)) for i in (0, 1)]
    history = exp.fold(FULL).read_history()
    assert [int((history["stage"] == s).sum()) for s in (1, 2)] == [max(1, want[0]), want[1]]
    assert history["val_score"].isna().all(), "the full-data model has no validation images"
    assert len(load_npz(exp.fold(FULL).oof)["ids"]) == 0
    trainer = Trainer.for_fold(cfg, FULL, f.table, f.layout, f.metric, torch.device("cpu"))
    assert len(trainer.train_dl.dataset) == len(f.table) and not trainer.validates


def test_its_test_logits_join_the_fold_average_and_the_cv_stays_the_folds(refitted):
    cfg, path = refitted
    exp = Experiment.of(cfg)
    logits = [load_npz(exp.fold(k).logits("test"))["logits"] for k in (0, 1, FULL)]
    r = predict.predict_experiment(cfg, torch.device("cpu"))
    assert np.allclose(r.test_scores, np.mean(logits, axis=0))
    folds_alone = predict.predict_experiment(dataclasses.replace(cfg, full_fit=False),
                                             torch.device("cpu"))
    assert r.cv == folds_alone.cv and not np.allclose(r.test_scores, folds_alone.test_scores)
    board = pd.read_csv(cfg.submissions_dir + "/leaderboard.csv", dtype=str, keep_default_na=False)
    row = board[board["file"] == path.name].iloc[0]
    assert row["full_fit"] == "on" and "CV is the folds'" in row["warning"], row.to_dict()
    assert len(json.loads(path.with_suffix(".json").read_text())["runs"][0]["checkpoints"]) == 3


def test_only_submits_the_full_model_and_its_bundle_reproduces_it(refitted, tmp_path):
    cfg, _ = refitted
    only = dataclasses.replace(cfg, full_fit="only")
    r = predict.predict_experiment(only, torch.device("cpu"))
    assert np.allclose(r.test_scores, load_npz(Experiment.of(cfg).fold(FULL).logits("test"))["logits"])
    path = predict.run([only])[0]
    out = bundle.export([only], tmp_path / "bundle")
    spec = json.loads((out / "bundle.json").read_text())
    assert [f["file"] for f in spec["experiments"][0]["folds"]] == ["tiny/full.pt"]
    written = bundle.predict_bundle(out, {"data": cfg.data, "submissions_dir": str(tmp_path / "kernel")})
    assert written.read_bytes() == path.read_bytes()


def test_an_interrupted_refit_resumes_to_the_same_model(refitted, tmp_path, easy_data):
    cfg, _ = refitted
    cut = tiny_cfg(tmp_path, easy_data, **EASY, full_fit=True)
    folds.make_folds(cut)
    train.run([cut], only=[0])
    assert not (exp_dir(cut) / "full").exists(), "the refit waits for every fold"
    train_interrupted(cut, epochs=EASY["stage1_epochs"] + EASY["stage2_epochs"] + 1, fold=1)  # fold 1, 1 refit epoch
    assert (exp_dir(cut) / "full" / "last.pt").is_file() and not Experiment.of(cut).fold(FULL).done
    train.run([cut])
    (_, ref, ref_history), (_, resumed, history) = _best(cfg, "full"), _best(cut, "full")  # scores: NaN
    assert all(torch.equal(ref[k], resumed[k]) for k in ref), "the resumed refit ends with other weights"
    cols = ["epoch", "stage", "lr", "train_loss"]
    pd.testing.assert_frame_equal(ref_history[cols], history[cols])


def test_predicting_before_the_refit_and_refitting_pseudo_labels_are_one_line(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=1, stage2_epochs=0, n_folds=2)
    folds.make_folds(cfg)
    train.run([cfg])
    with pytest.raises(ValueError, match=r"full_fit=True but the full-data model is not trained yet; run `make train`"):
        predict.run([dataclasses.replace(cfg, full_fit=True)])
    with pytest.raises(ValueError, match="full_fit=only with pseudo_from=other"):
        load_config(None, {"full_fit": "only", "pseudo_from": "other"})
