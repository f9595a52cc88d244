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
    """Public and private score against CV per submission ("trust your CV"); baselines (linear head) hollow."""
    num = board[["cv_top1", "public", "private"]].apply(pd.to_numeric, errors="coerce")
    baseline = board["head"].str.contains("linear").to_numpy()
    fig, ax = plt.subplots(figsize=(7, 5))
    for col, marker in (("public", "o"), ("private", "^")):
        for base, face in ((False, None), (True, "none")):
            pick = (baseline == base) & num["cv_top1"].notna().to_numpy() & num[col].notna().to_numpy()
            if pick.any():
                ax.scatter(num["cv_top1"][pick], num[col][pick], marker=marker, s=60, facecolors=face,
                           edgecolors=f"C{0 if col == 'public' else 1}", color=f"C{0 if col == 'public' else 1}",
                           label=f"{col}{' (baseline)' if base else ''}")
    for i, name in enumerate(board["file"]):
        if pd.notna(num["cv_top1"].iloc[i]):
            ax.annotate(str(name).rsplit(".", 1)[0], (num["cv_top1"].iloc[i], num[["public", "private"]].iloc[i].max()
                        if num[["public", "private"]].iloc[i].notna().any() else num["cv_top1"].iloc[i]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    lo = np.nanmin(num.to_numpy()) if np.isfinite(num.to_numpy()).any() else 0.0
    ax.plot([lo, 1], [lo, 1], color="gray", linestyle=":", linewidth=1, label="score = CV")
    ax.set_xlabel("CV top-1 (out-of-fold)")
    ax.set_ylabel("leaderboard score")
    ax.legend(fontsize=8)
    _save(fig, path)
