"""The `train` command: every fold in two stages, as a work queue, keeping what the write-up's notebook lost.

    python -m kit train --exp demo                 # every fold of configs/demo.yaml
    python -m kit train --exp demo --fold 3        # one fold (spread folds over GPUs or machines)

Per fold (kit/experiment.py names the files): stage1_best.pt (stage 2 starts from it), best.pt
(the best weights over both stages), last.pt (everything resuming needs), history.csv,
curves.png, config.yaml, final.pt (the last epoch's weights: predict scores them as cv_last) and oof.npz (out-of-fold logits of best.pt, written last: the fold's
done marker); then stage1_best.pt, last.pt and last.prev.pt are removed (keep_checkpoints=true
keeps them). With seeds=N, fold<k>-seed<s>/ holds the same for the fold trained with seed + s. Per experiment,
once every fold is done: cv.json and the error analysis.

Randomness is derived from (seed, fold, stage, epoch) at the start of every epoch, so a run
killed at any point and resumed from last.pt ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import logging
import socket
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from timm.scheduler import CosineLRScheduler

from kit import claim as claims
from kit.claim import claim
from kit.config import Config, record, save_config
from kit.data import folds as folds_command
from kit.data.folds import Folds
from kit.engine import epoch_steps, load_checkpoint, save_checkpoint, train_one_epoch
from kit.metrics import Metric
from kit.runtime import (Dist, barrier, describe, from_main, mean_over_ranks, pick_device,
                         setup_distributed, sync_batchnorm)
from kit import cpus, tracking
from kit.train import alarm, checkpoints, plan, pseudo, refit
from kit.experiment import FULL, Experiment, fold_name
from kit.train.plan import Plan
from kit.train.progress import Progress
from kit.train.stopping import FoldState, early_stopping
from kit.train.trainer import Trainer

log = logging.getLogger(__name__)


class FoldRun:
    """Holds one fold's model, data and files; `fit()` runs both stages, resuming from last.pt."""

    def __init__(self, cfg: Config, trainer: Trainer, metric: Metric, plan: Plan, dist: Dist = Dist(),
                 progress: Progress | None = None):
        t = trainer  # the fold's data, loss, precision and fresh models (kit/train/trainer.py)
        self.cfg, self.trainer, self.metric, self.dist = cfg, t, metric, dist
        self.fold, self.classes, self.device, self.multilabel = t.fold, t.classes, t.device, t.multilabel
        self.found_lr = plan.lr  # stage1_lr=auto's value (kit/train/plan.py)
        self.epochs = plan.epochs or (cfg.stage1_epochs, cfg.stage2_epochs)  # min_fold_steps's and time_budget's
        self.train_dl, self.val_dl, self.val_labels, self.chance = t.train_dl, t.val_dl, t.val_labels, t.chance
        self.amp_ctx, self.scaler, self.mixup, self.criterion = t.amp_ctx, t.scaler, t.mixup, t.criterion
        self.progress = progress or Progress({})
        self.saved_at = time.monotonic()  # of last.pt: checkpoint_every_s counts from here
        self.files = Experiment.of(cfg).fold(self.fold, t.replica)

    def _better(self, score: float, than: float | None) -> bool:  # the metric's direction; None: nothing yet
        return than is None or self.metric.better(score, than)

    def _model(self):
        model = self.trainer.model()  # seeded: the head's (and any unloaded layer's) init is the fold's
        self._new_ema(model)
        return model

    def _new_ema(self, model) -> None:  # with it, validation, best.pt and stage 2's start are the EMA weights
        self.ema = self.trainer.ema_of(model)

    def _evaluated(self, model):
        return self.ema.module if self.ema is not None else model

    def fit(self) -> None:
        model = self._model()
        state, opt_state = checkpoints.resume(self.files, model, self.scaler, self.ema, self._better)
        # under torchrun, gradients are averaged over ranks; eval and checkpoints use the plain module
        trained = model if self.dist.world == 1 else torch.nn.parallel.DistributedDataParallel(
            sync_batchnorm(model, self.device))
        if self.cfg.compile:
            trained = torch.compile(trained)  # checkpoints still save the plain module's weights
        for stage in (1, 2):
            if stage < state.stage or stage == 2 and not self.epochs[1]:
                continue  # no stage 2: the weights in memory stay the last epoch's (final.pt, cv_last)
            if stage > state.stage:
                state = self._enter_stage(model, state, stage)
            self._run_stage(model, trained, state, opt_state)
            opt_state = None
        self._finish(model, state)

    def _enter_stage(self, model, state: FoldState, stage: int) -> FoldState:
        """Stage 2 starts from the stage-1 best weights with a fresh optimizer and schedule."""
        best1 = load_checkpoint(self.files.stage1_best)
        model.load_state_dict(best1["model"])
        self._new_ema(model)  # stage 2 averages its own steps, from stage 1's best
        log.info("%s: stage %d starts from stage-1 best (epoch %d, %s %.4f)",
                 self.trainer.label, stage, best1["epoch"], self.metric.name, best1["score"])
        return FoldState(stage=stage, best=state.best, stage_best=state.best, history=state.history)

    def _stage_params(self, stage: int) -> tuple[float, int]:  # (its learning rate, its epochs)
        return self.cfg.stage_lr(stage, self.found_lr), self.epochs[stage - 1]

    def _run_stage(self, model, trained, state: FoldState, opt_state: dict | None) -> None:
        (lr, epochs), c = self._stage_params(state.stage), self.cfg
        optimizer = self.trainer.optimizer(model, lr)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        scheduler = schedule(optimizer, lr, epochs, min(c.warmup, epochs - 1) if state.stage == 1 else 0)
        while state.epoch < epochs and not state.stopped:
            scheduler.step(state.epoch)
            self._run_epoch(model, trained, optimizer, state)
        if not state.stopped:
            state.stopped = True
            self._save_last(model, optimizer, state)
        if state.stage == 1 and self.trainer.validates:
            alarm.check_stage1(self.trainer.label, self.metric, state.stage_best, self.chance, c)

    def _run_epoch(self, model, trained, optimizer, state: FoldState) -> None:
        c, t0 = self.cfg, time.perf_counter()
        self.trainer.seed_epoch(state.stage, state.epoch)
        where = f"{self.trainer.label} stage {state.stage} epoch {state.epoch + 1}"
        ema, first = self.ema, state.ema_steps
        after_step = None if ema is None else lambda i: ema.update(model, step=first + i + 1)
        loss, acc, ips = train_one_epoch(trained, self.train_dl, optimizer, self.scaler, self.mixup, self.criterion,
                                         self.amp_ctx, self.device, c.max_epoch_steps, where, self.dist, after_step)
        state.ema_steps += epoch_steps(self.train_dl, c.max_epoch_steps)
        acc = mean_over_ranks(acc, self.dist)  # the loss is over every rank already
        ips *= self.dist.world
        scored = self._evaluated(model)
        val = self.trainer.validate(scored, self.dist)  # NaN for full_fit's model: nothing to validate on
        row = {"epoch": len(state.history) + 1, "stage": state.stage, "lr": optimizer.param_groups[0]["lr"],
               "train_loss": loss, "train_top1": acc, **val, "seconds": time.perf_counter() - t0, "img_per_s": ips,
               "host": socket.gethostname()}  # where each epoch ran: a fold may resume on another node
        improved = self._update(model, scored, optimizer, state, row)
        tracking.epoch(c, self.files.dir, row, self.dist.main)
        self.progress.update((c.name, self.fold, self.trainer.replica), self._epochs_left(state))
        log.info("%s", _epoch_line(c.name, where, row, self.metric.name, improved, self.progress))
        if state.stage == 1 and state.epoch == min(c.warmup + 2, self.epochs[0]) and self.trainer.validates:
            alarm.check_learning(self.trainer.label, self.metric, state.stage_best, self.chance, loss, len(self.classes),
                                 self.multilabel, c)
        if state.stopped:
            log.info("%s stage %d: early stop, no better %s for %d epochs", self.trainer.label, state.stage,
                     self.metric.name, state.bad_epochs)

    def _epochs_left(self, state: FoldState) -> int:  # at most (early stopping may end them sooner)
        this = 0 if state.stopped else self._stage_params(state.stage)[1] - state.epoch
        return this + (self.epochs[1] if state.stage == 1 else 0)

    def _update(self, model, scored, optimizer, state: FoldState, row: dict) -> bool:
        """Early stopping and checkpoints; best files first, so last.pt never claims a best that isn't on disk. The
        best files hold `scored` (the EMA weights, or the model itself); last.pt the model and its EMA. Returns
        whether this epoch improved the stage's best."""
        score, c = row["val_score"], self.cfg
        state.history.append(row)
        meta = {"cfg": record(c), "classes": list(self.classes), "channels": self.trainer.channels, "stage": state.stage,
                "epoch": row["epoch"], "score": score}
        improved, best = early_stopping(state, score, self.metric, self.chance, c.patience,
                                        max(c.min_epochs, c.warmup if state.stage == 1 else 0)
                                        ) if self.trainer.validates else _unvalidated(state)
        if improved and state.stage == 1:
            self._save(self.files.stage1_best, scored, **meta)
        if best:
            self._save(self.files.best, scored, **meta)
        if state.stopped or time.monotonic() - self.saved_at >= c.checkpoint_every_s:  # epochs running out: _run_stage saves
            self._save_last(model, optimizer, state)
        barrier(self.dist)  # every rank sees this epoch's files before going on
        return improved

    def _save(self, path: Path, model, **extra) -> None:
        """The fold's only checkpoint writer: under torchrun, rank 0 writes and the others wait at the barrier."""
        if self.dist.main:
            claims.check(self.files.lock)  # a process whose claim was taken over writes nothing more
            save_checkpoint(path, model, **extra)

    def _save_last(self, model, optimizer, state: FoldState) -> None:
        self.saved_at = time.monotonic()
        if not self.dist.main:
            return
        claims.check(self.files.lock)
        checkpoints.save_last(self.files, model, optimizer, self.scaler, self.ema, state)

    def _finish(self, model, state: FoldState) -> None:
        """OOF logits with the best weights (not the last epoch's), curves, then the done marker."""
        if not self.dist.main:  # under torchrun, rank 0 writes the fold's results alone
            return
        claims.check(self.files.lock)
        best = checkpoints.finish(self.files, self.trainer, self.cfg, self._evaluated(model), model, state,
                                  lambda: claims.check(self.files.lock))
        log.info("%s done: %s", self.trainer.label, _done(best, self.metric.name))
        tracking.fold_done(self.cfg, self.files.dir, best)


