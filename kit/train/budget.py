"""A fold's epochs from the data: min_fold_steps raises them on small data, time_budget=MINUTES trims them to fit.

    python -m kit run --exp quick time_budget=30 data=...   # <work_dir>/<exp>/plan.json (its epochs) says what was chosen

min_fold_steps: an epoch of a small data set is a few optimizer steps, so the config's epochs leave its
model far from trained; where they give a fold fewer than min_fold_steps steps, they are raised (in the
config's ratio of stage 1 to stage 2, at most MAX_SCALE times); early stopping still ends a stage
that stops improving. These are the most a fold trains: the budget trims them where they do not
fit, never adds. Before the first fold, a throwaway copy of fold 0's model takes PROBE_STEPS
training steps on its data (after WARM_STEPS untimed ones and the batches its loader fetched ahead)
and predicts PROBE_VAL_BATCHES batches of its validation images, loading included, timed. From them:
one epoch (training steps + validation), and predict's share (every test and training image once
per TTA pass; tta=auto scores its candidates on the training images). What the run's probes spent
(hflip=auto's, stage1_lr=auto's) comes off first. The epochs left per fold are split between the
stages in the config's ratio; every fold gets the same. The choice is kept under a key of every
weight-shaping setting and the folds: a rerun or resume reuses it. Sized for one process training
the folds one after another: with several GPU processes, give each its share.
"""
from __future__ import annotations

import itertools
import logging
import math
import time

import torch

from kit.config import Config
from kit.engine import forever
from kit.tta import AUTO_TTA
from kit.tta import transforms as tta_transforms

log = logging.getLogger(__name__)

WARM_STEPS, PROBE_STEPS, PROBE_VAL_BATCHES = 3, 20, 2  # untimed steps (+ the loader's prefetched batches), timed
SAFETY = 0.9  # of the budget planned: the rest absorbs start-up, checkpoints and the timing's noise
MAX_SCALE = 4  # min_fold_steps raises the config's epochs at most this many times (a set of a few images a class)


def scaled(cfg: Config, steps_per_epoch: int) -> tuple[int, int]:
    """(stage 1, stage 2) epochs: the config's, raised in their ratio where they give fewer than min_fold_steps steps."""
    asked = cfg.stage1_epochs + cfg.stage2_epochs
    want = min(math.ceil(cfg.min_fold_steps / steps_per_epoch), MAX_SCALE * asked)
    if want <= asked:
        return cfg.stage1_epochs, cfg.stage2_epochs
    stage1 = round(want * cfg.stage1_epochs / asked)
    return stage1, want - stage1


def passes(cfg: Config) -> tuple[int, int]:
    """(forward passes per test or holdout image and fold, per training image) that predict makes.

    A training image is predicted by the fold it validates: through every TTA it scores (tta=auto: each
    candidate), then again with the last epoch's weights through the views chosen (cv_last). With tta=auto
    the chosen views are not known before training: the costliest candidate is planned for.
    """
    if cfg.tta == "auto":
        views = [len(tta_transforms(v, cfg.img_size)) for v in AUTO_TTA]
        return max(views), sum(views) + max(views)
    n = len(tta_transforms(cfg.tta, cfg.img_size))
    return n, 2 * n  # the OOF images, and again with the last epoch's weights (cv_last)


