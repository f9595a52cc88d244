"""Find the images, labels and test ids in a data folder, whichever of the two layouts it uses, and the shape
of the competition: its task and the submission it wants.

Folder layout:     DATA/train/<class>/*   [DATA/val/<class>/*]   DATA/test/*
Kaggle CSV layout: DATA/train.csv   DATA/train/   DATA/test/   DATA/sample_submission.csv

The task, from train.csv:
  single      one class per image: a label column, or one 0/1 column per class with a single 1 per row
  multilabel  any number of classes (tags) per image: a column of space-separated tags, or 0/1 columns
The submission, from sample_submission.csv (FORMATS): label (the class), probs (one probability
column per class, named by class), prob (two classes: the probability of the second), tags
(space-separated classes), topk (k space-separated classes, best first). The keys task= and
submission= override what is found; a sample that fits no format, or more than one, is a one-line
error naming the key to set.

Nothing here writes; DATA may be read-only. Paths are kept relative to DATA (posix), so folds.csv
and its fingerprint do not depend on where DATA is mounted. A multi-label image's tags are kept
in folds.csv's label column joined by TAG_SEP.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.io import IMAGE_EXTENSIONS, check_image, is_image_file

log = logging.getLogger(__name__)
SHOW = 5  # bad items named in a one-line error before "... and N more"
TAG_SEP = "|"  # between a multi-label image's tags in folds.csv (class names from 0/1 columns may hold spaces)
FORMATS = {  # submission format -> what one row holds (and a Kaggle competition of that shape)
    "label": "the class (Dog vs cat folders, Cassava)",
    "probs": "one probability column per class (Dog Breed Identification, Plant Pathology 2020, RANZCR CLiP)",
    "prob": "the probability of the second class (Aerial Cactus, Histopathologic Cancer Detection)",
    "tags": "space-separated classes (Planet: Understanding the Amazon from Space, iMet)",
    "topk": "the k most likely classes, best first (Humpback Whale Identification)",
}


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


def natural_key(s: str):
    """'img10' after 'img9'; all-numeric labels sort as numbers ('2' < '10'), ties by the string."""
    parts = re.split(r"(\d+)", s)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts if p), s


def summarize(items: list[str]) -> str:
    more = f" ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
    return "; ".join(items[:SHOW]) + more


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
    fmt, header, k = _format(None, classes, "single", submission, top_k, ("image_name", "pred_label"), root)
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


def _label_columns(train_csv: pd.DataFrame, sample: pd.DataFrame | None, id_col: str, label_col: str,
                   path: Path) -> list[str]:
    """train.csv's label column (one name), or its 0/1 class columns (several)."""
    others = [c for c in train_csv.columns if c != id_col]
    if label_col or (sample is not None and sample.shape[1] == 2):
        label_col = label_col or sample.columns[1]
        if label_col not in train_csv.columns:
            raise ValueError(f"{path}: missing column(s) {[label_col]} (has {list(train_csv.columns)}); "
                             "set id_col= and label_col= to the right names")
        return [label_col]
    if sample is not None:  # one column per class: those of train.csv are 0/1 class columns, or one holds the label
        shared = [c for c in sample.columns[1:] if c in train_csv.columns]
        if shared:
            return shared
    if len(others) == 1:
        return others
    if len(others) >= 2 and all(train_csv[c].isin(["0", "1"]).all() for c in others):
        return others
    raise ValueError(f"{path}: cannot tell which column holds the labels among {others}; set label_col=")


def _train_labels(train_csv: pd.DataFrame, columns: list[str], task: str, path: Path) -> tuple[list[str], str]:
    """(one label string per row, task): tags joined by TAG_SEP for multi-label."""
    if len(columns) > 1:  # 0/1 class columns
        bad = [c for c in columns if not train_csv[c].isin(["0", "1"]).all()]
        if bad:
            raise ValueError(f"{path}: class column(s) {summarize(bad)} hold values other than 0 and 1; set label_col= "
                             "to the one label column")
        if any(TAG_SEP in c for c in columns):
            raise ValueError(f"{path}: class names may not contain {TAG_SEP!r}: {summarize(columns)}")
        hot = train_csv[columns].to_numpy() == "1"
        task = task if task != "auto" else "single" if (hot.sum(1) == 1).all() else "multilabel"
        if task == "single" and (hot.sum(1) != 1).any():
            rows = [str(i + 2) for i in np.flatnonzero(hot.sum(1) != 1)]
            raise ValueError(f"{path}: task=single needs exactly one 1 per row; line(s) {summarize(rows)} differ")
        return [TAG_SEP.join(c for c, on in zip(columns, row) if on) for row in hot], task
    values = train_csv[columns[0]]
    tags = values.str.split()
    task = task if task != "auto" else _tags_or_names(values, path)
    if task == "single":
        return list(values), task
    return [TAG_SEP.join(t) for t in tags], task