def _done(best: dict, metric: str) -> str:
    """What a finished fold's log line says of its best.pt (full_fit's model: its last epoch, unscored)."""
    if best["score"] != best["score"]:  # NaN
        return f"{best['epoch']} epochs on every training image (its last weights kept)"
    return f"best {metric} {best['score']:.4f} (stage {best['stage']}, epoch {best['epoch']})"


def _unvalidated(state: FoldState) -> tuple[bool, bool]:
    """early_stopping for full_fit's model: no score to stop on; each epoch is the newest, kept as the best (the
    stage runs the epochs the folds chose)."""
    state.epoch += 1
    return True, True


def schedule(optimizer, lr: float, epochs: int, warmup: int) -> CosineLRScheduler:
    """A stage's schedule, stepped per epoch from 0: `warmup` epochs rising linearly from lr/10 (stage 1 only:
    stage 2 starts from trained weights at a 10x lower lr; a time budget may leave fewer epochs than the warm-up),
    then the cosine over the rest. t_initial >= 2: timm warns that a 1-epoch cosine does nothing; its one epoch
    runs at lr either way."""
    return CosineLRScheduler(optimizer, t_initial=max(epochs - warmup, 2), warmup_t=warmup, warmup_lr_init=lr / 10,
                             warmup_prefix=True)


