"""The keys the data decides at train time: stage1_lr=auto, pretrained=auto, time_budget.

    pytest tests/test_auto.py -q
"""
import dataclasses
import json

import pandas as pd
import pytest
import torch

from conftest import tiny_cfg, write_folder_data
from kit import folds, train


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("easy"), n_per_class=16, n_test=6)


def test_stage1_lr_auto_is_found_once_and_every_fold_trains_with_it(tmp_path, easy_data):
    from kit.experiment import Experiment

    cfg = tiny_cfg(tmp_path, easy_data, stage1_lr="auto", stage1_epochs=2, stage2_epochs=0, warmup_epochs=0)
    folds.make_folds(cfg)
    train.run([cfg])
    exp = Experiment.of(cfg)
    found = json.loads(exp.lr_find.read_text())
    assert 1e-5 < found["lr"] < 1.0 and found["lr"] == pytest.approx(found["min_loss_lr"] / 10)
    assert exp.lr_find.with_suffix(".png").stat().st_size > 0
    for k in range(2):  # no warm-up: the cosine starts at the found rate in every fold
        h = pd.read_csv(exp.fold(k).history)
        assert h.loc[h["stage"] == 1, "lr"].iloc[0] == pytest.approx(found["lr"]), (k, h["lr"].tolist())
    assert json.loads(exp.cv_file.read_text())["stage1_lr_auto"] == found["lr"]
    # deterministic on the CPU: found again from scratch, the same value
    exp.lr_find.unlink()
    assert train.found_lr(cfg, folds.load(cfg), torch.device("cpu")) == found["lr"]


def test_pretrained_auto_starts_every_fold_alike_from_what_can_be_had(tmp_path, easy_data, monkeypatch):
    """Offline without a file: from scratch, and says why; with pretrained_file: from it. Decided once (start.json)."""
    import timm
    from safetensors.torch import save_file

    from kit import model as model_module
    from kit.experiment import Experiment

    asked = []
    backbone = model_module._backbone
    monkeypatch.setattr(model_module, "_backbone", lambda name, pre, file: asked.append((pre, file)) or backbone(
        name, pre, file))
    keys = dict(pretrained="auto", stage1_epochs=1, stage2_epochs=0, max_steps=1)
    offline = tiny_cfg(tmp_path / "offline", easy_data, **keys)
    folds.make_folds(offline)
    train.run([offline])
    start = json.loads(Experiment.of(offline).start.read_text())
    assert start["pretrained"] is False and "timm/test_resnet" in start["from"], start
    assert asked[1:] == [(False, "")] * 2, "both folds from scratch"

    weights = tmp_path / "w.safetensors"
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, weights)
    asked.clear()
    local = tiny_cfg(tmp_path / "local", easy_data, pretrained_file=str(weights), **keys)
    folds.make_folds(local)
    train.run([local])
    assert json.loads(Experiment.of(local).start.read_text())["pretrained"] is True
    assert asked[1:] == [(True, str(weights))] * 2, "both folds from the file"


def test_time_budget_sizes_every_fold_from_the_probe_and_keeps_the_choice(tmp_path, easy_data, monkeypatch):
    from kit import budget
    from kit.experiment import Experiment

    monkeypatch.setattr(budget, "probe", lambda *a: (0.05, 0.001))  # 0.05 s a step, 1 ms an image
    cfg = tiny_cfg(tmp_path, easy_data, time_budget=0.03, stage1_epochs=3, stage2_epochs=1, patience=50, min_epochs=0)
    folds.make_folds(cfg)
    train.run([cfg])
    chosen = json.loads(Experiment.of(cfg).budget.read_text())
    # an epoch: fold 0's training steps and validation images; 1.8 s planned less predict's share, over 2 folds, 3:1
    n_val = int((folds.load(cfg).table["fold"] == 0).sum())
    steps = (chosen["epoch_s"] - n_val * 0.001) / 0.05
    assert steps == pytest.approx(round(steps), abs=1e-6) and steps >= 1
    per_fold = int((0.03 * 60 * budget.SAFETY - chosen["predict_s"]) / 2 / chosen["epoch_s"])
    assert (chosen["stage1_epochs"], chosen["stage2_epochs"]) == (round(per_fold * 0.75), per_fold - round(per_fold * 0.75))
    for k in range(2):
        h = pd.read_csv(Experiment.of(cfg).fold(k).history)
        assert (h["stage"] == 1).sum() == chosen["stage1_epochs"] and (h["stage"] == 2).sum() == chosen["stage2_epochs"]

    with pytest.raises(ValueError, match=r"time_budget=0.001 minutes fits 0 epoch\(s\).*give at least"):
        budget.plan(dataclasses.replace(cfg, time_budget=0.001), 2, 2, 16, 32, 6, 0.05, 0.001)


def test_the_budget_probe_measures_positive_times():
    from timm.data import Mixup

    from kit import budget
    from kit.model import create_model
    from kit.runtime import autocast

    model = create_model("test_resnet", "linear", 3)
    data = torch.utils.data.TensorDataset(torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 3)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    mixup = Mixup(mixup_alpha=0.2, num_classes=3)
    from timm.loss import SoftTargetCrossEntropy
    step_s, image_s = budget.probe(model, loader, loader, mixup, SoftTargetCrossEntropy(),
                                   autocast(torch.device("cpu"), False), torch.device("cpu"), "adamw")
    assert 0 < image_s < step_s < 10
