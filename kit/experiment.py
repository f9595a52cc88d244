"""The experiment folder, <work_dir>/<name>/: the one module that knows its layout.

    exp = Experiment.of(cfg)          # or Experiment.at(work_dir, name)
    exp.fold(3).best                  # <work_dir>/<name>/fold3/best.pt
    exp.done_folds(n_folds)           # the folds whose training finished

    <name>/config.yaml                 the resolved config of the newest `train`
    <name>/fold<k>/                    one fold's files (FoldFiles names each of them)
    <name>/fold<k>-seed<s>/            with seeds=N, the fold trained again with seed + s (s = 1..N-1): its
                                       logits are averaged with fold<k>'s before the fold average
    <name>/full/                       full_fit: one model on every training image (full-seed<s>/ with seeds=N)
    <name>/cv.json                     per-fold and overall out-of-fold scores of the plain best weights
    <name>/confusion_matrix.png        beside it the error analysis: per_class.csv, confused_pairs.csv, mistakes.png

A fold is done when its oof.npz exists: training writes it last. Every other module asks this one
for a path instead of spelling it, and reads the facts kept in these files (last-epoch scores,
chance-level folds) through it. It stands on the core floor, so that training, the board and
inference all read the folder through it and inference never imports training. `layout` arguments
are kit.data.layout.Layout's (named, not imported: the core imports no later floor).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import accuracy_score

from kit import figures
from kit.config import changed
from kit.io import atomic_write_text, load_npz
from kit.metrics import Metric, chance, cv_score, decide, probs_of, topk

log = logging.getLogger(__name__)


def scores(history: pd.DataFrame) -> pd.Series:
    """Each epoch's validation score (val_score; val_top1 in a history written before metrics)."""
    return history["val_score"] if "val_score" in history else history["val_top1"]


def stage1_at_chance(history: pd.DataFrame, labels: np.ndarray, metric: Metric, n_classes: int) -> bool:
    """Whether a fold's stage 1 (its history.csv rows) never rose above chance level on its validation labels."""
    stage1 = scores(history)[history["stage"] == 1]
    best = stage1.max() if metric.higher_is_better else stage1.min()
    return not metric.better(float(best), chance(metric, labels, n_classes))


FULL = -1  # the fold number of full_fit's model: trained on every training image, validated on none


def fold_name(k: int, replica: int = 0) -> str:
    """How a fold (FULL: the full-data refit; replica: its seed, seeds=N) is named on disk and in bundles."""
    base = "full" if k == FULL else f"fold{k}"
    return base if replica == 0 else f"{base}-seed{replica}"


def fold_of_name(name: str) -> tuple[int, int] | None:
    """(fold, replica) of a folder named by fold_name; None for any other name."""
    m = re.fullmatch(r"(?:fold(\d+)|full)(?:-seed(\d+))?", name)
    return (FULL if m[1] is None else int(m[1]), int(m[2] or 0)) if m else None


