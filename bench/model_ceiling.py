"""Model ceiling: forward+backward+SGD img/s on random tensors already in memory (no data loading).

    python -m bench --only model_ceiling [--size cpu|gpu]

For resnest50d+SpinalNet and resnet50, channels-first and channels_last, AMP on GPU.
"""
from __future__ import annotations

import torch

from bench.common import rate, train_step
from kit.model import create_model
from kit.runtime import autocast, pick_device

MODELS = [("resnest50d", "spinal"), ("resnet50", "linear")]


def measure(backbone: str, head: str, size: int, batch: int, channels_last: bool, amp: bool, calls: int) -> float:
    device = pick_device()
    torch.manual_seed(0)
    model = create_model(backbone, head, 100).to(device).train()
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = train_step(model, optimizer, lambda: (x, y), torch.nn.functional.cross_entropy, autocast(device, amp))
    return rate(step, batch, calls)


def run(size: str) -> list[dict]:
    px, batch, calls = (224, 16, 3) if size == "cpu" else (448, 16, 30)
    rows = []
    for backbone, head in MODELS:
        for cl in (False, True):
            for amp in ((False,) if size == "cpu" else (False, True)):
                ips = measure(backbone, head, px, batch, cl, amp, calls)
                rows.append({"model": f"{backbone}+{head}", "px": px, "batch": batch, "channels_last": cl,
                             "amp": amp, "img_per_s": round(ips, 2)})
    return rows
