"""Training: learns, two stages, early stopping, honest CV, exact resume.  pytest tests/test_train.py -q"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score

from conftest import exp_dir, tiny_cfg, train_interrupted, write_folder_data
from kit.data import folds
from kit.io import load_npz
from kit.train import loop as train

EASY = dict(stage1_epochs=5, stage2_epochs=3, n_folds=2, keep_checkpoints=True)


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("easy"), n_per_class=16, n_test=6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, easy_data):
    """One full tiny run, watching what stage 2 starts from."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = tiny_cfg(tmp, easy_data, **EASY)
    folds.make_folds(cfg)
    seen = {}
    original = train.FoldRun._enter_stage

    def spy(self, model, state, stage):
        out = original(self, model, state, stage)
        seen[self.fold] = {k: v.clone() for k, v in model.state_dict().items()}
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train.FoldRun, "_enter_stage", spy)
        train.run([cfg])
    return cfg, seen


def test_learns_an_easy_task_far_above_chance(trained):
    cfg, _ = trained
    cv = json.loads((exp_dir(cfg) / "cv.json").read_text())
    assert cv["top1"] >= 0.9, f"3 colour classes (chance 0.33) should be learnt: {cv}"


def test_cv_json_equals_accuracy_recomputed_from_oof(trained):
    cfg, _ = trained
    cv = json.loads((exp_dir(cfg) / "cv.json").read_text())
    parts = [load_npz(exp_dir(cfg) / f"fold{k}" / "oof.npz") for k in range(2)]
    labels = np.concatenate([p["labels"] for p in parts])
    preds = np.concatenate([p["logits"].argmax(1) for p in parts])
    assert cv["top1"] == pytest.approx(accuracy_score(labels, preds), abs=1e-12)
    assert sorted(np.concatenate([p["ids"] for p in parts])) == sorted(pd.read_csv(cfg.work_dir + "/folds.csv")["path"])


def test_oof_comes_from_the_best_weights(trained):
    cfg, _ = trained
    for k in range(2):
        best = torch.load(exp_dir(cfg) / f"fold{k}" / "best.pt", weights_only=True)
        oof = load_npz(exp_dir(cfg) / f"fold{k}" / "oof.npz")
        assert accuracy_score(oof["labels"], oof["logits"].argmax(1)) == pytest.approx(best["score"]), \
            "OOF accuracy must be best.pt's validation score, not the last epoch's"


def test_stage2_starts_from_stage1_best(trained):
    cfg, seen = trained
    for k in range(2):
        stage1 = torch.load(exp_dir(cfg) / f"fold{k}" / "stage1_best.pt", weights_only=True)
        history = pd.read_csv(exp_dir(cfg) / f"fold{k}" / "history.csv")
        assert stage1["score"] == history.loc[history["stage"] == 1, "val_top1"].max()
        for name, value in stage1["model"].items():
            assert torch.equal(seen[k][name], value), f"fold {k}: stage 2 did not start from stage1_best.pt ({name})"


def test_best_is_best_over_both_stages_and_checkpoints_are_plain(trained):
    cfg, _ = trained
    fold = exp_dir(cfg) / "fold0"
    best = torch.load(fold / "best.pt", weights_only=True)
    last = torch.load(fold / "last.pt", weights_only=True)
    history = pd.read_csv(fold / "history.csv")
    assert best["score"] == history["val_top1"].max() and best["classes"] == ["0", "1", "2"]
    assert best["cfg"]["backbone"] == "test_resnet" and {"optimizer", "state"} <= set(last)
    assert list(history.columns)[:10] == ["epoch", "stage", "lr", "train_loss", "train_top1", "val_loss", "val_top1",
                                          "val_top5", "val_score", "seconds"], history.columns
    assert (fold / "curves.png").stat().st_size > 0 and (exp_dir(cfg) / "confusion_matrix.png").stat().st_size > 0


def test_finished_folds_are_skipped(trained):
    cfg, _ = trained
    before = (exp_dir(cfg) / "fold0" / "best.pt").stat().st_mtime_ns
    train.run([cfg])
    assert (exp_dir(cfg) / "fold0" / "best.pt").stat().st_mtime_ns == before