def _tags_or_names(values: pd.Series, path: Path) -> str:
    """task=auto on a label column: multilabel where its values are sets of space-separated tags, single where
    each value is one whole class name, spaces and all ("Common Chickweed", "Loose Silky-bent").

    Tags show themselves by combining: some row's tags are a part of another row's ("clear primary" beside
    "clear primary water"), or there are more distinct values than distinct words (17 tags make hundreds of
    sets). Class names that hold spaces do neither: each value is one of a fixed set of whole strings.
    """
    sets = {frozenset(v.split()) for v in values.unique()}
    spaced = [s for s in sets if len(s) > 1]
    if not spaced:
        return "single"
    words = set().union(*sets)
    if len(sets) > len(words) or any(t < s for s in spaced for t in sets):
        return "multilabel"
    names = sorted(v for v in values.unique() if len(v.split()) > 1)
    log.info("%s: labels with spaces read as whole class names (%s); task=multilabel reads them as space-separated "
             "tags", path, summarize(names))
    return "single"


def _classes(labels: list[str], task: str, columns: list[str]) -> tuple[str, ...]:
    if len(columns) > 1:
        return tuple(sorted(columns, key=natural_key))
    found = {t for v in labels for t in (v.split(TAG_SEP) if task == "multilabel" else [v]) if t}
    return tuple(sorted(found, key=natural_key))


def _format(sample: pd.DataFrame | None, classes: tuple[str, ...], task: str, submission: str, top_k: int,
            header: tuple[str, ...], path: Path) -> tuple[str, tuple[str, ...], int]:
    """(submission format, header, k): from the sample's shape and values, or the submission= key."""
    fmt = submission if submission != "auto" else _detect_format(sample, classes, task, header, path)
    if fmt == "probs" and sample is not None and sample.shape[1] > 2:
        header = tuple(sample.columns)
    elif fmt == "probs":
        header = (header[0], *classes)
    else:
        header = header[:2]
    if fmt == "prob" and (task != "single" or len(classes) != 2):
        raise ValueError(f"submission=prob needs a single-label task with two classes; this one is {task} with "
                         f"{len(classes)}: set submission= to one of {', '.join(FORMATS)}")
    if fmt == "tags" and task != "multilabel" or fmt == "topk" and task != "single":
        raise ValueError(f"submission={fmt} does not fit a {task} task; set task= or submission=")
    spaced = [c for c in classes if any(ch.isspace() for ch in c)]
    if fmt in ("tags", "topk") and spaced:  # they would read back as two classes
        fix = ("submission=label (the one class a row that the sample's column holds)"
               if task == "single" and (sample is None or sample.shape[1] == 2) else "submission=probs")
        raise ValueError(f"submission={fmt} separates classes by spaces, and {summarize(spaced)} hold spaces; set "
                         f"{fix}")
    k = top_k or (max(len(v.split()) for v in sample.iloc[:, 1]) if sample is not None and fmt == "topk" else 5)
    return fmt, header, (k if fmt == "topk" else 0)


def _detect_format(sample: pd.DataFrame | None, classes: tuple[str, ...], task: str, header: tuple[str, ...],
                   path: Path) -> str:
    if sample is None:
        return "label" if task == "single" else "tags"
    if sample.shape[1] > 2:
        missing = summarize(sorted(set(classes) - set(sample.columns[1:]))) or "none"
        extra = summarize(sorted(set(sample.columns[1:]) - set(classes))) or "none"
        if missing != "none" or extra != "none":
            raise ValueError(f"{path}: its columns are not the classes of train.csv (missing {missing}; not classes "
                             f"{extra}); check the data, or set submission=")
        return "probs"
    values = sample.iloc[:, 1]
    if task == "multilabel":
        return "tags"
    if (values.str.split().str.len() > 1).any() and not values.isin(classes).all():
        return "topk"  # several classes a row; a placeholder that is one class with a space in its name is a label
    numbers = pd.to_numeric(values, errors="coerce")
    if len(classes) == 2 and numbers.notna().all():
        if (numbers != numbers.round()).any():
            return "prob"  # a placeholder like 0.5: a probability
        if set(classes) == {"0", "1"}:
            raise ValueError(f"{path}: its {header[1]} column holds whole numbers for a two-class task: the class "
                             "(submission=label) or the probability of class 1 (submission=prob)? Set submission=")
    return "label"


def _scan_csv(root: Path, id_col: str, label_col: str, task: str, submission: str, top_k: int) -> Layout:
    path = root / "train.csv"
    train_csv = _read_csv(path)
    sample_path = root / "sample_submission.csv"
    sample = _read_csv(sample_path) if sample_path.is_file() else None
    id_col = id_col or (sample.columns[0] if sample is not None else train_csv.columns[0])
    if id_col not in train_csv.columns:
        raise ValueError(f"{path}: missing column(s) {[id_col]} (has {list(train_csv.columns)}); "
                         "set id_col= and label_col= to the right names")
    columns = _label_columns(train_csv, sample, id_col, label_col, path)
    labels, task = _train_labels(train_csv, columns, task, path)
    empty = [i for i, (key, label) in enumerate(zip(train_csv[id_col], labels)) if key == "" or
             label == "" and task == "single"]
    if empty:
        rows = [str(i + 2) for i in empty]  # 1-based, after the header line
        raise ValueError(f"{path}: empty id or label in line(s) {summarize(rows)}")
    paths = _resolve_ids(root, root / "train", train_csv[id_col], str(path))
    _check_unique(train_csv[id_col], paths, labels, task, path)
    train = pd.DataFrame({"path": paths, "label": labels, "source": "train"})
    classes = _classes(labels, task, columns)
    test = _sample_test(root, sample, sample_path) if sample is not None else _flat_test(root)
    fmt, header, k = _format(sample, classes, task, submission, top_k,
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
