"""The kit's default path against fastai's documented default path: same data, cores and wall clock.

    make bench-fastai                                    # fastai into .venv-fastai, then every set of bench/defaults.py
    KIT_BENCH_SETS="2 classes|10 classes x 15" make bench-fastai   # the sets whose name contains a text

Per data set of bench/defaults.py (kit.synth's gratings and photographs' regions, none tuned on):
(a) the kit's default path, `make folds train predict DATA=...` with no EXP (the quick preset as
shipped), timed; (b) fastai as its documentation teaches it, given (a)'s seconds: `ImageDataLoaders`
with a random 20% validation split, presizing (`Resize` to the preset's resize, `aug_transforms` at its
image size), `vision_learner` on the same timm backbone (from scratch where (a) is: offline,
`pretrained=auto` is), `lr_find`'s valley, then `fit_one_cycle` for as many epochs as the rest of the
seconds fit (an epoch's time estimated from lr_find's steps), and `get_preds` on the test images. Both are
scored on the same held-out images (solution.csv): public, private, and private's ratio fastai / kit.
fastai's batch is its default 64, or a quarter of the training images where that is fewer (it drops a
last partial batch: 32 training images at 64 would train on none).
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from bench.defaults import _score, default_path, each_set

VALID_PCT = 0.2


def _train_table(data: Path) -> pd.DataFrame:
    """(path, label) of every training image, for the CSV and the folder layouts kit.synth writes."""
    if (data / "train.csv").is_file():
        table = pd.read_csv(data / "train.csv", dtype=str)
        return pd.DataFrame({"path": [f"train/{i}.png" for i in table["id"]], "label": table["label"]})
    found = sorted((data / "train").rglob("*.png"))
    return pd.DataFrame({"path": [p.relative_to(data).as_posix() for p in found],
                         "label": [p.parent.name for p in found]})


def fastai_path(data: Path, backbone: str, resize: int, size: int, seconds: float) -> tuple[pd.DataFrame, dict]:
    """fastai's default path within `seconds`: (test predictions, what it did)."""
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner
    t0 = time.perf_counter()
    table = _train_table(data)
    bs = min(64, int(len(table) * (1 - VALID_PCT)) // 4)
    dls = ImageDataLoaders.from_df(table, path=data, fn_col="path", label_col="label", valid_pct=VALID_PCT, seed=0,
                                   item_tfms=Resize(resize), batch_tfms=aug_transforms(size=size), bs=bs)
    learn = vision_learner(dls, backbone, pretrained=False, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        t1 = time.perf_counter()
        lr = learn.lr_find(show_plot=False).valley
        step = (time.perf_counter() - t1) / max(len(learn.recorder.lrs), 1)
        test = sorted((data / "test").rglob("*.png"))
        epoch = step * (len(dls.train) + 0.4 * len(dls.valid))  # a validation step: a forward pass, about 0.4 of one
        predict = step * 0.4 * (len(test) / bs + 1)
        epochs = max(1, int((seconds - (time.perf_counter() - t0) - predict) / epoch))
        learn.fit_one_cycle(epochs, lr)
        probs, _ = learn.get_preds(dl=dls.test_dl(test))
    vocab = list(dls.vocab)
    sub = pd.DataFrame({"id": [p.stem for p in test], "label": [vocab[i] for i in probs.argmax(1).tolist()]})
    return sub, {"fastai_bs": bs, "fastai_lr": float(f"{lr:.2g}"), "fastai_epochs": epochs,
                 "fastai_minutes": round((time.perf_counter() - t0) / 60, 1)}


def _one(name: str, shape: dict, tmp: Path) -> dict:
    data, cfg, seconds, row, n_test = default_path(shape, tmp)
    solution = pd.read_csv(data / "solution.csv", dtype=str)
    sub, did = fastai_path(data, cfg.backbone, cfg.resize, cfg.img_size, seconds)
    public, private = _score(sub, solution)
    return {"data": name, "held_out": n_test, "kit_minutes": round(seconds / 60, 1), "kit_cv": float(row["cv_top1"]),
            "kit_public": float(row["public"]), "kit_private": float(row["private"]), **did,
            "fastai_public": round(public, 3), "fastai_private": round(private, 3),
            "fastai / kit": round(private / max(float(row["private"]), 1e-9), 2)}


def run(size: str = "cpu") -> list[dict]:
    return each_set(_one)


def main() -> None:
    from bench.common import record, table
    rows = run()
    if rows:
        print(table("the kit's default path against fastai's, the same wall clock", rows))
        print(f"recorded in {record('fastai_default', rows)}")


if __name__ == "__main__":
    main()
