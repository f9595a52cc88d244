"""Find the images, labels and test ids in a data folder, whichever of the two layouts it uses, and the shape
of the competition: its task and the submission it wants.

Folder layout:     DATA/train/<class>/*   [DATA/val/<class>/*]   DATA/test/*
Kaggle CSV layout: DATA/train.csv   DATA/train/   DATA/test/   DATA/sample_submission.csv

The task and the submission format (FORMATS) are read from the files this module finds by
kit/data/shapes.py: the keys task= and submission= override what is found; a sample that fits no
format, or more than one, is a one-line error naming the key to set.

Nothing here writes; DATA may be read-only. Paths are kept relative to DATA (posix), so folds.csv
and its fingerprint do not depend on where DATA is mounted. A multi-label image's tags are kept
in folds.csv's label column joined by TAG_SEP.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.data.shapes import (FORMATS, TAG_SEP, classes_of, label_columns, natural_key, submission_format, summarize,
                             train_labels)
from kit.io import IMAGE_EXTENSIONS, check_image, is_image_file

log = logging.getLogger(__name__)
@dataclass(frozen=True)
class Layout:
    root: Path
    kind: str  # "folder" or "csv"
    classes: tuple[str, ...]  # natural order; index = model output
    train: pd.DataFrame  # path (relative to root), label (str; tags joined by TAG_SEP), source ("train" or "val")
    test: pd.DataFrame  # id (as the submission writes it), path
    header: tuple[str, ...]  # submission columns: the id, then one column (or one per class, for probs)
    task: str = "single"  # single (one class per image) or multilabel
    submission: str = "label"  # one of FORMATS
    top_k: int = 0  # classes per row of a topk submission
    named_metric: str = ""  # the metric the competition ranks by, as `make download` recorded it (competition.json)

    def describe(self) -> str:
        """One line: the task, the classes and the submission format (what `folds` says it found)."""
        task = "single-label" if self.task == "single" else "multi-label"
        k = f", k={self.top_k}" if self.submission == "topk" else ""
        return (f"{task}, {len(self.classes)} classes, submission {self.submission}{k}: "
                f"{FORMATS[self.submission].split(' (')[0]} ({', '.join(self.header)})")

    def as_record(self) -> dict:
        """What inference needs to know of this layout (bundle.json keeps it): plain data."""
        return {"kind": self.kind, "classes": list(self.classes), "header": list(self.header), "task": self.task,
                "submission": self.submission, "top_k": self.top_k}

    def targets(self, labels) -> np.ndarray:
        """folds.csv labels as model targets: (N,) class indices, or (N, classes) 0/1 for multi-label."""
        return encode(labels, self.classes, self.task)

    def fingerprint(self) -> str:
        """sha256 over every training file's path, size and label: cheap, and changes with the data."""
        h = hashlib.sha256()
        for path, label, source in self.train[["path", "label", "source"]].itertuples(index=False):
            h.update(f"{path}\t{(self.root / path).stat().st_size}\t{label}\t{source}\n".encode())
        return h.hexdigest()


def encode(labels, classes: tuple[str, ...], task: str) -> np.ndarray:
    """Label strings as targets: (N,) class indices, or (N, classes) 0/1 rows for multi-label (tags joined by TAG_SEP)."""
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


def _flat_test(root: Path) -> pd.DataFrame:
    folder = root / "test"
    if not folder.is_dir():
        return pd.DataFrame({"id": pd.Series(dtype=str), "path": pd.Series(dtype=str)})
    images = _images_in(folder)
    stems = pd.Series([p.stem for p in images], dtype=str)
    dup = sorted(set(stems[stems.duplicated()]))
    if dup:
        raise ValueError(f"{folder}: several test images share the name(s) {summarize(dup)}; "
                         "submission ids are file stems, so rename them")
    return pd.DataFrame({"id": stems, "path": [p.relative_to(root).as_posix() for p in images]})


