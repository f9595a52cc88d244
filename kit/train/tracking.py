"""Experiment trackers a team already runs (tracking= key): each fold's epochs, written as they end.

    python -m kit train --exp quick tracking=[tensorboard] data=...   # then: tensorboard --logdir <work_dir>

tensorboard: event files in <work_dir>/<exp>/fold<k>/tensorboard/ (every number of history.csv per epoch,
the config as text). Rank 0 writes; a tracker whose package is missing costs one warning, never a run.
"""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from kit.config import Config, to_dict

log = logging.getLogger(__name__)
_WRITERS: dict[Path, object] = {}  # one writer per fold folder in this process
_WARNED: set[str] = set()


def _writer(folder: Path, cfg: Config):
    if folder not in _WRITERS:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if "tensorboard" not in _WARNED:
                _WARNED.add("tensorboard")
                log.warning("tracking=tensorboard: the tensorboard package is not installed (pip install tensorboard); "
                            "training goes on without it")
            _WRITERS[folder] = None
            return None
        writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        writer.add_text("config", "    " + yaml.safe_dump(to_dict(cfg), sort_keys=False).replace("\n", "\n    "))
        _WRITERS[folder] = writer
    return _WRITERS[folder]


def epoch(cfg: Config, folder: Path, row: dict, main: bool) -> None:
    """One finished epoch of the fold in `folder` (history.csv's row) to every tracker cfg names."""
    if not main or "tensorboard" not in cfg.tracking:
        return
    writer = _writer(folder, cfg)
    if writer is None:
        return
    for key, value in row.items():
        if isinstance(value, (int, float)) and key != "epoch":
            writer.add_scalar(key, value, row["epoch"])
    writer.flush()