@dataclass(frozen=True)
class FoldFiles:
    """The files of one fold, <work_dir>/<name>/fold<k>/."""

    dir: Path

    @property
    def best(self) -> Path:  # best weights over both stages: {"model", "cfg", "classes", "stage", "epoch", "score"}
        return self.dir / "best.pt"

    @property
    def stage1_best(self) -> Path:  # stage 1's best: stage 2 starts from it
        return self.dir / "stage1_best.pt"

    @property
    def last(self) -> Path:  # everything resuming needs
        return self.dir / "last.pt"

    @property
    def last_prev(self) -> Path:  # the state before last.pt, should last.pt be unreadable
        return self.dir / "last.prev.pt"

    @property
    def final(self) -> Path:  # the last epoch's weights (EMA if on): cv_last goes through predict's TTA with them
        return self.dir / "final.pt"

    @property
    def resume_files(self) -> tuple[Path, ...]:  # removed once the fold is done (unless keep_checkpoints)
        return self.stage1_best, self.last, self.last_prev

    @property
    def config(self) -> Path:  # the config that trained the fold
        return self.dir / "config.yaml"

    @property
    def history(self) -> Path:  # one row per epoch
        return self.dir / "history.csv"

    @property
    def curves(self) -> Path:
        return self.dir / "curves.png"

    @property
    def oof(self) -> Path:  # plain out-of-fold logits of best.pt: written last, the fold's done marker
        return self.dir / "oof.npz"

    @property
    def pseudo(self) -> Path:  # which pseudo-labels the fold trained on (kit/train/pseudo.py)
        return self.dir / "pseudo.json"

    @property
    def lock(self) -> Path:  # held by the process training the fold
        return self.dir / ".train.lock"

    def logits(self, split: str) -> Path:
        """Logits through predict's TTA: split is test, oof or holdout (best.pt), or oof_last (final.pt)."""
        return self.dir / f"{split}_logits.npz"

    @property
    def done(self) -> bool:
        return self.oof.is_file()

    def read_history(self) -> pd.DataFrame:
        return pd.read_csv(self.history)

    def trained_config(self) -> dict | None:
        """The config the fold was (or is being) trained with; None before its training started."""
        return (yaml.safe_load(self.config.read_text()) or {}) if self.config.is_file() else None


def kept(path: Path, key: str) -> dict | None:
    """A record every fold shares (plan.json), if it was made under this key (config.shaping_key)."""
    if not path.is_file():
        return None
    found = json.loads(path.read_text())
    return found if found.get("key") == key else None


def mean_logits(files: list[Path]) -> dict:
    """Logits files of one fold's members (its seed replicas) as one: their ids and labels, the mean of their
    logits (one file: itself). The members scored the same rows in the same order; other rows are refused."""
    parts = [load_npz(f) for f in files]
    for f, p in zip(files[1:], parts[1:]):
        if not np.array_equal(p["ids"], parts[0]["ids"]):
            raise ValueError(f"{f}: other images than {files[0]}; predict again (make predict)")
    return {**parts[0], "logits": mean_of([p["logits"] for p in parts])}


def mean_of(logits: list[np.ndarray]) -> np.ndarray:
    """One fold's members' logits (seeds=N) as one: the mean, in float64; one member's as they are (seeds=1 leaves
    every file as before). predict and a bundle both merge a fold's seeds through here."""
    return logits[0] if len(logits) == 1 else np.mean([x.astype(np.float64) for x in logits], axis=0)


