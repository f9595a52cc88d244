"""An experiment's plan, decided once before its first fold and shared by every fold: <work_dir>/<exp>/plan.json.

    plan = decide(cfg, folds, device)       # Plan(pretrained, lr, hflip, epochs)

The steps, in this order, each using what the ones before it decided (a config that asks for none of
them has no plan.json):
  1. start   pretrained=auto: ImageNet weights if they can be had now (pretrained_file, the hub or its
             cache), else from scratch; so every fold starts alike even if the hub comes or goes
  2. lr      stage1_lr=auto: the range test (kit/train/lr_find.py) on fold 0's training part, without
             flips where hflip=auto (the flip is decided next, at this rate)
  3. flip    hflip=auto: the flip probe (kit/train/flip.py) at stage 1's rate
  4. epochs  min_fold_steps, time_budget: fold 0's steps an epoch and, with a budget, a timed probe of its
             model (kit/train/budget.py), less the seconds steps 2 and 3 took
Every probe acts on fold 0's Trainer (kit/train/trainer.py), seeded as fold 0's first epoch.

One record, one staleness rule: plan.json holds the steps decided under one key, every weight-shaping
key and the folds' fingerprint (config.shaping_key). A step decided under that key is not run again (a
resume, a second trainer, another machine: one process decides, holding the plan's claim, while the
others wait); under another key the plan is decided anew. A kill between steps keeps the steps done.
cv.json, the manifest and the bundle read it through Experiment.decided (kit/experiment.py).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from kit.claim import claim
from kit.config import Config, shaping, shaping_key
from kit.data.folds import Folds
from kit.engine import epoch_steps
from kit.io import atomic_write_text
from kit.model import reachable
from kit.runtime import Dist, barrier
from kit.train import budget, flip, lr_find
from kit.experiment import Experiment, kept
from kit.train.trainer import Trainer

log = logging.getLogger(__name__)

STEPS = ("start", "lr", "flip", "epochs")
LEGACY = {"start": "start.json", "lr": "lr_find.json", "flip": "hflip.json", "epochs": "budget.json"}  # before plan.json


@dataclass(frozen=True)
class Plan:
    """What every fold of an experiment trains with, beyond its config."""

    pretrained: bool | str  # pretrained=auto, decided (else the config's)
    lr: float | None = None  # stage1_lr=auto's value
    hflip: float | None = None  # hflip=auto's flip probability
    epochs: tuple[int, int] | None = None  # min_fold_steps's and time_budget's epochs per stage (None: the config's)


def key(cfg: Config, fingerprint: str) -> str:
    return shaping_key(cfg, "weights", fingerprint)


def asked(cfg: Config) -> list[str]:
    """The steps this config asks for, in order."""
    wants = {"start": cfg.pretrained == "auto", "lr": cfg.stage1_lr == "auto", "flip": cfg.hflip == "auto",
             "epochs": bool(cfg.time_budget or cfg.min_fold_steps)}
    return [s for s in STEPS if wants[s]]


def decide(cfg: Config, folds: Folds, device, dist: Dist = Dist()) -> Plan:
    """The plan kept in plan.json under this config's key, completed now where steps are missing (by rank 0,
    holding the plan's claim, while other trainers and ranks wait for it)."""
    exp, k, steps = Experiment.of(cfg), key(cfg, folds.fingerprint), asked(cfg)
    if steps and dist.main and not set(steps) <= set(_kept(exp, cfg, k)):
        with claim(exp.dir / ".plan.lock", wait=True):
            record = {"key": k, **_kept(exp, cfg, k)}  # as another trainer may have left it meanwhile
            for step in steps:
                if step not in record:
                    t0 = time.monotonic()
                    record[step] = DECIDE[step](cfg, folds, device, exp, _so_far(cfg, record))
                    record[step]["seconds"] = round(time.monotonic() - t0, 1)
                    atomic_write_text(exp.plan, json.dumps(record, indent=2) + "\n")
    barrier(dist)
    return _so_far(cfg, _kept(exp, cfg, k) if steps else {})


def _kept(exp: Experiment, cfg: Config, k: str) -> dict:
    """The steps decided under key k: plan.json's, or the separate records of earlier versions."""
    found = kept(exp.plan, k)
    if found is not None:
        return {s: v for s, v in found.items() if s in STEPS}
    legacy = {}
    for step, name in LEGACY.items():
        old_key = f"{cfg.backbone} {shaping(cfg, 'weights')['pretrained_file']}" if step == "start" else k
        if (old := kept(exp.dir / name, old_key)) is not None:
            legacy[step] = old
    return legacy


def _so_far(cfg: Config, record: dict) -> Plan:
    epochs = record.get("epochs")
    return Plan(pretrained=record["start"]["pretrained"] if "start" in record else cfg.pretrained,
                lr=record["lr"]["lr"] if "lr" in record else None,
                hflip=record["flip"]["hflip"] if "flip" in record else None,
                epochs=(epochs["stage1_epochs"], epochs["stage2_epochs"]) if epochs else None)


def _trainer(cfg: Config, folds: Folds, device, plan: Plan, hflip: float | None) -> Trainer:
    """Fold 0's trainer, as its training would start (the probes' data)."""
    return Trainer.for_fold(cfg, 0, folds.table, folds.layout, folds.metric, device, hflip=hflip,
                            pretrained=plan.pretrained)


def _start(cfg: Config, folds: Folds, device, exp: Experiment, plan: Plan) -> dict:
    ok, whence = reachable(cfg.backbone, cfg.pretrained_file)
    log.info("%s: pretrained=auto: %s", cfg.name, f"ImageNet weights from {whence}" if ok else
             f"from scratch ({whence}); {exp.plan} keeps this choice for every fold")
    return {"pretrained": ok, "from": whence}


def _lr(cfg: Config, folds: Folds, device, exp: Experiment, plan: Plan) -> dict:
    trainer = _trainer(cfg, folds, device, plan, 0.0 if cfg.hflip == "auto" else None)
    return lr_find.record(lr_find.sweep(trainer), exp.dir / "lr_find.png")


def _flip(cfg: Config, folds: Folds, device, exp: Experiment, plan: Plan) -> dict:
    trainer = _trainer(cfg, folds, device, plan, 0.0)
    steps = flip.steps_for(epoch_steps(trainer.train_dl, cfg.max_epoch_steps))
    scores = flip.probe(trainer, cfg.stage_lr(1, plan.lr), steps)
    return flip.record(flip.decide(*scores) | {"steps": steps}, exp.plan)


def _epochs(cfg: Config, folds: Folds, device, exp: Experiment, plan: Plan) -> dict:
    trainer = _trainer(cfg, folds, device, plan, plan.hflip)
    steps = epoch_steps(trainer.train_dl, cfg.max_epoch_steps)
    if not cfg.time_budget:
        return budget.record(budget.unbudgeted(cfg, steps), cfg)
    spent = sum(json.loads(exp.plan.read_text()).get(s, {}).get("seconds", 0.0) for s in ("lr", "flip")) \
        if exp.plan.is_file() else 0.0
    step_s, image_s = budget.probe(trainer)
    n_holdout = int((folds.table["role"] == "holdout").sum())
    return budget.record(budget.plan(cfg, folds.n_folds, steps, len(trainer.val_ids), len(folds.table) - n_holdout,
                                     len(folds.layout.test), step_s, image_s, spent, n_holdout), cfg)


DECIDE = {"start": _start, "lr": _lr, "flip": _flip, "epochs": _epochs}
