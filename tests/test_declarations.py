"""Every config key's declaration, proven: change it on a trained experiment and exactly what it shapes reacts.

    pytest tests/test_declarations.py -q

config.py declares per key what it shapes (split, weights, predictions, ensemble, nothing). Here each
key in turn takes another valid value on a tiny trained and predicted experiment:
  split        folds.load refuses the folds, naming the key
  weights      training refuses the trained folds, and predict refuses their checkpoints, naming the key
  predictions  predict recomputes the fold logits (their key changes), refusing nothing
  ensemble     predict reuses the logits and writes a submission of other settings (a new file or run)
  nothing      predict reuses the logits and the submission it wrote, run and all
A key added to Config without an entry in ALT fails the coverage test.
"""
import dataclasses
import json

import pytest

from conftest import tiny_cfg
from kit.config import Config
from kit.data import folds
from kit.io import load_npz
from kit.predict import predict
from kit.train import loop as train
from kit.experiment import Experiment

pytestmark = pytest.mark.slow

ALT = {  # key -> another valid value than the base experiment's
    "n_folds": 3, "split_seed": 7, "val_mode": "holdout", "rare_classes": "train_only", "skip_bad_images": True,
    "tracking": ["tensorboard"], "id_col": "x", "label_col": "y", "train_csv": "t.csv", "sample_csv": "s.csv", "images": "train", "group": "none",
    "task": "single", "submission": "label", "top_k": 3,
    "seed": 7, "backbone": "test_efficientnet", "head": "linear", "spinal_width": 8, "head_dropout": 0.1,
    "pretrained": True, "pretrained_file": "elsewhere.safetensors", "resize": 40, "img_size": 28,
    "resize_mode": "pad", "rotate": 5.0, "hflip": 0.0, "mean": (0.4, 0.4, 0.4), "std": (0.3, 0.3, 0.3),
    "cache_draft": True, "batch_size": 4, "mixup_alpha": 0.5, "cutmix_alpha": 0.5, "label_smoothing": 0.0,
    "optimizer": "adamw", "momentum": 0.8, "weight_decay": 0.001, "stage1_lr": 0.02, "stage1_epochs": 2,
    "stage2_lr": 0.002,
    "stage2_epochs": 1, "time_budget": 1000.0, "min_fold_steps": 1000, "lr_reference_batch": 16, "warmup_epochs": 0,
    "min_epochs": 1, "ema_decay": 0.9,
    "pseudo_from": "other", "pseudo_threshold": 0.5, "patience": 2, "max_epoch_steps": 1, "amp": False,
    "metric": "f1_macro", "sampler": "balanced", "class_weight": "balanced",
    "tta": ("hflip",),
    "merge": "probs", "allow_missing_folds": True, "threshold": 0.3, "blank_below": 0.5, "temperature": "off",
    "tabular": False, "seeds": 2, "full_fit": True,
    "max_pixels": 50_000_000, "cache": True, "memory_cache_mb": 8, "workers": 1, "threads": 1, "device": "cpu",
    "deterministic": True, "checkpoint_every_s": 5.0, "keep_checkpoints": True, "channels_last": True,
    "compile": True, "batched_tta": "on", "tta_max_images": 8, "eval_batch_size": 4, "bad_test_images": "prior", "zip": True,
}
TRAINS = {"seeds", "full_fit"}  # ensemble keys whose new value has models of its own to train first
WHERE = {"name", "data", "work_dir", "submissions_dir", "cache_dir", "solution"}  # where things are: no other value
SHAPES = {f.name: f.metadata["shapes"] for f in dataclasses.fields(Config)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, folder_data):
    tmp = tmp_path_factory.mktemp("declared")
    cfg = tiny_cfg(tmp, folder_data, stage1_epochs=1, stage2_epochs=0, cache_dir=str(tmp / "cache"))
    folds.make_folds(cfg)
    train.run([cfg])
    return cfg, predict.run([cfg])[0]


def _logit_key(cfg) -> str:
    return str(load_npz(Experiment.of(cfg).fold(0).logits("test"))["key"])


def _runs(path) -> int:
    return len(json.loads(path.with_suffix(".json").read_text())["runs"])


def test_every_key_has_another_value_to_try():
    assert set(SHAPES) - WHERE == set(ALT), f"keys without an ALT entry: {sorted(set(SHAPES) - WHERE - set(ALT))}"


@pytest.mark.parametrize("key", [k for k in ALT if SHAPES[k] == "split"])
def test_a_split_key_refuses_the_folds(trained, key):
    cfg, _ = trained
    with pytest.raises(ValueError, match=key):
        folds.load(dataclasses.replace(cfg, **{key: ALT[key]}))


@pytest.mark.parametrize("key", [k for k in ALT if SHAPES[k] == "weights"])
def test_a_weights_key_refuses_training_and_predicting_the_trained_folds(trained, key):
    cfg, _ = trained
    other = dataclasses.replace(cfg, **{key: ALT[key]})
    with pytest.raises(ValueError, match=rf"\b{key}="):
        Experiment.of(other).check_trained(other, 2)
    with pytest.raises(ValueError, match=rf"\b{key}="):
        predict.run([other])


@pytest.mark.parametrize("key", [k for k in ALT if SHAPES[k] in ("predictions", "ensemble", "nothing")])
def test_later_keys_recompute_exactly_what_they_shape(trained, key):
    cfg, path = trained
    before, runs = _logit_key(cfg), _runs(path)
    other = dataclasses.replace(cfg, **{key: ALT[key]})
    if key in TRAINS:
        with pytest.raises(ValueError, match=rf"\b{key}="):  # their models first: said, naming the key
            predict.run([other])
        train.run([other])  # the trained folds are kept: only the new models train
    written = predict.run([other])[0]
    recomputed = _logit_key(cfg) != before
    assert recomputed == (SHAPES[key] == "predictions"), f"{key}: logits recomputed: {recomputed}"
    if SHAPES[key] == "ensemble":
        assert written != path or _runs(path) == runs + 1, f"{key}: a submission of other settings"
    if SHAPES[key] == "nothing":
        assert written == path and _runs(path) == runs, f"{key}: the same submission, the same run"
    predict.run([cfg])  # back to the base experiment's logits for the next key


def test_the_docs_table_of_what_may_change_after_training_is_the_declarations():
    """docs/REFERENCE.md's table is generated from the config's fields: a key added or moved shows there."""
    from pathlib import Path

    from kit.config import shapes_table
    doc = (Path(__file__).resolve().parent.parent / "docs" / "REFERENCE.md").read_text()
    assert shapes_table() in doc, "regenerate it: python -c 'from kit.config import shapes_table; print(shapes_table())'"
