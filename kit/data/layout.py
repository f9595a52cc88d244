"""The images, labels and test ids of a data folder, and the shape of the competition: its task and the
submission it wants.

Where the parts lie is found by kit/data/discover.py's rules (a Kaggle download as it comes, class folders
DATA/train/<class>/, labels in file names); this module builds the Layout from them. The task and the
submission format (FORMATS) are read from the files by kit/data/shapes.py: the keys task= and
submission= override what is found; a sample that fits no format, or more than one, is a one-line error
naming the key to set.

Nothing here writes (but discover's pixel rule); DATA may be read-only. Paths are kept relative to DATA
(posix), so folds.csv and its fingerprint do not depend on where DATA is mounted. A multi-label image's
tags are kept in folds.csv's label column joined by TAG_SEP.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.data import bands
from kit.data.annotations import label_table, test_names
from kit.data.discover import (Images, find_group, find_label_file, find_sample, label_from_names, passed_over,
                                pixels_to_images, read_csv)
from kit.data.shapes import (FORMATS, TAG_SEP, classes_of, label_columns, natural_key, submission_format, summarize,
                             train_labels)
from kit.io import IMAGE_EXTENSIONS, channels_of, image_stat, is_image_file, stacked

log = logging.getLogger(__name__)
MAY_LACK = 0.01  # the share of training rows whose image may be missing, left out with a line; more is refused


@dataclass(frozen=True)
class Layout:
    root: Path
    kind: str  # "folder" or "csv"
    classes: tuple[str, ...]  # natural order; index = model output
    train: pd.DataFrame  # path (relative to root), label (str; tags joined by TAG_SEP), source ("train" or "val")
    test: pd.DataFrame  # id (as the submission writes it), path
    header: tuple[str, ...]  # submission columns: the id, then one column (or one per class, for probs)
    task: str = "single"  # single (one class per image), multilabel or regression (a number: classes is its name)
    submission: str = "label"  # one of FORMATS
    top_k: int = 0  # classes per row of a topk submission
    named_metric: str = ""  # the metric the competition ranks by, as `make download` recorded it (competition.json)
    group: str = ""  # the label file's column whose values stay in one fold (train holds it as "group")
    found: tuple[str, ...] = ()  # what the rules found, a line each (`kit folds` says them)
    channels: int = 3  # what an image gives the model: RGB, or a channel a file of a stacked image (kit/io.py)
    # where the labels came from, for the tabular columns `kit stack` reads from the label file (kit/data/tabular.py):
    # the ids of train's rows, in its order (None where the labels are folders or file names), and the file
    train_ids: np.ndarray | None = None
    label_file: str = ""  # relative to root
    id_col: str = ""
    label_cols: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the task, the classes and the submission format (what `folds` says it found)."""
        task = {"single": "single-label", "multilabel": "multi-label"}.get(self.task, self.task)
        k = f", k={self.top_k}" if self.submission == "topk" else ""
        outputs = f"{len(self.classes)} classes" if self.task != "regression" else f"{self.classes[0]} a number"
        return (f"{task}, {outputs}, submission {self.submission}{k}: "
                f"{FORMATS[self.submission].split(' (')[0]} ({', '.join(self.header)})")

    def as_record(self) -> dict:
        """What inference needs to know of this layout (bundle.json keeps it): plain data."""
        return {"kind": self.kind, "classes": list(self.classes), "header": list(self.header), "task": self.task,
                "submission": self.submission, "top_k": self.top_k, "channels": self.channels}

    def targets(self, labels) -> np.ndarray:
        """folds.csv labels as model targets: (N,) class indices, (N, classes) 0/1 for multi-label, (N, 1) float
        values for a regression."""
        return encode(labels, self.classes, self.task)

    def fingerprint(self) -> str:
        """sha256 over every training file's path, size and label: cheap, and changes with the data."""
        h = hashlib.sha256()
        for path, label, source in self.train[["path", "label", "source"]].itertuples(index=False):
            h.update(f"{path}\t{image_stat(self.root / path)[0]}\t{label}\t{source}\n".encode())
        if self.group:  # the groups shape the split: other groups, other folds
            h.update(f"group {self.group}\t".encode() + "\t".join(self.train["group"]).encode())
        return h.hexdigest()


