"""Find the images, labels and test ids in a data folder, whichever of the two layouts it uses.

Folder layout:     DATA/train/<class>/*   [DATA/val/<class>/*]   DATA/test/*
Kaggle CSV layout: DATA/train.csv (id, label)   DATA/train/   DATA/test/   DATA/sample_submission.csv

Nothing here writes; DATA may be read-only. Paths are kept relative to DATA (posix), so folds.csv
and its fingerprint do not depend on where DATA is mounted.
"""
from __future__ import annotations

import hashlib
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.io import IMAGE_EXTENSIONS, check_image, is_image_file

log = logging.getLogger(__name__)
SHOW = 5  # bad items named in a one-line error before "... and N more"


@dataclass(frozen=True)
class Layout:
    root: Path
    kind: str  # "folder" or "csv"
    classes: tuple[str, ...]  # natural order; index = model output
    train: pd.DataFrame  # path (relative to root), label (str), source ("train" or "val")
    test: pd.DataFrame  # id (as the submission writes it), path
    header: tuple[str, str]  # submission columns: id, label

    def fingerprint(self) -> str:
        """sha256 over every training file's path, size and label: cheap, and changes with the data."""
        h = hashlib.sha256()
        for path, label, source in self.train[["path", "label", "source"]].itertuples(index=False):
            h.update(f"{path}\t{(self.root / path).stat().st_size}\t{label}\t{source}\n".encode())
        return h.hexdigest()


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


def _scan_folder(root: Path, val_mode: str) -> Layout:
    rows = _class_folders(root, "train")
    if (root / "val").is_dir():
        rows += _class_folders(root, "val")
    train = pd.DataFrame(rows)
    classes = tuple(sorted(train["label"].unique(), key=natural_key))
    return Layout(root, "folder", classes, train, _flat_test(root), ("image_name", "pred_label"))


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


def _csv_columns(train_csv: pd.DataFrame, sample: pd.DataFrame | None, id_col: str, label_col: str, path: Path):
    header = list(sample.columns) if sample is not None else list(train_csv.columns)
    if len(header) < 2:
        raise ValueError(f"{path}: needs an id column and a label column, found {header}")
    id_col, label_col = id_col or header[0], label_col or header[1]
    missing = [c for c in (id_col, label_col) if c not in train_csv.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (has {list(train_csv.columns)}); "
                         "set id_col= and label_col= to the right names")
    return id_col, label_col


def _scan_csv(root: Path, id_col: str, label_col: str) -> Layout:
    train_csv = _read_csv(root / "train.csv")
    sample_path = root / "sample_submission.csv"
    sample = _read_csv(sample_path) if sample_path.is_file() else None
    id_col, label_col = _csv_columns(train_csv, sample, id_col, label_col, root / "train.csv")
    empty = train_csv.index[(train_csv[label_col] == "") | (train_csv[id_col] == "")]
    if len(empty):
        rows = [str(i + 2) for i in empty]  # 1-based, after the header line
        raise ValueError(f"{root / 'train.csv'}: empty id or label in line(s) {summarize(rows)}")
    paths = _resolve_ids(root, root / "train", train_csv[id_col], str(root / "train.csv"))
    train = pd.DataFrame({"path": paths, "label": train_csv[label_col].to_numpy(), "source": "train"})
    classes = tuple(sorted(train["label"].unique(), key=natural_key))
    test = _sample_test(root, sample, sample_path) if sample is not None else _flat_test(root)
    header = tuple(sample.columns) if sample is not None else (id_col, label_col)
    return Layout(root, "csv", classes, train, test, header)


