"""The test images of a data folder as a trained model's layout saw them: what inference reads where the
training part may be gone (a bundle on Kaggle, a notebook with only the test images mounted).

    layout = scan_test("data/dog-breed-identification", bundle["layout"])   # a Layout whose train is empty
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from kit.data.discover import Images, find_sample, read_csv
from kit.data.layout import Layout, NoLabels, channels_in, flat_test, sample_test, scan, summarize


def scan_test(data: str | Path, trained: dict, id_col: str = "", label_col: str = "", **more) -> Layout:
    """The test images of `data` as a trained model's layout saw them, for inference without training data.

    `trained` is that layout's `as_record()`. With a training part in `data`, the full scan (whose
    classes and submission must then match); without one, the test set alone: the sample's ids (its
    header must match) or the images of DATA/test*/.
    """
    root = Path(data)
    header, classes = tuple(trained["header"]), tuple(trained["classes"])
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist; pass data= the folder that holds test/")
    try:
        layout = scan(root, id_col=id_col, label_col=label_col, task=trained["task"],
                      submission=trained["submission"], top_k=trained["top_k"], **more)
    except NoLabels:
        layout = None  # no training part (or none whose images are here): the test set alone, below
    if layout is not None:
        if layout.header != header:
            raise ValueError(f"{root}: submission header {list(layout.header)}, the model was trained for "
                             f"{list(header)}; point data= at the competition it was trained for")
        if layout.classes != classes:
            raise ValueError(f"{root} has {len(layout.classes)} classes ({summarize(list(layout.classes))}), the "
                             f"model {len(classes)} ({summarize(list(classes))}); point data= at the competition it "
                             "was trained for")
        return _same_channels(layout, trained)
    images = Images(root, more.get("images", ""))
    sample_path = find_sample(root, images.csvs, more.get("sample_csv", ""))
    if sample_path is not None:
        sample = read_csv(sample_path)
        if tuple(sample.columns[: len(header)]) != header and not (trained["submission"] != "probs"
                                                                   and tuple(sample.columns[:2]) == header):
            raise ValueError(f"{sample_path}: header {list(sample.columns)}, the model was trained for "
                             f"{list(header)}; point data= at the competition it was trained for")
        test = sample_test(images, sample, sample_path)
    else:
        test = flat_test(images)
    empty = pd.DataFrame({"path": pd.Series(dtype=str), "label": pd.Series(dtype=str), "source": pd.Series(dtype=str)})
    layout = Layout(root, trained["kind"], classes, empty, test, header, trained["task"], trained["submission"],
                    trained["top_k"])
    return _same_channels(dataclasses.replace(layout, channels=channels_in(layout)), trained)


def _same_channels(layout: Layout, trained: dict) -> Layout:
    if layout.channels != trained.get("channels", 3):
        raise ValueError(f"{layout.root}: images of {layout.channels} channels, the model was trained on "
                         f"{trained.get('channels', 3)}; point data= at the competition it was trained for")
    return layout