def encode(labels, classes: tuple[str, ...], task: str) -> np.ndarray:
    """Label strings as targets: (N,) class indices, or (N, classes) 0/1 rows for multi-label (tags joined by TAG_SEP)."""
    if task == "regression":
        return np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    index = {c: i for i, c in enumerate(classes)}
    if task == "single":
        return np.array([index[v] for v in labels], dtype=np.int64)
    out = np.zeros((len(labels), len(classes)), dtype=np.int64)
    for row, value in enumerate(labels):
        out[row, [index[t] for t in value.split(TAG_SEP) if t]] = 1
    return out


def _inside(root: Path, path: Path) -> bool:
    # resolve() follows symlinks and "..": a link or id that leaves DATA is caught however it is spelt
    return path.resolve().is_relative_to(root.resolve())


def _images_in(folder: Path) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.is_file() or p.is_symlink()), key=lambda p: natural_key(p.name))
    skipped = [p.name for p in files if not is_image_file(p)]
    if skipped:
        log.warning("%s: ignoring %d file(s) without an image extension: %s", folder, len(skipped), summarize(skipped))
    return [p for p in files if is_image_file(p)]


def _class_folders(root: Path, split: str) -> list[dict]:
    folder = root / split
    classes = sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name))
    if not classes:
        raise ValueError(f"{folder} has no class folders; expected {folder}/<class>/<image>")
    rows, empty = [], []
    for d in classes:
        images = _images_in(d)
        empty += [str(d)] if not images else []
        rows += [{"path": p.relative_to(root).as_posix(), "label": d.name, "source": split} for p in images]
    if empty:
        raise ValueError(f"empty class folder(s) with no images: {summarize(empty)}; remove them or add images")
    return rows


def _check_unique(ids: pd.Series, paths: list[str], labels: list[str], task: str, path: Path) -> None:
    """One row per training image: an image listed twice could land in two folds, and a fold would then validate
    images its model trained on."""
    rows = pd.DataFrame({"id": ids.to_numpy(), "path": paths, "label": labels})
    twice = rows[rows["path"].duplicated(keep=False)]
    if twice.empty:
        return
    groups = [g for _, g in twice.groupby("path", sort=False)]
    same_id = [g for g in groups if g["id"].nunique() == 1]
    if same_id and task == "single" and any(g["label"].nunique() > 1 for g in same_id):
        named = [f"{g['id'].iloc[0]} ({', '.join(g['label'])})" for g in same_id if g["label"].nunique() > 1]
        raise ValueError(f"{path}: id(s) on several rows with other labels: {summarize(named)}; if the file has one "
                         "row per tag, merge them into one row per image with its tags space-separated (pandas: "
                         "df.groupby(id)[label].agg(' '.join)), else keep one row each")
    named = [" = ".join(dict.fromkeys(g["id"])) + f" -> {g['path'].iloc[0]}" for g in groups]
    raise ValueError(f"{path}: {len(groups)} image(s) listed on more than one row: {summarize(named)}; each row must "
                     "name one image once (with or without its extension), so keep one row each")


def flat_test(images: Images) -> pd.DataFrame:
    """Without a sample: the images of the folders named test* (test/, test_images/), ids their stems."""
    paths = sorted((p for ps in images.by_name.values() for p in ps
                    if "/" in p and p.rsplit("/", 2)[-2].lower().startswith("test")), key=natural_key)
    stems = pd.Series([Path(p).stem for p in paths], dtype=str)
    dup = sorted(set(stems[stems.duplicated()]))
    if dup:
        raise ValueError(f"{images.root}: several test images share the name(s) {summarize(dup)}; "
                         "submission ids are file stems, so rename them")
    return pd.DataFrame({"id": stems, "path": pd.Series(paths, dtype=str)})


