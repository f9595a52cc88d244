"""Device, precision and seeding, in one place.

CUDA when available, with autocast (bf16 where the GPU supports it, else fp16 with a GradScaler)
and cudnn.benchmark; on CPU, fp32. The unit of parallel work is the fold: run one process per
fold and pick its GPU with CUDA_VISIBLE_DEVICES (see `make train GPUS=...`).
"""
from __future__ import annotations

import os
import random
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda")
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
