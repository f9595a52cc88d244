"""End-to-end training: DataLoader + model img/s, as a fraction of the model ceiling at the same size.

    python -m bench --only train_e2e

The same model and optimizer are timed twice: on one batch already in memory (the ceiling), and
through the kit's train_one_epoch on generated JPEGs read via the cached data path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from bench.common import rate, train_step
from bench.data_pipeline import make_jpegs
from kit.data.loaders import ImageDataset, train_loader, train_transform
from kit.engine import train_one_epoch
from kit.model import create_model
from kit.runtime import autocast, grad_scaler, pick_device


def _ceiling_step(model, opt, loader, mix, criterion, amp_ctx, scaler, device):
    x, y = next(iter(loader))
    batch = mix(x.to(device).float(), y.to(device))  # mixed once: the ceiling times the model alone
    return train_step(model, opt, lambda: batch, criterion, amp_ctx, scaler)


def run(size: str) -> list[dict]:
    px, batch, steps, workers = (224, 16, 5, 0) if size == "cpu" else (448, 16, 40, 8)
    device = pick_device()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        names = make_jpegs(Path(tmp), (500, 375), batch * steps)
        ds = ImageDataset(root=tmp, paths=names, labels=[i % 100 for i in range(len(names))],
                          transform=train_transform(px + 12, px, 15, 0.5), cache_dir=Path(tmp) / "cache")
        for i in range(len(ds)):  # fill the cache (make cache does this once per data set)
            ds[(i, 0)]
        for backbone, head in (("resnest50d", "spinal"), ("resnet50", "linear")):
            torch.manual_seed(0)
            model = create_model(backbone, head, 100).to(device).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loader = train_loader(ds, batch, workers, 0, device.type == "cuda")
            mix, criterion = Mixup(mixup_alpha=1.0, label_smoothing=0.1, num_classes=100), SoftTargetCrossEntropy()
            amp_ctx, scaler = autocast(device, True), grad_scaler(device, True)
            ceiling = rate(_ceiling_step(model, opt, loader, mix, criterion, amp_ctx, scaler, device), batch, steps)
            e2e = rate(lambda: train_one_epoch(model, loader, opt, scaler, mix, criterion,  # noqa: B023 - called now
                                               amp_ctx, device, steps, "bench"), batch * steps, 1, warmup=0)
            rows.append({"model": f"{backbone}+{head}", "px": px, "batch": batch, "workers": workers,
                         "ceiling_img_per_s": round(ceiling, 2), "e2e_img_per_s": round(e2e, 2),
                         "fraction": round(e2e / ceiling, 3)})
    return rows