@dataclass(frozen=True)
class Experiment:
    """<work_dir>/<name>/."""

    dir: Path

    @classmethod
    def of(cls, cfg) -> "Experiment":
        return cls.at(cfg.work_dir, cfg.name)

    @classmethod
    def at(cls, work_dir: str | Path, name: str) -> "Experiment":
        return cls(Path(work_dir) / name)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def config(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def cv_file(self) -> Path:
        return self.dir / "cv.json"

    @property
    def plan(self) -> Path:  # what every fold trains with beyond the config, decided once (kit/train/plan.py)
        return self.dir / "plan.json"

    def decided(self, key: str) -> dict:
        """The plan's decisions under this key (kit/train/plan.py), as cv.json, the manifest and the bundle record
        them: {"pretrained", "stage1_lr", "hflip", "epochs"}, each where it was decided; {} without a plan."""
        found = kept(self.plan, key) or {}
        epochs = found.get("epochs", {})
        out = {"pretrained": found.get("start", {}).get("pretrained"), "stage1_lr": found.get("lr", {}).get("lr"),
               "hflip": found.get("flip", {}).get("hflip"),
               "epochs": [epochs["stage1_epochs"], epochs["stage2_epochs"]] if epochs else None}
        return {k: v for k, v in out.items() if v is not None}


    def fold(self, k: int, replica: int = 0) -> FoldFiles:
        return FoldFiles(self.dir / fold_name(k, replica))

    def members(self, k: int, seeds: int = 1) -> list[FoldFiles]:
        """Fold k's models: the fold itself, then its seed replicas (seeds=N)."""
        return [self.fold(k, s) for s in range(seeds)]

    def done_folds(self, n_folds: int, seeds: int = 1) -> list[int]:
        """The folds whose every member (seeds=N) finished."""
        return [k for k in range(n_folds) if all(m.done for m in self.members(k, seeds))]

    def last_epoch_score(self, folds: list[int], sizes: list[int]) -> float:
        """Validation score of each fold's last epoch (its last weights, not its best), weighted by fold size."""
        last = [float(scores(self.fold(k).read_history()).iloc[-1]) for k in folds]
        n = np.array(sizes)
        return float(np.dot(n, last) / n.sum())

    def hosts(self, folds: list[int]) -> dict:
        """{"<name>/fold<k>": the hosts its epochs ran on} (history.csv's host column; absent in older folds)."""
        out = {}
        for k in folds:
            h = self.fold(k).read_history()
            out[f"{self.name}/{fold_name(k)}"] = sorted(h["host"].dropna().astype(str).unique()) if "host" in h else []
        return out

    def check_trained(self, cfg, n_folds: int) -> None:
        """Refuse settings that would mix into, or misdescribe, folds trained with other weight-shaping keys."""
        for files in (m for k in range(n_folds) for m in self.members(k, cfg.seeds)):
            saved = files.trained_config()
            diff = changed(saved, cfg, "weights") if saved is not None else []
            if diff:
                raise ValueError(f"{files.dir} was trained with other settings ({'; '.join(diff)}); use the "
                                 f"trained values, remove {self.dir}/ to retrain, or give this run another name= to "
                                 "keep both")

    def warning(self, folds: list[int]) -> str:
        """The leaderboard's warning for a submission made from these folds ('' when there is nothing to say)."""
        cv = self.cv_file
        at_chance = [k for k in json.loads(cv.read_text()).get("chance_level_folds", []) if k in folds] if cv.is_file() else []
        return f"chance level in fold(s) {', '.join(map(str, at_chance))}" if at_chance else ""

    def pseudo_images(self, folds: list[int]) -> list[int]:
        """Pseudo-labelled test images each fold trained on (folds without pseudo-labels left out)."""
        return [json.loads(f.pseudo.read_text())["images"] for k in folds if (f := self.fold(k)).pseudo.is_file()]

    def record_tta(self, choice: dict) -> None:
        """tta=auto's candidates and choice (kit/predict/predict.py), kept in cv.json beside the plain CV."""
        if self.cv_file.is_file():
            cv = json.loads(self.cv_file.read_text())
            if cv.get("tta_auto") != choice:
                atomic_write_text(self.cv_file, json.dumps(cv | {"tta_auto": choice}, indent=2) + "\n")

    def oof(self, k: int, seeds: int = 1) -> dict:
        """Fold k's plain out-of-fold logits: oof.npz's, averaged over its seed replicas (seeds=N)."""
        return mean_logits([m.oof for m in self.members(k, seeds)])

    def write_cv(self, layout, metric: Metric, n_folds: int, decided: dict | None = None, seeds: int = 1) -> Path:
        """cv.json from the plain OOF logits of every fold (decisions at 0.5 for multi-label; with seeds=N, each
        fold's replicas averaged); beside it the confusion matrix and the error analysis. The last epochs' scores
        and chance level are the fold's own (its first seed's) history."""
        n_classes = len(layout.classes)
        parts = [self.oof(k, seeds) for k in range(n_folds)]
        per_fold = []
        for k, p in enumerate(parts):
            row = {"fold": k, "n": len(p["labels"]), "score": metric(p["labels"], probs_of(p["logits"], layout.task))}
            if layout.task == "single":
                row |= {"top1": accuracy_score(p["labels"], p["logits"].argmax(1)), "top5": topk(p["labels"], p["logits"], 5)}
            per_fold.append(row | {"last_epoch_score": self.last_epoch_score([k], [1]), "chance_level": stage1_at_chance(
                self.fold(k).read_history(), p["labels"], metric, n_classes)})
        labels = np.concatenate([p["labels"] for p in parts])
        logits = np.concatenate([p["logits"] for p in parts])
        fold_of = np.concatenate([np.full(len(p["labels"]), k) for k, p in enumerate(parts)])
        folds = ([f["score"] for f in per_fold], [f["n"] for f in per_fold])  # scored above: not again
        cv = {"metric": metric.name, "score": cv_score(metric, labels, probs_of(logits, layout.task), fold_of,
                                                        folds=folds)}
        if layout.task == "single":
            cv |= {"top1": accuracy_score(labels, logits.argmax(1)), "top5": topk(labels, logits, 5)}
        decided = decided or {}
        if decided:  # the plan every fold trained with (kit/train/plan.py), read under the folds' own key
            cv["plan"] = decided
        if "stage1_lr" in decided:
            cv["stage1_lr_auto"] = decided["stage1_lr"]
        if "hflip" in decided:
            cv["hflip_auto"] = decided["hflip"]
            # its probe scored flipped images of fold 0's validation part: the fold whose best epoch and CV those
            # images then pick (one yes/no decision, not a model: a small leak, but not a clean fold)
            cv["not_clean"] = [{"fold": 0, "why": f"hflip=auto was decided on its validation images ({self.plan.name})"}]
        if seeds > 1:
            cv["seeds"] = seeds
        cv |= {  # the same folds scored with each fold's last weights: best-epoch selection on the validation fold
            # itself flatters the score by about score - last_epoch_score
            "last_epoch_score": self.last_epoch_score(list(range(n_folds)), [f["n"] for f in per_fold]),
            "fold_std": float(np.std([f["score"] for f in per_fold])), "n": int(len(labels)),
            "chance_level_folds": [f["fold"] for f in per_fold if f["chance_level"]], "folds": per_fold}
        atomic_write_text(self.cv_file, json.dumps(cv, indent=2) + "\n")
        if cv["chance_level_folds"]:
            log.warning("%s: fold(s) %s ended stage 1 at chance level (cv.json: chance_level_folds)", self.name,
                        cv["chance_level_folds"])
        write_errors(self.dir, layout, np.concatenate([p["ids"] for p in parts]), labels, probs_of(logits, layout.task))
        log.info("%s: CV %s %.4f over %d folds (last epochs' weights: %.4f)", self.name, metric.name, cv["score"],
                 n_folds, cv["last_epoch_score"])
        return self.cv_file


def write_errors(folder: Path, layout, paths: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> None:
    """An experiment's error analysis in `folder`, from its OOF predictions: per_class.csv (per tag with its AUC,
    multi-label) and mistakes.png, and for single-label the confusion matrix and confused_pairs.csv; a regression's
    predicted.png and worst.csv."""
    classes = list(layout.classes)
    if layout.task == "regression":  # predicted against true, and the worst errors
        figures.plot_values(labels, probs, classes[0], folder / "predicted.png")
        atomic_write_text(folder / "worst.csv", figures.worst_values(paths, labels, probs).to_csv(index=False))
        return
    if layout.task == "multilabel":
        atomic_write_text(folder / "per_class.csv",
                          figures.per_tag(labels, decide(probs), classes, probs).to_csv(index=False))
        figures.plot_mistakes(layout.root, paths, labels, probs, classes, folder / "mistakes.png")
        return
    preds = probs.argmax(1)
    figures.plot_confusion(labels, preds, classes, folder / "confusion_matrix.png")
    atomic_write_text(folder / "per_class.csv", figures.per_class(labels, preds, classes).to_csv(index=False))
    atomic_write_text(folder / "confused_pairs.csv",
                      figures.confused_pairs(labels, preds, classes).to_csv(index=False))
    figures.plot_mistakes(layout.root, paths, labels, probs, classes, folder / "mistakes.png")
