"""Inference with TTA: img/s through ttach's loop against all views in one batch (kit.inference.BatchedTTA).

    python -m bench --only inference
"""
from __future__ import annotations

import torch
import ttach

from bench.common import rate
from kit.model import create_model
from kit.predict.inference import BatchedTTA
from kit.runtime import autocast, pick_device
from kit.tta import transforms as tta_transforms


def run(size: str) -> list[dict]:
    px, batch, calls = (224, 32, 3) if size == "cpu" else (448, 64, 20)
    device = pick_device()
    model = create_model("resnest50d", "spinal", 100).to(device).eval()
    x = torch.randn(batch, 3, px, px, device=device)
    amp_ctx = autocast(device, True)
    rows = []
    for views in ((), ("hflip",), ("hflip", "vflip")):
        transforms = tta_transforms(views, px)
        for name, wrapped in (("ttach", ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean")),
                              ("batched", BatchedTTA(model, transforms))):
            def infer(wrapped=wrapped):
                with torch.inference_mode(), amp_ctx():
                    wrapped(x)
            rows.append({"views": len(transforms), "tta": "+".join(views) or "none", "impl": name, "px": px,
                         "batch": batch, "img_per_s": round(rate(infer, batch, calls), 2)})
    return rows
