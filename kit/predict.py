"""Stage 3: test-time augmentation with every fold's best weights, fold ensemble, submission, leaderboard.

    python -m kit predict --exp demo demo_baseline             # one submission per experiment
    python -m kit predict --exp demo demo_baseline --ensemble  # ... plus one of both together

Per fold, with its best weights and the TTA views: <work_dir>/<exp>/fold<k>/test_logits.npz, and
oof_logits.npz for its validation images (the CV of the submission is the CV of these), each with
the key it was computed under: best.pt's hash, every config key that shapes predictions
(config.SHAPES) and the images (path, size, modification time). An up-to-date file is reused,
a stale one recomputed. Keys that shape the weights come from the checkpoints; a config that
contradicts them is refused.
Submissions: <submissions_dir>/<exp>-<sha8>.csv (+ .json manifest), never overwritten.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
import ttach
from torch import nn

from kit import ensemble as ens
from kit import folds as folds_stage
from kit import leaderboard
from kit.config import Config, changed, shaping
from kit.data import dataset_of, eval_loader, eval_transform_of
from kit.io import load_npz, save_npz, sha256_file
from kit.layout import Layout, find_bad_images, summarize
from kit.model import from_config
from kit.runtime import autocast, describe, num_workers, pick_device
from kit.train import load_checkpoint, predict_logits

log = logging.getLogger(__name__)


def tta_transforms(views: tuple[str, ...], img_size: int) -> ttach.Compose:
    """The named transforms, composed (their product of views); () is identity only."""
    crop = int(img_size * 0.875)  # the usual 224/256 centre-crop ratio
    make = {
        "hflip": ttach.HorizontalFlip, "vflip": ttach.VerticalFlip,
        "rot90": lambda: ttach.Rotate90(angles=[0, 90, 180, 270]),
        "scales": lambda: ttach.Scale(scales=[1, 0.875, 1.125]),
        "five_crops": lambda: ttach.FiveCrops(crop, crop),
    }
    return ttach.Compose([make[v]() for v in views])


class BatchedTTA(nn.Module):
    """ttach's ClassificationTTAWrapper (mean merge), with all views of a batch in one forward pass.

    Views are grouped by shape (scales and crops change it), concatenated along the batch and
    split again; a larger batch keeps the GPU busier than len(views) small passes.
    """

    def __init__(self, model: nn.Module, transforms: ttach.Compose, max_images: int = 256):
        super().__init__()
        self.model, self.transforms, self.max_images = model, transforms, max_images

    def forward(self, x):  # x: (B, 3, H, W)
        views = [t.augment_image(x) for t in self.transforms]
        groups: dict[tuple, list[int]] = {}
        for i, v in enumerate(views):
            groups.setdefault(tuple(v.shape), []).append(i)
        outs = [None] * len(views)
        for idx in groups.values():
            batch = torch.cat([views[i] for i in idx])  # (len(idx) * B, 3, h, w)
            # capped: 8 views x 64 images at 448 px would not fit a 16 GB GPU in one pass
            logits = torch.cat([self.model(part) for part in batch.split(self.max_images)])
            for i, part in zip(idx, logits.split(len(x))):
                outs[i] = part
        return torch.stack([t.deaugment_label(o) for t, o in zip(self.transforms, outs)]).mean(0)


def tta_model(model: nn.Module, views: tuple[str, ...], img_size: int, batched: str | bool, device=None,
              max_images: int = 256) -> nn.Module:
    """ttach's wrapper, or BatchedTTA when batched is "on" (or "auto" on CUDA)."""
    if isinstance(batched, str):
        batched = batched == "on" or (batched == "auto" and device is not None and device.type == "cuda")
    transforms = tta_transforms(views, img_size)
    if batched:
        return BatchedTTA(model, transforms, max_images)
    return ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean")


