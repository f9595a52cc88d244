"""A fold's resume state on disk: last.pt (and last.prev.pt, the epoch before it) written and read back.

    state, opt_state = resume(files, model, scaler, ema, better)     # FoldState(), None on a fresh fold
    save_last(files, model, optimizer, scaler, ema, state)
    best = finish(files, trainer, cfg, final_model, model, state, check)   # final.pt, oof.npz: the fold is done

last.pt holds everything a killed fold needs to go on as if never stopped: the model, its EMA, the
optimizer, the loss scaler and the early-stopping state with the history. The previous one is kept
as last.prev.pt, so that one good state survives a truncated last.pt (a full disk, a bad copy).
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pandas as pd

from kit import figures
from kit.config import record
from kit.engine import load_checkpoint, predict_logits, save_checkpoint
from kit.io import atomic_write_text, save_npz
from kit.experiment import FoldFiles
from kit.train.stopping import FoldState

log = logging.getLogger(__name__)


def resume(files: FoldFiles, model, scaler, ema, better) -> tuple[FoldState, dict | None]:
    """Load last.pt (or, if it is unreadable, last.prev.pt) into model, scaler and ema; return the state and the
    optimizer's state (FoldState() and None when the fold starts afresh). better(a, b): the metric's order."""
    ckpt = None
    for path in (files.last, files.last_prev):
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
        scaler.load_state_dict(ckpt["scaler"])
    if ema is not None and ckpt.get("ema"):
        ema.module.load_state_dict(ckpt["ema"])
    state = FoldState(**ckpt["state"])
    if files.best.is_file():
        # killed between writing best.pt and last.pt, best.pt is ahead of last.pt: a rerun epoch that scores
        # lower (on a GPU, reruns are close, not exact) must not overwrite it
        on_disk = load_checkpoint(files.best)["score"]
        state.best = on_disk if better(on_disk, state.best) else state.best
    log.info("%s: resuming stage %d after epoch %d (best %s)", files.dir.name, state.stage, state.epoch, state.best)
    return state, ckpt["optimizer"]


def save_last(files: FoldFiles, model, optimizer, scaler, ema, state: FoldState) -> None:
    """last.pt (the one before it kept as last.prev.pt) and history.csv."""
    if files.last.is_file():
        os.replace(files.last, files.last_prev)  # one good state survives even a corrupted last.pt
    extra = {"ema": ema.module.state_dict()} if ema is not None else {}
    save_checkpoint(files.last, model, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                    state=dataclasses.asdict(state), **extra)
    atomic_write_text(files.history, pd.DataFrame(state.history).to_csv(index=False))


def finish(files: FoldFiles, trainer, cfg, final_model, model, state: FoldState, check) -> dict:
    """A fold's last files: final.pt (the last epoch's weights, `final_model`: what cv_last scores), the OOF logits
    of best.pt (loaded into `model`), curves.png, then oof.npz, the done marker; the resume files go unless
    keep_checkpoints. check(): raises if this process no longer owns the fold (kit/claim.py). Returns best.pt."""
    last = state.history[-1]
    save_checkpoint(files.final, final_model, cfg=record(cfg), classes=list(trainer.classes),
                    channels=trainer.channels, stage=state.stage,
                    epoch=last["epoch"], score=last["val_score"])
    best = load_checkpoint(files.best)
    model.load_state_dict(best["model"])
    logits = predict_logits(model, trainer.val_dl, trainer.amp_ctx, trainer.device) if trainer.validates else \
        np.zeros((0, len(trainer.classes)), np.float32)  # full_fit's model: no out-of-fold rows (oof.npz: done)
    figures.plot_curves(pd.DataFrame(state.history), files.curves)
    check()  # the done marker last: never for a fold another process now trains
    save_npz(files.oof, ids=trainer.val_ids.astype(str), labels=trainer.val_labels, logits=logits)
    if not cfg.keep_checkpoints:  # after oof.npz: a finished fold needs best.pt (and final.pt), not three more copies
        for path in files.resume_files:
            path.unlink(missing_ok=True)
    return best
