"""tracking=[tensorboard]: each fold's epochs as TensorBoard event files, beside the fold.

    python -m kit train --exp quick tracking=[tensorboard] data=...   # then: tensorboard --logdir <work_dir>

<work_dir>/<exp>/fold<k>/tensorboard/: every number of history.csv per epoch (step = the epoch), the config
as text and as hparams (TensorBoard's HPARAMS tab compares the folds and experiments by their keys, with
val_score and val_loss as the metrics), and the fold's end (its status in the HPARAMS tab). Without the
tensorboard package: one warning, and the run goes on.
"""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from kit.config import Config, to_dict

log = logging.getLogger(__name__)
_WRITERS: dict[Path, object] = {}  # one writer per fold folder in this process
_WARNED: set[str] = set()
METRICS = ("val_score", "val_loss")  # the hparams' metrics: the scalars of the same names


def hparams(cfg: Config) -> dict:
    """The config as TensorBoard's hparams take them: numbers, strings and booleans (a list as its text)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in to_dict(cfg).items()}


def _writer(folder: Path, cfg: Config):
    if folder not in _WRITERS:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams as hparams_summary
        except ImportError:
            if "tensorboard" not in _WARNED:
                _WARNED.add("tensorboard")
                log.warning("tracking=tensorboard: the tensorboard package is not installed (pip install tensorboard); "
                            "training goes on without it")
            _WRITERS[folder] = None
            return None
        writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        writer.add_text("config", "    " + yaml.safe_dump(to_dict(cfg), sort_keys=False).replace("\n", "\n    "))
        experiment, start, _ = hparams_summary(hparams(cfg), dict.fromkeys(METRICS, 0.0))
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(start)
        _WRITERS[folder] = writer
    return _WRITERS[folder]


def epoch(cfg: Config, folder: Path, row: dict) -> None:
    writer = _writer(folder, cfg)
    if writer is None:
        return
    for key, value in row.items():
        if isinstance(value, (int, float)) and key != "epoch":
            writer.add_scalar(key, value, row["epoch"])
    writer.flush()


def fold_done(folder: Path, best: dict) -> None:
    """The fold's session ends (status success in the HPARAMS tab); its writer is closed."""
    writer = _WRITERS.pop(folder, None)
    if writer is None:
        return
    from torch.utils.tensorboard.summary import hparams as hparams_summary
    writer.file_writer.add_summary(hparams_summary({}, {})[2])
    writer.add_scalar("best_score", best["score"], best["epoch"])
    writer.close()
