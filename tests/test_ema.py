"""EMA of the weights: what is scored, saved and resumed.  pytest tests/test_ema.py -q"""
import logging

import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score
from test_train import _assert_same_run, _fold_result, ref_and_interrupted

from conftest import exp_dir, tiny_cfg, write_folder_data
from kit.data import folds
from kit.io import load_npz
from kit.train import loop as train
from kit.train.progress import Progress, duration

EMA = dict(stage1_epochs=4, stage2_epochs=2, n_folds=2, keep_checkpoints=True, ema_decay=0.99)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("ema_data"), n_per_class=16, n_test=6)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, data):
    cfg = tiny_cfg(tmp_path_factory.mktemp("ema"), data, **EMA)
    folds.make_folds(cfg)
    save = train.FoldRun._save

    def watched(self, path, model, **extra):  # what each best file is written from
        SAVED.append(model is self.ema.module)
        return save(self, path, model, **extra)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train.FoldRun, "_save", watched)
        train.run([cfg], only=[0])
    return cfg


SAVED = []  # per best-file write in ema_run: was it the EMA module


def test_last_pt_holds_the_model_and_its_average(ema_run):
    last = torch.load(exp_dir(ema_run) / "fold0" / "last.pt", weights_only=True)
    differs = [k for k, v in last["model"].items() if v.is_floating_point() and not torch.equal(v, last["ema"][k])]
    assert differs, "the EMA weights must differ from the trained weights they average"
    assert last["state"]["ema_steps"] > 0, "the EMA's step count is saved for its warm-up decay"


def test_best_pt_holds_the_weights_that_scored_best(ema_run):
    """best.pt's weights, evaluated again, give the val top-1 recorded for them: those scored were the EMA's."""
    fold = exp_dir(ema_run) / "fold0"
    best, oof = torch.load(fold / "best.pt", weights_only=True), load_npz(fold / "oof.npz")
    history = pd.read_csv(fold / "history.csv")
    recorded = float(history.loc[history["epoch"] == best["epoch"], "val_top1"].iloc[0])
    assert accuracy_score(oof["labels"], oof["logits"].argmax(1)) == pytest.approx(recorded, abs=1e-9)
    assert best["score"] == recorded
    assert SAVED and all(SAVED), "every best.pt and stage1_best.pt written held the EMA's weights, not the model's"


def test_ema_off_is_the_recipe(tmp_path, data):
    cfg = tiny_cfg(tmp_path, data, **{**EMA, "ema_decay": 0.0, "stage1_epochs": 2, "stage2_epochs": 0})
    folds.make_folds(cfg)
    train.run([cfg], only=[0])
    assert "ema" not in torch.load(exp_dir(cfg) / "fold0" / "last.pt", weights_only=True), "no EMA when off"


def test_resume_with_ema_matches_uninterrupted(tmp_path, data):
    ref, cut = ref_and_interrupted(tmp_path, data, EMA, epochs=5)  # killed in stage 2, after the EMA restarted
    train.run([cut], only=[0])
    _assert_same_run(_fold_result(ref), _fold_result(cut))
    a = torch.load(exp_dir(ref) / "fold0" / "last.pt", weights_only=True)["ema"]
    b = torch.load(exp_dir(cut) / "fold0" / "last.pt", weights_only=True)["ema"]
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed EMA must equal the uninterrupted one"


def test_every_epoch_line_says_how_much_is_left(tmp_path, data, caplog):
    cfg = tiny_cfg(tmp_path, data, stage1_epochs=2, stage2_epochs=1, n_folds=2)
    folds.make_folds(cfg)
    with caplog.at_level(logging.INFO, logger="kit.train.loop"):
        train.run([cfg])
    lines = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage() and "img/s" in r.getMessage()]
    assert len(lines) == 6 and all("left" in line for line in lines), lines
    assert lines[0].startswith("tiny fold 0 stage 1 epoch 1") and "2 fold(s) to go" in lines[0], lines[0]
    assert lines[-1].endswith("0 fold(s) to go, at most 0 s left"), lines[-1]


def test_the_folds_to_go_count_the_epochs_decided_for_their_experiment():
    progress = Progress({("a", 0): 0, ("a", 1): 20, ("a", 2): 20, ("b", 0): 20})  # a's fold 0 already trained
    progress.plan("a", 80)  # min_fold_steps raised a's 15 + 5 to 60 + 20
    assert progress.left == {("a", 0): 0, ("a", 1): 80, ("a", 2): 80, ("b", 0): 20}


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (0.4, 59, 61, 3600 + 125)] == ["0 s", "59 s", "1 min 01 s", "1 h 02 min"]