def test_changed_settings_are_not_mixed_in(trained):
    cfg, _ = trained
    (exp_dir(cfg) / "fold1" / "oof.npz").rename(exp_dir(cfg) / "fold1" / "oof.bak")
    try:
        with pytest.raises(ValueError, match=r"stage1_lr=0\.05 \(now 0\.3\)"):
            train.run([tiny_cfg(exp_dir(cfg).parent.parent, cfg.data, **{**EASY, "stage1_lr": 0.3})])
    finally:
        (exp_dir(cfg) / "fold1" / "oof.bak").rename(exp_dir(cfg) / "fold1" / "oof.npz")


def test_changed_settings_on_finished_folds_are_refused_and_config_stays_true(trained):
    cfg, _ = trained
    saved = (exp_dir(cfg) / "config.yaml").read_bytes()
    other = tiny_cfg(exp_dir(cfg).parent.parent, cfg.data, **{**EASY, "img_size": 24, "resize": 28})
    with pytest.raises(ValueError, match=r"img_size=32 \(now 24\).*another name="):
        train.run([other])
    assert (exp_dir(cfg) / "config.yaml").read_bytes() == saved, "config.yaml must keep describing the trained folds"
    # keys that shape only predictions may change after training: the folds stay "already trained"
    train.run([tiny_cfg(exp_dir(cfg).parent.parent, cfg.data, **{**EASY, "tta": ["hflip"], "workers": 1})])


def test_cv_json_reports_the_last_epochs_top1(trained):
    cfg, _ = trained
    cv = json.loads((exp_dir(cfg) / "cv.json").read_text())
    want = [pd.read_csv(exp_dir(cfg) / f"fold{k}" / "history.csv")["val_top1"].iloc[-1] for k in range(2)]
    n = [f["n"] for f in cv["folds"]]
    assert cv["metric"] == "accuracy" and cv["last_epoch_score"] == pytest.approx(np.dot(n, want) / sum(n)), cv


def test_early_stopping_stops_after_patience(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=30, stage2_epochs=0, patience=2, n_folds=2)
    folds.make_folds(cfg)
    train.run([cfg], only=[0])
    top1 = pd.read_csv(exp_dir(cfg) / "fold0" / "history.csv")["val_top1"].to_numpy()
    last_gain = int(np.argmax(top1))  # the first epoch reaching the best
    assert len(top1) < 30, "should have stopped early on an easy task"
    assert len(top1) == last_gain + 1 + 2, f"must stop exactly patience=2 epochs after the last gain: {top1}"


class _Overflows(torch.nn.Module):
    """A linear model whose forward pass overflows (inf logits, as fp16 activations past 65504) at chosen steps."""

    def __init__(self, at):
        super().__init__()
        self.fc, self.at, self.step = torch.nn.Linear(4, 3), set(at), 0

    def forward(self, x):
        out = self.fc(x.flatten(1))
        self.step += 1
        return out * float("inf") if self.step in self.at else out


def _epoch(model, scaled: bool, steps: int = 6):
    from timm.loss import SoftTargetCrossEntropy

    from kit.engine import train_one_epoch
    from kit.runtime import autocast
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(4 * steps, 4), torch.arange(4 * steps) % 3)
    scaler = torch.amp.GradScaler("cpu", enabled=scaled)  # the fp16 path's scaler; the CPU has one too
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    mixup = lambda x, y: (x, torch.nn.functional.one_hot(y, 3).float())  # noqa: E731
    loss = train_one_epoch(model, torch.utils.data.DataLoader(data, batch_size=4), optimizer, scaler, mixup,
                           SoftTargetCrossEntropy(), autocast(torch.device("cpu"), False), torch.device("cpu"), 0,
                           "fold 0 stage 1 epoch 1")[0]
    return loss, scaler