def _load_fold_model(ckpt_path: Path, classes: list[str], cfg: Config, device):
    """best.pt as a model in eval mode, refused unless it was trained with this config's weight-shaping keys."""
    ckpt = load_checkpoint(ckpt_path)
    if ckpt["classes"] != list(classes):
        raise ValueError(f"{ckpt_path} was trained for {len(ckpt['classes'])} classes ({summarize(ckpt['classes'])}), "
                         f"but the data has {len(classes)} ({summarize(list(classes))}); retrain or point data= at its data")
    diff = changed(ckpt["cfg"], cfg, "weights")  # model shape and input transforms come from training, never from here
    if diff:
        raise ValueError(f"{ckpt_path} was trained with {'; '.join(diff)}: predict uses the trained values, so drop "
                         "those overrides (or restore the preset), or train them under another name=")
    model = from_config(cfg, len(classes), pretrained=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def _fold_key(ckpt: Path, cfg: Config, root: Path, paths: list[str]) -> str:
    """What a fold's saved logits depend on: its weights, every key that shapes predictions, the images.

    An image is its path, size and modification time: another file under the same name (another
    data= folder, a replaced image) makes the saved logits stale.
    """
    h = hashlib.sha256(sha256_file(ckpt).encode())
    files = [(p, (st := (root / p).stat()).st_size, st.st_mtime_ns) for p in paths]
    h.update(json.dumps([shaping(cfg, "predictions"), files], sort_keys=True).encode())
    return h.hexdigest()


def predict_fold(cfg: Config, fold: int, layout: Layout, classes: list[str], device, paths: list[str],
                 ids, labels=None, split: str = "test") -> Path:
    """Batched, TTA-merged logits of one fold's best weights on `paths`: fold<k>/<split>_logits.npz.

    The file holds ids, logits, labels (-1 when unknown) and the key it was computed under; a file
    whose key matches is reused, any other is recomputed.
    """
    fold_dir = cfg.exp_dir / f"fold{fold}"
    out, ckpt = fold_dir / f"{split}_logits.npz", fold_dir / "best.pt"
    key = _fold_key(ckpt, cfg, layout.root, paths)
    if out.is_file() and str(load_npz(out)["key"]) == key:
        log.info("fold %d %s logits up to date: %s", fold, split, out)
        return out
    logits, labels = fold_logits(cfg, ckpt, classes, layout.root, paths, labels, device)
    save_npz(out, ids=np.asarray(ids).astype(str), labels=labels, logits=logits, key=np.array(key))
    log.info("fold %d: %s logits for %d images with %d TTA view(s)", fold, split, len(paths),
             len(tta_transforms(cfg.tta, cfg.img_size)))
    return out


def fold_logits(cfg: Config, ckpt: Path, classes: list[str], root: Path, paths: list[str], labels, device):
    """(logits (N, classes), labels (N,), -1 when unknown) of one checkpoint on `paths`, TTA-merged, batched."""
    model = _load_fold_model(ckpt, classes, cfg, device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    wrapped = tta_model(model, cfg.tta, cfg.img_size, cfg.batched_tta, device, cfg.tta_max_images)
    ds = dataset_of(cfg, root, paths, labels, eval_transform_of(cfg))
    loader = eval_loader(ds, cfg.eval_batch_size, num_workers(cfg.workers), device.type == "cuda")
    return predict_logits(wrapped, loader, autocast(device, cfg.amp), device), ds.labels


def _ready_folds(cfg: Config, n_folds: int) -> list[int]:
    done = [k for k in range(n_folds) if (cfg.exp_dir / f"fold{k}" / "oof.npz").is_file()]
    missing = sorted(set(range(n_folds)) - set(done))
    if missing and not cfg.allow_missing_folds:
        raise ValueError(f"{cfg.name}: fold(s) {missing} not trained yet; run `make train`, "
                         "or set allow_missing_folds=true to predict with the others")
    if not done:
        raise ValueError(f"{cfg.name}: no trained folds in {cfg.exp_dir}; run `make train` first")
    return done


def check_test(layout: Layout, cfg: Config) -> None:
    if layout.test.empty:
        raise ValueError(f"no test images in {layout.root / 'test'}; predict needs them")
    bad = find_bad_images(layout.root, list(layout.test["path"]), cfg.max_pixels)
    if bad:
        raise ValueError(f"{len(bad)} unreadable test image(s): {summarize(bad)}; no submission written")


def predict_experiment(cfg: Config, device) -> ens.Result:
    """Per fold: test, out-of-fold and holdout logits through the same TTA; then the fold ensemble.

    The out-of-fold images go through exactly what the test images go through, so the CV of the
    result is the CV of the submission it writes.
    """
    table, meta, layout = folds_stage.load(cfg)
    check_test(layout, cfg)
    done = _ready_folds(cfg, meta["n_folds"])
    index = {c: i for i, c in enumerate(meta["classes"])}

    def logits(k: int, rows, split: str) -> Path:
        return predict_fold(cfg, k, layout, meta["classes"], device, list(rows["path"]), rows["path"],
                            rows["label"].map(index), split)

    test = [predict_fold(cfg, k, layout, meta["classes"], device, list(layout.test["path"]), layout.test["id"])
            for k in done]
    oof = [logits(k, table[table["fold"] == k], "oof") for k in done]
    held = table[table["role"] == "holdout"]  # DATA/val kept aside (val_mode=holdout): scored, never trained on
    holdout = [logits(k, held, "holdout") for k in done] if len(held) else []
    return ens.from_folds(cfg, layout, meta, done, test, oof, holdout)


def write(r: ens.Result) -> Path:
    """The submission CSV (+ manifest) and its leaderboard row."""
    path, run_number = ens.write_submission(r)
    leaderboard.record(Path(r.cfgs[0].submissions_dir) / "leaderboard.csv", r, path, run_number)
    return path


def start(cfg: Config, stage: str):
    """The device an inference stage runs on, named with its precision and workers in the stage's first line."""
    device = pick_device(cfg.device, cfg.deterministic)
    log.info("%s: %s", stage, describe(device, cfg.amp, num_workers(cfg.workers), cfg.eval_batch_size))
    return device


def run(cfgs: list[Config], ensemble: bool = False) -> list[Path]:
    device = start(cfgs[0], "predict")
    results = [predict_experiment(cfg, device) for cfg in cfgs]
    if ensemble and len(results) > 1:
        results.append(ens.combine(results))
    written = [write(r) for r in results]
    board = Path(cfgs[0].submissions_dir) / "leaderboard.csv"
    leaderboard.show(board, results[0].fingerprint)
    return written