def probe(trainer) -> tuple[float, float]:
    """(seconds per training step, seconds per image predicted), measured on a fresh model of `trainer`
    (kit/train/trainer.py) with the experiment's optimizer (Adam-like ones cost more a step), each step as the
    other probes take it.

    Both as an epoch meets them: the steps are timed once the batches the loader's workers fetched ahead are
    used up (or a loader slower than the model looks as fast as the model), and the images predicted are timed
    with their loading, after a first batch that starts the (persistent) workers.
    """
    model, device, loader, val_loader = trainer.model(), trainer.device, trainer.train_dl, trainer.val_dl
    optimizer = trainer.optimizer(model, 1e-4)
    model.train()
    batches = forever(loader)
    warm = WARM_STEPS + loader.num_workers * (loader.prefetch_factor or 0)
    t0 = None
    for i in range(warm + PROBE_STEPS):
        if i == warm:
            _sync(device)
            t0 = time.perf_counter()
        trainer.step(model, optimizer, *next(batches))
    _sync(device)
    step_s = (time.perf_counter() - t0) / PROBE_STEPS
    model.eval()
    with torch.inference_mode(), trainer.amp_ctx():
        for x, _ in itertools.islice(val_loader, 1):  # starts the workers; warms the model
            model(x.to(device).float())
        _sync(device)
        t0, seen = time.perf_counter(), 0
        for x, _ in itertools.islice(val_loader, PROBE_VAL_BATCHES):
            model(x.to(device).float())
            seen += len(x)
        _sync(device)
    return step_s, (time.perf_counter() - t0) / seen


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plan(cfg: Config, n_folds: int, steps_per_epoch: int, n_val: int, n_train: int, n_test: int,
         step_s: float, image_s: float, spent_s: float = 0.0, n_holdout: int = 0) -> dict:
    """The epochs per stage that fit time_budget minutes, at most the config's as min_fold_steps scales them (see the
    module's docstring), and the figures behind them. `spent_s`: what the run has spent already (its probes)."""
    test_passes, train_passes = passes(cfg)
    # every fold predicts the test images and the holdout (val_mode=holdout) through the chosen views
    predict_s = image_s * ((n_test + n_holdout) * test_passes * n_folds + n_train * train_passes)
    epoch_s = steps_per_epoch * step_s + n_val * image_s
    left = cfg.time_budget * 60 * SAFETY - predict_s - spent_s
    fits = math.floor(left / n_folds / epoch_s) if left > 0 else 0
    asked1, asked2 = scaled(cfg, steps_per_epoch)
    asked = asked1 + asked2
    least = min(2, asked)  # two epochs a fold at the least, unless the config asks for fewer
    if fits < least:
        raise ValueError(f"time_budget={cfg.time_budget:g} minutes fits {max(fits, 0)} epoch(s) a fold (an epoch "
                         f"takes {epoch_s:.0f} s here, predict {predict_s / 60:.1f} min); give at least "
                         f"{math.ceil((least * n_folds * epoch_s + predict_s + spent_s) / 60 / SAFETY)} minutes "
                         "(time_budget=MINUTES), fewer folds, or time_budget=0 for no limit")
    if fits >= asked:
        stage1, per_fold = asked1, asked
    else:
        per_fold = fits
        stage1 = max(1, round(per_fold * asked1 / asked)) if asked2 else per_fold
    return {"stage1_epochs": stage1, "stage2_epochs": per_fold - stage1, "asked": [asked1, asked2],
            "steps_per_epoch": steps_per_epoch, "fits": fits, "epoch_s": round(epoch_s, 3),
            "predict_s": round(predict_s, 1), "spent_s": round(spent_s, 1), "step_s": step_s, "image_s": image_s,
            "budget_min": cfg.time_budget}


def unbudgeted(cfg: Config, steps_per_epoch: int) -> dict:
    """The record of a run without time_budget: min_fold_steps's epochs alone."""
    stage1, stage2 = scaled(cfg, steps_per_epoch)
    return {"stage1_epochs": stage1, "stage2_epochs": stage2, "asked": [stage1, stage2],
            "steps_per_epoch": steps_per_epoch, "budget_min": 0}


def record(chosen: dict, cfg: Config) -> dict:
    """Say what min_fold_steps and the budget chose; returns `chosen` (the record plan.json keeps)."""
    asked = tuple(chosen["asked"])
    if asked != (cfg.stage1_epochs, cfg.stage2_epochs):
        log.info("min_fold_steps=%d: %d + %d epochs a fold at most (the config's %d + %d raised: an epoch is %d steps)",
                 cfg.min_fold_steps, *asked, cfg.stage1_epochs, cfg.stage2_epochs, chosen["steps_per_epoch"])
    if chosen["budget_min"]:
        trimmed = (chosen["stage1_epochs"], chosen["stage2_epochs"]) != asked
        log.info("time_budget=%g min: %d + %d epochs a fold (%s %d + %d; an epoch %.1f s, predict %.1f min, probes "
                 "%.1f min, measured)", chosen["budget_min"], chosen["stage1_epochs"], chosen["stage2_epochs"],
                 "trimmed from" if trimmed else "all that were asked, which fit:", *asked, chosen["epoch_s"],
                 chosen["predict_s"] / 60, chosen["spent_s"] / 60)
    return chosen