def test_an_fp16_overflow_is_skipped_and_one_that_persists_stops(caplog):
    """With loss scaling (fp16) an overflowed step is skipped as GradScaler skips it: no update, the scale halved,
    left out of the mean, a warning; every step overflowing stops training; without scaling any inf stops it."""
    import logging
    clean, overflow = _Overflows([]), _Overflows([3])
    overflow.load_state_dict(clean.state_dict())
    with caplog.at_level(logging.WARNING):
        loss, scaler = _epoch(overflow, scaled=True)
    assert np.isfinite(loss) and scaler.get_scale() == 2.0 ** 15, (loss, scaler.get_scale())
    assert "1 of 6 steps skipped" in caplog.text, caplog.text
    assert all(torch.isfinite(p).all() for p in overflow.parameters())
    assert not torch.equal(overflow.fc.weight, clean.fc.weight), "the other steps trained"
    with pytest.raises(ValueError, match=r"step 0-5: loss overflowed in every step \(fp16"):
        _epoch(_Overflows(range(1, 7)), scaled=True)
    with pytest.raises(ValueError, match=r"step 0-5: loss is (nan|inf)"):
        _epoch(_Overflows([3]), scaled=False)


class _InfGrad(torch.autograd.Function):
    """The identity, whose gradient overflows: a finite loss with inf gradients (fp16 backward past 65504)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class _GradOverflows(_Overflows):
    def forward(self, x):
        out = self.fc(x.flatten(1))
        self.step += 1
        return _InfGrad.apply(out) if self.step in self.at else out


def test_steps_skipped_for_overflowed_gradients_under_a_finite_loss_are_counted(caplog):
    import logging
    with caplog.at_level(logging.WARNING):
        loss, scaler = _epoch(_GradOverflows([2, 5]), scaled=True)
    assert np.isfinite(loss) and scaler.get_scale() == 2.0 ** 14, (loss, scaler.get_scale())
    assert "2 of 6 steps skipped" in caplog.text, caplog.text


def test_nan_loss_stops_with_epoch_and_step(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_lr=1e12, stage1_epochs=20, mixup_alpha=0.0)  # diverges
    folds.make_folds(cfg)
    with pytest.raises(ValueError, match=r"fold 0 stage 1 epoch \d+ step \d+-\d+: loss is (nan|inf)") as e:
        train.run([cfg], only=[0])
    assert not (exp_dir(cfg) / "fold0" / "oof.npz").exists(), f"a failed fold must not look finished: {e.value}"
    last = exp_dir(cfg) / "fold0" / "last.pt"
    if last.exists():  # the failure came after a finished epoch: last.pt is that epoch, and finite
        assert all(torch.isfinite(v).all() for v in torch.load(last, weights_only=True)["model"].values()
                   if v.is_floating_point())


def _fold_result(cfg, k=0):
    best = torch.load(exp_dir(cfg) / f"fold{k}" / "best.pt", weights_only=True)
    return best["score"], best["model"], pd.read_csv(exp_dir(cfg) / f"fold{k}" / "history.csv")


def _assert_same_run(a, b):
    assert a[0] == b[0], f"best scores differ: {a[0]} vs {b[0]}"
    for k in a[1]:
        assert torch.equal(a[1][k], b[1][k]), f"best weights differ at {k}"
    cols = ["epoch", "stage", "lr", "train_loss", "val_loss", "val_top1"]
    pd.testing.assert_frame_equal(a[2][cols], b[2][cols])


def ref_and_interrupted(tmp_path, data, settings: dict, epochs: int):
    """Fold 0 trained uninterrupted (ref), and the same run stopped after `epochs` epochs (cut)."""
    ref = tiny_cfg(tmp_path / "ref", data, **settings)
    folds.make_folds(ref)
    train.run([ref], only=[0])
    cut = tiny_cfg(tmp_path / "cut", data, **settings)
    folds.make_folds(cut)
    train_interrupted(cut, epochs=epochs)
    return ref, cut


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_between_epochs_matches_uninterrupted(tmp_path, easy_data, optimizer):
    """Resumed from last.pt, the same run: the weights and the optimizer's state (momentum; Adam's moments)."""
    ref, cut = ref_and_interrupted(tmp_path, easy_data, {**EASY, "optimizer": optimizer}, epochs=3)
    assert len(pd.read_csv(exp_dir(cut) / "fold0" / "history.csv")) == 3
    train.run([cut], only=[0])
    _assert_same_run(_fold_result(ref), _fold_result(cut))


def _cli_train(cfg, extra=()):
    args = [f"{k}={v}" for k, v in [("data", cfg.data), ("work_dir", cfg.work_dir), ("n_folds", 2),
                                     ("stage1_epochs", cfg.stage1_epochs), ("stage2_epochs", cfg.stage2_epochs)]]
    from conftest import TINY
    args += [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in TINY.items()
             if k not in ("n_folds", "stage1_epochs", "stage2_epochs")]
    return [sys.executable, "-m", "kit", "train", "--fold", "0", *args, *extra]


@pytest.mark.slow
def test_killed_mid_epoch_resumes_to_the_same_result(tmp_path, easy_data):
    """SIGKILL at a random moment after the first checkpoint, resume, compare with an uninterrupted run."""
    ref = tiny_cfg(tmp_path / "ref", easy_data, **EASY)
    cut = tiny_cfg(tmp_path / "cut", easy_data, **EASY)
    for cfg in (ref, cut):
        folds.make_folds(cfg)
    env = dict(os.environ)
    subprocess.run(_cli_train(ref), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli_train(cut), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = exp_dir(cut) / "fold0" / "history.csv"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:  # kill during epoch 3 (or just after epoch 2's files)
        if history.exists() and len(history.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (exp_dir(cut) / "fold0" / "oof.npz").exists(), "the kill must land before the fold finishes"
    subprocess.run(_cli_train(cut), check=True, env=env, capture_output=True)
    _assert_same_run(_fold_result(ref), _fold_result(cut))


def test_shard_trains_only_its_folds(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=1, stage2_epochs=0, n_folds=3)
    folds.make_folds(cfg)
    train.run([cfg], shard=(1, 2))  # folds k with k % 2 == 1
    done = sorted(p.parent.name for p in exp_dir(cfg).glob("fold*/oof.npz"))
    assert done == ["fold1"], done
    assert not (exp_dir(cfg) / "cv.json").exists(), "cv.json waits for every fold"


def test_error_analysis_is_written_beside_cv_json(trained):
    exp = exp_dir(trained[0])
    table = pd.read_csv(exp / "per_class.csv", dtype={"class": str})
    oof = [load_npz(exp / f"fold{k}" / "oof.npz") for k in range(2)]
    labels = np.concatenate([o["labels"] for o in oof])
    preds = np.concatenate([o["logits"] for o in oof]).argmax(1)
    assert table["images"].sum() == len(labels), "every OOF image is counted once"
    assert table["top1"].mul(table["images"]).sum() == pytest.approx((labels == preds).sum())
    assert (exp / "confused_pairs.csv").is_file() and (exp / "mistakes.png").stat().st_size > 0


def test_checkpoint_every_s_writes_last_pt_at_stage_ends_and_resumes_the_same(tmp_path, easy_data):
    """Throttled, last.pt is written at the end of each stage only; a run stopped in stage 2 resumes from
    stage 1's end and ends as the uninterrupted run does."""
    settings = {**EASY, "checkpoint_every_s": 3600}
    ref, cut = ref_and_interrupted(tmp_path, easy_data, settings, epochs=EASY["stage1_epochs"] + 1)
    last = torch.load(exp_dir(cut) / "fold0" / "last.pt", weights_only=True)["state"]
    assert (last["stage"], last["epoch"], last["stopped"]) == (1, EASY["stage1_epochs"], True), last
    assert not (exp_dir(cut) / "fold0" / "last.prev.pt").exists(), "one write in stage 1, at its end"
    train.run([cut], only=[0])
    _assert_same_run(_fold_result(ref), _fold_result(cut))


