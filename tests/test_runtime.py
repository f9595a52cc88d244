"""Device, precision, workers and the GPU-path safeguards that can be checked on a CPU.

    pytest tests/test_runtime.py -q
"""
import copy
import logging

import pytest
import timm
import torch
import ttach

from conftest import exp_dir, tiny_cfg, train_interrupted, write_folder_data
from kit import runtime
from kit.data import folds
from kit.model import create_model
from kit.predict.inference import BatchedTTA
from kit.train import loop as train
from kit.tta import transforms as tta_transforms


@pytest.mark.parametrize("capability, amp, want", [
    ((7, 5), True, torch.float16),  # T4 (Kaggle, Colab): bf16 would be emulated
    ((7, 0), True, torch.float16),  # V100
    ((8, 0), True, torch.bfloat16),  # A100
    ((9, 0), True, torch.bfloat16),  # H100
    ((9, 0), False, torch.float32),  # amp=false
    (None, True, torch.float32),  # the CPU
])
def test_precision_by_compute_capability(capability, amp, want):
    assert runtime.dtype_for(capability, amp) == want


def test_a_driver_without_working_cuda_is_an_error_not_a_cpu_run(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_nvidia_driver", lambda: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01")
    with pytest.raises(ValueError, match=r"CUDA does not start \(driver: NVRM.*470\.82\.01.*device=cpu"):
        runtime.pick_device("auto")
    assert runtime.pick_device("cpu").type == "cpu", "device=cpu runs on the CPU whatever the driver"
    monkeypatch.setattr(runtime, "_nvidia_driver", lambda: "")
    assert runtime.pick_device("auto").type == "cpu", "no driver, no GPU: the CPU, silently"
    with pytest.raises(ValueError, match="CUDA does not start"):
        runtime.pick_device("cuda")


def test_gpus_hidden_on_purpose_mean_the_cpu_not_an_old_driver(monkeypatch):
    """A CPU task beside GPUs (kit jobs --gpus 0) runs with CUDA_VISIBLE_DEVICES="": the CPU, not "driver too old"."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_nvidia_driver", lambda: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert runtime.pick_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES='' hides every GPU"):
        runtime.pick_device("cuda")


def test_the_first_line_names_device_precision_workers_threads_and_batch(tmp_path, folder_data, caplog):
    cfg = tiny_cfg(tmp_path, folder_data, stage1_epochs=1, stage2_epochs=0)
    folds.make_folds(cfg)
    with caplog.at_level(logging.INFO):
        train.run([cfg], only=[0])
    first = next(r.getMessage() for r in caplog.records if r.name == "kit.train.loop")
    assert first.startswith("train: device cpu (") and "precision float32, workers 0, threads " in first, first
    assert " kit process" in first and ", batch 8, allocator " in first, first


def test_capped_batched_tta_equals_uncapped():
    torch.manual_seed(0)
    model = create_model("test_resnet", "spinal", 5, spinal_width=8).eval()
    x = torch.randn(4, 3, 32, 32)
    transforms = tta_transforms(("hflip", "vflip"), 32)  # 4 views x 4 images = 16 per forward uncapped
    with torch.inference_mode():
        want = ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean")(x)
        seen = []
        handle = model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
        got = BatchedTTA(model, transforms, max_images=6)(x)
        handle.remove()
    assert max(seen) <= 6 and sum(seen) == 16, seen
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_the_kits_sync_batchnorm_keeps_batchnorm_act_outputs():
    """What FoldRun does to a model under torchrun on GPUs: every BatchNorm synced, its activation kept."""
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=3).eval()  # BatchNormAct2d layers
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        synced = runtime.sync_batchnorm(copy.deepcopy(model), torch.device("cuda")).eval()  # no GPU is used
        got = synced(x)
        torchs = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)).eval()(x)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules()), "the kit's converter syncs"
    assert not any(type(m) is torch.nn.BatchNorm2d for m in synced.modules()), "every BatchNorm is converted"
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(torchs, want, atol=1e-3), "torch's converter drops the activation: the reason for timm's"
    assert runtime.sync_batchnorm(model, torch.device("cpu")) is model, "gloo on CPU has no SyncBatchNorm: left as is"


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    return write_folder_data(tmp_path_factory.mktemp("easy"), n_per_class=16, n_test=6)


def test_a_finished_fold_keeps_only_its_best_and_last_weights(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=2, stage2_epochs=1)
    folds.make_folds(cfg)
    train.run([cfg], only=[0])
    assert sorted(p.name for p in (exp_dir(cfg) / "fold0").glob("*.pt")) == ["best.pt", "final.pt"]
    kept = tiny_cfg(tmp_path / "kept", easy_data, stage1_epochs=2, stage2_epochs=1, keep_checkpoints=True)
    folds.make_folds(kept)
    train.run([kept], only=[0])
    kept_files = {p.name for p in (exp_dir(kept) / "fold0").glob("*.pt")}
    assert {"best.pt", "stage1_best.pt", "last.pt", "last.prev.pt"} <= kept_files, kept_files


def test_resume_never_overwrites_a_better_best_pt(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=4, stage2_epochs=0)
    folds.make_folds(cfg)
    train_interrupted(cfg, epochs=2)
    best = exp_dir(cfg) / "fold0" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    torch.save({**ckpt, "score": 1.5}, best)  # as if the killed epoch had written a better best.pt than last.pt knows
    last = exp_dir(cfg) / "fold0" / "last.pt"
    state = torch.load(last, weights_only=True)
    torch.save({**state, "state": {**state["state"], "best": 0.0}}, last)  # ... and died before last.pt caught up
    train.run([cfg], only=[0])
    assert torch.load(best, weights_only=True)["score"] == 1.5, "a resumed run must not replace it with a worse one"


def test_loss_scaler_state_resumes(tmp_path, easy_data, monkeypatch):
    """An fp16 run's loss scale lives in last.pt: a resumed fold goes on with it, as if never stopped."""
    from kit.train import trainer as trainer_module
    monkeypatch.setattr(trainer_module, "grad_scaler", lambda device, amp: torch.amp.GradScaler(
        "cpu", init_scale=2.0**8, growth_interval=2))  # the scale doubles every 2 finite steps
    states = []
    for name, stop in (("straight", None), ("resumed", 2)):
        cfg = tiny_cfg(tmp_path / name, easy_data, stage1_epochs=4, stage2_epochs=0, keep_checkpoints=True)
        folds.make_folds(cfg)
        if stop:
            train_interrupted(cfg, epochs=stop)
        train.run([cfg], only=[0])
        states.append(torch.load(exp_dir(cfg) / "fold0" / "last.pt", weights_only=True)["scaler"])
    assert states[0]["scale"] > 2.0**8 and states[0] == states[1], states


