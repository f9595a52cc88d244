"""Device, precision and seeding, in one place.

CUDA when available, with autocast (bf16 on sm_80+ GPUs, fp16 with a GradScaler on older ones)
and cudnn.benchmark (or deterministic kernels); on CPU, fp32. The unit of parallel work is the fold: run one process per
fold and pick its GPU with CUDA_VISIBLE_DEVICES (see `make train GPUS=...`). One fold over
several GPUs runs under torchrun, which `setup_distributed()` detects; nothing else changes:

    torchrun --standalone --nproc_per_node=4 -m kit train --exp resnest50d_spinalnet --fold 0
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import random
import re
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0  # the one process that writes files


# How long a rank waits in a collective for the others (a checkpoint write, a slow validation, a dead rank)
# before the job ends with a one-line error; the fold resumes from last.pt when started again.
DIST_TIMEOUT_S = float(os.environ.get("KIT_DIST_TIMEOUT_S", "1800"))


class RanksLost(ValueError):
    """A collective timed out or a rank died: one line, not a traceback from every rank."""


def setup_distributed() -> Dist:
    """Join the process group when torchrun started us (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(seconds=DIST_TIMEOUT_S))
        # left at exit, the group's threads are torn down while still running: a rank then ends in SIGABRT
        # ("terminate called without an active exception") after its work is done, and torchrun fails the job
        atexit.register(_leave)
    return Dist(rank, world, local_rank)


def _leave() -> None:
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except (RuntimeError, ValueError) as e:  # a group already broken by a lost rank: nothing left to close
            log.debug("destroy_process_group: %s", e)


def _collective(op, *args, **kwargs):
    try:
        return op(*args, **kwargs)
    except RuntimeError as e:  # torch.distributed.DistBackendError, gloo's timeouts and closed connections
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RanksLost(f"rank {dist.get_rank()}: lost the other ranks ({first[:200]}); a rank died, or waited "
                        f"elsewhere for over KIT_DIST_TIMEOUT_S={DIST_TIMEOUT_S:g} s: start the job again and the "
                        "fold resumes from last.pt") from None


def barrier(d: Dist) -> None:
    if d.world > 1:
        _collective(dist.barrier)


def sync_batchnorm(model, device: torch.device):
    """On GPUs under torchrun, BatchNorm statistics over the global batch (16 split over 4 GPUs is 4 images each).

    timm's converter, not torch's: torch's turns timm's BatchNormAct2d into a plain SyncBatchNorm and
    drops its activation. The layers are replaced inside `model` (saved and evaluated), with the
    state-dict keys of BatchNorm. Gloo on CPU has no SyncBatchNorm: there each rank keeps its own.
    """
    from timm.layers import convert_sync_batchnorm
    return convert_sync_batchnorm(model) if device.type == "cuda" else model


def mean_over_ranks(value: float, d: Dist) -> float:
    """The mean of a per-process number (e.g. the epoch's train loss) over all ranks."""
    if d.world == 1:
        return value
    on = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=on)
    _collective(dist.all_reduce, t)  # sum
    return t.item() / d.world


