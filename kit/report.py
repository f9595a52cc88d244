"""Figures: training curves, confusion matrix, leaderboard. matplotlib's Agg backend; files written atomically."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

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
    ax2.plot(history["epoch"], history["val_top1"], label="val top-1")
    ax2.plot(history["epoch"], history["val_top5"], label="val top-5")
    stage2 = history.loc[history["stage"] == 2, "epoch"]
    for ax in (ax1, ax2):
        if len(stage2):
            ax.axvline(stage2.iloc[0] - 0.5, color="gray", linestyle="--", label="stage 2")
        ax.set_xlabel("epoch")
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


def plot_leaderboard(board: pd.DataFrame, path: Path) -> None:
    """CV, public and private score per submission: does the CV predict the leaderboard?"""
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(board) + 3), 4))
    x = np.arange(len(board))
    for i, (col, label) in enumerate((("cv_top1", "CV top-1"), ("public", "public"), ("private", "private"))):
        ax.bar(x + (i - 1) * 0.27, pd.to_numeric(board[col], errors="coerce"), width=0.27, label=label)
    ax.set_xticks(x, [f"{f}" for f in board["file"]], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("score")
    lo = pd.to_numeric(board[["cv_top1", "public", "private"]].stack(), errors="coerce").min()
    ax.set_ylim(max(0.0, (lo if pd.notna(lo) else 0.0) - 0.05), 1.0)
    ax.legend()
    _save(fig, path)
