"""The `folds` command: assign every training image to one of K stratified folds.

    python -m kit folds --exp demo          # -> folds/<data>/folds.csv, folds/<data>/folds.json

folds.csv has one row per training image: path (relative to DATA), label, source, fold, role.
role is "cv" (validated in its fold), "train_only" (a class too rare to split; fold -1) or
"holdout" (DATA/val kept aside with val_mode=holdout; fold -1). folds.json records the data
fingerprint; later commands refuse folds made from other data. This module owns both files:
others read them through `load` (and `fingerprint`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from kit.config import Config, changed, shaping
from kit.data.checks import describe_bad, find_bad_images
from kit.data.layout import Layout, natural_key, scan, summarize
from kit.io import atomic_write_text
from kit.metrics import Metric, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Folds:
    """folds.csv (one row per training image: path, label, source, fold, role), folds.json and the data layout."""

    table: pd.DataFrame
    meta: dict
    layout: Layout
    metric: Metric  # the metric= key resolved for this data (auto: the submission format's usual one)

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def n_folds(self) -> int:
        return self.meta["n_folds"]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]


def _paths(work_dir: str | Path) -> tuple[Path, Path]:
    return Path(work_dir) / "folds.csv", Path(work_dir) / "folds.json"


def fingerprint(work_dir: str | Path) -> str:
    """The fingerprint of the data the folds in work_dir were made from ('' before `make folds`)."""
    meta = _paths(work_dir)[1]
    return json.loads(meta.read_text())["fingerprint"] if meta.is_file() else ""


def made_from(work_dir: str | Path) -> str:
    """The data folder the folds in work_dir were made from ('' when there are none)."""
    meta = _paths(work_dir)[1]
    return json.loads(meta.read_text())["data"] if meta.is_file() else ""


def remove(work_dir: str | Path) -> None:
    for path in _paths(work_dir):
        path.unlink(missing_ok=True)


def stratify(labels, n_folds: int, seed: int, groups=None) -> np.ndarray:
    """Fold index per row, stratified by label: (N,) labels (every class needs at least n_folds rows), or
    (N, classes) 0/1 multi-label rows, split by iterative stratification (Sechidis et al., 2011). With groups
    (a patient per row), every group's rows fall in one fold: StratifiedGroupKFold, or for multi-label the
    iterative split of the groups, each group's row its images' tags together."""
    # shuffled + seeded: the same data and seed give the same folds, byte for byte
    if groups is not None:
        return _grouped(labels, n_folds, seed, np.asarray(groups))
    if np.ndim(labels) == 2:
        skf = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(labels), -1, dtype=np.int64)  # -1: never validated (train_only, holdout)
    for k, (_, val_idx) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        fold[val_idx] = k
    return fold


def _grouped(labels, n_folds: int, seed: int, groups: np.ndarray) -> np.ndarray:
    names, group_of = np.unique(groups, return_inverse=True)
    if len(names) < n_folds:
        raise ValueError(f"{len(names)} group(s) for n_folds={n_folds}: every fold needs a group of its own; use fewer "
                         "folds (n_folds=...) or group=none")
    fold = np.full(len(groups), -1, dtype=np.int64)
    if np.ndim(labels) == 2:
        per_group = np.zeros((len(names), labels.shape[1]), dtype=np.int64)
        np.maximum.at(per_group, group_of, np.asarray(labels))
        skf = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for k, (_, val_idx) in enumerate(skf.split(np.zeros(len(names)), per_group)):
            fold[np.isin(group_of, val_idx)] = k
        return fold
    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val_idx) in enumerate(sgkf.split(np.zeros(len(labels)), np.asarray(labels), group_of)):
        fold[val_idx] = k
    return fold


def value_bins(values: pd.Series, n_folds: int) -> np.ndarray:
    """A regression's targets as the classes its folds are stratified on: quantile bins (at most 10, each of
    about 2 x n_folds values or more), so every fold spans the whole range of values."""
    x = pd.to_numeric(values).to_numpy(dtype=np.float64)
    bins = max(1, min(10, len(x) // (2 * n_folds)))
    return pd.qcut(x, q=bins, labels=False, duplicates="drop").astype(np.int64).astype(str)


def _roles(train: pd.DataFrame, cfg: Config, layout: Layout) -> pd.Series:
    role = pd.Series("cv", index=train.index)
    if cfg.val_mode == "holdout":
        role[train["source"] == "val"] = "holdout"
    if layout.task == "regression":  # no classes to run short of
        return role
    if layout.task == "multilabel":  # an image has several tags: none can be kept out of the CV for one of them
        counts = layout.targets(train.loc[role == "cv", "label"]).sum(0)
        rare = [f"{c!r} has {n}" for c, n in zip(layout.classes, counts) if n < cfg.n_folds]
        if rare:
            log.warning("tag(s) on fewer images than n_folds=%d: %s; some validation folds will not see them",
                        cfg.n_folds, summarize(rare))
        return role
    counts = train.loc[role == "cv", "label"].value_counts()
    rare = sorted(counts[counts < cfg.n_folds].index, key=natural_key)
    if rare and cfg.rare_classes == "error":
        named = [f"{c!r} has {counts[c]}" for c in rare]
        numbers = pd.to_numeric(counts.index.to_series(), errors="coerce")
        value = "; if the labels are numbers to predict (a score), task=regression" if numbers.notna().all() and \
            len(counts) > 10 else ""
        raise ValueError(f"class(es) with fewer images than n_folds={cfg.n_folds}: {summarize(named)}; "
                         f"use fewer folds (n_folds=...) or rare_classes=train_only to always train on them{value}")
    role[(role == "cv") & train["label"].isin(rare)] = "train_only"
    if layout.group and rare:  # a group stays whole: its other images, validated, would meet their rare sibling
        whole = (role == "cv") & train["group"].isin(set(train.loc[role == "train_only", "group"]))
        if whole.any():
            log.info("%d image(s) trained on in every fold too, of the %s(s) holding a rare class (a group stays "
                     "whole)", int(whole.sum()), layout.group)
        role[whole] = "train_only"
    return role


def _drop_bad(layout: Layout, cfg: Config) -> pd.DataFrame:
    train = layout.train
    # test images are checked now, not at predict: better to learn of a broken file before hours of training
    bad_test = find_bad_images(layout.root, list(layout.test["path"]), cfg.max_pixels)
    if bad_test:
        raise ValueError(f"{len(bad_test)} unreadable test image(s): {describe_bad(bad_test)}; "
                         "every test image needs a prediction, so replace them")
    bad = find_bad_images(layout.root, list(train["path"]), cfg.max_pixels)
    if bad and not cfg.skip_bad_images:
        raise ValueError(f"{len(bad)} unreadable training image(s): {describe_bad(bad)}; "
                         "fix them or set skip_bad_images=true to leave them out")
    if bad:
        log.warning("skipping %d unreadable training image(s): %s", len(bad), describe_bad(bad))
        train = train[~train["path"].isin(bad)].reset_index(drop=True)
    return train


def _meta(layout: Layout, cfg: Config, train: pd.DataFrame) -> dict:
    return {
        "data": str(layout.root), "layout": layout.kind, "fingerprint": layout.fingerprint(),
        "n_folds": cfg.n_folds, "classes": list(layout.classes), "n_images": len(train),
        "task": layout.task, "submission": layout.submission, "header": list(layout.header),
        **({"group": layout.group, "n_groups": int(train["group"].nunique())} if layout.group else {}),
        "config": shaping(cfg, "split"),  # every key that shapes the split (config.SHAPES), and nothing else
    }


def scan_data(cfg: Config) -> Layout:
    """The data folder cfg names, with the task and submission format its keys ask for (or the data shows)."""
    return scan(cfg.data, cfg.id_col, cfg.label_col, cfg.task, cfg.submission, cfg.top_k, **layout_keys(cfg))


def layout_keys(cfg: Config) -> dict:
    """The keys that pick between two readings of a data folder (kit/data/discover.py), for scan and scan_test."""
    return {"train_csv": cfg.train_csv, "images": cfg.images, "group": cfg.group, "sample_csv": cfg.sample_csv}


def run(cfgs: list[Config]) -> list[Path]:
    """The `folds` command: folds.csv in each config's work_dir (experiments sharing one share its folds)."""
    return [make_folds(cfg) for cfg in cfgs]