def sum_over_ranks(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """The sum of a tensor over all ranks (a copy; the tensor itself is left as it was)."""
    if d.world == 1:
        return t
    out = t.detach().clone()
    _collective(dist.all_reduce, out)
    return out


def from_main(value, d: Dist):
    """Rank 0's value on every rank: decisions (best epoch, early stop, stage change) are made once for all.

    Every rank validates the whole fold with the same weights, but GPU numerics can differ in the
    last digit; a near-tie must not send one rank into stage 2 while another stays in stage 1.
    """
    if d.world == 1:
        return value
    box = [value]
    _collective(dist.broadcast_object_list, box, src=0)
    return box[0]


def _nvidia_driver() -> str:
    """The NVIDIA kernel driver's version line, or "" where there is none."""
    try:
        return Path("/proc/driver/nvidia/version").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return ""


def pick_device(requested: str = "auto", deterministic: bool = False) -> torch.device:
    """CUDA (the GPU setup_distributed() chose, under torchrun) or the CPU.

    "auto" takes CUDA when it works. A machine with an NVIDIA driver where CUDA does not start is an
    error, not a silent CPU run (the recipe would take weeks there): device=cpu asks for the CPU.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        driver = _nvidia_driver()
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")  # GPUs hidden on purpose (a CPU task)
        if hidden and requested == "cuda":
            raise ValueError(f"device=cuda, but CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides "
                             "every GPU: unset it, or name the GPU (CUDA_VISIBLE_DEVICES=0)")
        if hidden:
            return torch.device("cpu")
        if requested == "cuda" or driver:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
            cause = ("the driver is likely too old for it: update the driver or install a torch built for an older "
                     "CUDA" if torch.version.cuda else "install a CUDA build of torch")
            raise ValueError(f"CUDA does not start (driver: {driver or 'none found'}; this torch is a {build} build): "
                             f"{cause}, or set device=cpu to run on the CPU")
        return torch.device("cpu")
    check_arch(torch.cuda.get_device_capability(), torch.cuda.get_arch_list(), torch.cuda.get_device_name())
    # deterministic: the same kernels every run, so a resumed fold ends bit-equal to an uninterrupted one
    torch.backends.cudnn.benchmark = not deterministic  # autotuning picks kernels by timing: fast, not repeatable
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for repeatable results
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return torch.device("cuda", torch.cuda.current_device())


def check_arch(capability: tuple[int, int], arch_list: list[str], name: str) -> None:
    """Refuse a GPU this torch build has no kernels for: CUDA starts on it, and the first kernel fails.

    A build's sm_XY code runs on GPUs of major version X and minor >= Y; its compute_XY (PTX) code is
    compiled at load for any GPU of capability >= X.Y. The pinned torch (CUDA 13) has sm_75 and newer:
    T4, A10, A100, L4, H100, H200, RTX 30/40/50; not the P100 or V100.
    """
    major, minor = capability
    if any(_runs_on(arch, major, minor) for arch in arch_list):
        return
    raise ValueError(f"{name} (sm_{major}{minor}) is not a GPU this torch {torch.__version__} was built for "
                     f"({', '.join(arch_list) or 'no CUDA architectures'}): install a torch built for it (PyTorch's "
                     "CUDA 12.6 wheels still cover sm_50 to sm_90: pip install torch --index-url "
                     "https://download.pytorch.org/whl/cu126), or set device=cpu")


def _runs_on(arch: str, major: int, minor: int) -> bool:
    """Whether one entry of a build's arch list runs on a GPU of capability major.minor. sm_90a and sm_120a
    (arch-specific, e.g. aarch64 GH200 builds) run on exactly that capability; sm_100f on its family (10.x,
    minor >= 0); names this does not know run nowhere, rather than end every command."""
    found = re.fullmatch(r"(sm|compute)_(\d+)([af]?)", arch)
    if not found:
        return False
    kind, digits, suffix = found.groups()
    m, n = divmod(int(digits), 10)
    if kind == "compute":  # PTX: compiled at load for any GPU at least as new (arch-specific PTX: that one only)
        return (m, n) == (major, minor) if suffix == "a" else (m, n) <= (major, minor)
    return m == major and (n == minor if suffix == "a" else n <= minor)


def dtype_for(capability: tuple[int, int] | None, amp: bool) -> torch.dtype:
    """bf16 where the GPU computes it natively (sm_80+: A100, H100, L4), fp16 on older GPUs (T4; V100 with a torch
    built for it).

    torch.cuda.is_bf16_supported() says True on a T4 too, where bf16 is emulated and slow: decide
    by compute capability. capability None (the CPU) or amp off: fp32.
    """
    if not amp or capability is None:
        return torch.float32
    return torch.bfloat16 if capability >= (8, 0) else torch.float16


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype, or None for fp32."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    dtype = dtype_for(capability, amp)
    return None if dtype == torch.float32 else dtype


def autocast(device: torch.device, amp: bool):
    """A context factory: `with autocast(): logits = model(x)`; a no-op on CPU or with amp off."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return nullcontext
    return partial(torch.autocast, device.type, dtype=dtype)


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """fp16 needs loss scaling; bf16 and fp32 get a disabled (pass-through) scaler."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device, amp) == torch.float16)


def describe(device: torch.device, amp: bool, workers: int, batch: int, threads: str = "") -> str:
    """The first line of a run: where it runs, in what precision, with how many workers and threads."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                     if line.startswith("model name")), "CPU")
    precision = str(amp_dtype(device, amp) or torch.float32).replace("torch.", "")
    from kit.allocator import current
    threads = f", {threads}" if threads else ""
    return (f"device {device} ({name}), precision {precision}, workers {workers}{threads}, batch {batch}, "
            f"allocator {current()}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _read("/sys/fs/cgroup/cpu.max").split()  # "max 100000" or "<quota> <period>"
    if len(quota) == 2 and quota[0] != "max":
        n = min(n, max(1, math.ceil(int(quota[0]) / int(quota[1]))))
    return n


def seed_everything(seed: int) -> None:
    """Seed python, numpy (timm's Mixup draws from it) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
