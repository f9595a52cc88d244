"""The keys the data decides at train time: stage1_lr=auto, hflip=auto, pretrained=auto, min_fold_steps, time_budget.

    pytest tests/test_auto.py -q
"""
import dataclasses
import json
import time

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_cfg, write_folder_data, write_mirror_data
from kit.config import PRESETS, load_config
from kit.data import folds
from kit.predict import predict
from kit.train import flip
from kit.train import loop as train
from kit.train import plan


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("easy"), n_per_class=16, n_test=6)


def test_stage1_lr_auto_is_found_once_and_every_fold_trains_with_it(tmp_path, easy_data):
    from kit.experiment import Experiment

    cfg = tiny_cfg(tmp_path, easy_data, stage1_lr="auto", stage1_epochs=2, stage2_epochs=0, warmup_epochs=0)
    folds.make_folds(cfg)
    train.run([cfg])
    exp = Experiment.of(cfg)
    found = json.loads(exp.plan.read_text())["lr"]
    assert 1e-5 < found["lr"] < 1.0 and found["lr"] == pytest.approx(found["min_loss_lr"] / 10)
    assert (exp.dir / "lr_find.png").stat().st_size > 0
    for k in range(2):  # no warm-up: the cosine starts at the found rate in every fold
        h = pd.read_csv(exp.fold(k).history)
        assert h.loc[h["stage"] == 1, "lr"].iloc[0] == pytest.approx(found["lr"]), (k, h["lr"].tolist())
    assert json.loads(exp.cv_file.read_text())["stage1_lr_auto"] == found["lr"]
    # deterministic on the CPU: found again from scratch, the same value
    exp.plan.unlink()
    assert plan.decide(cfg, folds.load(cfg), torch.device("cpu")).lr == found["lr"]


def test_pretrained_auto_starts_every_fold_alike_from_what_can_be_had(tmp_path, easy_data, monkeypatch):
    """Offline without a file: from scratch, and says why; with pretrained_file: from it. Decided once (plan.json)."""
    import timm
    from safetensors.torch import save_file

    from kit import model as model_module
    from kit.experiment import Experiment

    asked = []
    backbone = model_module._backbone
    monkeypatch.setattr(model_module, "_backbone", lambda name, pre, file, channels=3: asked.append((pre, file)) or
                        backbone(name, pre, file, channels))
    keys = dict(pretrained="auto", stage1_epochs=1, stage2_epochs=0, max_epoch_steps=1)
    offline = tiny_cfg(tmp_path / "offline", easy_data, **keys)
    folds.make_folds(offline)
    train.run([offline])
    start = json.loads(Experiment.of(offline).plan.read_text())["start"]
    assert start["pretrained"] is False and "timm/test_resnet" in start["from"], start
    assert asked[1:] == [(False, "")] * 2, "both folds from scratch"

    weights = tmp_path / "w.safetensors"
    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, weights)
    asked.clear()
    local = tiny_cfg(tmp_path / "local", easy_data, pretrained_file=str(weights), **keys)
    folds.make_folds(local)
    train.run([local])
    assert json.loads(Experiment.of(local).plan.read_text())["start"]["pretrained"] is True
    assert asked[1:] == [(True, str(weights))] * 2, "both folds from the file"


def test_time_budget_sizes_every_fold_from_the_probe_and_keeps_the_choice(tmp_path, easy_data, monkeypatch):
    from kit.train import budget
    from kit.experiment import Experiment

    monkeypatch.setattr(budget, "probe", lambda *a: (0.05, 0.001))  # 0.05 s a step, 1 ms an image
    cfg = tiny_cfg(tmp_path, easy_data, time_budget=0.03, stage1_epochs=4, stage2_epochs=2, patience=50, min_epochs=0)
    folds.make_folds(cfg)
    train.run([cfg])
    chosen = json.loads(Experiment.of(cfg).plan.read_text())["epochs"]
    # an epoch: fold 0's training steps and validation images; 1.8 s planned less predict's share, over 2 folds, 2:1
    n_val = int((folds.load(cfg).table["fold"] == 0).sum())
    steps = (chosen["epoch_s"] - n_val * 0.001) / 0.05
    assert steps == pytest.approx(round(steps), abs=1e-6) and steps >= 1
    per_fold = int((0.03 * 60 * budget.SAFETY - chosen["predict_s"] - chosen["spent_s"]) / 2 / chosen["epoch_s"])
    assert 2 <= per_fold < 6, f"the case of a budget that trims the config's 4 + 2 epochs: {chosen}"
    assert (chosen["stage1_epochs"], chosen["stage2_epochs"]) == (round(per_fold * 2 / 3), per_fold - round(per_fold * 2 / 3))
    for k in range(2):
        h = pd.read_csv(Experiment.of(cfg).fold(k).history)
        assert (h["stage"] == 1).sum() == chosen["stage1_epochs"] and (h["stage"] == 2).sum() == chosen["stage2_epochs"]

    with pytest.raises(ValueError, match=r"time_budget=0.001 minutes fits 0 epoch\(s\).*give at least.*"
                                         r"time_budget=0 for no limit"):
        budget.plan(dataclasses.replace(cfg, time_budget=0.001), 2, 2, 16, 32, 6, 0.05, 0.001)


