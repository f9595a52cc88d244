"""End-to-end training: DataLoader + model img/s, as a fraction of the model ceiling at the same size.

    python -m bench --only train_e2e

Uses the kit's own train_one_epoch on generated JPEGs through the cached data path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from bench.common import rate
from bench.data_pipeline import MEAN, STD, make_jpegs
from bench.model_ceiling import measure
from kit.data import ImageDataset, train_loader, train_transform
from kit.model import create_model
from kit.runtime import autocast, grad_scaler, pick_device
from kit.train import train_one_epoch


def run(size: str) -> list[dict]:
    px, batch, steps, workers = (224, 16, 3, 0) if size == "cpu" else (448, 16, 40, 8)
    device = pick_device()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        names = make_jpegs(Path(tmp), (500, 375), batch * (steps + 1))
        ds = ImageDataset(tmp, names, [i % 100 for i in range(len(names))],
                          train_transform(px + 12, px, 15, 0.5, MEAN, STD), cache_dir=Path(tmp) / "cache", size=px + 12)
        for i in range(len(ds)):  # fill the cache (make cache does this once per data set)
            ds[(i, 0)]
        for backbone, head in (("resnest50d", "spinal"), ("resnet50", "linear")):
            ceiling = measure(backbone, head, px, batch, False, device.type == "cuda", steps)
            torch.manual_seed(0)
            model = create_model(backbone, head, 100).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loader = train_loader(ds, batch, workers, 0, device.type == "cuda")
            mix = Mixup(mixup_alpha=1.0, label_smoothing=0.1, num_classes=100)
            epoch = lambda: train_one_epoch(model, loader, opt, grad_scaler(device, True), mix,  # noqa: E731
                                            SoftTargetCrossEntropy(), autocast(device, True), device, steps, "bench")
            e2e = rate(epoch, batch * steps, 1)
            rows.append({"model": f"{backbone}+{head}", "px": px, "batch": batch, "workers": workers,
                         "ceiling_img_per_s": round(ceiling, 2), "e2e_img_per_s": round(e2e, 2),
                         "fraction": round(e2e / ceiling, 3)})
    return rows
