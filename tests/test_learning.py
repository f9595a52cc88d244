"""Training that learns on data it has never seen: warm-up, patient early stopping, the chance-level alarm,
aspect-keeping resize, the quick preset on a matrix of data set shapes, and the Makefile's default preset.

    pytest tests/test_learning.py -q
"""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import exp_dir, tiny_cfg, write_folder_data
from kit.board import leaderboard
from kit.config import PRESETS, load_config
from kit.data import folds
from kit.data.loaders import eval_transform
from kit.data.synth import MATRIX, write_synthetic
from kit.predict import predict
from kit.train import loop as train
from kit.train import stopping


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("easy"), n_per_class=16, n_test=6)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """Labels that say nothing about the images: no model can beat chance, and the kit must say so."""
    root = write_folder_data(tmp_path_factory.mktemp("shuffled"), n_per_class=20, n_test=6)
    files = sorted((root / "train").rglob("*.png"))
    rng = np.random.default_rng(0)
    for path, label in zip(files, rng.permutation([p.parent.name for p in files])):
        path.rename(path.parent.parent / label / f"s_{path.name}")
    return root


def _history(cfg, fold=0):
    return pd.read_csv(exp_dir(cfg) / f"fold{fold}" / "history.csv")


def test_warmup_rises_linearly_from_a_tenth_then_follows_the_cosine(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=6, stage2_epochs=0, warmup_epochs=2, stage1_lr=0.1)
    folds.make_folds(cfg)
    train.run([cfg], only=[0])
    lr = _history(cfg)["lr"].to_numpy()
    np.testing.assert_allclose(lr[:3], [0.01, 0.055, 0.1], rtol=1e-9, err_msg="warm-up: lr/10, halfway, then lr")
    assert np.all(np.diff(lr[2:]) < 0), f"after the warm-up the cosine decays: {lr}"


def test_auto_warmup_is_on_from_scratch_and_off_from_pretrained_weights():
    recipe = load_config(PRESETS / "resnest50d_spinalnet.yaml")
    assert recipe.warmup == 0, "the recipe preset stays the write-up's: no warm-up"
    assert load_config(PRESETS / "resnest50d_spinalnet.yaml", {"pretrained": False}).warmup == 3
    assert load_config(PRESETS / "resnest50d_spinalnet.yaml", {"pretrained": False, "stage1_epochs": 6}).warmup == 1
    assert load_config(PRESETS / "demo.yaml").warmup == 2, "the demo's own two epochs"
    assert load_config(PRESETS / "demo.yaml", {"stage1_epochs": 1}).warmup == 0, "shortened with stage 1, not refused"


def _stop_epoch(scores, patience, grace, chance=0.2, metric="accuracy"):
    """The epoch at which early stopping ends a stage that scores `scores`, or None."""
    from kit.metrics import get
    state = stopping.FoldState()
    for epoch, score in enumerate(scores, start=1):
        stopping.early_stopping(state, score, get(metric), chance, patience, grace)
        if state.stopped:
            return epoch
    return None


def test_patience_counts_only_after_min_epochs():
    learns_then_stalls = [0.5, 0.9] + [0.9] * 10  # above chance from epoch 1, no better after epoch 2
    assert _stop_epoch(learns_then_stalls, patience=1, grace=0) == 3, "no grace: one flat epoch stops it"
    assert _stop_epoch(learns_then_stalls, patience=1, grace=6) == 7, "grace 6: patience counts from epoch 7"
    assert _stop_epoch(learns_then_stalls, patience=3, grace=6) == 9
    assert _stop_epoch([0.1] * 12, patience=1, grace=0) is None, "at chance level a stage never stops"
    assert _stop_epoch([0.9, 0.5, 0.4, 0.45], patience=2, grace=0, metric="log_loss", chance=1.0) is None, \
        "log loss: lower is better, so each of these epochs improves"


def test_chance_level_runs_on_warns_and_is_reported(tmp_path, shuffled, caplog):
    cfg = tiny_cfg(tmp_path, shuffled, stage1_epochs=6, stage2_epochs=0, patience=1, warmup_epochs=1)
    folds.make_folds(cfg)
    with caplog.at_level(logging.WARNING):
        train.run([cfg])
    assert len(_history(cfg)) == 6, "a stage at chance level is never stopped early on noise"
    assert "not learning after the warm-up" in caplog.text and "stage1_lr=" in caplog.text, caplog.text
    assert "mixup_alpha=0.2; try 0, off" in caplog.text, "the advice is one the config does not follow already"
    cv = json.loads((exp_dir(cfg) / "cv.json").read_text())
    assert cv["chance_level_folds"] == [0, 1], cv
    predict.run([cfg])
    row = leaderboard.load(tmp_path / "submissions" / "leaderboard.csv").iloc[0]
    assert row["warning"] == "chance level in fold(s) 0, 1", row


def test_no_alarm_when_the_model_learns(tmp_path, easy_data, caplog):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=5, stage2_epochs=0)
    folds.make_folds(cfg)
    with caplog.at_level(logging.WARNING):
        train.run([cfg])
    assert "chance" not in caplog.text and "not learning" not in caplog.text, caplog.text
    assert json.loads((exp_dir(cfg) / "cv.json").read_text())["chance_level_folds"] == []


def test_pad_keeps_the_aspect_ratio():
    wide = np.full((20, 40, 3), 255, dtype=np.uint8)  # a white 2:1 image
    x = eval_transform(32, mode="pad")(image=wide)["image"] / 255  # (3, 32, 32), 0..1
    rows = x[0].mean(dim=1)
    bars = torch.cat([rows[:8], rows[24:]])
    assert x.shape == (3, 32, 32) and torch.all(rows[8:24] == 1) and torch.all(bars == 0), \
        "a 2:1 image fills the width and half the height, centred between black bars"
    squashed = eval_transform(32)(image=wide)["image"] / 255
    assert torch.all(squashed == 1), "squash (the recipe) stretches it over the whole square"


