"""Device, precision and seeding, in one place.

CUDA when available, with autocast (bf16 where the GPU supports it, else fp16 with a GradScaler)
and cudnn.benchmark; on CPU, fp32. The unit of parallel work is the fold: run one process per
fold and pick its GPU with CUDA_VISIBLE_DEVICES (see `make train GPUS=...`). One fold over
several GPUs runs under torchrun, which `setup_distributed()` detects; nothing else changes:

    torchrun --standalone --nproc_per_node=4 -m kit train --exp resnest50d_spinalnet --fold 0
"""
from __future__ import annotations

import os
import random
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0  # the one process that writes files


def setup_distributed() -> Dist:
    """Join the process group when torchrun started us (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(rank, world, local_rank)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def mean_over_ranks(value: float, d: Dist) -> float:
    """The mean of a per-process number (e.g. the epoch's train loss) over all ranks."""
    if d.world == 1:
        return value
    on = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=on)
    dist.all_reduce(t)  # sum
    return t.item() / d.world


def pick_device() -> torch.device:
    """CUDA (the GPU setup_distributed() chose, under torchrun) or the CPU."""
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, amp: bool):
    """A context factory: `with autocast(): logits = model(x)`; a no-op on CPU or with amp off."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return nullcontext
    return partial(torch.autocast, device.type, dtype=dtype)


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """fp16 needs loss scaling; bf16 and fp32 get a disabled (pass-through) scaler."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device, amp) == torch.float16)


def num_workers(requested: int) -> int:
    return (os.cpu_count() or 1) if requested < 0 else requested


def seed_everything(seed: int) -> None:
    """Seed python, numpy (timm's Mixup draws from it) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