def _epoch_line(name: str, where: str, row: dict, metric: str, improved: bool, progress: Progress) -> str:
    """The log line of an epoch: its rate, losses, score (and top-1/top-5), speed, a * when best, the time left."""
    top = f" top-1 {row['val_top1']:.4f} top-5 {row['val_top5']:.4f}" if "val_top1" in row else ""
    validated = row["val_score"] == row["val_score"]  # NaN: full_fit's model
    val = (f"val_loss {row['val_loss']:.4f} {metric} {row['val_score']:.4f}{top}" if validated
           else "(every training image: no validation)")
    return (f"{name} {where}: lr {row['lr']:.2e} loss {row['train_loss']:.4f} {val} "
            f"{row['seconds']:.0f}s {row['img_per_s']:.0f} img/s"
            f"{' *' if improved else ''}{progress}")  # formatted now: progress changes


def train_fold(cfg: Config, fold: int, folds: Folds, device, dist: Dist = Dist(),
               progress: Progress | None = None, decided: Plan | None = None, replica: int = 0) -> Path:
    """Train one fold (resuming it, or at once if it is done); with pseudo_from, on its pseudo-labels too.
    `decided`: the experiment's plan (decided now if not given: kit/train/plan.py). replica: which of the fold's
    seeds (seeds=N), in fold<k>-seed<replica>/."""
    files = Experiment.of(cfg).fold(fold, replica)
    table = folds.table
    if files.done:  # finished: nothing it was trained on is checked again (the source may have moved on)
        log.info("%s of %s already trained: %s", files.dir.name, cfg.name, files.dir)
        return files.dir
    selected = pseudo.select(cfg, fold, folds.layout) if cfg.pseudo_from else None
    if dist.main:
        for stale in files.dir.glob(".*.tmp"):  # half-written files of a killed run: never renamed, never read
            stale.unlink()
        save_config(cfg, files.config)
    if selected is not None:
        rows, record = selected
        pseudo.check(files, record)  # a resumed fold must go on with the labels it started with
        if dist.main:
            pseudo.keep(files, record)
        table = pd.concat([table, rows], ignore_index=True)  # fold -1 role pseudo: trained on, never validated
        log.info("fold %d: + %d pseudo-labelled test images (%s fold %d, probability >= %.2f)", fold, len(rows),
                 cfg.pseudo_from, fold, cfg.pseudo_threshold)
    decided = decided or plan.decide(cfg, folds, device, dist)
    if fold == FULL:  # full_fit: the folds' epochs, every training image
        decided = dataclasses.replace(decided, epochs=refit.epochs(Experiment.of(cfg), folds.n_folds, cfg.seeds,
                                                                   folds.metric))
    trainer = Trainer.for_fold(cfg, fold, table, folds.layout, folds.metric, device, dist, decided.hflip,
                               decided.pretrained, replica)
    FoldRun(cfg, trainer, folds.metric, decided, dist, progress).fit()
    barrier(dist)
    return files.dir


