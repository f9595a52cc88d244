"""One fold over two processes (torchrun, gloo on CPU) agrees with one process on the same global batch.

    pytest tests/test_ddp.py -q

The model has no BatchNorm (test_vit: LayerNorm), and mixup and dropout are off, so the only
difference between the runs is how the global batch's gradient is summed: results must agree
to float tolerance.
"""
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import write_folder_data
from kit import folds
from kit.config import PRESETS, load_config

pytestmark = pytest.mark.slow
ARGS = ["backbone=test_vit", "head=linear", "head_dropout=0", "resize=160", "img_size=160", "rotate=0",
        "mixup_alpha=0", "batch_size=8", "n_folds=2", "stage1_epochs=2", "stage2_epochs=1", "workers=0",
        "stage1_lr=0.05", "eval_batch_size=16", "pretrained=false"]


def _train(cmd_prefix, data, work_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "kit", "train", "--exp", "demo", "--fold", "0", f"data={data}", f"work_dir={work_dir}", *ARGS]
    subprocess.run([*cmd_prefix, *args], check=True, env=env, capture_output=True, timeout=600)
    fold = work_dir / "demo" / "fold0"
    return pd.read_csv(fold / "history.csv"), torch.load(fold / "best.pt", weights_only=True)


def test_two_processes_match_one(tmp_path):
    data = write_folder_data(tmp_path / "data", n_per_class=16, n_test=3)
    for name in ("one", "two"):
        folds.make_folds(load_config(PRESETS / "demo.yaml", {"data": str(data), "work_dir": str(tmp_path / name), "n_folds": 2}))
    h1, b1 = _train([sys.executable], data, tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    h2, b2 = _train(torchrun, data, tmp_path / "two")
    assert len(h1) == len(h2) == 3
    pd.testing.assert_series_equal(h1["train_loss"], h2["train_loss"], rtol=1e-4, check_exact=False)
    pd.testing.assert_series_equal(h1["val_loss"], h2["val_loss"], rtol=1e-4, check_exact=False)
    assert list(h1["val_top1"]) == list(h2["val_top1"]), (h1["val_top1"], h2["val_top1"])
    for k, v in b1["model"].items():
        torch.testing.assert_close(b2["model"][k], v, rtol=1e-4, atol=1e-5, msg=f"weights differ at {k}")


RANK_SCRIPT = """
import os, sys
from kit import train
from kit.cli import main
rank, mode = int(os.environ["RANK"]), sys.argv[1]
if mode == "skew":  # rank 0 sees no gain after epoch 1 (patience 1 stops it); rank 1 sees a gain every epoch
    validate, calls = train.validate, [0]
    def skewed(*args, **kwargs):
        out, calls[0] = validate(*args, **kwargs), calls[0] + 1
        out["val_score"] = 0.9 if rank == 0 else 0.9 + 0.01 * calls[0]
        return out
    train.validate = skewed
if mode == "nan":  # rank 1's loss turns NaN at its 3rd step, the last of the epoch
    from timm.loss import SoftTargetCrossEntropy
    forward, steps = SoftTargetCrossEntropy.forward, [0]
    def poisoned(self, x, target):
        steps[0] += 1
        loss = forward(self, x, target)
        return loss * float("nan") if rank == 1 and steps[0] == 3 else loss
    SoftTargetCrossEntropy.forward = poisoned
sys.exit(main(sys.argv[2:]))
"""
SMALL = ["backbone=test_resnet", "head=linear", "resize=36", "img_size=32", "batch_size=8", "n_folds=2", "workers=0",
         "eval_batch_size=16", "pretrained=false", "warmup_epochs=0", "patience=1", "stage1_epochs=4",
         "stage2_epochs=1"]


def _torchrun(tmp_path, mode):
    data = write_folder_data(tmp_path / "data", n_per_class=16, n_test=3)
    folds.make_folds(load_config(PRESETS / "demo.yaml", {"data": str(data), "work_dir": str(tmp_path / "f"), "n_folds": 2}))
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), mode,
           "train", "--exp", "demo", "--fold", "0", f"data={data}", f"work_dir={tmp_path / 'f'}", *SMALL]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120), tmp_path / "f" / "demo" / "fold0"


def test_ranks_that_see_different_scores_still_decide_together(tmp_path):
    proc, fold = _torchrun(tmp_path, "skew")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("fold 0 stage 1 epoch 1:") == 1, "only rank 0 logs progress"
    history = pd.read_csv(fold / "history.csv")
    assert list(history["stage"]) == [1, 1, 2], f"rank 0's scores decide: stage 1 stops after 2 epochs\n{history}"


def test_a_nan_on_one_rank_stops_every_rank_with_the_clear_error(tmp_path):
    proc, fold = _torchrun(tmp_path, "nan")
    assert proc.returncode != 0 and proc.stderr.count("loss is nan") == 2, proc.stderr[-3000:]
    assert not (fold / "oof.npz").exists()


def test_a_fold_held_by_another_trainer_is_waited_for_outside_any_collective(tmp_path):
    """Rank 0 must not block on the fold lock while rank 1 waits in a broadcast: with collectives timing out after
    3 s, a lock held three times that long is waited out by polling, and the fold is trained once it is free."""
    import fcntl
    import time

    data = write_folder_data(tmp_path / "data", n_per_class=16, n_test=3)
    work = tmp_path / "f"
    folds.make_folds(load_config(PRESETS / "demo.yaml", {"data": str(data), "work_dir": str(work), "n_folds": 2}))
    lock = work / "demo" / "fold0" / ".train.lock"
    lock.parent.mkdir(parents=True)
    log = tmp_path / "log.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KIT_DIST_TIMEOUT_S": "3"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "kit", "train",
           "--exp", "demo", "--fold", "0", f"data={data}", f"work_dir={work}", *SMALL, "stage1_epochs=1",
           "stage2_epochs=0"]
    with open(lock, "w") as held, open(log, "w") as out:
        fcntl.flock(held, fcntl.LOCK_EX)  # a second trainer on the same folder holds fold 0
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "another process is training it" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(9)  # three collective timeouts
        assert proc.poll() is None, log.read_text()[-3000:]
        fcntl.flock(held, fcntl.LOCK_UN)
    assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert (work / "demo" / "fold0" / "oof.npz").is_file()
