"""Commands made of commands, in one process (torch and timm imported once instead of at each).

    python -m kit run --exp demo demo_baseline                 # folds, train, predict: what `make` runs
    python -m kit pseudo --from demo --name demo_pl            # predict demo; train and predict demo_pl

Each writes exactly the files of the commands it strings together.
"""
from __future__ import annotations

from pathlib import Path

from kit.config import Config
from kit.data import folds
from kit.predict import predict
from kit.train import loop as train
from kit.train import pseudo


def run(cfgs: list[Config], only: list[int] | None = None, shard: tuple[int, int] | None = None,
        ensemble: bool = False) -> list[Path]:
    """`kit run`: folds, train and predict."""
    folds.run(cfgs)
    train.run(cfgs, only, shard)
    return predict.run(cfgs, ensemble)


def pseudo_label(source: Config, threshold: float, name: str) -> Path:
    """`kit pseudo`: the source's test logits per fold (reused when up to date), then experiment `name` trained
    on them too (kit/train/pseudo.py), and its submission."""
    new = pseudo.derive(source, threshold, name)
    predict.run([source])
    train.run([new])
    return predict.run([new])[0]