CLAIM_POLL_S = 5.0  # under torchrun, how often the ranks ask again for a fold another trainer holds


def _claim_and_train(cfg: Config, fold: int, replica: int, folds: Folds, device, dist: Dist, wait: bool,
                     progress: Progress, decided: Plan) -> bool:
    """Train a fold unless another process holds it (then False, at once; or, with wait, after it lets go).

    The claim (fold<k>/.train.lock and its owner file, kit/claim.py) makes the folds a work queue: GPU
    processes, a second `make train`, or machines sharing the folder (NFS too) each take the next free
    fold; a dead process's fold is free again (at once on its host, after the heartbeat's timeout elsewhere).
    Under torchrun rank 0 claims for all and broadcasts the answer; it never blocks on the lock while
    the other ranks sit in that broadcast (they would time out): they all sleep and ask again.
    """
    lock_file = Experiment.of(cfg).fold(fold, replica).lock
    block = wait and dist.world == 1
    while True:
        lock = claim(lock_file, block) if dist.main else nullcontext(True)  # rank 0 claims for all
        with lock as got:
            if from_main(got, dist):
                train_fold(cfg, fold, folds, device, dist, progress, decided, replica)  # at once if done meanwhile
                break
        if not wait:
            log.info("%s of %s: another process is training it; taking the next free fold", fold_name(fold, replica),
                     cfg.name)
            return False
        time.sleep(CLAIM_POLL_S)  # every rank, outside any collective
    progress.update((cfg.name, fold, replica), 0, ran=False)
    return True