def _sample_test(root: Path, sample: pd.DataFrame, sample_path: Path) -> pd.DataFrame:
    """The test set as sample_submission.csv lists it: its ids, in its order, each resolved in DATA/test."""
    if sample.shape[1] != 2:
        raise ValueError(f"{sample_path}: {sample.shape[1]} columns {list(sample.columns)}; "
                         "kit writes one id and one label column")
    test_ids = sample.iloc[:, 0]
    dup = sorted(set(test_ids[test_ids.duplicated()]))
    if dup:
        raise ValueError(f"{sample_path}: id(s) listed more than once: {summarize(dup)}; each test id needs one row")
    return pd.DataFrame({"id": test_ids.to_numpy(), "path": _resolve_ids(root, root / "test", test_ids, str(sample_path))})


def scan(data: str | Path, val_mode: str = "pool", id_col: str = "", label_col: str = "") -> Layout:
    """Detect the layout of `data` and list its images. Raises ValueError saying what is missing."""
    root = Path(data)
    if root.exists() and not root.is_dir():
        raise ValueError(f"data={root} is a file, not a folder; pass the folder that holds train/ (DATA=path)")
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist; pass DATA=path (or data=path), "
                         "or run `python -m kit demo-data` for the demo")
    if (root / "train.csv").is_file():
        layout = _scan_csv(root, id_col, label_col)
    elif (root / "train").is_dir():
        layout = _scan_folder(root, val_mode)
    else:
        raise ValueError(f"{root}: no train/<class>/ folders and no train.csv; see README 'Data layouts'")
    if layout.train.empty:
        where = root / "train.csv" if layout.kind == "csv" else root / "train"
        raise ValueError(f"{where}: no training images listed; add rows (id, label) or images")
    outside = [p for p in layout.train["path"] if not _inside(root, root / p)]
    outside += [p for p in layout.test["path"] if not _inside(root, root / p)]
    if outside:
        raise ValueError(f"image(s) point outside {root}: {summarize(outside)}; copy the files into the data folder")
    return layout


def scan_test(data: str | Path, kind: str, header: tuple[str, str], classes: tuple[str, ...], id_col: str = "",
              label_col: str = "") -> Layout:
    """The test images of `data` as a trained model's layout saw them, for inference without training data.

    With a training part in `data`, the full scan (whose classes must then match); without one, the
    test set alone: sample_submission.csv's ids (CSV layout; its header must match) or DATA/test/*.
    """
    root = Path(data)
    if (root / "train.csv").is_file() or (root / "train").is_dir():
        layout = scan(root, id_col=id_col, label_col=label_col)
        if layout.header != tuple(header):
            raise ValueError(f"{root}: submission header {list(layout.header)}, the model was trained for "
                             f"{list(header)}; point data= at the competition it was trained for")
        if layout.classes != tuple(classes):
            raise ValueError(f"{root} has {len(layout.classes)} classes ({summarize(list(layout.classes))}), the "
                             f"model {len(classes)} ({summarize(list(classes))}); point data= at the competition it "
                             "was trained for")
        return layout
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist; pass data= the folder that holds test/")
    sample_path = root / "sample_submission.csv"
    if kind == "csv" and sample_path.is_file():
        sample = _read_csv(sample_path)
        if tuple(sample.columns) != tuple(header):
            raise ValueError(f"{sample_path}: header {list(sample.columns)}, the model was trained for "
                             f"{list(header)}; point data= at the competition it was trained for")
        test = _sample_test(root, sample, sample_path)
    else:
        test = _flat_test(root)
    empty = pd.DataFrame({"path": pd.Series(dtype=str), "label": pd.Series(dtype=str), "source": pd.Series(dtype=str)})
    return Layout(root, kind, tuple(classes), empty, test, tuple(header))


def find_bad_images(root: Path, paths: list[str], max_pixels: int, workers: int = 8) -> list[str]:
    """Decode every image (threads: PIL releases the GIL) and return 'path (reason)' for each failure."""
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda p: check_image(root / p, max_pixels), paths))
    return [f"{p} ({r})" for p, r in zip(paths, reasons) if r is not None]


__all__ = ["Layout", "scan", "scan_test", "find_bad_images", "natural_key", "summarize", "IMAGE_EXTENSIONS"]
