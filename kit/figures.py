"""Figures and tables: training curves, confusion matrix, error analysis, leaderboard. matplotlib's Agg backend; files written atomically."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import (ConfusionMatrixDisplay, confusion_matrix, precision_recall_fscore_support,  # noqa: E402
                             roc_auc_score)

from kit.io import atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_curves(history: pd.DataFrame, path: Path) -> None:
    """Loss and top-1 per epoch, with the stage boundary marked."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(history["epoch"], history["train_loss"], label="train loss (mixup)")
    ax1.plot(history["epoch"], history["val_loss"], label="val loss")
    for col, label in (("val_score", "val score (the metric)"), ("val_top1", "val top-1"), ("val_top5", "val top-5")):
        if col in history and not (col == "val_top1" and history.get("val_score") is not None
                                   and history["val_score"].equals(history["val_top1"])):
            ax2.plot(history["epoch"], history[col], label=label)
    stage2 = history.loc[history["stage"] == 2, "epoch"]
    for ax in (ax1, ax2):
        if len(stage2):
            ax.axvline(stage2.iloc[0] - 0.5, color="gray", linestyle="--", label="stage 2")
        ax.set_xlabel("epoch")
        ax.legend()
    _save(fig, path)


def plot_lr_find(found: dict, path: Path) -> None:
    """The learning-rate range test (kit/train/lr_find.py): smoothed loss against the rate, the choice marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(found["lrs"], found["losses"], label="smoothed training loss")
    ax.axvline(found["lr"], color="tab:red", linestyle="--", label=f"chosen stage1_lr {found['lr']:.2g}")
    ax.axvline(found["min_loss_lr"], color="gray", linestyle=":", label="minimum (chosen = minimum / 10)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.legend()
    _save(fig, path)


def plot_confusion(labels: np.ndarray, preds: np.ndarray, classes: list[str], path: Path) -> None:
    """Row-normalised confusion matrix; sized and labelled so that 100 classes stay readable."""
    n = len(classes)
    side = max(6.0, 0.16 * n)
    fig, ax = plt.subplots(figsize=(side, side))
    ConfusionMatrixDisplay.from_predictions(
        labels, preds, labels=np.arange(n), display_labels=classes, normalize="true",
        include_values=n <= 20, values_format=".2f", xticks_rotation="vertical", colorbar=False, ax=ax)
    ax.tick_params(labelsize=max(4, min(10, 600 // max(n, 1))))
    ax.set_title("out-of-fold confusion matrix (rows: true class, normalised)")
    _save(fig, path)


def plot_values(labels: np.ndarray, preds: np.ndarray, name: str, path: Path) -> None:
    """A regression's out-of-fold predictions against the true values, the diagonal marked: where it is off."""
    y, p = np.ravel(labels), np.ravel(preds)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(y, p, s=8, alpha=0.5)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", label="predicted = true")
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    ax.set_title("out-of-fold predictions")
    ax.legend()
    _save(fig, path)


def worst_values(paths: np.ndarray, labels: np.ndarray, preds: np.ndarray, n: int = 50) -> pd.DataFrame:
    """A regression's n worst out-of-fold predictions, by absolute error: the images to look at first."""
    y, p = np.ravel(labels).astype(np.float64), np.ravel(preds).astype(np.float64)
    order = np.argsort(-np.abs(p - y), kind="stable")[:n]
    return pd.DataFrame({"path": np.asarray(paths)[order], "true": y[order], "predicted": p[order].round(4),
                         "error": (p - y)[order].round(4)})