def test_the_budget_plans_every_pass_predict_makes_with_tta_auto_and_a_holdout(tmp_path):
    """tta=auto: each candidate on the OOF images, the cv_last pass through the views chosen, and the holdout
    images through them in every fold, beside the test images."""
    from kit.train import budget
    from kit.tta import AUTO_TTA, transforms
    cfg = load_config(PRESETS / "quick.yaml", {"data": str(tmp_path), "tta": "auto", "time_budget": 600})
    views = [len(transforms(v, cfg.img_size)) for v in AUTO_TTA]
    n_folds, n_train, n_test, n_holdout, image_s = 5, 100, 40, 30, 0.01
    got = budget.plan(cfg, n_folds, 10, 20, n_train, n_test, 0.1, image_s, 0.0, n_holdout)["predict_s"]
    want = image_s * (n_train * (sum(views) + max(views)) + (n_test + n_holdout) * max(views) * n_folds)
    assert got == pytest.approx(want, abs=0.1), (got, want)


def test_the_budget_trims_the_configs_epochs_and_never_adds(tmp_path):
    """The config's epochs are the most a fold trains: kept where they fit, trimmed in their ratio where they do not;
    what the run's probes spent comes off the budget first."""
    from kit.train import budget
    cfg = load_config(PRESETS / "quick.yaml", {"data": str(tmp_path), "stage1_epochs": 15, "stage2_epochs": 5,
                                                "tta": ["hflip"]})
    # 5 folds, an epoch of 100 steps at 0.1 s (+ 100 val images at 1 ms): 10.1 s; predict 10 + 20 images x 2 passes

    def plan(minutes, spent=0.0):
        return budget.plan(dataclasses.replace(cfg, time_budget=minutes), 5, 100, 100, 20, 10, 0.1, 0.001, spent)

    roomy = plan(60)
    assert (roomy["stage1_epochs"], roomy["stage2_epochs"]) == (15, 5) and roomy["fits"] > 20, "never more"
    tight = plan(10)  # (600 x 0.9 - predict) / 5 folds / 10.1 s: 10 epochs of the 20
    assert tight["fits"] == 10 and (tight["stage1_epochs"], tight["stage2_epochs"]) == (8, 2)
    assert plan(10, spent=101)["fits"] == 8, "the probes' 101 s: two epochs less in each of 5 folds (5 x 2 x 10.1 s)"