def test_pretrained_file_is_its_content_not_its_path(tmp_path, easy_data):
    """The same weights under another path (a new notebook session) resume and predict; other bytes are refused."""
    import timm
    from safetensors.torch import save_file

    from kit.engine import load_checkpoint
    from kit.predict import predict
    from kit.experiment import Experiment

    ref = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    weights = {k: v.contiguous() for k, v in ref.state_dict().items()}
    first, moved = tmp_path / "session1" / "w.safetensors", tmp_path / "session2" / "w.safetensors"
    first.parent.mkdir(), moved.parent.mkdir()
    save_file(weights, first)
    cfg = tiny_cfg(tmp_path, easy_data, pretrained=True, pretrained_file=str(first), stage1_epochs=1,
                   stage2_epochs=0, max_epoch_steps=1)
    folds.make_folds(cfg)
    train.run([cfg])
    predict.run([cfg])
    fold0 = Experiment.of(cfg).fold(0)
    assert load_checkpoint(fold0.best)["cfg"]["pretrained_file_sha256"], "the checkpoint records the weights' hash"
    logits = fold0.logits("test").stat().st_mtime_ns

    first.rename(moved)
    again = tiny_cfg(tmp_path, easy_data, pretrained=True, pretrained_file=str(moved), stage1_epochs=1,
                     stage2_epochs=0, max_epoch_steps=1)
    Experiment.of(again).check_trained(again, 2)  # training resumes
    predict.run([again])
    assert fold0.logits("test").stat().st_mtime_ns == logits, "the same weights elsewhere: the logits still hold"

    save_file({k: v + 1 for k, v in weights.items()}, moved)
    with pytest.raises(ValueError, match=r"pretrained_file=.*other content"):
        Experiment.of(again).check_trained(again, 2)


