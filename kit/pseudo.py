"""Pseudo-labelling: a new experiment whose folds also train on confidently labelled test images.

    python -m kit pseudo --from resnest50d_spinalnet --threshold 0.9 --name resnest_pseudo data=...

The new experiment is the source's config with name=NEW, pseudo_from=SOURCE and
pseudo_threshold=T. Its fold k trains on its own training part plus the test images that the
source's fold-k model labels with probability >= T (that model never saw fold k's validation
images, so the CV stays out-of-fold); pseudo-labelled images are never validated on. Each fold
records the source logits it used (fold<k>/pseudo.json, sha256), the manifest every key, and the
leaderboard row's `pseudo` column what it gained over the source's newest row.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from kit import predict, train
from kit.config import Config

log = logging.getLogger(__name__)


def run(source: Config, threshold: float, name: str) -> Path:
    new = dataclasses.replace(source, name=name, pseudo_from=source.name, pseudo_threshold=threshold)
    predict.run([source])  # the source's test logits per fold (reused when up to date)
    train.run_all([new])
    return predict.run([new])[0]