def sample_test(images: Images, sample: pd.DataFrame, sample_path: Path) -> pd.DataFrame:
    """The test set as the sample lists it: its ids, in its order and spelling, each naming one image (itself, or
    through a JSON list of the test images where the ids name no file: Herbarium's)."""
    test_ids = sample.iloc[:, 0]
    dup = sorted(set(test_ids[test_ids.duplicated()]))
    if dup:
        raise ValueError(f"{sample_path}: id(s) listed more than once: {summarize(dup)}; each test id needs one row")
    keys = test_ids
    if images.jsons and images.matches(test_ids.head(50), "test") < min(len(test_ids), 50) / 2:
        named, source = test_names([p for p in images.jsons if p.name.lower().startswith("test")] or images.jsons,
                                   test_ids)
        keys = test_ids.map(named).fillna(test_ids) if named else test_ids
        images.read.add(source)
    return pd.DataFrame({"id": test_ids.to_numpy(), "path": images.resolve(keys, "test", str(sample_path))})


@dataclass(frozen=True)
class Keys:
    """The keys that pick a reading of a data folder where the rules find two (kit/data/discover.py)."""

    id_col: str = ""
    label_col: str = ""
    task: str = "auto"
    submission: str = "auto"
    top_k: int = 0
    train_csv: str = ""
    images: str = ""
    group: str = "auto"
    sample_csv: str = ""


def _test_of(images: Images, sample: pd.DataFrame | None, sample_path: Path | None) -> pd.DataFrame:
    return sample_test(images, sample, sample_path) if sample is not None else flat_test(images)


def _header(sample: pd.DataFrame | None, fallback: tuple[str, str]) -> tuple[str, ...]:
    """The sample's header, exactly; the label file's names without a sample."""
    return tuple(sample.columns[:2]) if sample is not None and sample.shape[1] >= 2 else fallback


def _named_classes(sample: pd.DataFrame | None) -> frozenset[str]:
    """Class names the sample spells: its columns after the id (one per class), or the value of its one column."""
    if sample is None or sample.shape[1] < 2:
        return frozenset()
    return frozenset(sample.columns[1:]) if sample.shape[1] > 2 else frozenset(sample.iloc[:, 1])


def _from_label_file(root: Path, images: Images, found: tuple[Path, pd.DataFrame, str], sample, sample_path,
                     keys: Keys, metric: str) -> Layout:
    path, train_csv, id_col = found
    if train_csv.empty:
        raise ValueError(f"{path}: no training images listed; add rows (id, label) or images")
    columns = label_columns(train_csv, sample, id_col, keys.label_col, path)
    labels, task = train_labels(train_csv, columns, keys.task, path, _named_classes(sample), metric)
    empty = [i for i, (key, label) in enumerate(zip(train_csv[id_col], labels)) if key == "" or
             label == "" and task != "multilabel"]
    if empty:
        rows = [str(i + 2) for i in empty]  # 1-based, after the header line
        raise ValueError(f"{path}: empty id or label in line(s) {summarize(rows)}")
    paths = images.resolve(train_csv[id_col], "train", str(path), may_lack=MAY_LACK)
    lost = [i for i, p in zip(train_csv[id_col], paths) if p is None]
    if lost:
        kept = [p is not None for p in paths]
        train_csv, paths = train_csv[kept].reset_index(drop=True), [p for p in paths if p is not None]
        labels = [label for label, k in zip(labels, kept) if k]
    _check_unique(train_csv[id_col], paths, labels, task, path)
    group = find_group(train_csv, keys.group, path)
    train = pd.DataFrame({"path": paths, "label": labels, "source": "train"})
    if group:
        train["group"] = train_csv[group].to_numpy()
    classes = classes_of(labels, task, columns)
    test = _test_of(images, sample, sample_path)
    fmt, header, k = submission_format(sample, classes, task, keys.submission, keys.top_k,
                                       _header(sample, (id_col, columns[0] if len(columns) == 1 else "tags")),
                                       sample_path or path, metric)
    rel = path.relative_to(root).as_posix()
    said = [f"label file {rel} (id column {id_col}; label{'s' if len(columns) > 1 else ''} "
            f"{summarize(columns)}): {len(train)} images, {images.describe(paths)}"]
    if task == "multilabel" and len(columns) == 1 and keys.task == "auto":
        said.append(f"labels in {columns[0]} read as space-separated tags ({len(classes)} tags); task=single reads "
                    "each value as one class")
    if lost:
        said.append(f"{len(lost)} row(s) of {rel} left out, their image missing from {root}: {summarize(lost)}")
        log.warning("%s", said[-1])
    return Layout(root, "csv", classes, train, test, header, task, fmt, k, group=group, found=tuple(said),
                  train_ids=train_csv[id_col].to_numpy(), label_file=rel, id_col=id_col, label_cols=tuple(columns))