def test_without_stage2_final_pt_holds_the_last_epochs_weights(tmp_path, easy_data):
    """stage2_epochs=0 (a time budget may trim stage 2 away): final.pt, what cv_last scores, is the last epoch's
    model, not stage 1's best loaded back for a stage that never runs."""
    from kit.engine import load_checkpoint
    from kit.train import trainer
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=3, stage2_epochs=0, n_folds=2)
    folds.make_folds(cfg)
    scores, after = iter([0.9, 0.6, 0.5] * 2), []  # epoch 1 is the best, epoch 3 the last
    original_validate, original_epoch = trainer.validate, train.FoldRun._run_epoch

    def validate(*args):
        return original_validate(*args) | {"val_score": next(scores)}

    def run_epoch(self, model, *args):
        original_epoch(self, model, *args)
        if self.fold == 0:
            after.append({k: v.clone() for k, v in model.state_dict().items()})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "validate", validate)
        mp.setattr(train.FoldRun, "_run_epoch", run_epoch)
        train.run([cfg], only=[0])
    final, best = (load_checkpoint(exp_dir(cfg) / "fold0" / f) for f in ("final.pt", "best.pt"))
    assert (best["epoch"], final["epoch"]) == (1, 3), (best["epoch"], final["epoch"])
    assert all(torch.equal(final["model"][k], after[-1][k]) for k in after[-1]), "final.pt is not the last epoch's"
    assert not all(torch.equal(final["model"][k], best["model"][k]) for k in best["model"]), "final.pt is best.pt"


def test_a_fold_whose_claim_is_taken_over_stops_before_its_next_write(tmp_path, easy_data):
    from kit import claim
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=3, stage2_epochs=0, n_folds=2)
    folds.make_folds(cfg)
    original = train.FoldRun._run_epoch

    def taken_over_after_one_epoch(self, model, trained, optimizer, state):
        owner = self.files.lock.with_name(self.files.lock.name + ".owner")
        if state.epoch == 1:  # another machine judged the heartbeat stale and took the fold over
            owner.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
        original(self, model, trained, optimizer, state)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train.FoldRun, "_run_epoch", taken_over_after_one_epoch)
        with pytest.raises(claim.ClaimLost, match="another process took this claim over"):
            train.run([cfg], only=[0])
    fold = exp_dir(cfg) / "fold0"
    assert not (fold / "oof.npz").exists(), "the fold is the other process's now: no done marker from this one"
    assert json.loads((fold / ".train.lock.owner").read_text())["token"] == "theirs", "its claim is left alone"
