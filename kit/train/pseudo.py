"""Pseudo-labels: test images a trained experiment labels confidently, added to another's training folds.

    python -m kit pseudo --from resnest50d_spinalnet --threshold 0.9 --name resnest_pseudo data=...

`kit pseudo` predicts with the source, then trains and predicts the new experiment (`derive`):
the source's config with name=NEW, pseudo_from=SOURCE and pseudo_threshold=T. Its fold k trains
on its own training part plus the test images that the source's fold-k model labels with
probability >= T (that model never saw fold k's validation images, so the CV stays out-of-fold);
pseudo-labelled images are never validated on. Each fold records what it chose (fold<k>/pseudo.json:
the source's logits file and its sha256, and a hash of the images and labels taken), which a resumed
fold must choose again; a finished fold is never checked again. The manifest records every key,
and the leaderboard row's `pseudo` column what it gained over the source's newest row.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd

from kit.config import Config
from kit.data.layout import TAG_SEP, Layout
from kit.io import atomic_write_text, load_npz, sha256_file
from kit.metrics import probs_of
from kit.experiment import Experiment, FoldFiles


def derive(source: Config, threshold: float, name: str) -> Config:
    """The new experiment: the source's config, trained on its confident test labels too."""
    return dataclasses.replace(source, name=name, pseudo_from=source.name, pseudo_threshold=threshold)


def select(cfg: Config, fold: int, layout: Layout) -> tuple[pd.DataFrame, dict]:
    """(rows, record): test images the source's fold-`fold` model labels with probability >= pseudo_threshold.

    Single-label: the top class has that probability. Multi-label: every tag is confident, present
    (>= the threshold) or absent (<= 1 - it); the label is the present tags. The rows join the fold's
    training table (fold -1, role pseudo: trained on, never validated); the record says where they
    came from.
    """
    if layout.task == "regression":
        raise ValueError(f"pseudo_from={cfg.pseudo_from}: pseudo-labels are the classes a model is sure of, and a "
                         "regression has none; leave pseudo_from= empty")
    test, classes = layout.test, np.asarray(layout.classes)
    src = Experiment.at(cfg.work_dir, cfg.pseudo_from).fold(fold).logits("test")
    if not src.is_file():
        raise ValueError(f"pseudo_from={cfg.pseudo_from}: {src} not found; run `kit predict --exp {cfg.pseudo_from}` "
                         "first (same work_dir)")
    z = load_npz(src)
    if list(z["ids"]) != list(test["id"].astype(str)):
        raise ValueError(f"{src}: predicted for another test set; run `kit predict --exp {cfg.pseudo_from}` again")
    probs, t = probs_of(z["logits"], layout.task), cfg.pseudo_threshold
    if layout.task == "multilabel":
        keep = ((probs >= t) | (probs <= 1 - t)).all(1)
        labels = [TAG_SEP.join(classes[row >= t]) for row in probs[keep]]
    else:
        keep = probs.max(1) >= t
        labels = classes[probs.argmax(1)[keep]]
    rows = pd.DataFrame({"path": test["path"].to_numpy()[keep], "label": labels, "source": "pseudo", "fold": -1,
                         "role": "pseudo"})
    chosen = "\n".join(f"{path}\t{label}" for path, label in zip(rows["path"], rows["label"]))
    record = {"source": str(src), "sha256": sha256_file(src), "threshold": cfg.pseudo_threshold,
              "images": int(keep.sum()), "of": len(keep), "chosen": hashlib.sha256(chosen.encode()).hexdigest()}
    return rows, record


def check(files: FoldFiles, record: dict) -> None:
    """Refuse to resume a fold that started on other pseudo-labels than `record`'s: other images or labels.

    What was chosen is compared, not the source's logit file: a prediction recomputed (another TTA, a
    GPU's last digits) that picks the same images with the same labels goes on.
    """
    if not files.pseudo.is_file():
        return
    saved = json.loads(files.pseudo.read_text())
    key = "chosen" if "chosen" in saved else "sha256"  # records written before "chosen" name the file's bytes
    if saved[key] != record[key]:
        raise ValueError(f"{files.dir} started on other pseudo-labels than {record['source']} gives now (other images "
                         f"or labels at threshold {record['threshold']}); predict the source as it was, remove "
                         f"{files.dir}/ to retrain this fold, or give this run another name=")


def keep(files: FoldFiles, record: dict) -> None:
    """Write the fold's record (once it is known to agree with any saved one)."""
    atomic_write_text(files.pseudo, json.dumps(record, indent=2) + "\n")