def test_two_trainers_on_one_folder_share_the_folds(tmp_path):
    """Two `kit train` processes at once: every fold is trained once, by one of them, and both take a share."""
    import os
    import subprocess
    import sys
    data = write_folder_data(tmp_path / "data", n_per_class=24, n_test=3)
    args = [f"data={data}", f"work_dir={tmp_path / 'f'}", "backbone=test_resnet", "head=linear", "resize=36",
            "img_size=32", "n_folds=4", "workers=0", "batch_size=8", "stage1_epochs=6", "stage2_epochs=1",
            "pretrained=false", "eval_batch_size=64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kit = [sys.executable, "-m", "kit"]
    subprocess.run([*kit, "folds", "--exp", "demo", *args], check=True, env=env, capture_output=True)
    procs = [subprocess.Popen([*kit, "train", "--exp", "demo", *args], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    done = [[k for k in range(4) if f"fold {k} done" in log] for log in logs]
    assert sorted(done[0] + done[1]) == [0, 1, 2, 3] and done[0] and done[1], f"each fold once, both busy: {done}"
    assert (tmp_path / "f" / "demo" / "cv.json").is_file()


def test_a_lock_file_left_by_a_dead_process_claims_nothing(tmp_path, easy_data):
    cfg = tiny_cfg(tmp_path, easy_data, stage1_epochs=1, stage2_epochs=0)
    folds.make_folds(cfg)
    (exp_dir(cfg) / "fold0").mkdir(parents=True)
    (exp_dir(cfg) / "fold0" / ".train.lock").write_text("")  # its process died: flock released the lock
    train.run([cfg], only=[0])
    assert (exp_dir(cfg) / "fold0" / "oof.npz").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine gpu-check runs for real")
def test_gpu_check_measures_the_data_path_then_says_in_one_line_that_it_needs_cuda():
    import ast
    import os
    import subprocess
    import sys
    env = {**os.environ, "KIT_GPU_CHECK_IMAGES": "8"}
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check"], capture_output=True, text=True, timeout=120,
                          env=env)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 2, proc.stdout + proc.stderr
    measured = ast.literal_eval(lines[0])["data path"]
    assert measured["img_per_s"] > 0 and measured["cached_img_per_s"] > 0, measured
    assert (measured["images"], measured["side"]) == (8, 448), measured
    assert "stopped before its first CUDA step" in lines[1]


@pytest.mark.parametrize("capability, name, runs", [
    ((7, 5), "Tesla T4", True), ((8, 0), "A100", True), ((8, 9), "L4", True), ((9, 0), "H200", True),
    ((6, 0), "Tesla P100", False), ((7, 0), "Tesla V100", False)])
def test_a_gpu_the_build_has_no_kernels_for_is_refused_in_one_line(capability, name, runs):
    built = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # the pinned torch's torch.cuda.get_arch_list()
    if runs:
        runtime.check_arch(capability, built, name)
        return
    with pytest.raises(ValueError, match=rf"{name} \(sm_{capability[0]}{capability[1]}\) is not a GPU .* device=cpu"):
        runtime.check_arch(capability, built, name)
    runtime.check_arch(capability, [*built, "compute_60"], name)  # PTX for an older GPU: compiled at load, runs


@pytest.mark.parametrize("built, capability, runs", [
    (["sm_90a", "sm_100", "sm_120a"], (9, 0), True),  # aarch64 GH200 builds list arch-specific cubins
    (["sm_90a", "sm_100", "sm_120a"], (12, 0), True),
    (["sm_90a"], (9, 1), False),  # an arch-specific cubin runs on that capability alone
    (["sm_100f"], (10, 3), True),  # a family cubin: every 10.x
    (["sm_80", "sm_custom"], (8, 6), True)])  # an entry it cannot read is passed over, not a crash
def test_arch_lists_with_suffixed_entries_are_read(built, capability, runs):
    if runs:
        runtime.check_arch(capability, built, "GPU")
    else:
        with pytest.raises(ValueError, match=r"is not a GPU this torch .* was built for"):
            runtime.check_arch(capability, built, "GPU")