def make_folds(cfg: Config) -> Path:
    """<work_dir>/folds.csv and folds.json for cfg's data and split keys; up-to-date ones are kept, others refused."""
    out, meta_path = _paths(cfg.work_dir)
    layout = scan_data(cfg)
    metric = resolve(cfg.metric, layout.task, layout.submission, layout.top_k, layout.named_metric)  # refused now
    found = f"{layout.describe()}; metric {metric.name}"
    for line in layout.found:  # what the rules found (kit/data/discover.py), a line each
        log.info("%s: %s", cfg.data, line)
    if out.is_file() and meta_path.is_file():
        # folds feed every checkpoint: silently re-splitting would mix folds of two splits in one ensemble
        old = json.loads(meta_path.read_text())
        diff = changed(old.get("config", {}), cfg, "split")
        if old.get("fingerprint") != layout.fingerprint():
            diff.insert(0, f"data: {old.get('data')} (other files or labels) -> {cfg.data}")
        if not diff:
            log.info("folds up to date: %s (%s)", out, found)
            return out
        raise ValueError(f"{out} was made from other data or settings ({'; '.join(diff)}); remove {cfg.work_dir}/ "
                         "or set work_dir= to keep both")
    train = _drop_bad(layout, cfg)
    role = _roles(train, cfg, layout)
    fold = np.full(len(train), -1, dtype=np.int64)
    cv = train.loc[role == "cv", "label"]  # single-label: the strings, so that folds stay those of earlier versions
    groups = train.loc[role == "cv", "group"].to_numpy() if layout.group else None
    by = cv if layout.task == "single" else value_bins(cv, cfg.n_folds) if layout.task == "regression" else \
        layout.targets(cv)
    fold[(role == "cv").to_numpy()] = stratify(by, cfg.n_folds, cfg.split_seed, groups)
    table = train.assign(fold=fold, role=role.to_numpy())
    atomic_write_text(out, table.to_csv(index=False, lineterminator="\n"))  # "\n": same bytes on every OS
    atomic_write_text(meta_path, json.dumps(_meta(layout, cfg, train), indent=2) + "\n")
    log.info("wrote %s: %d images, %d folds; %s", out, len(table), cfg.n_folds, found)
    return out


def load(cfg: Config) -> Folds:
    """folds.csv, folds.json and the data layout, checked to belong together."""
    path, meta_path = _paths(cfg.work_dir)
    if not path.is_file() or not meta_path.is_file():
        raise ValueError(f"{path} not found; run `make folds` (python -m kit folds) first")
    meta = json.loads(meta_path.read_text())
    layout = scan_data(cfg)
    if layout.fingerprint() != meta["fingerprint"]:
        raise ValueError(f"{path} was made from other data than {cfg.data} (files or labels changed); "
                         f"remove {cfg.work_dir}/ and run `make folds`, or set work_dir=")
    diff = changed(meta.get("config", {}), cfg, "split")
    if diff:
        raise ValueError(f"{path} was made with other split settings ({'; '.join(diff)}); use the values it was "
                         f"made with, or set work_dir= and run `make folds` to keep both splits")
    # labels stay strings ("07", "NA" and "1.0" are class names, not numbers or missing values)
    table = pd.read_csv(path, dtype={"path": str, "label": str, "source": str, "role": str, "group": str},
                        keep_default_na=False)
    return Folds(table, meta, layout, resolve(cfg.metric, layout.task, layout.submission, layout.top_k,
                                              layout.named_metric))