def _from_folders(root: Path, images: Images, sample, sample_path, keys: Keys, metric: str) -> Layout:
    if keys.task == "multilabel":
        raise ValueError(f"{root}: class folders hold one class per image; task=multilabel needs a label file "
                         "(train.csv with space-separated tags or 0/1 class columns)")
    if keys.group not in ("auto", "none"):
        raise ValueError(f"group={keys.group}: class folders have no columns; group= needs a label file")
    rows = _class_folders(root, "train")
    if (root / "val").is_dir():
        rows += _class_folders(root, "val")
    train = pd.DataFrame(rows)
    classes = tuple(sorted(train["label"].unique(), key=natural_key))
    fmt, header, k = submission_format(sample, classes, "single", keys.submission, keys.top_k,
                                       _header(sample, ("image_name", "pred_label")), sample_path or root, metric)
    said = (f"class folders {root.name}/train/<class>/: {len(train)} images",)
    return Layout(root, "folder", classes, train, _test_of(images, sample, sample_path), header, "single", fmt, k,
                  found=said)


def _from_names(root: Path, images: Images, named: tuple[list[str], list[str]], sample, sample_path, keys: Keys,
                metric: str) -> Layout:
    paths, labels = named
    train = pd.DataFrame({"path": paths, "label": labels, "source": "train"})
    classes = tuple(sorted(set(labels), key=natural_key))
    fmt, header, k = submission_format(sample, classes, "single", keys.submission, keys.top_k,
                                       _header(sample, ("id", "label")), sample_path or root, metric)
    said = (f"labels in file names (<class>.<n>): {len(train)} images, {images.describe(paths)}",)
    return Layout(root, "names", classes, train, _test_of(images, sample, sample_path), header, "single", fmt, k,
                  found=said)


class NoLabels(ValueError):
    """No rule finds the training labels (kit/data/testset.py then reads the test set alone)."""


def _no_labels(root: Path, images: Images, sample, keys: Keys) -> NoLabels:
    """Why no rule found the labels: a train*.csv whose ids name no image says so; else what was looked for."""
    for path in images.csvs:
        if path.name.lower().startswith(("train", "label")) and "sample" not in path.name.lower():
            table = read_csv(path)
            if table.empty:
                return NoLabels(f"{path}: no training images listed; add rows (id, label) or images")
            id_col = keys.id_col or (sample.columns[0] if sample is not None else table.columns[0])
            if id_col not in table.columns:
                return NoLabels(f"{path}: missing column(s) {[id_col]} (has {list(table.columns)}); "
                                "set id_col= and label_col= to the right names")
            try:
                images.resolve(table[id_col], "train", str(path))
            except ValueError as e:
                return NoLabels(str(e))
    for path in images.jsons:  # COCO-style annotations whose file names name no image
        table = label_table(path, sample)
        if table is not None:
            try:
                images.resolve(table["file"], "train", str(path))
            except ValueError as e:
                return NoLabels(str(e))
    return NoLabels(f"{root}: no train/<class>/ folders, no label file whose ids name images, no labelled file "
                    "names; see docs/DATA.md (train_csv=, images=, id_col=)")


