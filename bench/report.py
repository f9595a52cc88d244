"""What the report page and the trackers cost, at the write-up's scale: 100 classes, 5 folds, 60 epochs.

    python -m bench.report [--submissions 50]      # or: python -m bench --only report

Built once in a temporary folder, outside the timings: two experiments of 5 folds, each fold's curves.png
of 60 epochs, a 100-class confusion matrix, a mistakes.png of 24 thumbnails, per_class.csv and
confused_pairs.csv (the kit's own figure functions, kit/figures.py), and a leaderboard of N submissions.
Timed: kit/board/report.write (what predict, leaderboard and submit add to each call; the median of 5)
and the page's size; then tracking=[mlflow]'s cost per epoch, one log_batch of history.csv's 13 numbers
to the local store (sqlite in the work dir, as without MLFLOW_TRACKING_URI; the median over 60 epochs).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = [f"class{i:03d}" for i in range(100)]


def _history(epochs: int, rng) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "stage": np.where(e > 40, 2, 1), "lr": 0.01 / e, "train_loss": 3 / e,
                         "train_top1": 1 - 1 / e, "val_loss": 2.5 / e + rng.random(epochs) * 0.1,
                         "val_score": 1 - 1.2 / (e + 1), "val_top1": 1 - 1.2 / (e + 1), "val_top5": 1 - 0.3 / (e + 1),
                         "seconds": 300.0, "img_per_s": 210.0})


def make(root: Path, n_submissions: int):
    from kit import figures
    from kit.board import leaderboard
    from kit.config import load_config
    rng = np.random.default_rng(0)
    data = root / "plants"
    (data / "train").mkdir(parents=True)
    cfg = load_config(None, {"data": str(data), "work_dir": str(root / "folds"),
                             "submissions_dir": str(root / "subs")})
    labels = rng.integers(0, 100, 21000)
    preds = np.where(rng.random(21000) < 0.9, labels, rng.integers(0, 100, 21000))
    thumbs = root / "thumbs"
    thumbs.mkdir()
    from PIL import Image
    paths = []
    for i in range(24):
        Image.fromarray((rng.random((448, 448, 3)) * 255).astype(np.uint8)).save(thumbs / f"{i}.jpg")
        paths.append(f"{i}.jpg")
    probs = np.full((24, 100), 0.001)
    probs[np.arange(24), (labels[:24] + 1) % 100] = 0.9
    for name in ("resnest50d_spinalnet", "resnet50"):
        exp = root / "folds" / name
        for k in range(5):
            (exp / f"fold{k}").mkdir(parents=True)
            figures.plot_curves(_history(60, rng), exp / f"fold{k}" / "curves.png")
        (exp / "config.yaml").write_text(f"name: {name}\n")
        (exp / "cv.json").write_text('{"metric": "accuracy", "score": 0.91, "top1": 0.91, "top5": 0.9767}')
        figures.plot_confusion(labels, preds, CLASSES, exp / "confusion_matrix.png")
        figures.per_class(labels, preds, CLASSES).to_csv(exp / "per_class.csv", index=False)
        figures.confused_pairs(labels, preds, CLASSES).to_csv(exp / "confused_pairs.csv", index=False)
        figures.plot_mistakes(thumbs, np.array(paths), labels[:24], probs, CLASSES, exp / "mistakes.png")
    subs = root / "subs"
    subs.mkdir()
    board = leaderboard.load(subs / "leaderboard.csv")
    for i in range(n_submissions):
        file = f"resnest50d_spinalnet-{i:08x}.csv"
        (subs / file).write_text("id,label\n")
        board = leaderboard.upsert(board, {"file": file, "experiments": "resnest50d_spinalnet", "metric": "accuracy",
                                           "cv": f"{0.9 + rng.random() * 0.01:.5f}", "public": f"{0.93 + rng.random() * 0.01:.5f}",
                                           "private": f"{0.92 + rng.random() * 0.01:.5f}", "folds": "5",
                                           "created_at": f"2026-12-{1 + i % 28:02d}T00:00:00+00:00"})
    leaderboard.save(board, subs / "leaderboard.csv")
    figures.plot_leaderboard(board, subs / "leaderboard.png")
    return cfg


def run(size: str = "cpu", n_submissions: int = 50) -> list[dict]:
    import logging
    from kit.board import report
    logging.getLogger("kit").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kit-bench-report-") as tmp:
        cfg = make(Path(tmp), n_submissions)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            out = report.write(cfg)
            times.append(time.perf_counter() - t0)
        rows.append({"what": f"report.write: 2 experiments x 5 folds, 100 classes, {n_submissions} submissions",
                     "median_s": round(statistics.median(times), 3), "page_MB": round(out.stat().st_size / 1e6, 2)})
        from mlflow.tracking import MlflowClient
        from kit.tracking import mlflow_runs
        client = MlflowClient(mlflow_runs.tracking_uri(cfg))
        run_id = client.create_run(client.create_experiment("bench")).info.run_id
        history = _history(60, np.random.default_rng(1)).to_dict("records")
        times = []
        for row in history:
            t0 = time.perf_counter()
            client.log_batch(run_id, metrics=mlflow_runs._metrics({k: v for k, v in row.items() if k != "epoch"},
                                                                  int(row["epoch"])))
            times.append(time.perf_counter() - t0)
        rows.append({"what": "tracking=[mlflow]: one epoch's log_batch to the local sqlite store",
                     "median_s": round(statistics.median(times), 4), "page_MB": ""})
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--submissions", type=int, default=50)
    args = p.parse_args()
    from bench.common import table
    print(table("report page and tracking", run(n_submissions=args.submissions)))