def test_make_without_exp_on_your_data_names_the_quick_preset(tmp_path):
    out = subprocess.run(["make", "-n", "folds", "DATA=/some/data"], capture_output=True, text=True, check=True).stdout
    assert "--exp" not in out and "data=/some/data" in out, f"make leaves the choice to the kit: {out}"
    missing = tmp_path / "plants"
    run = subprocess.run([sys.executable, "-m", "kit", "folds", f"data={missing}", f"work_dir={tmp_path / 'f'}"],
                         capture_output=True, text=True, env={**os.environ, "KIT_ALLOCATOR": "off"})
    assert f"no --exp: the quick preset on data={missing}" in run.stderr, run.stderr


# The shapes of the robustness matrix (kit.synth.MATRIX; two of its sets with fewer images a class, for the
# suite's time): the top-1 the quick preset must beat on each on a small budget (2 folds, 32 px, 7 epochs), and why
# that bar means "learnt", not "lucky": guessing the most common class exceeds "luck" (kit.metrics.chance_top1 over
# all the images) with probability under 1%.
FEWER = {"10 classes x 50, grayscale, square, folder": 30}  # images a class
# The 100-class RGB csv shape runs in bench/robustness.py, not here: the RGBA 100-class set is the suite's 100 classes
# at 2:1 (60 s of the suite's time a run), and the 25 downloads of tests/test_downloads.py are CSV layouts
LEFT_TO_THE_BENCH = {"100 classes x 10, RGB, 2:1, csv"}


def _suite_shapes() -> dict:
    shapes = {}
    for name, (shape, overrides) in MATRIX.items():
        if name in LEFT_TO_THE_BENCH:
            continue
        n = FEWER.get(name, shape["per_class"])
        shapes[name.replace(f"x {shape['per_class']},", f"x {n},")] = ({**shape, "per_class": n}, overrides)
    return shapes


SHAPES = _suite_shapes()
BAR = {
    # chance 0.5, luck up to 0.68 on 40 images
    "2 classes x 20, RGB, square, folder": 0.8,
    # chance 0.1, luck up to 0.14 on 300 images
    "10 classes x 30, grayscale, square, folder": 0.5,
    # chance 0.01, luck up to 0.022 on 500 images; 5 images a class, some pixels see-through
    "100 classes x 5, RGBA, 2:1, folder": 0.05,
}
# tta=[]: this is the preset's learning; its tta=auto (18 forward passes over every training image) is tested in
# tests/test_predict.py and measured in docs/BENCHMARKS.md. Batch 32 (16 where a fold has 20 training images) and
# 6 + 1 epochs: on the matrix's full sets CV 0.53 (100 x 10) and 0.29 (100 x 5) with the preset's AdamW (2026-11-29),
# each far above its bar. time_budget=0 min_fold_steps=0: the test's epochs, without the preset's 30-minute probe and
# without its raising the epochs of small data (kit/train/budget.py)
# hflip=0.5 but on the 2-class set: the flip probe trains 100 steps (kit/train/flip.py MIN_STEPS), longer than these
# folds' whole training, and was 45% of each case's time; it runs as shipped on the 2-class shape, and its
# decisions are tested in tests/test_auto.py
FIXED_FLIP = {"100 classes x 5, RGBA, 2:1, folder": 0.5,
              "10 classes x 30, grayscale, square, folder": 0.5}
BUDGET = dict(n_folds=2, img_size=32, resize=36, stage1_epochs=6, stage2_epochs=1, time_budget=0, min_fold_steps=0,
              workers=0, eval_batch_size=256, tta=[])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHAPES))
def test_quick_preset_learns_every_shape_of_data(tmp_path, name):
    (shape, overrides), bar = SHAPES[name], BAR[name]
    data = write_synthetic(tmp_path / "data", side=32, **shape)
    paths = {"data": str(data), "work_dir": str(tmp_path / "folds"), "submissions_dir": str(tmp_path / "subs")}
    batch = 32 if shape["classes"] * shape["per_class"] >= 128 else 16
    flip = {"hflip": FIXED_FLIP[name]} if name in FIXED_FLIP else {}
    cfg = load_config(PRESETS / "quick.yaml", {**overrides, **BUDGET, **flip, "batch_size": batch, **paths})
    folds.make_folds(cfg)
    train.run([cfg])
    predict.run([cfg])
    row = leaderboard.load(tmp_path / "subs" / "leaderboard.csv").iloc[0]
    assert float(row["cv_top1"]) >= bar and row["warning"] == "", f"{name}: CV {row['cv_top1']} < {bar} {row['warning']}"


@pytest.mark.slow
def test_the_shipped_demo_baseline_does_not_warn_about_itself(tmp_path, caplog):
    """A newcomer's first `make`: the fold whose not-learning alarm fired on the demo's own preset (a one-epoch
    warm-up into lr 0.1) trains as shipped without a warning."""
    import logging

    from kit.data import demo, folds
    from kit.train import loop
    demo.run(tmp_path / "demo")
    cfg = load_config(PRESETS / "demo_baseline.yaml", {"data": str(tmp_path / "demo"), "work_dir": str(tmp_path / "f"),
                                                      "submissions_dir": str(tmp_path / "s")})
    folds.make_folds(cfg)
    with caplog.at_level(logging.WARNING):
        loop.run([cfg], only=[1])
    said = [r.getMessage()[:120] for r in caplog.records if r.levelno >= logging.WARNING]
    assert not said, said