def test_min_steps_raises_the_epochs_of_small_data_in_their_ratio_up_to_a_cap(tmp_path):
    from kit.train import budget
    cfg = load_config(PRESETS / "quick.yaml", {"data": str(tmp_path), "stage1_epochs": 15, "stage2_epochs": 5,
                                                "min_fold_steps": 1000})
    assert budget.scaled(cfg, 25) == (30, 10), "25 steps an epoch: 40 epochs for 1,000 steps, 3:1 as configured"
    assert budget.scaled(cfg, 40) == (19, 6), "25 epochs (1,000 / 40), 18.75 of them in stage 1, rounded"
    assert budget.scaled(cfg, 50) == (15, 5) and budget.scaled(cfg, 400) == (15, 5), "enough steps: as configured"
    assert budget.scaled(cfg, 1) == (60, 20), f"at most {budget.MAX_SCALE} times the config's epochs"
    assert budget.scaled(dataclasses.replace(cfg, stage2_epochs=0), 25) == (40, 0)
    assert budget.scaled(dataclasses.replace(cfg, min_fold_steps=0), 1) == (15, 5), "0: the epochs as set"
    # with a budget, the raised epochs are the most it keeps (5 folds, 100 val images at 1 ms, 0.1 s a step)
    raised = budget.plan(dataclasses.replace(cfg, time_budget=60), 5, 25, 100, 20, 10, 0.1, 0.001)
    assert (raised["stage1_epochs"], raised["stage2_epochs"]) == (30, 10) and raised["asked"] == [30, 10]
    tight = budget.plan(dataclasses.replace(cfg, time_budget=5), 5, 25, 100, 20, 10, 0.1, 0.001)
    assert tight["fits"] < 40 and tight["stage1_epochs"] + tight["stage2_epochs"] == tight["fits"]
    assert tight["stage1_epochs"] == round(tight["fits"] * 3 / 4), "trimmed in the raised epochs' ratio"
    with pytest.raises(ValueError, match=r"min_fold_steps.*must be >= 0"):
        load_config(PRESETS / "quick.yaml", {"data": str(tmp_path), "min_fold_steps": -1})