def _scan_folder(root: Path, task: str, submission: str, top_k: int) -> Layout:
    if task == "multilabel":
        raise ValueError(f"{root}: class folders hold one class per image; task=multilabel needs the CSV layout "
                         "(train.csv with space-separated tags or 0/1 class columns)")
    rows = _class_folders(root, "train")
    if (root / "val").is_dir():
        rows += _class_folders(root, "val")
    train = pd.DataFrame(rows)
    classes = tuple(sorted(train["label"].unique(), key=natural_key))
    fmt, header, k = submission_format(None, classes, "single", submission, top_k, ("image_name", "pred_label"), root)
    return Layout(root, "folder", classes, train, _flat_test(root), header, "single", fmt, k)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None


def _index_files(folder: Path) -> dict[str, Path]:
    """Map both 'name.ext' and 'name' to each image in folder, so ids with or without extension resolve."""
    index = {}
    if folder.is_dir():
        for p in _images_in(folder):
            index.setdefault(p.stem, p)  # first file wins for a bare stem; exact names below always win
            index[p.name] = p
    return index


def _resolve_ids(root: Path, folder: Path, ids: pd.Series, what: str) -> list[str]:
    index = _index_files(folder)
    paths, missing, outside = [], [], []
    for i in ids:
        p = index.get(i)
        if p is None:
            missing.append(i)
        elif not _inside(root, p):
            outside.append(f"{i} -> {p.resolve()}")
        else:
            paths.append(p.relative_to(root).as_posix())
    if outside:
        raise ValueError(f"{what}: image(s) point outside {root}: {summarize(outside)}; copy the files into {folder}")
    if missing:
        raise ValueError(f"{what}: {len(missing)} id(s) have no image in {folder}: {summarize(missing)}")
    return paths


def _scan_csv(root: Path, id_col: str, label_col: str, task: str, submission: str, top_k: int) -> Layout:
    path = root / "train.csv"
    train_csv = _read_csv(path)
    sample_path = root / "sample_submission.csv"
    sample = _read_csv(sample_path) if sample_path.is_file() else None
    id_col = id_col or (sample.columns[0] if sample is not None else train_csv.columns[0])
    if id_col not in train_csv.columns:
        raise ValueError(f"{path}: missing column(s) {[id_col]} (has {list(train_csv.columns)}); "
                         "set id_col= and label_col= to the right names")
    columns = label_columns(train_csv, sample, id_col, label_col, path)
    labels, task = train_labels(train_csv, columns, task, path)
    empty = [i for i, (key, label) in enumerate(zip(train_csv[id_col], labels)) if key == "" or
             label == "" and task == "single"]
    if empty:
        rows = [str(i + 2) for i in empty]  # 1-based, after the header line
        raise ValueError(f"{path}: empty id or label in line(s) {summarize(rows)}")
    paths = _resolve_ids(root, root / "train", train_csv[id_col], str(path))
    _check_unique(train_csv[id_col], paths, labels, task, path)
    train = pd.DataFrame({"path": paths, "label": labels, "source": "train"})
    classes = classes_of(labels, task, columns)
    test = _sample_test(root, sample, sample_path) if sample is not None else _flat_test(root)
    fmt, header, k = submission_format(sample, classes, task, submission, top_k,
                             (id_col, columns[0] if len(columns) == 1 else "tags"), sample_path)
    return Layout(root, "csv", classes, train, test, header, task, fmt, k)


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


def _sample_test(root: Path, sample: pd.DataFrame, sample_path: Path) -> pd.DataFrame:
    """The test set as sample_submission.csv lists it: its ids, in its order, each resolved in DATA/test."""
    test_ids = sample.iloc[:, 0]
    dup = sorted(set(test_ids[test_ids.duplicated()]))
    if dup:
        raise ValueError(f"{sample_path}: id(s) listed more than once: {summarize(dup)}; each test id needs one row")
    return pd.DataFrame({"id": test_ids.to_numpy(), "path": _resolve_ids(root, root / "test", test_ids, str(sample_path))})