def _all_done(cfg: Config, n_folds: int) -> bool:
    return len(Experiment.of(cfg).done_folds(n_folds, cfg.seeds)) == n_folds


def run(cfgs: list[Config], only: list[int] | None = None, shard: tuple[int, int] | None = None) -> list[Path]:
    """The `train` command: the folds asked for (all by default; `shard=(i, n)`: those with k % n == i) of every
    experiment; with seeds=N, each fold's seeds, the first seed of every fold before the next seed of any.

    Free folds first, over all experiments; then those another process was training, once it is done
    with them (finished by then, or taken over if it died). cv.json follows when all folds are done.
    """
    dist = setup_distributed()
    jobs, loaded = [], {}
    for cfg in cfgs:
        folds = folds_command.load(cfg)
        bad = [k for k in only or [] if not 0 <= k < folds.n_folds]
        if bad:
            raise ValueError(f"--fold {bad[0]}: folds.csv has folds 0..{folds.n_folds - 1}")
        Experiment.of(cfg).check_trained(cfg, folds.n_folds)  # before anything is written: config.yaml must
        # describe what trained the folds
        loaded[cfg.name] = folds
        jobs += [(cfg, k, s) for s in range(cfg.seeds) for k in only or range(folds.n_folds)
                 if shard is None or k % shard[1] == shard[0]]
    device = pick_device(cfgs[0].device, cfgs[0].deterministic)
    threads = cpus.start(cfgs[0].threads)
    if dist.main:
        log.info("train: %s", describe(device, cfgs[0].amp, cpus.num_workers(cfgs[0].workers), cfgs[0].batch_size,
                                       threads))
        for cfg in cfgs:
            save_config(cfg, Experiment.of(cfg).config)
    progress = Progress({(cfg.name, k, s): 0 if Experiment.of(cfg).fold(k, s).done
                         else cfg.stage1_epochs + cfg.stage2_epochs for cfg, k, s in jobs})
    plans = {}  # decided once per experiment, before its first fold, where any fold is left to train
    for cfg in {c.name: c for c, k, s in jobs if not Experiment.of(c).fold(k, s).done}.values():
        plans[cfg.name] = plan.decide(cfg, loaded[cfg.name], device, dist)
        if plans[cfg.name].epochs:
            progress.plan(cfg.name, sum(plans[cfg.name].epochs))
    busy = [(cfg, k, s) for cfg, k, s in jobs
            if not _claim_and_train(cfg, k, s, loaded[cfg.name], device, dist, False, progress, plans.get(cfg.name))]
    for cfg, k, s in busy:
        _claim_and_train(cfg, k, s, loaded[cfg.name], device, dist, True, progress, plans.get(cfg.name))
    for cfg in cfgs:
        folds, exp = loaded[cfg.name], Experiment.of(cfg)
        if _all_done(cfg, folds.n_folds) and dist.main:
            exp.write_cv(folds.layout, folds.metric, folds.n_folds, exp.decided(plan.key(cfg, folds.fingerprint)),
                         cfg.seeds)
            tracking.experiment_done(cfg, exp.dir)
    for cfg in cfgs:  # full_fit: once every fold is done, by whichever trainer finds them so (another's: skipped)
        if cfg.full_fit and _all_done(cfg, loaded[cfg.name].n_folds):
            for s in range(cfg.seeds):
                _claim_and_train(cfg, FULL, s, loaded[cfg.name], device, dist, False, progress, plans.get(cfg.name))
    return [Experiment.of(cfg).dir for cfg in cfgs]
