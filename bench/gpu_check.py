"""make gpu-check: the one prepared check to run whenever a CUDA machine is at hand (under 6 minutes by its
time boxes).

    make gpu-check                 # in a clone with its .venv
    make gpu-check PY=python3      # a machine whose python3 has torch and timm; albumentations and ttach on its path

1. the data path: the kit's training loader at 448 px (the recipe's transforms, a worker per CPU core)
   on generated 500x375 JPEGs, img/s with this machine's CPUs (KIT_GPU_CHECK_IMAGES of them, default
   32 a core), decoding each image and from the 460 px cache; the one step without CUDA;
2. the GPU-marked tests (tests/test_gpu.py) and the CPU-checkable GPU safeguards (tests/test_runtime.py);
3. resnest50d+SpinalNet training steps at 448 px (mixup, soft-target loss, SGD, on tensors already on the
   GPU): the original notebook's set-up (fp32, batch 16, eager) against the kit's settings, each with
   img/s, peak GPU memory and the projected hours for 5 folds x 60 epochs on 21k images;
4. batched TTA against ttach's loop (hflip, eval batch 64), and their largest difference;
5. whether the data path feeds the fastest training setting (its img/s against the loader's).
Each step has a time box (BOX_S); one that runs over, or fails, records its error and the next runs.
Prints one table and writes bench/results/gpu-check-<gpu>-<date>.json, and $OUT/gpu-check.json where
$OUT is set (the device tool's folder that comes back), rewritten after every step: a run cut off
by its time limit still returns what it measured. On a machine without CUDA it measures the data
path, says in one line that it stopped before the first CUDA step, and exits 0.

On a lent GPU machine (its Python 3.12 has torch and timm; the rest travels as wheels, made here by
`make gpu-wheels` into .whl/, an ignored folder), through the device tool with carry [".whl"]:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 timeout 540 python3 -m bench.gpu_check
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

STEPS, WARMUP = 60, 10  # timed steps after warm-up (compile needs the warm-up)
# (name, amp, channels_last, compile, batch): the notebook first, then one lever at a time
SETTINGS = [
    ("notebook: fp32, batch 16, eager", False, False, False, 16),
    ("amp, batch 16", True, False, False, 16),
    ("amp, channels_last, batch 16", True, True, False, 16),
    ("amp, batch 64 (lr x4)", True, False, False, 64),
    ("amp, channels_last, batch 64", True, True, False, 64),
    ("amp, channels_last, compile, batch 64", True, True, True, 64),
]
IMAGES, FOLDS, EPOCHS = 21_000, 5, 60
BOX_S = {"data path": 60, "tests": 150, "train": 45, "train compiled": 90, "tta": 45}  # about 5.5 min in all


@contextlib.contextmanager
def time_box(seconds: int):
    """Raise TimeoutError in this (the main) thread once `seconds` have passed."""
    def expire(signum, frame):
        raise TimeoutError(f"over its time box of {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def boxed(seconds: int, fn) -> dict:
    """fn()'s result, or {"error": ...} when it fails or runs over its time box: one step never loses the rest."""
    try:
        with time_box(seconds):
            return fn()
    except Exception as e:  # noqa: BLE001 - any failure is this step's finding
        return {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"}


def data_path(n: int, side: int = 448, batch: int = 64) -> dict:
    """Training img/s of the kit's loader (the recipe preset's transforms and worker count) on n JPEGs of 500x375,
    decoding every image (the preset as shipped) and from the resized-image cache (cache=true)."""
    from bench.data_pipeline import make_jpegs
    from kit.config import PRESETS, load_config
    from kit.data.loaders import fold_loaders
    from kit.cpus import num_workers
    with tempfile.TemporaryDirectory() as tmp:
        names = make_jpegs(Path(tmp), (500, 375), n)
        labels = torch.arange(n).numpy() % 2
        out = {"workers": num_workers(-1), "cpus": os.cpu_count(), "images": n, "side": side}
        for key, cache in (("img_per_s", False), ("cached_img_per_s", True)):
            cfg = load_config(PRESETS / "resnest50d_spinalnet.yaml", {
                "data": tmp, "work_dir": tmp, "cache": cache, "cache_dir": str(Path(tmp) / "cache"),
                "batch_size": min(batch, n // 2 * 2), "resize": round(side * 460 / 448), "img_size": side,
                "workers": -1})
            loader = fold_loaders(cfg, Path(tmp), names, labels, names[:2], labels[:2],
                                  pin=torch.cuda.is_available())[0]
            for _ in loader:  # the first pass starts the workers (and fills the cache)
                pass
            t0 = time.perf_counter()
            seen = sum(len(x) for x, _ in loader)
            out[key] = round(seen / (time.perf_counter() - t0), 1)
    return out


def hours(img_per_s: float) -> float:
    """5 folds x 60 epochs: 4/5 of the images trained, 1/5 validated (about a third of a training step each)."""
    per_epoch = IMAGES * 0.8 + IMAGES * 0.2 / 3
    return FOLDS * EPOCHS * per_epoch / img_per_s / 3600


def train_speed(amp: bool, channels_last: bool, compiled: bool, batch: int) -> dict:
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    from bench.common import train_step
    from kit.model import create_model
    from kit.runtime import autocast, grad_scaler
    device = torch.device("cuda")
    torch.manual_seed(0)
    torch.cuda.reset_peak_memory_stats()
    model = create_model("resnest50d", "spinal", 100).to(device).train()  # pretrained=False: speed is the same
    x = torch.randn(batch, 3, 448, 448, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01 * batch / 16, momentum=0.9, weight_decay=1e-4)
    mixup, criterion = Mixup(mixup_alpha=1.0, label_smoothing=0.1, num_classes=100), SoftTargetCrossEntropy()
    amp_ctx, scaler = autocast(device, amp), grad_scaler(device, amp)
    trained = torch.compile(model) if compiled else model

    step = train_step(trained, optimizer, lambda: mixup(x, y), criterion, amp_ctx, scaler)  # mixed every step
    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
    ips = batch * STEPS / (time.perf_counter() - t0)
    return {"img_per_s": round(ips, 1), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "hours_5x60_21k": round(hours(ips), 2)}


def tta_speed() -> dict:
    import ttach

    from kit.model import create_model
    from kit.predict.inference import BatchedTTA
    from kit.runtime import autocast
    from kit.tta import transforms as tta_transforms
    device = torch.device("cuda")
    model = create_model("resnest50d", "spinal", 100).to(device).eval()
    x = torch.randn(64, 3, 448, 448, device=device)
    transforms = tta_transforms(("hflip",), 448)
    loop, batched = ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean"), BatchedTTA(model, transforms)
    out, amp_ctx = {}, autocast(device, True)
    with torch.inference_mode(), amp_ctx():
        for name, wrapped in (("ttach loop", loop), ("batched", batched)):
            wrapped(x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                logits = wrapped(x).float()
            torch.cuda.synchronize()
            out[name] = (64 * 5 / (time.perf_counter() - t0), logits)
    diff = (out["ttach loop"][1] - out["batched"][1]).abs().max().item()
    return {"ttach_img_per_s": round(out["ttach loop"][0], 1), "batched_img_per_s": round(out["batched"][0], 1),
            "max_abs_diff": round(diff, 4)}


def tests() -> dict:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py",
                           "tests/test_runtime.py"], capture_output=True, text=True, timeout=BOX_S["tests"])
    return {"exit_code": proc.returncode, "summary": (proc.stdout.strip().splitlines() or [""])[-1]}


def main() -> int:
    images = int(os.environ.get("KIT_GPU_CHECK_IMAGES", 32 * (os.cpu_count() or 1)))
    result = {"data_path": boxed(BOX_S["data path"], lambda: data_path(images))}
    print({"data path": result["data_path"]}, flush=True)
    if not torch.cuda.is_available():
        print("gpu-check: stopped before its first CUDA step, no CUDA GPU here (run it on the GPU machine)")
        return 0
    gpu = torch.cuda.get_device_name(0)
    result = {"gpu": gpu, "torch": torch.__version__, **result, "train": []}
    outs = [Path("bench/results") / f"gpu-check-{gpu.replace(' ', '-')}-{date.today().isoformat()}.json"]
    outs += [Path(os.environ["OUT"]) / "gpu-check.json"] if os.environ.get("OUT") else []

    def save() -> None:  # after every step: a run cut off by its time limit keeps what it measured
        for out in outs:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")

    result["tests"] = boxed(BOX_S["tests"] + 10, tests)
    save()
    for name, amp, cl, compiled, batch in SETTINGS:
        box = BOX_S["train compiled" if compiled else "train"]
        row = {"setting": name, **boxed(box, lambda: train_speed(amp, cl, compiled, batch))}
        base = result["train"][0].get("img_per_s") if result["train"] else row.get("img_per_s")
        if base and "img_per_s" in row:
            row["x_notebook"] = round(row["img_per_s"] / base, 2)
        result["train"].append(row)
        print(row, flush=True)
        save()
    result["tta"] = boxed(BOX_S["tta"], tta_speed)
    fastest = max((row.get("img_per_s", 0) for row in result["train"]), default=0)
    if fastest and "img_per_s" in result["data_path"]:
        result["data_path"]["feeds_fastest_setting"] = result["data_path"]["img_per_s"] >= fastest
        result["data_path"]["cached_feeds_fastest_setting"] = result["data_path"]["cached_img_per_s"] >= fastest
    save()
    print(json.dumps(result, indent=2))
    print(f"-> {', '.join(map(str, outs))}")
    return 0 if result["tests"].get("exit_code") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