def scan(data: str | Path, id_col: str = "", label_col: str = "", task: str = "auto", submission: str = "auto",
         top_k: int = 0) -> Layout:
    """Detect the layout of `data`, its task and submission format, and list its images.

    Raises ValueError saying what is missing. task, submission and top_k override what is detected
    ("auto", "auto", 0: from the data).
    """
    root = Path(data)
    if root.exists() and not root.is_dir():
        raise ValueError(f"data={root} is a file, not a folder; pass the folder that holds train/ (DATA=path)")
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist; pass DATA=path (or data=path), "
                         "or run `python -m kit demo-data` for the demo")
    if (root / "train.csv").is_file():
        layout = _scan_csv(root, id_col, label_col, task, submission, top_k)
    elif (root / "train").is_dir():
        layout = _scan_folder(root, task, submission, top_k)
    else:
        raise ValueError(f"{root}: no train/<class>/ folders and no train.csv; see docs/DATA.md")
    record = root / "competition.json"  # written by `make download`
    if record.is_file():
        layout = dataclasses.replace(layout, named_metric=json.loads(record.read_text()).get("metric", ""))
    if layout.train.empty:
        where = root / "train.csv" if layout.kind == "csv" else root / "train"
        raise ValueError(f"{where}: no training images listed; add rows (id, label) or images")
    outside = [p for p in layout.train["path"] if not _inside(root, root / p)]
    outside += [p for p in layout.test["path"] if not _inside(root, root / p)]
    if outside:
        raise ValueError(f"image(s) point outside {root}: {summarize(outside)}; copy the files into the data folder")
    return layout


def scan_test(data: str | Path, trained: dict, id_col: str = "", label_col: str = "") -> Layout:
    """The test images of `data` as a trained model's layout saw them, for inference without training data.

    `trained` is that layout's `as_record()`. With a training part in `data`, the full scan (whose
    classes and submission must then match); without one, the test set alone: sample_submission.csv's
    ids (CSV layout; its header must match) or DATA/test/*.
    """
    root = Path(data)
    header, classes = tuple(trained["header"]), tuple(trained["classes"])
    if (root / "train.csv").is_file() or (root / "train").is_dir():
        layout = scan(root, id_col=id_col, label_col=label_col, task=trained["task"],
                      submission=trained["submission"], top_k=trained["top_k"])
        if layout.header != header:
            raise ValueError(f"{root}: submission header {list(layout.header)}, the model was trained for "
                             f"{list(header)}; point data= at the competition it was trained for")
        if layout.classes != classes:
            raise ValueError(f"{root} has {len(layout.classes)} classes ({summarize(list(layout.classes))}), the "
                             f"model {len(classes)} ({summarize(list(classes))}); point data= at the competition it "
                             "was trained for")
        return layout
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist; pass data= the folder that holds test/")
    sample_path = root / "sample_submission.csv"
    if trained["kind"] == "csv" and sample_path.is_file():
        sample = _read_csv(sample_path)
        if tuple(sample.columns) != header:
            raise ValueError(f"{sample_path}: header {list(sample.columns)}, the model was trained for "
                             f"{list(header)}; point data= at the competition it was trained for")
        test = _sample_test(root, sample, sample_path)
    else:
        test = _flat_test(root)
    empty = pd.DataFrame({"path": pd.Series(dtype=str), "label": pd.Series(dtype=str), "source": pd.Series(dtype=str)})
    return Layout(root, trained["kind"], classes, empty, test, header, trained["task"], trained["submission"],
                  trained["top_k"])


def find_bad_images(root: Path, paths: list[str], max_pixels: int, workers: int = 8) -> dict[str, str]:
    """Decode every image (threads: PIL releases the GIL) and return {path: why it can't be used} for each failure.
    A dict, not 'path (reason)' strings: PIL's reasons hold parentheses of their own ("image file is truncated
    (5 bytes not processed)"), so such a string cannot be split back into its path."""
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda p: check_image(root / p, max_pixels), paths))
    return {p: r for p, r in zip(paths, reasons) if r is not None}


def describe_bad(bad: dict[str, str]) -> str:
    """'path (reason); ...' for a one-line message."""
    return summarize([f"{p} ({r})" for p, r in bad.items()])


__all__ = ["Layout", "scan", "scan_test", "find_bad_images", "describe_bad", "natural_key", "summarize", "IMAGE_EXTENSIONS"]
