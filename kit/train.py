"""Stage 2: train every fold in two stages and keep what the write-up's notebook lost.

    python -m kit train --exp demo                 # every fold of configs/demo.yaml
    python -m kit train --exp demo --fold 3        # one fold (spread folds over GPUs or machines)

Per fold, under <work_dir>/<exp>/fold<k>/:
  stage1_best.pt  best stage-1 weights (stage 2 starts from them)
  best.pt         best weights over both stages: {"model", "cfg", "classes", "stage", "epoch", "score"}
  last.pt         everything resuming needs (model, optimizer, loss scaler, stage, epoch, early stopping, history)
  history.csv, curves.png, config.yaml
  oof.npz         out-of-fold logits computed with best.pt (written last: the fold's "done" marker);
                  then stage1_best.pt, last.pt and last.prev.pt are removed (keep_checkpoints=true keeps them)
Per experiment: cv.json (per-fold and overall OOF top-1/top-5) and confusion_matrix.png.

Randomness is derived from (seed, fold, stage, epoch) at the start of every epoch, so a run
killed at any point and resumed from last.pt ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from scipy.special import softmax
from sklearn.metrics import accuracy_score
from timm.data import Mixup
from timm.layers import convert_sync_batchnorm
from timm.loss import SoftTargetCrossEntropy
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from tqdm import tqdm

from kit import folds as folds_stage
from kit import report
from kit.allocator import release_memory
from kit.config import Config, changed, save_config, to_dict
from kit.data import dataset_of, eval_loader, eval_transform_of, train_loader, train_transform_of
from kit.io import atomic_path, atomic_write_text, claimed, load_npz, save_npz, sha256_file
from kit.metrics import chance_top1, topk
from kit.model import from_config
from kit.runtime import (Dist, autocast, barrier, describe, from_main, grad_scaler, mean_over_ranks, num_workers,
                         pick_device, seed_everything, setup_distributed, sum_over_ranks)

log = logging.getLogger(__name__)


@dataclass
class FoldState:
    """What resuming needs besides the weights; saved in last.pt as plain data."""

    stage: int = 1
    epoch: int = 0  # epochs completed in this stage
    best: float = -1.0  # best val top-1 over both stages (the score of best.pt)
    stage_best: float = -1.0  # best val top-1 this stage (early stopping)
    bad_epochs: int = 0  # epochs since stage_best improved
    stopped: bool = False  # this stage is over (epochs run out or early stopping)
    ema_steps: int = 0  # optimizer steps averaged into the EMA this stage (its warm-up decay depends on it)
    history: list = field(default_factory=list)


def save_checkpoint(path: Path, model, **extra) -> None:
    """Atomic torch.save of plain data, loadable with weights_only=True."""
    model = getattr(model, "_orig_mod", model)  # the uncompiled module's keys
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), **extra}, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ValueError(f"{path} is unreadable ({type(e).__name__}); delete it and run again") from None


SYNC_EVERY = 25  # steps between host syncs (loss check, progress bar): each .item() stalls a GPU's queue


def epoch_steps(loader, max_steps: int) -> int:
    """Optimizer steps in one epoch: the whole loader, or max_steps when set (smoke tests)."""
    return min(len(loader), max_steps) if max_steps else len(loader)


def train_one_epoch(model, loader, optimizer, scaler, mixup, criterion, amp_ctx, device, max_steps, where,
                    dist: Dist = Dist(), after_step=None):
    """One pass over loader. Returns (mean loss, train top-1 against the dominant mixed label, img/s).

    Loss and accuracy add up on the device; the host reads them every SYNC_EVERY steps and at the
    end, which is also when a non-finite loss is caught (last.pt still holds the last good epoch).
    `after_step(step)` runs after each optimizer step (the EMA update).
    Under torchrun the check reads the sum over all ranks, so every rank stops at the same step
    instead of one raising while the others wait in the next all-reduce.
    """
    model.train()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, t0, checked = 0, time.perf_counter(), 0
    steps = epoch_steps(loader, max_steps)
    bar = tqdm(loader, total=steps, desc=where, leave=False, disable=not sys.stderr.isatty())
    for step, (x, y) in enumerate(bar):
        if step >= steps:
            break
        x, y = x.to(device, non_blocking=True).float(), y.to(device, non_blocking=True)  # x: uint8 pixels until here
        x, target = mixup(x, y)  # target: (B, classes) soft labels; mixing pixels = mixing normalised images
        with amp_ctx():
            logits = model(x)
            loss = criterion(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if after_step is not None:
            after_step(step)
        total_loss += loss.detach() * len(x)
        correct += (logits.argmax(1) == target.argmax(1)).sum()
        seen += len(x)
        if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
            mean = sum_over_ranks(total_loss, dist).item() / (seen * dist.world)  # the one host sync in SYNC_EVERY
            if not math.isfinite(mean):
                raise ValueError(f"{where} step {checked}-{step}: loss is {mean}; stopped, last.pt keeps the last good "
                                 "epoch (lower the learning rate, or check the images and labels)")
            checked = step + 1
            bar.set_postfix(loss=f"{mean:.3f}", acc=f"{correct.item() / seen:.3f}",
                            ips=f"{seen / (time.perf_counter() - t0):.0f}")
    return total_loss.item() / max(seen, 1), correct.item() / max(seen, 1), seen / (time.perf_counter() - t0)


@torch.inference_mode()
def predict_logits(model, loader, amp_ctx, device) -> np.ndarray:
    """(N, classes) float32 logits in loader order."""
    model.eval()
    out = []
    for x, _ in loader:
        with amp_ctx():
            out.append(model(x.to(device, non_blocking=True).float()).float().cpu())  # float: TTA scales interpolate
    return torch.cat(out).numpy()


def validate(model, loader, amp_ctx, device, labels: np.ndarray) -> dict:
    logits = predict_logits(model, loader, amp_ctx, device)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return {"val_loss": loss, "val_top1": accuracy_score(labels, logits.argmax(1)), "val_top5": topk(labels, logits, 5)}


def _epoch_seed(seed: int, fold: int, stage: int, epoch: int) -> int:
    return ((seed * 1000 + fold) * 10 + stage) * 1000 + epoch


class Progress:
    """Epochs left over every fold this process trains: the 'left' at the end of each epoch's line.

    An upper bound (early stopping ends stages sooner), from this run's own seconds per epoch; it
    is a log line, so it shows under `make`, CI or `tee` as on a terminal.
    """

    def __init__(self, left: dict):
        self.left, self.done, self.t0 = dict(left), 0, time.perf_counter()  # left: (exp, fold) -> epochs

    def update(self, key: tuple, left: int, ran: bool = True) -> None:
        self.left[key] = left
        self.done += ran

    def __str__(self) -> str:
        if not self.done:
            return ""
        seconds = (time.perf_counter() - self.t0) / self.done * sum(self.left.values())
        folds = sum(1 for v in self.left.values() if v)
        return f"; {folds} fold(s) to go, at most {_duration(seconds)} left"


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


class FoldRun:
    """Holds one fold's model, data and files; `fit()` runs both stages, resuming from last.pt."""

    def __init__(self, cfg: Config, fold: int, table: pd.DataFrame, classes: list[str], root: Path, device,
                 dist: Dist = Dist(), progress: Progress | None = None):
        self.cfg, self.fold, self.classes, self.device, self.dist = cfg, fold, classes, device, dist
        self.progress = progress or Progress({})
        self.saved_at = time.monotonic()  # of last.pt: checkpoint_every_s counts from here
        self.out = cfg.exp_dir / f"fold{fold}"
        index = {c: i for i, c in enumerate(classes)}
        train = table[(table["fold"] != fold) & (table["role"] != "holdout")]
        val = table[table["fold"] == fold]
        self.val_ids, self.val_labels = val["path"].to_numpy(), val["label"].map(index).to_numpy()
        self.chance = chance_top1(self.val_labels)  # val top-1 up to this is within noise of guessing
        workers = num_workers(cfg.workers)
        pin = device.type == "cuda"
        train_ds = dataset_of(cfg, root, train["path"], train["label"].map(index), train_transform_of(cfg))
        val_ds = dataset_of(cfg, root, val["path"], self.val_labels, eval_transform_of(cfg))
        if len(train_ds) < cfg.batch_size:
            most = max(2, len(train_ds) // 2 * 2)
            raise ValueError(f"fold {fold}: {len(train_ds)} training images, fewer than batch_size={cfg.batch_size}; "
                             f"set batch_size={min(most, cfg.batch_size)} or lower (even), or use fewer folds")
        if cfg.batch_size % (2 * dist.world):
            raise ValueError(f"batch_size={cfg.batch_size} must split into an even batch on each of {dist.world} processes")
        self.train_dl = train_loader(train_ds, cfg.batch_size, workers, cfg.seed, pin, dist.rank, dist.world)
        self.val_dl = eval_loader(val_ds, cfg.eval_batch_size, workers, pin)
        self.amp_ctx = autocast(device, cfg.amp)
        self.scaler = grad_scaler(device, cfg.amp)  # fp16 loss scaling (a pass-through otherwise); saved in last.pt
        # with both alphas 0, prob=0 keeps Mixup as the label-smoothed one-hot target maker
        mixing = cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
        self.mixup = Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha, prob=1.0 if mixing else 0.0,
                           label_smoothing=cfg.label_smoothing, num_classes=len(classes))
        self.criterion = SoftTargetCrossEntropy()

    def _model(self):
        seed_everything(_epoch_seed(self.cfg.seed, self.fold, 0, 0))  # the head's (and any unloaded layer's) init
        model = from_config(self.cfg, len(self.classes)).to(self.device)
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._new_ema(model)
        return model

    def _new_ema(self, model) -> None:
        """An EMA of `model`'s weights (timm's ModelEmaV3, decay warming up to ema_decay), or None when off.

        With it, validation, best.pt (hence OOF and predict) and stage 2's start are the EMA weights.
        """
        c = self.cfg
        self.ema = ModelEmaV3(model, decay=c.ema_decay, use_warmup=True) if c.ema_decay > 0 else None

    def _evaluated(self, model):
        return self.ema.module if self.ema is not None else model

    def fit(self) -> None:
        model = self._model()
        state, opt_state = self._resume(model)  # also restores self.ema
        # under torchrun, gradients are averaged over ranks; eval and checkpoints use the plain module
        trained = model if self.dist.world == 1 else torch.nn.parallel.DistributedDataParallel(self._sync_bn(model))
        if self.cfg.compile:
            trained = torch.compile(trained)  # checkpoints still save the plain module's weights
        for stage in (1, 2):
            if stage < state.stage:
                continue
            if stage > state.stage:
                state = self._enter_stage(model, state, stage)
            self._run_stage(model, trained, state, opt_state)
            opt_state = None
        self._finish(model, state)

    def _sync_bn(self, model):
        """On GPUs, BatchNorm statistics over the global batch (16 split over 4 GPUs is 4 images each).

        timm's converter, not torch's: torch's turns timm's BatchNormAct2d into a plain SyncBatchNorm
        and drops its activation. The layers are replaced inside `model` (saved and evaluated), with
        the state-dict keys of BatchNorm. Gloo on CPU has no SyncBatchNorm: there each rank keeps its own.
        """
        return convert_sync_batchnorm(model) if self.device.type == "cuda" else model

    def _resume(self, model) -> tuple[FoldState, dict | None]:
        """From last.pt; if it is unreadable (a truncated copy, a full disk), from the epoch before it."""
        ckpt = None
        for path in (self.out / "last.pt", self.out / "last.prev.pt"):
            if not path.is_file():
                continue
            try:
                ckpt = load_checkpoint(path)
                break
            except ValueError as e:
                log.warning("%s; falling back to the state before it", e)
        if ckpt is None:
            return FoldState(), None
        model.load_state_dict(ckpt["model"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.module.load_state_dict(ckpt["ema"])
        state = FoldState(**ckpt["state"])
        if (self.out / "best.pt").is_file():
            # killed between writing best.pt and last.pt, best.pt is ahead of last.pt: a rerun epoch that scores
            # lower (on a GPU, reruns are close, not exact) must not overwrite it
            state.best = max(state.best, load_checkpoint(self.out / "best.pt")["score"])
        log.info("fold %d: resuming stage %d after epoch %d (best %.4f)", self.fold, state.stage, state.epoch, state.best)
        return state, ckpt["optimizer"]

    def _enter_stage(self, model, state: FoldState, stage: int) -> FoldState:
        """Stage 2 starts from the stage-1 best weights with a fresh optimizer and schedule."""
        best1 = load_checkpoint(self.out / "stage1_best.pt")
        model.load_state_dict(best1["model"])
        self._new_ema(model)  # stage 2 averages its own steps, from stage 1's best
        log.info("fold %d: stage %d starts from stage-1 best (epoch %d, top-1 %.4f)",
                 self.fold, stage, best1["epoch"], best1["score"])
        return FoldState(stage=stage, best=state.best, stage_best=state.best, history=state.history)

    def _stage_params(self, stage: int) -> tuple[float, int]:
        c = self.cfg
        return c.stage_lr(stage), (c.stage1_epochs if stage == 1 else c.stage2_epochs)

    def _run_stage(self, model, trained, state: FoldState, opt_state: dict | None) -> None:
        lr, epochs = self._stage_params(state.stage)
        c = self.cfg
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=c.momentum, weight_decay=c.weight_decay)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        warmup = c.warmup if state.stage == 1 else 0  # stage 2 starts from trained weights at a 10x lower lr
        # stepped per epoch from 0: `warmup` epochs rise linearly from lr/10, then the cosine runs over the rest
        # t_initial >= 2: timm warns that a 1-epoch cosine does nothing; its one epoch runs at lr either way
        scheduler = CosineLRScheduler(optimizer, t_initial=max(epochs - warmup, 2), warmup_t=warmup,
                                      warmup_lr_init=lr / 10, warmup_prefix=True)
        while state.epoch < epochs and not state.stopped:
            scheduler.step(state.epoch)
            self._run_epoch(model, trained, optimizer, state)
        if not state.stopped:
            state.stopped = True
            self._save_last(model, optimizer, state)
        if state.stage == 1 and state.stage_best <= self.chance:
            log.warning("fold %d: stage 1 ended at chance level (best val top-1 %.4f, chance up to %.4f); the CV "
                        "and the leaderboard row will say so. %s", self.fold, state.stage_best, self.chance, self._causes())

    def _run_epoch(self, model, trained, optimizer, state: FoldState) -> None:
        c, t0 = self.cfg, time.perf_counter()
        seed_everything(_epoch_seed(c.seed, self.fold, state.stage, state.epoch))
        self.train_dl.sampler.set_epoch(_epoch_seed(c.seed, self.fold, state.stage, state.epoch))
        where = f"fold {self.fold} stage {state.stage} epoch {state.epoch + 1}"
        ema, first = self.ema, state.ema_steps
        after_step = None if ema is None else lambda i: ema.update(model, step=first + i + 1)
        loss, acc, ips = train_one_epoch(trained, self.train_dl, optimizer, self.scaler, self.mixup, self.criterion,
                                         self.amp_ctx, self.device, c.max_steps, where, self.dist, after_step)
        state.ema_steps += epoch_steps(self.train_dl, c.max_steps)
        loss, acc = mean_over_ranks(loss, self.dist), mean_over_ranks(acc, self.dist)
        ips *= self.dist.world
        scored = self._evaluated(model)
        release_memory()  # training's blocks go back before evaluation's (other sizes) are taken
        val = from_main(validate(scored, self.val_dl, self.amp_ctx, self.device, self.val_labels), self.dist)
        release_memory()
        row = {"epoch": len(state.history) + 1, "stage": state.stage, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": loss, "train_top1": acc, **val, "seconds": time.perf_counter() - t0, "img_per_s": ips}
        improved = self._update(model, scored, optimizer, state, row)
        self.progress.update((c.name, self.fold), self._epochs_left(state))
        log.info("%s %s: lr %.2e loss %.4f val_loss %.4f top-1 %.4f top-5 %.4f %.0fs %.0f img/s%s%s", c.name, where,
                 row["lr"], loss, val["val_loss"], val["val_top1"], val["val_top5"], row["seconds"], ips,
                 " *" if improved else "", str(self.progress))  # formatted now: progress changes
        if state.stage == 1 and state.epoch == min(c.warmup + 2, c.stage1_epochs):  # two epochs at the full lr
            self._check_learning(state.stage_best, loss)
        if state.stopped:
            log.info("fold %d stage %d: early stop, no better top-1 for %d epochs", self.fold, state.stage, state.bad_epochs)

    def _epochs_left(self, state: FoldState) -> int:
        """At most this many epochs of this fold to go (early stopping may end them sooner)."""
        this = 0 if state.stopped else self._stage_params(state.stage)[1] - state.epoch
        return this + (self.cfg.stage2_epochs if state.stage == 1 else 0)

    def _check_learning(self, best: float, train_loss: float) -> None:
        """The chance-level alarm: one warning when, after the warm-up, nothing has been learnt yet."""
        uniform = math.log(len(self.classes))  # the loss of predicting every class equally
        if best > self.chance and train_loss < uniform:
            return
        log.warning("fold %d: not learning after the warm-up: best val top-1 %.4f (chance up to %.4f), train loss "
                    "%.3f (ln %d classes = %.3f). %s", self.fold, best, self.chance, train_loss, len(self.classes),
                    uniform, self._causes())

    def _causes(self) -> str:
        c = self.cfg
        weaker = "0.2" if c.mixup_alpha > 0.2 else "0, off"  # advice the preset does not already follow
        return (f"Likely causes: a learning rate too high or too low (stage1_lr={c.stage1_lr}; try 10x lower), "
                f"too short a warm-up (warmup_epochs={c.warmup}), images too small to tell the classes apart "
                f"(img_size={c.img_size}, resize_mode={c.resize_mode}), or mixup too strong for this data "
                f"(mixup_alpha={c.mixup_alpha}; try {weaker})")

    def _update(self, model, scored, optimizer, state: FoldState, row: dict) -> bool:
        """Early stopping and checkpoints; best files first, so last.pt never claims a best that isn't on disk.

        The best files hold `scored` (the EMA weights, or the model itself); last.pt the model and its EMA.

        Returns whether this epoch improved the stage's best.
        """
        score, c = row["val_top1"], self.cfg
        state.epoch += 1
        state.history.append(row)
        meta = {"cfg": to_dict(c), "classes": list(self.classes), "stage": state.stage,
                "epoch": row["epoch"], "score": score}
        improved = score > state.stage_best
        if improved:
            state.stage_best, state.bad_epochs = score, 0
            if state.stage == 1:
                self._save(self.out / "stage1_best.pt", scored, **meta)
        elif state.epoch > max(c.min_epochs, c.warmup if state.stage == 1 else 0):
            state.bad_epochs += 1  # patience counts only once the stage has had its time to learn
        if score > state.best:
            state.best = score
            self._save(self.out / "best.pt", scored, **meta)
        # a stage still at chance level has nothing worth keeping: it runs on rather than stop on noise
        state.stopped = state.bad_epochs >= c.patience and state.stage_best > self.chance
        if state.stopped or time.monotonic() - self.saved_at >= c.checkpoint_every_s:  # epochs running out: _run_stage saves
            self._save_last(model, optimizer, state)
        barrier(self.dist)  # every rank sees this epoch's files before going on
        return improved

    def _save(self, path: Path, model, **extra) -> None:
        """The fold's only checkpoint writer: under torchrun, rank 0 writes and the others wait at the barrier."""
        if self.dist.main:
            save_checkpoint(path, model, **extra)

    def _save_last(self, model, optimizer, state: FoldState) -> None:
        self.saved_at = time.monotonic()
        if not self.dist.main:
            return
        last = self.out / "last.pt"
        if last.is_file():
            os.replace(last, self.out / "last.prev.pt")  # one good state survives even a corrupted last.pt
        ema = {"ema": self.ema.module.state_dict()} if self.ema is not None else {}
        save_checkpoint(last, model, optimizer=optimizer.state_dict(), scaler=self.scaler.state_dict(),
                        state=dataclasses.asdict(state), **ema)
        atomic_write_text(self.out / "history.csv", pd.DataFrame(state.history).to_csv(index=False))

    def _finish(self, model, state: FoldState) -> None:
        """OOF logits with the best weights (not the last epoch's), curves, then the done marker."""
        if not self.dist.main:  # under torchrun, rank 0 writes the fold's results alone
            return
        best = load_checkpoint(self.out / "best.pt")
        model.load_state_dict(best["model"])
        logits = predict_logits(model, self.val_dl, self.amp_ctx, self.device)
        report.plot_curves(pd.DataFrame(state.history), self.out / "curves.png")
        save_npz(self.out / "oof.npz", ids=self.val_ids.astype(str), labels=self.val_labels, logits=logits)
        log.info("fold %d done: best top-1 %.4f (stage %d, epoch %d)", self.fold, best["score"], best["stage"], best["epoch"])
        if not self.cfg.keep_checkpoints:  # after oof.npz, the done marker: a finished fold needs best.pt alone
            for name in ("stage1_best.pt", "last.pt", "last.prev.pt"):  # 3 x 100 MB a fold for resnest50d
                (self.out / name).unlink(missing_ok=True)


def check_trained(cfg: Config, n_folds: int) -> None:
    """Refuse settings that would mix into, or misdescribe, folds trained with other weight-shaping keys."""
    for k in range(n_folds):
        saved = cfg.exp_dir / f"fold{k}" / "config.yaml"
        if not saved.is_file():
            continue
        diff = changed(yaml.safe_load(saved.read_text()) or {}, cfg, "weights")
        if diff:
            raise ValueError(f"{saved.parent} was trained with other settings ({'; '.join(diff)}); use the trained "
                             f"values, remove {cfg.exp_dir}/ to retrain, or give this run another name= to keep both")


def train_fold(cfg: Config, fold: int, table: pd.DataFrame, classes: list[str], root: Path, device,
               dist: Dist = Dist(), progress: Progress | None = None, test: pd.DataFrame | None = None) -> Path:
    out = cfg.exp_dir / f"fold{fold}"
    pseudo = pseudo_labels(cfg, fold, classes, test) if cfg.pseudo_from else None
    if (out / "oof.npz").is_file():
        if pseudo is not None:
            _check_pseudo(out, pseudo[1])
        log.info("fold %d of %s already trained: %s", fold, cfg.name, out)
        return out
    if dist.main:
        for stale in out.glob(".*.tmp"):  # half-written files of a killed run: never renamed, never read
            stale.unlink()
        save_config(cfg, out / "config.yaml")
    if pseudo is not None:
        rows, record = pseudo
        _check_pseudo(out, record)  # a resumed fold must go on with the labels it started with
        if dist.main:
            atomic_write_text(out / "pseudo.json", json.dumps(record, indent=2) + "\n")
        table = pd.concat([table, rows], ignore_index=True)  # fold -1 role pseudo: trained on, never validated
        log.info("fold %d: + %d pseudo-labelled test images (%s fold %d, probability >= %.2f)", fold, len(rows),
                 cfg.pseudo_from, fold, cfg.pseudo_threshold)
    FoldRun(cfg, fold, table, classes, root, device, dist, progress).fit()
    barrier(dist)
    return out


def pseudo_labels(cfg: Config, fold: int, classes: list[str], test: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Test images the source experiment's fold-`fold` model labels with probability >= pseudo_threshold.

    The source's fold k never saw fold k's validation images, so neither do these labels: the CV of
    the new experiment stays out-of-fold (the source's fold ensemble has seen every fold).
    """
    src = Path(cfg.work_dir) / cfg.pseudo_from / f"fold{fold}" / "test_logits.npz"
    if not src.is_file():
        raise ValueError(f"pseudo_from={cfg.pseudo_from}: {src} not found; run `kit predict --exp {cfg.pseudo_from}` "
                         "first (same work_dir)")
    z = load_npz(src)
    if list(z["ids"]) != list(test["id"].astype(str)):
        raise ValueError(f"{src}: predicted for another test set; run `kit predict --exp {cfg.pseudo_from}` again")
    probs = softmax(z["logits"].astype(np.float64), axis=1)
    keep = probs.max(1) >= cfg.pseudo_threshold
    rows = pd.DataFrame({"path": test["path"].to_numpy()[keep], "label": np.asarray(classes)[probs.argmax(1)[keep]],
                         "source": "pseudo", "fold": -1, "role": "pseudo"})
    record = {"source": str(src), "sha256": sha256_file(src), "threshold": cfg.pseudo_threshold, "images": int(keep.sum()),
              "of": len(keep)}
    return rows, record


def _check_pseudo(out: Path, record: dict) -> None:
    saved = out / "pseudo.json"
    if saved.is_file() and json.loads(saved.read_text())["sha256"] != record["sha256"]:
        raise ValueError(f"{out} was trained on pseudo-labels from another prediction of {record['source']}; remove "
                         f"{out.parent}/ to retrain, or give this run another name=")


def last_epoch_top1(fold_dir: Path) -> float:
    """Validation top-1 of the fold's last epoch (its last weights, not its best)."""
    return float(pd.read_csv(fold_dir / "history.csv")["val_top1"].iloc[-1])


def stage1_at_chance(fold_dir: Path, labels: np.ndarray) -> bool:
    """Whether the fold's stage 1 never rose above chance level on its validation labels."""
    history = pd.read_csv(fold_dir / "history.csv")
    return bool(history.loc[history["stage"] == 1, "val_top1"].max() <= chance_top1(labels))


def write_cv(exp_dir: Path, classes: list[str], n_folds: int, root: Path | None = None) -> Path:
    """cv.json from the OOF logits of every fold; beside it the confusion matrix and the error analysis."""
    parts = [load_npz(exp_dir / f"fold{k}" / "oof.npz") for k in range(n_folds)]
    per_fold = [{"fold": k, "n": len(p["labels"]), "top1": accuracy_score(p["labels"], p["logits"].argmax(1)),
                 "top5": topk(p["labels"], p["logits"], 5), "last_epoch_top1": last_epoch_top1(exp_dir / f"fold{k}"),
                 "chance_level": stage1_at_chance(exp_dir / f"fold{k}", p["labels"])} for k, p in enumerate(parts)]
    labels = np.concatenate([p["labels"] for p in parts])
    logits = np.concatenate([p["logits"] for p in parts])
    n = np.array([f["n"] for f in per_fold])
    cv = {"top1": accuracy_score(labels, logits.argmax(1)), "top5": topk(labels, logits, 5),
          # the same folds scored with each fold's last weights: best-epoch selection on the validation fold
          # itself flatters top1 by about top1 - last_epoch_top1
          "last_epoch_top1": float(np.dot(n, [f["last_epoch_top1"] for f in per_fold]) / n.sum()),
          "fold_std": float(np.std([f["top1"] for f in per_fold])), "n": int(len(labels)),
          "chance_level_folds": [f["fold"] for f in per_fold if f["chance_level"]], "folds": per_fold}
    atomic_write_text(exp_dir / "cv.json", json.dumps(cv, indent=2) + "\n")
    if cv["chance_level_folds"]:
        log.warning("%s: fold(s) %s ended stage 1 at chance level (cv.json: chance_level_folds)", exp_dir.name,
                    cv["chance_level_folds"])
    report.plot_confusion(labels, logits.argmax(1), classes, exp_dir / "confusion_matrix.png")
    write_errors(exp_dir, classes, np.concatenate([p["ids"] for p in parts]), labels, logits, root)
    log.info("%s: CV top-1 %.4f top-5 %.4f over %d folds (last epochs' weights: top-1 %.4f)", exp_dir.name,
             cv["top1"], cv["top5"], n_folds, cv["last_epoch_top1"])
    return exp_dir / "cv.json"


def write_errors(exp_dir: Path, classes: list[str], paths: np.ndarray, labels: np.ndarray, logits: np.ndarray,
                 root: Path | None) -> None:
    """per_class.csv, confused_pairs.csv and (with the images' root) mistakes.png, from the OOF predictions."""
    preds = logits.argmax(1)
    atomic_write_text(exp_dir / "per_class.csv", report.per_class(labels, preds, classes).to_csv(index=False))
    atomic_write_text(exp_dir / "confused_pairs.csv", report.confused_pairs(labels, preds, classes).to_csv(index=False))
    if root is not None:
        report.plot_mistakes(root, paths, labels, softmax(logits, axis=1), classes, exp_dir / "mistakes.png")


def _claim_and_train(cfg: Config, fold: int, folds_of: tuple, device, dist: Dist, wait: bool,
                     progress: Progress) -> bool:
    """Train a fold unless another process holds it (then False, at once; or, with wait, after it lets go).

    The lock (fold<k>/.train.lock) makes the folds a work queue: GPU processes, a second `make train`,
    or machines sharing the folder each take the next free fold; a dead process's lock is free again.
    """
    table, classes, root, test = folds_of
    out = cfg.exp_dir / f"fold{fold}"
    lock = claimed(out / ".train.lock", wait) if dist.main else nullcontext(True)  # rank 0 claims for all ranks
    with lock as got:
        if not from_main(got, dist):
            log.info("fold %d of %s: another process is training it; taking the next free fold", fold, cfg.name)
            return False
        train_fold(cfg, fold, table, classes, root, device, dist, progress, test)  # at once if finished meanwhile
    progress.update((cfg.name, fold), 0, ran=False)
    return True


def run_all(cfgs: list[Config], only: list[int] | None = None, shard: tuple[int, int] | None = None) -> list[Path]:
    """Train the folds asked for (all by default; `shard=(i, n)`: those with k % n == i) of every experiment.

    Free folds first, over all experiments; then those another process was training, once it is done
    with them (finished by then, or taken over if it died). cv.json follows when all folds are done.
    """
    dist = setup_distributed()
    jobs, loaded = [], {}
    for cfg in cfgs:
        table, meta, layout = folds_stage.load(cfg)
        n_folds = meta["n_folds"]
        bad = [k for k in only or [] if not 0 <= k < n_folds]
        if bad:
            raise ValueError(f"--fold {bad[0]}: folds.csv has folds 0..{n_folds - 1}")
        check_trained(cfg, n_folds)  # before anything is written: config.yaml must describe what trained the folds
        loaded[cfg.name] = (table, meta["classes"], layout.root, layout.test), meta
        jobs += [(cfg, k) for k in only or range(n_folds) if shard is None or k % shard[1] == shard[0]]
    device = pick_device(cfgs[0].device, cfgs[0].deterministic)
    if dist.main:
        log.info("train: %s", describe(device, cfgs[0].amp, num_workers(cfgs[0].workers), cfgs[0].batch_size))
        for cfg in cfgs:
            save_config(cfg, cfg.exp_dir / "config.yaml")
    progress = Progress({(cfg.name, k): 0 if (cfg.exp_dir / f"fold{k}" / "oof.npz").is_file()
                         else cfg.stage1_epochs + cfg.stage2_epochs for cfg, k in jobs})
    busy = [(cfg, k) for cfg, k in jobs
            if not _claim_and_train(cfg, k, loaded[cfg.name][0], device, dist, False, progress)]
    for cfg, k in busy:
        _claim_and_train(cfg, k, loaded[cfg.name][0], device, dist, True, progress)
    for cfg in cfgs:
        meta = loaded[cfg.name][1]
        done = all((cfg.exp_dir / f"fold{k}" / "oof.npz").is_file() for k in range(meta["n_folds"]))
        if done and dist.main:
            write_cv(cfg.exp_dir, meta["classes"], meta["n_folds"], loaded[cfg.name][0][2])
    return [cfg.exp_dir for cfg in cfgs]


def run(cfg: Config, only: list[int] | None = None, shard: tuple[int, int] | None = None) -> Path:
    """One experiment's folds (see run_all)."""
    return run_all([cfg], only, shard)[0]