def scan(data: str | Path, id_col: str = "", label_col: str = "", task: str = "auto", submission: str = "auto",
         top_k: int = 0, **more) -> Layout:
    """Find the layout of `data` by the rules of kit/data/discover.py, its task and submission format, and list
    its images.

    Raises ValueError saying what is missing or which key picks between two readings. task, submission and top_k
    override what is found ("auto", "auto", 0: from the data); `more` are the other Keys.
    """
    keys = Keys(id_col, label_col, task, submission, top_k, **more)
    root = Path(data)
    if root.exists() and not root.is_dir():
        raise ValueError(f"data={root} is a file, not a folder; pass the folder that holds train/ (DATA=path)")
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist; pass DATA=path (or data=path), run `make download "
                         f"COMP={root.name}` for a Kaggle competition, or `python -m kit demo-data` for the demo")
    record = root / "competition.json"  # written by `make download`
    metric = json.loads(record.read_text()).get("metric", "") if record.is_file() else ""
    top = sorted(root.glob("*.csv"))  # a pixel CSV lies at the top; its images are made before the walk finds them
    pixels_to_images(root, top, find_sample(root, top, keys.sample_csv))
    bands.to_images(root)  # Statoil's radar bands: images once, in DATA/kit-bands/
    images = Images(root, keys.images)
    sample_path = find_sample(root, images.csvs, keys.sample_csv)
    sample = read_csv(sample_path) if sample_path is not None else None
    said: list[str] = []
    label_file = find_label_file(root, images, sample_path, sample, keys.train_csv, keys.id_col, said)
    if label_file is not None:
        layout = _from_label_file(root, images, label_file, sample, sample_path, keys, metric)
        used = {label_file[0]}
    elif (root / "train").is_dir() and any(d.is_dir() for d in (root / "train").iterdir()):
        layout = _from_folders(root, images, sample, sample_path, keys, metric)
        used = set()
    elif (named := label_from_names(images)) is not None:
        layout = _from_names(root, images, named, sample, sample_path, keys, metric)
        used = set()
    else:
        raise _no_labels(root, images, sample, keys)
    if layout.train.empty:
        where = root / "train.csv" if layout.kind == "csv" else root / "train"
        raise ValueError(f"{where}: no training images listed; add rows (id, label) or images")
    outside = [p for p in layout.train["path"] if not _inside(root, root / p)]
    outside += [p for p in layout.test["path"] if not _inside(root, root / p)]
    if outside:
        raise ValueError(f"image(s) point outside {root}: {summarize(outside)}; copy the files into the data folder")
    test_from = (f"{len(layout.test)} test ids from {sample_path.relative_to(root).as_posix()}" if sample_path
                 else f"{len(layout.test)} test images") + (f", {images.describe(layout.test['path'])}"
                                                          if len(layout.test) else "")
    said = [*layout.found, test_from, *said]
    if layout.group:
        said.append(f"folds keep each {layout.group} whole ({layout.train['group'].nunique()} groups; group=none "
                    "splits them)")
    channels = channels_in(layout)
    if channels != 3:
        names = [f.stem.rsplit("_", 1)[-1] for f in stacked(layout.train["path"].iloc[0])]
        said.append(f"images of {channels} channels: each id's {', '.join(names)} files stacked (the backbone's first "
                    "convolution takes them all, its pretrained weights adapted)")
    line = passed_over(images, used | ({sample_path} if sample_path else set()))
    said += [line] if line else []
    return dataclasses.replace(layout, named_metric=metric, found=tuple(said), channels=channels)


def channels_in(layout: Layout) -> int:
    """The channels every image of the data gives the model; a mix is refused (one network takes one)."""
    counts = Counter(channels_of(p) for p in pd.concat([layout.train["path"], layout.test["path"]]))
    if len(counts) > 1:
        shown = ", ".join(f"{n} image(s) of {c} channels" for c, n in sorted(counts.items()))
        raise ValueError(f"{layout.root}: images of different channel counts ({shown}); give every image the same "
                         "channel files, or point images= at one kind")
    return next(iter(counts), 3)


__all__ = ["Layout", "scan", "natural_key", "summarize", "IMAGE_EXTENSIONS"]
