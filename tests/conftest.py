"""Shared fixtures: tiny synthetic data sets written once per session, and a tiny config.

    .venv/bin/python -m pytest -q -m "not slow"   # all but the end-to-end runs (make test)
    .venv/bin/python -m pytest -q -m slow         # the end-to-end runs alone (make test-slow; CI runs both)
    .venv/bin/python -m pytest -q                 # everything (make test-all)

Images are solid colours with noise, one colour per class: an easy task that a tiny timm model
(test_resnet, pretrained=False) learns in a few epochs on the CPU.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download
if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs a worker per core: one torch thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kit.config import Config, load_config

COLORS = {"0": (220, 40, 40), "1": (40, 220, 40), "2": (40, 40, 220)}


def make_image(path: Path, color, rng, size=(40, 40), mode="RGB") -> Path:
    h, w = size[1], size[0]
    arr = np.clip(np.array(color) + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def write_folder_data(root: Path, n_per_class: int = 8, n_test: int = 9, classes=COLORS, seed: int = 0) -> Path:
    """DATA/train/<class>/*.png, DATA/test/*.png and DATA/solution.csv (id, label, Usage)."""
    rng = np.random.default_rng(seed)
    for label, color in classes.items():
        for i in range(n_per_class):
            make_image(root / "train" / label / f"img_{label}_{i}.png", color, rng)
    rows = []
    labels = list(classes)
    for i in range(n_test):
        label = labels[i % len(labels)]
        make_image(root / "test" / f"t{i:02d}.png", classes[label], rng)
        rows.append({"image_name": f"t{i:02d}", "label": label, "Usage": "Public" if i % 2 else "Private"})
    pd.DataFrame(rows).to_csv(root / "solution.csv", index=False)
    return root


def write_csv_data(root: Path, n_per_class: int = 6, n_test: int = 6, seed: int = 1) -> Path:
    """Kaggle CSV layout: train.csv (id without extension, breed), test/, sample_submission.csv."""
    rng = np.random.default_rng(seed)
    names = {"0": "cat", "1": "dog", "2": "fox"}
    rows = []
    for key, color in COLORS.items():
        for i in range(n_per_class):
            make_image(root / "train" / f"{names[key]}{i:03d}.jpg", color, rng)
            rows.append({"id": f"{names[key]}{i:03d}", "breed": names[key]})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    ids = [f"x{i:03d}" for i in range(n_test)][::-1]  # an order that is not sorted: must be kept
    for i, id_ in enumerate(ids):
        make_image(root / "test" / f"{id_}.jpg", list(COLORS.values())[i % 3], rng)
    pd.DataFrame({"id": ids, "breed": "cat"}).to_csv(root / "sample_submission.csv", index=False)
    return root


def write_mirror_data(root: Path, n_per_class: int = 16, n_test: int = 8, split: str = "sides") -> Path:
    """Two classes of two colour halves, red and blue, in either order. split="sides": left|right, mirror
    images of each other (a horizontal flip changes the class); "rows": top over bottom (a flip keeps it)."""
    rng = np.random.default_rng(3)
    halves = {"0": ((220, 40, 40), (40, 40, 220)), "1": ((40, 40, 220), (220, 40, 40))}

    def image(path, label):
        first, second = halves[label]
        if split == "sides":
            arr = np.concatenate([np.broadcast_to(first, (32, 16, 3)), np.broadcast_to(second, (32, 16, 3))], axis=1)
        else:
            arr = np.concatenate([np.broadcast_to(first, (16, 32, 3)), np.broadcast_to(second, (16, 32, 3))], axis=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(arr + rng.normal(0, 20, arr.shape), 0, 255).astype(np.uint8)).save(path)

    for label in halves:
        for i in range(n_per_class):
            image(root / "train" / label / f"{label}_{i}.png", label)
    for i in range(n_test):
        image(root / "test" / f"t{i}.png", str(i % 2))
    return root


@pytest.fixture(scope="session")
def folder_data(tmp_path_factory) -> Path:
    return write_folder_data(tmp_path_factory.mktemp("folder_data"))


@pytest.fixture(scope="session")
def csv_data(tmp_path_factory) -> Path:
    return write_csv_data(tmp_path_factory.mktemp("csv_data"))


TINY = dict(
    name="tiny", backbone="test_resnet", head="spinal", spinal_width=16, pretrained=False, resize=36, img_size=32,
    batch_size=8, workers=0, stage1_lr=0.05, stage1_epochs=3, stage2_lr=0.01, stage2_epochs=2, patience=7,
    eval_batch_size=16, n_folds=2, tta=[], mixup_alpha=0.2, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
)


def tiny_cfg(tmp_path: Path, data: Path, **overrides) -> Config:
    """A config whose whole training run takes seconds; outputs under tmp_path."""
    values = {**TINY, "data": str(data), "work_dir": str(tmp_path / "folds"),
              "submissions_dir": str(tmp_path / "submissions"), **overrides}
    return load_config(None, values)


def exp_dir(cfg: Config) -> Path:
    """Where an experiment's files are documented to live (README "Outputs"): <work_dir>/<name>/."""
    return Path(cfg.work_dir) / cfg.name


def train_interrupted(cfg: Config, epochs: int, fold: int = 0) -> None:
    """Train one fold and stop it with KeyboardInterrupt (as Ctrl-C would) after `epochs` epochs."""
    from kit.train import loop as train
    original, calls = train.FoldRun._run_epoch, {"n": 0}

    def stop_after(self, *args):
        if calls["n"] == epochs:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train.FoldRun, "_run_epoch", stop_after)
        with pytest.raises(KeyboardInterrupt):
            train.run([cfg], only=[fold])


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs (seconds to a minute each); still run in CI")


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """The real kaggle CLI pointed at a loopback server (tests/kaggle_server.py), with a home of its own holding
    credentials; yields the server's state."""
    import kaggle_server
    state = kaggle_server.FakeKaggle(pd.DataFrame(columns=["id", "label", "Usage"]))
    httpd, port = kaggle_server.start(state)
    kaggle_server.point_cli(tmp_path / "home", port, monkeypatch)
    yield state
    httpd.shutdown()
