"""GPU paths: AMP training and batched TTA on CUDA. Skipped without a GPU.  pytest tests/test_gpu.py -q"""
import pytest
import torch
import ttach

from conftest import exp_dir, tiny_cfg
from kit.data import folds
from kit.model import create_model
from kit.predict import predict
from kit.predict.inference import BatchedTTA
from kit.train import loop as train
from kit.tta import transforms as tta_transforms

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_amp_training_writes_cpu_loadable_checkpoints(tmp_path, folder_data):
    cfg = tiny_cfg(tmp_path, folder_data, amp=True, stage1_epochs=2, stage2_epochs=1, workers=2)
    folds.make_folds(cfg)
    train.run([cfg])
    best = torch.load(exp_dir(cfg) / "fold0" / "best.pt", map_location="cpu", weights_only=True)
    assert all(v.device.type == "cpu" for v in best["model"].values())
    assert len(predict.run([cfg])) == 1


def test_batched_tta_equals_ttach_under_autocast():
    torch.manual_seed(0)
    model = create_model("test_resnet", "spinal", 5, spinal_width=8).cuda().eval()
    x = torch.randn(8, 3, 64, 64, device="cuda")
    transforms = tta_transforms(("hflip", "vflip"), 64)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        want = ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean")(x).float()
        got = BatchedTTA(model, transforms)(x).float()
    torch.testing.assert_close(got, want, rtol=0, atol=5e-2)  # bf16: about 3 significant digits