def test_min_steps_trains_every_fold_the_raised_epochs_and_keeps_the_choice(tmp_path, easy_data, caplog):
    from kit.experiment import Experiment
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=2, stage2_epochs=1, min_fold_steps=18, patience=50, min_epochs=0)
    folds.make_folds(cfg)
    table = folds.load(cfg).table
    steps = int(((table["fold"] != 0) & (table["role"] != "holdout")).sum()) // cfg.batch_size  # drop_last
    want = -(-18 // steps)  # ceil: the epochs that give 18 steps
    assert 3 < want <= 12, f"the case of a config (2 + 1 epochs of {steps} steps) that min_fold_steps=18 raises"
    with caplog.at_level("INFO", logger="kit"):
        train.run([cfg])
    chosen = json.loads(Experiment.of(cfg).plan.read_text())["epochs"]
    assert chosen["steps_per_epoch"] == steps and chosen["budget_min"] == 0
    assert chosen["stage1_epochs"] + chosen["stage2_epochs"] == want
    assert chosen["stage1_epochs"] == round(want * 2 / 3)
    assert f"min_fold_steps=18: {chosen['stage1_epochs']} + {chosen['stage2_epochs']} epochs a fold" in caplog.text
    for k in range(2):
        h = pd.read_csv(Experiment.of(cfg).fold(k).history)
        assert (h["stage"] == 1).sum() == chosen["stage1_epochs"] and (h["stage"] == 2).sum() == chosen["stage2_epochs"]


def _probe_trainer(loader, val_loader):
    """The trainer protocol the plan's probes act on (kit/train/trainer.py), over loaders of a test's own."""
    from types import SimpleNamespace

    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    from kit.engine import make_optimizer, probe_step
    from kit.model import create_model
    from kit.runtime import autocast, grad_scaler
    cpu = torch.device("cpu")
    parts = dict(mixup=Mixup(mixup_alpha=0.2, num_classes=3), criterion=SoftTargetCrossEntropy(),
                 amp_ctx=autocast(cpu, False), scaler=grad_scaler(cpu, False))
    return SimpleNamespace(
        device=cpu, train_dl=loader, val_dl=val_loader, amp_ctx=parts["amp_ctx"],
        model=lambda: create_model("test_resnet", "linear", 3),
        optimizer=lambda model, lr: make_optimizer(model, "adamw", lr, 0.9, 0.05),
        step=lambda model, opt, x, y: probe_step(model, opt, parts["scaler"], parts["mixup"], parts["criterion"],
                                                 parts["amp_ctx"], cpu, x, y))


def test_the_budget_probe_measures_positive_times():
    from kit.train import budget
    data = torch.utils.data.TensorDataset(torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 3)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    step_s, image_s = budget.probe(_probe_trainer(loader, loader))
    assert 0 < image_s < step_s < 10


class _SlowImages(torch.utils.data.Dataset):
    """Images that take `seconds` each to load, as PNGs a loader must decode."""

    def __init__(self, n: int, seconds: float):
        self.n, self.seconds = n, seconds

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(self.seconds)
        return torch.full((3, 32, 32), i % 255, dtype=torch.uint8), i % 3


def test_the_budget_probe_counts_the_time_images_take_to_load():
    """An epoch waits for its images: a probe that timed the model alone (or the batches fetched ahead) would plan
    epochs that overrun the budget."""
    from kit.train import budget
    loader = torch.utils.data.DataLoader(_SlowImages(16, 0.01), batch_size=4, num_workers=1, prefetch_factor=2,
                                         persistent_workers=True)
    val_loader = torch.utils.data.DataLoader(_SlowImages(16, 0.01), batch_size=4)
    step_s, image_s = budget.probe(_probe_trainer(loader, val_loader))
    assert image_s >= 0.01, f"validation's images load at 10 ms each; the probe said {image_s * 1000:.1f} ms"
    assert step_s >= 0.9 * 4 * 0.01, f"a batch of 4 loads in 40 ms with one worker; the probe said {step_s:.3f} s"


@pytest.mark.parametrize("split, want", [("sides", 0.0), ("rows", 0.5)], ids=["flip-changes-class", "flip-keeps-class"])
def test_hflip_auto_drops_the_flip_only_where_it_changes_the_class(tmp_path, monkeypatch, split, want):
    """Left|right colour halves are mirror images (a flip swaps the classes): no flip. Top/bottom halves: the flip
    stays. Decided once (plan.json), every fold trains with it, and cv.json and the manifest say which."""
    from kit.train import trainer
    from kit.experiment import Experiment

    data = write_mirror_data(tmp_path / "data", split=split)
    cfg = tiny_cfg(tmp_path, data, hflip="auto", stage1_epochs=1, stage2_epochs=0, max_epoch_steps=1, rotate=0.0)
    folds.make_folds(cfg)
    used = []
    loaders = trainer.fold_loaders
    monkeypatch.setattr(trainer, "fold_loaders", lambda *a, **k: used.append(a[-1]) or loaders(*a, **k))
    train.run([cfg])
    exp = Experiment.of(cfg)
    found = json.loads(exp.plan.read_text())["flip"]
    assert found["hflip"] == want, found
    assert found["unflipped"] >= 0.9, f"the probe learns the task unflipped: {found}"
    assert used == [0.0, want, want], "the probe without flips, then both folds with the choice"
    cv = json.loads(exp.cv_file.read_text())
    assert cv["hflip_auto"] == want
    assert [f["fold"] for f in cv["not_clean"]] == [0], "fold 0's validation images decided the flip: cv.json says so"
    manifest = json.loads(predict.run([cfg])[0].with_suffix(".json").read_text())
    assert manifest["runs"][-1]["hflip_auto"] == {"tiny": want}

    monkeypatch.setattr(flip, "probe", lambda *a, **k: pytest.fail("a kept choice is not measured again"))
    assert plan.decide(cfg, folds.load(cfg), torch.device("cpu")).hflip == want
    again = dataclasses.replace(cfg, rotate=5.0)  # a weight-shaping key: the probe's data changed, measure again
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        plan.decide(again, folds.load(again), torch.device("cpu"))


def test_the_plan_is_decided_once_in_its_order_and_kept_in_one_record(tmp_path, easy_data, monkeypatch):
    """start, lr, flip, epochs: one plan.json under one key; each step sees the ones before it (the flip probe
    at the lr found, the budget less the probes' seconds); a kept plan is not decided again."""
    from kit.train import budget, lr_find
    from kit.experiment import Experiment
    seen = {}
    monkeypatch.setattr(lr_find, "sweep", lambda t: seen.setdefault("lr", {"hflip": t.train_dl.dataset}) and {
        "lr": 0.02, "min_loss_lr": 0.2, "lrs": [0.2], "losses": [1.0]})
    monkeypatch.setattr(flip, "probe", lambda t, lr, steps: seen.setdefault("flip_lr", lr) and (
        np.ones(8), np.ones(8), 0.5))
    monkeypatch.setattr(budget, "probe", lambda t: (0.01, 0.001))
    cfg = tiny_cfg(tmp_path, easy_data, pretrained="auto", stage1_lr="auto", hflip="auto", time_budget=5,
                   stage1_epochs=2, stage2_epochs=1, warmup_epochs=0)
    folds.make_folds(cfg)
    decided = plan.decide(cfg, folds.load(cfg), torch.device("cpu"))
    record = json.loads(Experiment.of(cfg).plan.read_text())
    assert [k for k in record if k != "key"] == ["start", "lr", "flip", "epochs"], list(record)
    assert seen["flip_lr"] == pytest.approx(0.02), "the flip probe runs at the rate the range test found"
    assert record["epochs"]["spent_s"] == round(record["lr"]["seconds"] + record["flip"]["seconds"], 1)
    assert (decided.pretrained, decided.lr, decided.hflip) == (False, 0.02, flip.ON)
    assert decided.epochs == (record["epochs"]["stage1_epochs"], record["epochs"]["stage2_epochs"])
    monkeypatch.setattr(lr_find, "sweep", lambda t: pytest.fail("a kept plan is not decided again"))
    assert plan.decide(cfg, folds.load(cfg), torch.device("cpu")) == decided
    assert Experiment.of(cfg).decided(plan.key(cfg, folds.load(cfg).fingerprint)) == {
        "pretrained": False, "stage1_lr": 0.02, "hflip": flip.ON, "epochs": list(decided.epochs)}


def test_hflip_auto_rule():
    """The flip goes only when flipped images lose most of a significant skill; too little skill keeps it."""
    def hits(right: int, n: int = 100):  # per-image scores: the first `right` images right
        return (np.arange(n) < right).astype(float)

    swapped = flip.decide(hits(100), hits(0), majority=0.5)  # two classes, every flip a class change
    assert swapped["hflip"] == 0.0 and swapped["lost"] == pytest.approx(2.0), swapped
    orientation = flip.decide(hits(30), hits(6), majority=0.01)  # 100 classes: 83% of the skill lost
    assert orientation["hflip"] == 0.0, orientation
    kept = flip.decide(hits(30), hits(26), majority=0.01)  # a flip that keeps the class costs a little
    assert kept["hflip"] == flip.ON and kept["lost"] < 0.2, kept
    few = flip.decide(hits(2, 8), hits(0, 8), majority=0.5)  # 2 of 8 right on two classes: no skill
    assert few["hflip"] == flip.ON and "too little" in few["why"], few
    noisy = flip.decide(hits(9), hits(3), majority=0.01)  # most of the skill lost, z 2.5: not by chance
    assert noisy["hflip"] == 0.0, noisy
    close = flip.decide(hits(4), hits(1), majority=0.01)  # all of it lost, but 3 images: z 1.7, within noise
    assert close["hflip"] == flip.ON and close["lost"] > flip.LOST, close


def test_hflip_must_be_a_probability_or_auto(tmp_path):
    with pytest.raises(ValueError, match=r"hflip=1.5: must be <= 1, or auto"):
        tiny_cfg(tmp_path, tmp_path, hflip=1.5)
    with pytest.raises(ValueError, match="'hflip'.*or auto"):
        tiny_cfg(tmp_path, tmp_path, hflip="sometimes")
    assert tiny_cfg(tmp_path, tmp_path, hflip="auto").hflip == "auto"


def test_photo_regions_make_a_data_set_of_the_classes_asked(tmp_path):
    """kit.synth.write_photo_regions (the bench's classes a flip keeps): folders, test images and their solution."""
    from kit.data.layout import scan
    from kit.data.synth import write_photo_regions

    data = write_photo_regions(tmp_path / "photo", classes=6, per_class=3, side=24)
    layout = scan(data)
    assert len(layout.classes) == 6 and len(layout.train) == 18 and len(layout.test) == 12
    solution = pd.read_csv(data / "solution.csv")
    assert sorted(solution["label"].unique()) == list(layout.classes) and set(solution["Usage"]) == {"Public", "Private"}
    with pytest.raises(AssertionError, match="even"):
        write_photo_regions(tmp_path / "odd", classes=5)


@pytest.mark.parametrize("classes", [2, 6])
def test_synthetic_test_images_put_every_class_on_both_sides_of_the_leaderboard(tmp_path, classes):
    """Public and private each score every class (alternating images would give the odd classes to one side)."""
    from kit.data.synth import write_photo_regions, write_synthetic

    for data in (write_synthetic(tmp_path / "g", classes=classes, per_class=1, side=16),
                 write_photo_regions(tmp_path / "p", classes=classes, per_class=1, side=16)):
        solution = pd.read_csv(data / "solution.csv")
        sides = solution.groupby("Usage")["label"].agg(lambda labels: sorted(set(labels)))
        assert sides["Public"] == sides["Private"] == sorted(set(solution["label"])), data