def plot_leaderboard(board: pd.DataFrame, path: Path) -> None:
    """Public and private score against CV per submission ("trust your CV"); baselines (linear head) hollow."""
    num = board[["cv", "public", "private"]].apply(pd.to_numeric, errors="coerce")
    baseline = board["head"].str.contains("linear").to_numpy()
    fig, ax = plt.subplots(figsize=(7, 5))
    for col, marker in (("public", "o"), ("private", "^")):
        for base, face in ((False, None), (True, "none")):
            pick = (baseline == base) & num["cv"].notna().to_numpy() & num[col].notna().to_numpy()
            if pick.any():
                ax.scatter(num["cv"][pick], num[col][pick], marker=marker, s=60, facecolors=face,
                           edgecolors=f"C{0 if col == 'public' else 1}", color=f"C{0 if col == 'public' else 1}",
                           label=f"{col}{' (baseline)' if base else ''}")
    for i, name in enumerate(board["file"]):
        if pd.notna(num["cv"].iloc[i]):
            ax.annotate(str(name).rsplit(".", 1)[0], (num["cv"].iloc[i], num[["public", "private"]].iloc[i].max()
                        if num[["public", "private"]].iloc[i].notna().any() else num["cv"].iloc[i]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    known = np.isfinite(num.to_numpy())
    lo, hi = (np.nanmin(num.to_numpy()), np.nanmax(num.to_numpy())) if known.any() else (0.0, 1.0)
    top = max(hi, 1.0)  # scores up to 1 (accuracy, AUC) and beyond it (a log loss)
    ax.plot([lo, top], [lo, top], color="gray", linestyle=":", linewidth=1, label="score = CV")
    metric = next((m for m in board["metric"] if m), "the metric") if "metric" in board else "the metric"
    ax.set_xlabel(f"CV, {metric} (out-of-fold)")
    ax.set_ylabel("leaderboard score")
    ax.legend(fontsize=8)
    _save(fig, path)


def per_class(labels: np.ndarray, preds: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per class: images, out-of-fold accuracy (recall), precision, and what it is most taken for."""
    every = np.arange(len(classes))
    precision, recall, _, n = precision_recall_fscore_support(labels, preds, labels=every, zero_division=0)
    cm = confusion_matrix(labels, preds, labels=every)  # (true, predicted) counts
    off = cm - np.diag(np.diag(cm))
    return pd.DataFrame({
        "class": classes, "images": n, "top1": recall, "precision": precision,
        "most_taken_for": [classes[j] if off[i, j] else "" for i, j in enumerate(off.argmax(1))],
        "times": off.max(1),
    }).sort_values(["top1", "images"], ascending=[True, False], kind="stable")


def per_tag(labels: np.ndarray, decisions: np.ndarray, classes: list[str], probs: np.ndarray | None = None) -> pd.DataFrame:
    """Multi-label: one row per tag: images with it, precision, recall and F1 of its out-of-fold decisions, and with
    probs the AUC of its probabilities (empty where every image has the tag or none does), worst F1 first."""
    precision, recall, f1, n = precision_recall_fscore_support(labels, decisions, zero_division=0)
    table = pd.DataFrame({"tag": classes, "images": n, "precision": precision, "recall": recall, "f1": f1})
    if probs is not None:
        table["auc"] = [roc_auc_score(labels[:, j], probs[:, j]) if 0 < labels[:, j].sum() < len(labels) else np.nan
                        for j in range(len(classes))]
    return table.sort_values(["f1", "images"], ascending=[True, False], kind="stable")


def confused_pairs(labels: np.ndarray, preds: np.ndarray, classes: list[str], top: int = 20) -> pd.DataFrame:
    """The most frequent (true, predicted) mistakes, with their share of the true class's images."""
    cm = confusion_matrix(labels, preds, labels=np.arange(len(classes)))
    np.fill_diagonal(cm, 0)
    true, pred = np.nonzero(cm)
    counts = cm[true, pred]
    order = np.lexsort((pred, true, -counts))[:top]  # most first; ties in class order
    n = np.bincount(labels, minlength=len(classes))
    return pd.DataFrame({"true": [classes[i] for i in true[order]], "predicted": [classes[j] for j in pred[order]],
                         "count": counts[order], "share_of_true": counts[order] / n[true[order]]})


def worst_mistakes(labels: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n worst out-of-fold predictions, worst first: single-label, the wrong ones made with the
    highest confidence; multi-label (labels 0/1 per tag), the images whose tags' probabilities are furthest from
    their labels (summed over the tags), among those with a wrong decision at 0.5."""
    if labels.ndim == 2:
        error = np.abs(labels - probs).sum(1)
        wrong = np.flatnonzero(((probs >= 0.5) != labels.astype(bool)).any(1))
        return wrong[np.argsort(-error[wrong], kind="stable")][:n]
    preds = probs.argmax(1)
    wrong = np.flatnonzero(preds != labels)
    return wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")][:n]


def _mistake_title(label, prob: np.ndarray, classes: list[str]) -> str:
    if np.ndim(label):  # multi-label: the tags missed and the tags added at 0.5
        missed = [classes[j] for j in np.flatnonzero(label.astype(bool) & (prob < 0.5))]
        extra = [classes[j] for j in np.flatnonzero(~label.astype(bool) & (prob >= 0.5))]
        return f"missed {' '.join(missed) or '-'}\nextra {' '.join(extra) or '-'}"
    pred = int(prob.argmax())
    return f"true {classes[label]}\npred {classes[pred]} ({prob[pred]:.2f})"


def plot_mistakes(root: Path, paths: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str],
                  path: Path, n: int = 24) -> None:
    """Thumbnails of the worst out-of-fold mistakes (worst_mistakes): the true and predicted label and the
    confidence; for multi-label the tags missed and added."""
    from kit.io import load_rgb
    worst = worst_mistakes(labels, probs, n)
    cols = 6
    rows = max(1, -(-len(worst) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, worst):
        ax.imshow(load_rgb(Path(root) / str(paths[i]))[..., :3])  # a stacked image's first three channels
        ax.set_title(_mistake_title(labels[i], probs[i], classes), fontsize=8)
    fig.suptitle(f"{len(worst)} worst out-of-fold mistakes" if len(worst) else "no out-of-fold mistakes")
    _save(fig, path)
