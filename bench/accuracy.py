"""Accuracy beyond one model, measured on a task hard enough for gains to show: python -m bench --only accuracy

The task: scikit-learn's digits (offline), degraded so that one model is well below 100%: random
affine jitter (rotation, scale, shift), blur, an occluding block and heavy noise, at 32 px; 70% for
training (5 folds), 30% held out with labels. Two experiments, the demo's two model families
(small ResNeSt + SpinalNet, small ResNet), and the first again with an EMA of its weights. Rows,
each with its CV (out-of-fold top-1) and its top-1 on the held-out images:

    best single fold     the fold with the best validation top-1, alone (CV: its own validation fold)
    fold ensemble        all folds' logits averaged (the submission `kit predict` writes)
    + TTA                the same, with test-time augmentation (scales; the digits allow no flips)
    + EMA                the EMA experiment's fold ensemble
    blend                kit blend of the two model families (weights fitted on OOF; nested CV)
    + pseudo-labels      kit pseudo from the first experiment, threshold 0.9
Each row stands against the fold ensemble of its experiment; a row that did not help (TTA, here)
is reported and not carried into the next.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from kit.config import PRESETS, load_config
from kit.data import folds
from kit.io import load_npz
from kit.jobs import pipeline
from kit.predict import blend, predict
from kit.train import loop as train
from kit.experiment import Experiment

SIDE = 32
# the demo presets' models; mixup 0.2 and lr 0.05, as the chance alarm advised on this noisier task
EPOCHS = dict(stage1_epochs=12, stage2_epochs=3, patience=4, n_folds=5, workers=0, mixup_alpha=0.2, stage1_lr=0.05,
              stage2_lr=0.005)


def _degrade(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    img = Image.fromarray((image / 16 * 255).astype(np.uint8), mode="L").resize((SIDE, SIDE), Image.BICUBIC)
    img = img.rotate(rng.uniform(-20, 20), resample=Image.BILINEAR, translate=tuple(rng.integers(-3, 4, 2)))
    scale = rng.uniform(0.8, 1.1)
    side = int(SIDE * scale)
    img = img.resize((side, side), Image.BILINEAR)
    canvas = Image.new("L", (SIDE, SIDE))
    canvas.paste(img, ((SIDE - side) // 2, (SIDE - side) // 2))
    arr = np.asarray(canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2))), dtype=np.float64)
    y, x = rng.integers(0, SIDE - 10, 2)
    arr[y:y + 10, x:x + 10] = rng.uniform(0, 255)  # an occluding block
    arr += rng.normal(0, 40, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")


def write_task(root: Path, seed: int = 0) -> Path:
    """Folder layout: train/<digit>/*.png, test/*.png, solution.csv (all held-out labels)."""
    digits, rng = load_digits(), np.random.default_rng(seed)
    idx = np.arange(len(digits.target))
    tr, te = train_test_split(idx, test_size=0.3, stratify=digits.target, random_state=seed)
    for i in tr:
        path = root / "train" / str(digits.target[i]) / f"d{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        _degrade(digits.images[i], rng).save(path)
    (root / "test").mkdir(parents=True)
    names = [f"t{n:04d}" for n in range(len(te))]
    for name, i in zip(names, te):
        _degrade(digits.images[i], rng).save(root / "test" / f"{name}.png")
    usage = np.where(np.arange(len(te)) % 2, "Public", "Private")
    pd.DataFrame({"image_name": names, "label": digits.target[te].astype(str), "Usage": usage}).to_csv(
        root / "solution.csv", index=False)
    return root


def task_in(tmp: Path) -> tuple[pd.DataFrame, dict]:
    """The task written under tmp: (its held-out labels, the keys that point an experiment at it and tmp)."""
    data = write_task(tmp / "data")
    paths = {"data": str(data), "work_dir": str(tmp / "folds"), "submissions_dir": str(tmp / "subs")}
    return pd.read_csv(data / "solution.csv", dtype=str), paths


def _held_out(sub: Path, solution: pd.DataFrame) -> float:
    s = pd.read_csv(sub, dtype=str).merge(solution, on="image_name")
    return float(accuracy_score(s["label"], s["pred_label"]))


def _best_fold(cfg, solution: pd.DataFrame, classes: list[str], ids: pd.Series) -> dict:
    """The fold with the best validation top-1, alone: its validation top-1, and its held-out top-1."""
    scores = []
    for k in range(cfg.n_folds):
        oof = load_npz(Experiment.of(cfg).fold(k).logits("oof"))
        scores.append(accuracy_score(oof["labels"], oof["logits"].argmax(1)))
    k = int(np.argmax(scores))
    test = load_npz(Experiment.of(cfg).fold(k).logits("test"))
    preds = pd.DataFrame({"image_name": ids.to_numpy(), "pred": np.asarray(classes)[test["logits"].argmax(1)]})
    merged = preds.merge(solution, on="image_name")
    return {"cv_top1": scores[k], "held_out_top1": float(accuracy_score(merged["label"], merged["pred"])), "fold": k}


def run(size: str = "cpu") -> list[dict]:
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        solution, paths = task_in(tmp)
        a = load_config(PRESETS / "demo.yaml", {**EPOCHS, **paths, "name": "resnest"})
        b = load_config(PRESETS / "demo_baseline.yaml", {**EPOCHS, **paths, "name": "resnet"})
        a_ema = load_config(PRESETS / "demo.yaml", {**EPOCHS, **paths, "name": "resnest_ema", "ema_decay": 0.99})
        t0 = time.perf_counter()
        folds.make_folds(a)
        train.run([a, b, a_ema])
        trained = time.perf_counter() - t0

        def row(name: str, cv: float, sub: Path) -> None:
            rows.append({"row": name, "cv_top1": round(cv, 4), "held_out_top1": round(_held_out(sub, solution), 4)})
            rows[-1]["gap"] = round(rows[-1]["cv_top1"] - rows[-1]["held_out_top1"], 4)
            print(rows[-1], flush=True)

        subs = predict.run([a, b, a_ema])
        split = folds.load(a)
        best = _best_fold(a, solution, split.classes, split.layout.test["id"])
        rows.append({"row": f"best single fold (resnest, fold {best['fold']})", "cv_top1": round(best["cv_top1"], 4),
                     "held_out_top1": round(best["held_out_top1"], 4),
                     "gap": round(best["cv_top1"] - best["held_out_top1"], 4)})
        board = lambda: pd.read_csv(tmp / "subs" / "leaderboard.csv")  # noqa: E731
        cv_of = lambda p: float(board().set_index("file").loc[p.name, "cv_top1"])  # noqa: E731
        row("fold ensemble (resnest)", cv_of(subs[0]), subs[0])
        row("fold ensemble (resnet)", cv_of(subs[1]), subs[1])
        a_tta = load_config(PRESETS / "demo.yaml", {**EPOCHS, **paths, "tta": ["scales"], "name": "resnest"})
        sub_tta = predict.run([a_tta])[0]
        row("+ TTA (resnest, scales)", cv_of(sub_tta), sub_tta)
        row("+ EMA 0.99 (resnest)", cv_of(subs[2]), subs[2])
        sub_blend = blend.run([a, b])
        row("blend of resnest + resnet (nested CV)", cv_of(sub_blend), sub_blend)
        t1 = time.perf_counter()
        sub_pl = pipeline.pseudo_label(a, threshold=0.9, name="resnest_pl")
        trained += time.perf_counter() - t1
        row("+ pseudo-labels (resnest, test images >= 0.9 from its fold models)", cv_of(sub_pl), sub_pl)
        rows.append({"row": f"(training and pseudo: 4 experiments x 5 folds, {trained / 60:.1f} min)", "cv_top1": "",
                     "held_out_top1": "", "gap": ""})
    return rows
