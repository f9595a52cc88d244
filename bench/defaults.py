"""Defaults against a plain loop: the kit's default path and an afternoon's single-model loop, same clock.

    python -m bench --only defaults                # every data set of DATASETS (about an hour on 2 cores)
    KIT_BENCH_SETS="2 classes|x 50" python -m bench --only defaults   # those whose name contains a text
    KIT_BENCH_KEYS="time_budget=30" python -m bench --only defaults   # the default path with keys set

Per data set (kit.synth: gratings, whose classes a flip changes, and photographs' regions, which
it keeps; none of them tuned on): (a) `make folds train predict DATA=...` with no EXP
(the quick preset, as shipped), timed; (b) the plain loop: the same backbone from scratch, every
training image, Adam at 1e-3 with a cosine schedule, cross-entropy with label smoothing 0.1, resize
to the preset's image size and a horizontal flip, epochs until (a)'s wall-clock time is spent, then
one pass over the test images. Both are scored on the same held-out images (solution.csv, at least
HELD_OUT of them): public, private.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kit.board import leaderboard
from kit.config import PRESETS, load_config, parse_overrides
from kit.data import folds
from kit.data.synth import MATRIX, write_photo_regions, write_synthetic
from kit.predict import predict
from kit.train import loop as train

DATASETS = {
    **{name: shape for name, (shape, _) in MATRIX.items()},
    "10 classes x 15, RGB, square, folder": dict(classes=10, per_class=15),
    "100 classes x 24, RGB, square, folder": dict(classes=100, per_class=24),
    "20 classes x 250, grayscale, 2:1, folder": dict(classes=20, per_class=250, mode="L", aspect=2.0),
    # photographs' regions: classes a flip keeps (the gratings above are orientations, which a flip changes)
    "16 photo regions x 30, RGB, square, folder": dict(classes=16, per_class=30, photo=True),
}
# held-out images a set has at least (half public, half private): enough that a CV 2 points off the private
# score shows (at 0.9, one side's standard error is 2 points), where 2 a class left 20 a side on 20 classes
HELD_OUT = 400


def _images(root: Path, paths, size: int) -> torch.Tensor:
    from PIL import Image
    arrays = [np.asarray(Image.open(root / p).convert("RGB").resize((size, size))) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)


def plain_loop(data: Path, backbone: str, size: int, seconds: float) -> tuple[pd.DataFrame, int]:
    """Train one model on every training image until `seconds` are spent; (test predictions, epochs run)."""
    import timm
    torch.manual_seed(0)
    if (data / "train.csv").is_file():  # Kaggle CSV layout
        table = pd.read_csv(data / "train.csv", dtype=str)
        paths, labels = [f"train/{i}.png" for i in table["id"]], list(table["label"])
    else:
        found = sorted((data / "train").rglob("*.png"))
        paths, labels = [p.relative_to(data) for p in found], [p.parent.name for p in found]
    classes = sorted(set(labels))
    x = _images(data, paths, size)
    y = torch.tensor([classes.index(label) for label in labels])
    model = timm.create_model(backbone, pretrained=False, num_classes=len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    t0, epochs, first = time.perf_counter(), 0, None
    while True:
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            xb = x[idx]
            flip = torch.rand(len(xb)) < 0.5
            xb[flip] = xb[flip].flip(-1)
            loss = loss_fn(model((xb - 0.5) / 0.25), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs += 1
        spent = time.perf_counter() - t0
        first = first or spent
        total = max(1, int(seconds / first))  # the cosine over the epochs the budget allows, from the first
        for g in opt.param_groups:
            g["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * min(epochs / total, 1)))
        if spent + first > seconds:
            break
    test_paths = sorted((data / "test").rglob("*.png"))
    model.eval()
    with torch.inference_mode():
        xt = _images(data, [p.relative_to(data) for p in test_paths], size)
        pred = torch.cat([model((xt[i:i + 256] - 0.5) / 0.25).argmax(1) for i in range(0, len(xt), 256)])
    return pd.DataFrame({"id": [p.stem for p in test_paths], "label": [classes[i] for i in pred]}), epochs


def _score(sub: pd.DataFrame, solution: pd.DataFrame) -> tuple[float, float]:
    solution = solution.rename(columns={solution.columns[0]: "id"})
    merged = solution.merge(sub, on="id", suffixes=("", "_pred"))
    hit = merged["label"].astype(str) == merged["label_pred"].astype(str)
    return tuple(float(hit[merged["Usage"] == u].mean()) for u in ("Public", "Private"))


def default_path(shape: dict, tmp: Path):
    """The data set written under tmp/data and the kit's default path run on it, timed:
    (data, its config, seconds, the leaderboard's row, held-out images)."""
    shape = dict(shape)
    n_test = max(HELD_OUT, 2 * shape["classes"])
    data = (write_photo_regions if shape.pop("photo", False) else write_synthetic)(tmp / "data", side=64,
                                                                                     n_test=n_test, **shape)
    keys = parse_overrides(os.environ.get("KIT_BENCH_KEYS", "").split())
    cfg = load_config(PRESETS / "quick.yaml", {"data": str(data), "work_dir": str(tmp / "folds"),
                                             "submissions_dir": str(tmp / "subs"), **keys})
    t0 = time.perf_counter()
    folds.make_folds(cfg)
    train.run([cfg])
    predict.run([cfg])
    seconds = time.perf_counter() - t0
    return data, cfg, seconds, leaderboard.load(tmp / "subs" / "leaderboard.csv").iloc[0], n_test


def _one(name: str, shape: dict, tmp: Path) -> dict:
    data, cfg, seconds, row, n_test = default_path(shape, tmp)
    solution = pd.read_csv(data / "solution.csv", dtype=str)
    plain, epochs = plain_loop(data, cfg.backbone, cfg.img_size, seconds)
    plain_public, plain_private = _score(plain, solution)
    return {"data": name, "images": int(sum(1 for _ in (data / "train").rglob("*.png"))), "held_out": n_test,
            "minutes": round(seconds / 60, 1),
            "kit_cv": float(row["cv_top1"]), "kit_public": float(row["public"]), "kit_private": float(row["private"]),
            "kit_tta": row["tta"], "kit_hflip": _hflip(tmp / "folds"), "plain_epochs": epochs, "plain_public": round(plain_public, 3),
            "plain_private": round(plain_private, 3), "warning": row["warning"] or "-"}


def _hflip(work_dir: Path) -> str:
    """hflip=auto's choice, as the run's plan.json records it."""
    found = list(work_dir.glob("*/plan.json"))
    return str(json.loads(found[0].read_text())["hflip"]) if found else "-"


def each_set(one) -> list[dict]:
    """one(name, shape, a temporary folder) -> its row, for every data set of DATASETS whose name contains one of
    KIT_BENCH_SETS's texts ("a|b"; all without it), each row printed as it comes."""
    logging.getLogger("kit").setLevel(logging.WARNING)
    only = [text for text in os.environ.get("KIT_BENCH_SETS", "").split("|") if text]
    rows = []
    for name, shape in DATASETS.items():
        if only and not any(text in name for text in only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one(name, shape, Path(tmp)))
            print(rows[-1], flush=True)
    return rows


def run(size: str) -> list[dict]:
    return each_set(_one)
