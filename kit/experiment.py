"""The experiment folder, <work_dir>/<name>/: the one module that knows its layout.

    exp = Experiment.of(cfg)          # or Experiment.at(work_dir, name)
    exp.fold(3).best                  # <work_dir>/<name>/fold3/best.pt
    exp.done_folds(n_folds)           # the folds whose training finished

    <name>/config.yaml                 the resolved config of the newest `train`
    <name>/fold<k>/                    one fold's files (FoldFiles names each of them)
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


def fold_name(k: int) -> str:
    """How a fold is named on disk: in the experiment folder, and in bundles."""
    return f"fold{k}"


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


    def fold(self, k: int) -> FoldFiles:
        return FoldFiles(self.dir / fold_name(k))

    def done_folds(self, n_folds: int) -> list[int]:
        return [k for k in range(n_folds) if self.fold(k).done]

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
        for k in range(n_folds):
            saved = self.fold(k).trained_config()
            diff = changed(saved, cfg, "weights") if saved is not None else []
            if diff:
                raise ValueError(f"{self.fold(k).dir} was trained with other settings ({'; '.join(diff)}); use the "
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

    def write_cv(self, layout, metric: Metric, n_folds: int, decided: dict | None = None) -> Path:
        """cv.json from the plain OOF logits of every fold (decisions at 0.5 for multi-label); beside it the
        confusion matrix and the error analysis."""
        n_classes = len(layout.classes)
        parts = [load_npz(self.fold(k).oof) for k in range(n_folds)]
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
        cv |= {  # the same folds scored with each fold's last weights: best-epoch selection on the validation fold
            # itself flatters the score by about score - last_epoch_score
            "last_epoch_score": self.last_epoch_score(list(range(n_folds)), [f["n"] for f in per_fold]),
            "fold_std": float(np.std([f["score"] for f in per_fold])), "n": int(len(labels)),
            "chance_level_folds": [f["fold"] for f in per_fold if f["chance_level"]], "folds": per_fold}
        atomic_write_text(self.cv_file, json.dumps(cv, indent=2) + "\n")
        if cv["chance_level_folds"]:
            log.warning("%s: fold(s) %s ended stage 1 at chance level (cv.json: chance_level_folds)", self.name,
                        cv["chance_level_folds"])
        self.write_errors(layout, np.concatenate([p["ids"] for p in parts]), labels, probs_of(logits, layout.task))
        log.info("%s: CV %s %.4f over %d folds (last epochs' weights: %.4f)", self.name, metric.name, cv["score"],
                 n_folds, cv["last_epoch_score"])
        return self.cv_file

    def write_errors(self, layout, paths: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> None:
        """From the OOF predictions: per_class.csv (per tag with its AUC, multi-label) and mistakes.png, and for
        single-label the confusion matrix and confused_pairs.csv; a regression's predicted.png and worst.csv."""
        classes = list(layout.classes)
        if layout.task == "regression":  # predicted against true, and the worst errors
            figures.plot_values(labels, probs, classes[0], self.dir / "predicted.png")
            atomic_write_text(self.dir / "worst.csv", figures.worst_values(paths, labels, probs).to_csv(index=False))
            return
        if layout.task == "multilabel":
            atomic_write_text(self.dir / "per_class.csv",
                              figures.per_tag(labels, decide(probs), classes, probs).to_csv(index=False))
            figures.plot_mistakes(layout.root, paths, labels, probs, classes, self.dir / "mistakes.png")
            return
        preds = probs.argmax(1)
        figures.plot_confusion(labels, preds, classes, self.dir / "confusion_matrix.png")
        atomic_write_text(self.dir / "per_class.csv", figures.per_class(labels, preds, classes).to_csv(index=False))
        atomic_write_text(self.dir / "confused_pairs.csv",
                          figures.confused_pairs(labels, preds, classes).to_csv(index=False))
        figures.plot_mistakes(layout.root, paths, labels, probs, classes, self.dir / "mistakes.png")
