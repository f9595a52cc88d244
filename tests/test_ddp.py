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
from kit.config import load_config

pytestmark = pytest.mark.slow
ARGS = ["backbone=test_vit", "head=linear", "head_dropout=0", "resize=160", "img_size=160", "rotate=0",
        "mixup_alpha=0", "batch_size=8", "n_folds=2", "stage1_epochs=2", "stage2_epochs=1", "workers=0",
        "stage1_lr=0.05", "eval_batch_size=16", "pretrained=false"]


def _train(cmd_prefix, data, work_dir):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    args = ["-m", "kit", "train", "--exp", "demo", "--fold", "0", f"data={data}", f"work_dir={work_dir}", *ARGS]
    subprocess.run([*cmd_prefix, *args], check=True, env=env, capture_output=True, timeout=600)
    fold = work_dir / "demo" / "fold0"
    return pd.read_csv(fold / "history.csv"), torch.load(fold / "best.pt", weights_only=True)


def test_two_processes_match_one(tmp_path):
    data = write_folder_data(tmp_path / "data", n_per_class=16, n_test=3)
    for name in ("one", "two"):
        folds.run(load_config("configs/demo.yaml", {"data": str(data), "work_dir": str(tmp_path / name), "n_folds": 2}))
    h1, b1 = _train([sys.executable], data, tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    h2, b2 = _train(torchrun, data, tmp_path / "two")
    assert len(h1) == len(h2) == 3
    pd.testing.assert_series_equal(h1["train_loss"], h2["train_loss"], rtol=1e-4, check_exact=False)
    pd.testing.assert_series_equal(h1["val_loss"], h2["val_loss"], rtol=1e-4, check_exact=False)
    assert list(h1["val_top1"]) == list(h2["val_top1"]), (h1["val_top1"], h2["val_top1"])
    for k, v in b1["model"].items():
        torch.testing.assert_close(b2["model"][k], v, rtol=1e-4, atol=1e-5, msg=f"weights differ at {k}")
