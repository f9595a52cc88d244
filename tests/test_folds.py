"""Folds: stratified, deterministic, tied to their data.  pytest tests/test_folds.py -q"""
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import make_image, tiny_cfg, write_folder_data
from kit.data import folds


def test_every_image_in_one_fold_and_classes_balanced(tmp_path, folder_data):
    cfg = tiny_cfg(tmp_path, folder_data, n_folds=3)
    table = pd.read_csv(folds.make_folds(cfg), dtype=str)
    assert table["path"].is_unique and len(table) == 24, "each image exactly once"
    assert set(table["fold"].astype(int)) == {0, 1, 2}
    counts = table.groupby(["label", "fold"]).size().unstack()
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1, f"per-class fold counts differ by >1:\n{counts}"


def test_same_data_and_seed_give_same_bytes(tmp_path, folder_data):
    a = folds.make_folds(tiny_cfg(tmp_path / "a", folder_data)).read_bytes()
    b = folds.make_folds(tiny_cfg(tmp_path / "b", folder_data)).read_bytes()
    c = folds.make_folds(tiny_cfg(tmp_path / "c", folder_data, split_seed=7)).read_bytes()
    assert a == b, "same data and seed must give the same folds.csv"
    assert a != c, "another seed should shuffle differently"


def test_rerun_skips_and_other_data_is_refused(tmp_path, folder_data):
    data = tmp_path / "data"
    shutil.copytree(folder_data, data)
    cfg = tiny_cfg(tmp_path, data)
    path = folds.make_folds(cfg)
    mtime = path.stat().st_mtime_ns
    assert folds.make_folds(cfg).stat().st_mtime_ns == mtime, "an up-to-date folds.csv is not rewritten"
    make_image(data / "train" / "0" / "new.png", (1, 2, 3), np.random.default_rng(0))
    with pytest.raises(ValueError, match="other data"):
        folds.load(cfg)
    with pytest.raises(ValueError, match="other data"):
        folds.make_folds(cfg)


def test_rare_class_is_an_error_or_train_only(tmp_path):
    data = write_folder_data(tmp_path / "data", n_per_class=4)
    (data / "train" / "2" / "img_2_0.png").unlink()
    (data / "train" / "2" / "img_2_1.png").unlink()
    with pytest.raises(ValueError, match=r"n_folds=3: '2' has 2"):
        folds.make_folds(tiny_cfg(tmp_path / "a", data, n_folds=3))
    table = pd.read_csv(folds.make_folds(tiny_cfg(tmp_path / "b", data, n_folds=3, rare_classes="train_only")), dtype=str)
    rare = table[table["label"] == "2"]
    assert (rare["role"] == "train_only").all() and (rare["fold"] == "-1").all(), rare


def test_holdout_val_is_never_in_a_fold(tmp_path):
    data = write_folder_data(tmp_path / "data", n_per_class=4)
    shutil.copytree(data / "train", data / "val")
    table = pd.read_csv(folds.make_folds(tiny_cfg(tmp_path, data, val_mode="holdout")), dtype=str)
    val = table[table["source"] == "val"]
    assert len(val) == 12 and (val["role"] == "holdout").all() and (val["fold"] == "-1").all()


def test_folds_used_with_another_split_key_are_refused(tmp_path, folder_data):
    folds.make_folds(tiny_cfg(tmp_path, folder_data))
    with pytest.raises(ValueError, match=r"split_seed=42 \(now 7\)"):
        folds.load(tiny_cfg(tmp_path, folder_data, split_seed=7))
    with pytest.raises(ValueError, match=r"n_folds=2 \(now 3\)"):
        folds.make_folds(tiny_cfg(tmp_path, folder_data, n_folds=3))


def test_another_training_seed_uses_the_same_folds(tmp_path, folder_data):
    """A seed ensemble: seed= changes initialisation, shuffling and augmentation, never the split."""
    folds.make_folds(tiny_cfg(tmp_path, folder_data))
    assert folds.load(tiny_cfg(tmp_path, folder_data, seed=7, name="s7")).n_folds == 2


def test_folds_made_before_split_seed_existed_keep_their_seed(tmp_path, folder_data):
    import json
    folds.make_folds(tiny_cfg(tmp_path, folder_data, split_seed=7))
    meta = tmp_path / "folds" / "folds.json"
    old = json.loads(meta.read_text())
    old["config"]["seed"] = old["config"].pop("split_seed")  # as an older kit wrote it
    meta.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"split_seed=7 \(now 42\)"):
        folds.load(tiny_cfg(tmp_path, folder_data))


def test_rare_classes_train_only_keep_each_group_whole(tmp_path):
    """A patient's rare-class film is trained on in every fold: the patient's other films are then never validated
    (they would be validated by a model that trained on their sibling)."""
    rng, rows = np.random.default_rng(0), []
    for n in range(24):
        label, patient = ("rare" if n == 0 else str(n % 2)), f"P{n // 2}"  # P0 holds the one rare image
        make_image(tmp_path / "d" / "train" / f"i{n}.png", (10 * n, 0, 0), rng, size=(8, 8))
        rows.append({"image": f"i{n}", "label": label, "patient_id": patient})
    pd.DataFrame(rows).to_csv(tmp_path / "d" / "train.csv", index=False)
    cfg = tiny_cfg(tmp_path, tmp_path / "d", n_folds=3, rare_classes="train_only", label_col="label")
    table = pd.read_csv(folds.make_folds(cfg), dtype=str)
    p0 = table[table["group"] == "P0"]
    assert (p0["role"] == "train_only").all() and (p0["fold"] == "-1").all(), p0
    cv = table[table["role"] == "cv"]
    assert (cv.groupby("group")["fold"].nunique() == 1).all() and "P0" not in set(cv["group"])
