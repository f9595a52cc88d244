"""A fold's trainer: its data, its loss and precision, fresh models, and the one training step that all training takes.

    trainer = Trainer.for_fold(cfg, 0, folds.table, folds.layout, folds.metric, device)
    model = trainer.model()
    optimizer = trainer.optimizer(model, lr)
    loss = trainer.step(model, optimizer, x, y)           # mixup, the loss, a scaled step

FoldRun (kit/train/loop.py) trains a fold through one. The plan's probes (kit/train/plan.py: the range test,
the flip probe, the budget's timing) act on fold 0's, as fastai's LRFinder acts on its Learner, instead of
being handed its loaders, loss, mixup and scaler one by one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from timm.data import Mixup
from timm.utils import ModelEmaV3

from kit.config import Config
from kit.data.layout import Layout
from kit.data.loaders import fold_loaders
from kit.allocator import release_memory
from kit.engine import criterion, make_optimizer, probe_step, validate
from kit.experiment import FULL
from kit.metrics import Metric, chance
from kit.model import from_config
from kit.runtime import Dist, autocast, from_main, grad_scaler, seed_everything


def epoch_seed(seed: int, fold: int, stage: int, epoch: int) -> int:
    """The seed of one epoch of one fold: every random draw of that epoch derives from it (exact resume)."""
    return ((seed * 1000 + fold) * 10 + stage) * 1000 + epoch


class ValueMixup(Mixup):
    """timm's Mixup for a number to predict: the images mixed as timm mixes them (mixup or cutmix, its draw of the
    weight), their targets by the same weight; no label smoothing (a number has no classes to smooth towards)."""

    def __call__(self, x, target):
        lam = self._mix_batch(x)  # timm's batch mode (the kit's): mixes x in place, returns the weight (1: no mix)
        return x, target * lam + target.flip(0) * (1 - lam)


@dataclass
class Trainer:
    """One fold's training part and validation images, and how a model trains on them."""

    cfg: Config
    fold: int
    classes: tuple[str, ...]
    device: torch.device
    pretrained: bool  # pretrained=auto, decided (kit/train/plan.py)
    train_dl: torch.utils.data.DataLoader
    val_dl: torch.utils.data.DataLoader
    val_ids: np.ndarray  # (N_val,) image paths
    val_labels: np.ndarray  # (N_val,) class indices, or (N_val, classes) 0/1
    chance: float  # the best validation score still within noise of guessing
    mixup: Mixup
    criterion: torch.nn.Module
    amp_ctx: object  # a context factory: autocast on CUDA, a no-op on the CPU
    scaler: torch.amp.GradScaler  # fp16 loss scaling (a pass-through otherwise); saved in last.pt
    multilabel: bool
    channels: int = 3  # what an image gives the model (kit/io.py: stacked)
    target: tuple[float, float] | None = None  # a regression's training targets' (mean, std): the model's units
    replica: int = 0  # seeds=N: which of the fold's seeds this is (its draws derive from seed + replica)
    metric: Metric | None = None  # what validation scores

    @classmethod
    def for_fold(cls, cfg: Config, fold: int, table: pd.DataFrame, layout: Layout, metric: Metric, device,
                 dist: Dist = Dist(), hflip: float | None = None, pretrained: bool | None = None,
                 replica: int = 0) -> "Trainer":
        """Fold `fold` of folds.csv's `table`: trained on the other folds' images (never the holdout), validated on
        its own. hflip: the training flip's probability (hflip=auto's, decided; None: the config's). replica: the
        fold's seed replica (seeds=N), trained on the same images with seed + replica."""
        train = table[(table["fold"] != fold) & (table["role"] != "holdout")]
        val = table[table["fold"] == fold]
        if fold == FULL:  # full_fit: every training image (the rare classes' too), nothing to validate on
            train, val = table[table["role"] != "holdout"], table.iloc[:0]
        train_targets, val_labels = layout.targets(train["label"]), layout.targets(val["label"])
        train_dl, val_dl = fold_loaders(cfg, layout.root, train["path"], train_targets, val["path"], val_labels,
                                        device.type == "cuda", dist.rank, dist.world, f"fold {fold}", hflip)
        multilabel, n = layout.task == "multilabel", len(layout.classes)
        # with both alphas 0, prob=0 keeps Mixup as the label-smoothed one-hot (or 0/1-row) target maker
        mixing = cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
        mixer = ValueMixup if layout.task == "regression" else Mixup
        mixup = mixer(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha, prob=1.0 if mixing else 0.0,
                      label_smoothing=cfg.label_smoothing, num_classes=n, multi_label=multilabel)
        target = (float(train_targets.mean()), float(train_targets.std())) if layout.task == "regression" else None
        return cls(cfg, fold, layout.classes, device, cfg.pretrained if pretrained is None else pretrained,
                   train_dl, val_dl, val["path"].to_numpy(), val_labels,
                   chance(metric, val_labels, n) if len(val) else float("nan"), mixup,
                   criterion(train_targets, n, cfg.class_weight).to(device), autocast(device, cfg.amp),
                   grad_scaler(device, cfg.amp), multilabel, layout.channels, target, replica, metric)

    @property
    def label(self) -> str:
        """The fold as the log names it: "fold 3", "full" (full_fit), "fold 3 seed 43" for a seed replica."""
        return ("full" if self.fold == FULL else f"fold {self.fold}") + (
            f" seed {self.cfg.seed + self.replica}" if self.replica else "")

    @property
    def validates(self) -> bool:
        """Whether the model has images to validate on (not full_fit's, which trains on all of them)."""
        return len(self.val_ids) > 0

    def model(self) -> torch.nn.Module:
        """A fresh model, initialised as this fold's training starts it (the head's seed is the fold's)."""
        seed_everything(epoch_seed(self.cfg.seed + self.replica, self.fold, 0, 0))
        model = from_config(self.cfg, len(self.classes), pretrained=self.pretrained, channels=self.channels,
                            target=self.target)
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.cfg.channels_last else model

    def ema_of(self, model) -> ModelEmaV3 | None:
        """An EMA of `model`'s weights (timm's ModelEmaV3, its decay warming up to ema_decay), or None when off."""
        decay = self.cfg.ema_decay
        return ModelEmaV3(model, decay=decay, use_warmup=True) if decay > 0 else None

    def validate(self, model, dist: Dist = Dist()) -> dict:
        """The validation loss and score of `model` (kit/engine.py validate); NaN for full_fit's model."""
        if not self.validates:
            return {"val_loss": float("nan"), "val_score": float("nan")}
        release_memory()  # training's blocks go back before evaluation's (other sizes) are taken
        val = from_main(validate(model, self.val_dl, self.amp_ctx, self.device, self.val_labels, self.metric), dist)
        release_memory()
        return val

    def optimizer(self, model, lr: float) -> torch.optim.Optimizer:
        c = self.cfg
        return make_optimizer(model, c.optimizer, lr, c.momentum, c.weight_decay)

    def seed_epoch(self, stage: int, epoch: int) -> None:
        """Seed every random draw of one epoch (initial probes use stage 0, epoch 0: fold 0's first epoch)."""
        seed = epoch_seed(self.cfg.seed + self.replica, self.fold, stage, epoch)
        seed_everything(seed)
        self.train_dl.sampler.set_epoch(seed)

    def step(self, model, optimizer, x, y) -> torch.Tensor:
        """One training step as the probes take it; returns the loss."""
        return probe_step(model, optimizer, self.scaler, self.mixup, self.criterion, self.amp_ctx, self.device, x, y)
