"""Where a data folder keeps its labels, images and test ids, found by a table of rules read in order.

A Kaggle download is laid out as its competition chose (13 real layouts in tests/downloads.py); these
rules find each one's parts without a key, and name the key when two readings fit.

    part         rule (first that applies)                                           key that decides instead
    sample       the CSV named like sample_submission (sampleSubmission.csv, *_v2.csv): sample_csv=
                 the authority on the test ids, their spelling and the columns to write
    images       every image file under DATA, any depth (.jpg .png .tif ...), and every  images= (one folder)
                 image inside an HDF5 file (<file>.hdf5/<key>: kit/hdf5.py), known by
                 path, name and stem; an id names the one file of that path, name or
                 stem on its own side, and the greyscale files of one id's stains
                 (<id>_red, _green, _blue and _yellow: Human Protein Atlas) as one
                 image of a channel each (kit/io.py: stacked); a training id never names a file in a test*
                 folder, nor a test id one in a train* folder (Invasive Species has
                 train/1.jpg and test/1.jpg); the one in a folder named like its side
                 when two share it
    label file   the CSV whose id column names training images (train.csv, labels.csv,  train_csv=, id_col=
                 train_labels.csv, train_v2.csv), not the sample, not test*.csv; or a
                 COCO-style JSON of images, annotations and categories (iWildCam,
                 Herbarium: kit/data/annotations.py); among several, the one holding
                 the sample's columns, then one row per id
    labels       label_col=, else the column(s) the sample asks for (ISIC: target, not  label_col=
                 diagnosis), else the one column whose values are the sample's class
                 columns (Leaf's species, State Farm's classname), else the one other
                 column, else 0/1 class columns; a JSON's category as the sample spells
                 it (its id where the sample's values are numbers, else its name)
    pixels       a CSV of pixel0..pixelN columns (Digit Recognizer): written once as
                 images into DATA/kit-pixels/, then read by the rules above
    bands        a JSON list of records of band_1, band_2 in dB (Statoil/C-CORE Iceberg):
                 written once as RGB images into DATA/kit-bands/ with a train.csv
                 (kit/data/bands.py), then read by the rules above
    folders      no label file: DATA/train/<class>/<image> (and DATA/val/<class>/)
    file names   no label file, no class folders: train images named <class>.<n>.<ext>
                 (cat.0.jpg, dog.12.jpg)
    test         the sample's ids (or, where they name no file, the file a JSON list of
                 the test images gives each: Herbarium's test_metadata.json), else the
                 images of folders named test* (test/, test_images/)
    group        a label-file column named patient_id, PatientID, patient, subject_id   group= (a column, or none)
                 or location (a camera trap's) whose values repeat: folds keep each
                 group whole
    passed over  DICOM, TFRecords, and the CSVs and JSONs no rule uses: one line

Nothing here writes but the pixel rule. Paths are relative to DATA (posix).
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from kit import hdf5
from kit.data.annotations import label_table
from kit.data.bands import BANDS_DIR
from kit.data.shapes import summarize
from kit.io import atomic_write_text, is_image_file

log = logging.getLogger(__name__)

SAMPLE = re.compile(r"sample.?submission", re.IGNORECASE)
GROUP_NAMES = ("patientid", "patient", "subjectid", "subject", "location")  # a column's name, lower case, without _ - or space
NAMED_LABEL = re.compile(r"^(?P<label>[A-Za-z][A-Za-z _-]*?)[._-]\d+$")  # cat.0, dog.12
PIXEL = re.compile(r"^pixel\d+$")
PIXELS_DIR = "kit-pixels"
STAINS = ("red", "green", "blue", "yellow")  # channel files of one image, in the order the model sees them
STAIN = re.compile(rf"^(?P<base>.+)_(?P<stain>{'|'.join(STAINS)})$", re.IGNORECASE)
KINDS = {".dcm": "DICOM", ".tfrec": "TFRecord", ".tfrecord": "TFRecord", ".tfrecords": "TFRecord",
         ".npy": "NumPy", ".txt": "text"}
MAX_DEPTH = 2  # CSVs are looked for at DATA/*.csv and one folder down


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None


def _side(path: str, side: str) -> int:
    """2: a folder on the path is named like `side` (train, test); 0: like the other side; 1: neither."""
    folders = [p.lower() for p in path.split("/")[:-1]]
    other = "test" if side == "train" else "train"
    return 2 if any(side in f for f in folders) else 0 if any(other in f for f in folders) else 1


def _in_hdf5(path: str) -> bool:
    return PurePosixPath(path).parent.suffix.lower() in hdf5.SUFFIXES


class Images:
    """Every image file under a folder, by name and by stem; and the other files, by kind, for one line."""

    def __init__(self, root: Path, under: str = ""):
        self.root, self.by_name, self.by_stem, self.by_path = root, {}, {}, {}
        self.folders: Counter = Counter()
        self.passed: Counter = Counter()
        self.csvs: list[Path] = []
        self.jsons: list[Path] = []  # label files and test lists in JSON (kit/data/annotations.py)
        self.deep_jsons: list[Path] = []  # further down: only the band rule reads them (kit/data/bands.py)
        self.read: set[Path | None] = set()  # JSONs a rule read beside the label file (a test list)
        under = under.strip("/")
        if under and not (root / under).is_dir():
            raise ValueError(f"images={under}: {root / under} is not a folder; name a folder inside {root}")
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            depth = 0 if rel == "." else rel.count("/") + 1
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(name)
                if is_image_file(path) and (not under or prefix.startswith(under + "/")):
                    self._add(prefix, name)
                    self.folders[rel] += 1
                elif path.suffix.lower() in hdf5.SUFFIXES and (not under or (prefix + name).startswith(under)):
                    for key in hdf5.keys(Path(dirpath) / name):  # each image inside, named <file>.hdf5/<key>
                        self._add(f"{prefix}{name}/", key)
                    self.folders[prefix + name] += 1
                elif path.suffix.lower() == ".csv":
                    if depth < MAX_DEPTH and rel.split("/")[0] != PIXELS_DIR or rel == PIXELS_DIR:
                        self.csvs.append(Path(dirpath) / name)
                elif path.suffix.lower() == ".json":
                    if rel.split("/")[0] in (PIXELS_DIR, BANDS_DIR) or name == "competition.json":
                        continue
                    (self.jsons if depth < MAX_DEPTH else self.deep_jsons).append(Path(dirpath) / name)
                elif path.suffix.lower() not in (".zip", ".7z", ".tar", ".gz", ".tgz") and \
                        rel.split("/")[0] not in (PIXELS_DIR, BANDS_DIR):
                    self.passed[KINDS.get(path.suffix.lower(), "other")] += 1
        self.csvs.sort()
        self.jsons.sort()
        self._stack()

    def _stack(self) -> None:
        """Each id's stain files (x_red.png, x_green.png, x_blue.png[, x_yellow.png]) also as one image of a channel
        each, named x_{red,green,blue,yellow}.png and found by its id, x (kit/io.py: stacked)."""
        stains: dict[tuple[str, str, str], dict[str, str]] = {}
        for paths in self.by_stem.values():
            for path in paths:
                folder, _, name = path.rpartition("/")
                stem, ext = os.path.splitext(name)
                found = STAIN.match(stem)
                if found and not _in_hdf5(path):
                    stains.setdefault((folder, found["base"], ext), {})[found["stain"].lower()] = found["stain"]
        for (folder, base, ext), spelt in stains.items():
            if {"red", "green", "blue"} <= set(spelt):
                names = ",".join(spelt[s] for s in STAINS if s in spelt)
                prefix = f"{folder}/" if folder else ""
                path = f"{prefix}{base}_{{{names}}}{ext}"
                self.by_stem.setdefault(base, []).append(path)
                self.by_path[path] = self.by_path[prefix + base] = path

    def _add(self, prefix: str, name: str) -> None:
        stem = Path(name).stem if is_image_file(Path(name)) else name  # an HDF5 key is a name without extension
        self.by_name.setdefault(name, []).append(prefix + name)
        if stem != name:
            self.by_stem.setdefault(stem, []).append(prefix + name)
        self.by_path[prefix + name] = self.by_path[prefix + stem] = prefix + name

    def candidates(self, key: str) -> list[str]:
        if "/" in key:  # an id written as a path under DATA (train/a0.jpg, ./train/a0)
            path = self.by_path.get(key.removeprefix("./"))
            return [path] if path else []
        named = self.by_name.get(key) or []
        if named and all(_in_hdf5(p) for p in named):  # an HDF5 key and a file's stem alike: both, the file preferred
            return named + self.by_stem.get(key, [])
        return named or self.by_stem.get(key) or []

    def find(self, key: str, side: str) -> tuple[str | None, list[str]]:
        """(the one path `key` names on `side`, or None; the paths it could name when that is not one). A path on
        the other side is never taken: train and test share file names (train/3.jpg, test/3.jpg)."""
        found = [p for p in self.candidates(key) if _side(p, side) > 0]
        if len(found) > 1 and any(_in_hdf5(p) for p in found):  # ISIC 2024: train-image/ and train-image.hdf5 alike
            found = [p for p in found if not _in_hdf5(p)] or found
        if len(found) == 1:
            return found[0], found
        if not found:
            return None, found
        best = max(_side(p, side) for p in found)
        top = [p for p in found if _side(p, side) == best]
        return (top[0] if len(top) == 1 else None), top

    def matches(self, ids, side: str) -> int:
        """How many ids name an image on their side (a label file's ids are not test images)."""
        return sum(self.find(i, side)[0] is not None for i in ids)

    def resolve(self, ids: pd.Series, side: str, what: str, may_lack: float = 0.0) -> list[str | None]:
        """The path each id names; None for an id without an image where at most a `may_lack` share of them lack
        one (a training image lost from a download, said in one line by the caller); more is refused."""
        paths, missing, twice = [], [], []
        for i in ids:
            path, found = self.find(i, side)
            if path is None:
                (twice if found else missing).append(f"{i} ({' or '.join(found[:2])})" if found else i)
            paths.append(path)
        if twice:
            raise ValueError(f"{what}: id(s) name more than one image: {summarize(twice)}; set images= to the folder "
                             "that holds the right ones")
        if len(missing) > int(may_lack * len(ids)):
            where = ", ".join(sorted({f or "." for f in self.folders})[:3]) or "no image folder"
            raise ValueError(f"{what}: {len(missing)} id(s) have no image in {self.root} (images in {where}): "
                             f"{summarize(missing)}")
        return paths

    def describe(self, paths) -> str:
        """'21 in train_images/' or '10 in images/, 3 in extra/': where the given images lie."""
        where = Counter(p.rsplit("/", 1)[0] + "/" if "/" in p else "./" for p in paths)
        shown = ", ".join(f"{n} in {w}" for w, n in where.most_common(3))
        return shown + (f" and {len(where) - 3} more folders" if len(where) > 3 else "")  # Landmark's thousands


def find_sample(root: Path, csvs: list[Path], name: str = "") -> Path | None:
    if name:
        path = root / name
        if not path.is_file():
            raise ValueError(f"sample_csv={name}: {path} not found")
        return path
    found = [p for p in csvs if SAMPLE.search(p.name) and p.parent.name != PIXELS_DIR]
    if len(found) > 1:
        top = [p for p in found if p.parent == root]
        if len(top) != 1:
            named = ", ".join(p.relative_to(root).as_posix() for p in found)
            raise ValueError(f"{root}: several sample submissions ({named}); set sample_csv= to the one to follow")
        found = top
    return found[0] if found else None


def _id_column(table: pd.DataFrame, images: Images, preferred: list[str]) -> tuple[str, int]:
    """(the column whose values name the most training images, how many)."""
    best = ("", 0)
    for col in dict.fromkeys(preferred + list(table.columns)):
        if col not in table.columns:
            continue
        n = images.matches(table[col].head(200), "train")  # a sample of rows decides the column
        if n > best[1]:
            best = (col, n)
        if n == min(len(table), 200):
            break
    if best[0]:
        return best[0], images.matches(table[best[0]], "train")
    return best


def _asks_for(table: pd.DataFrame, sample: pd.DataFrame | None) -> bool:
    """Does the label file hold what the sample asks for (its columns, or for a class-per-column sample the class
    names as values)?"""
    if sample is None:
        return False
    lower = {c.lower() for c in table.columns}
    wanted = [c for c in sample.columns[1:]]
    if all(c.lower() in lower for c in wanted):
        return True
    if len(wanted) > 2:  # one column per class: a column whose values are those classes
        names = set(wanted)
        return any(table[c].isin(names).mean() > 0.9 for c in table.columns)
    return False


def find_label_file(root: Path, images: Images, sample: Path | None, sample_table, train_csv: str, id_col: str,
                    said: list[str]) -> tuple[Path, pd.DataFrame, str] | None:
    """The label file and its id column (see the rules), or None when no CSV names training images."""
    preferred = [id_col] if id_col else ([sample_table.columns[0]] if sample_table is not None else [])
    if train_csv:
        path = root / train_csv
        if not path.is_file():
            raise ValueError(f"train_csv={train_csv}: {path} not found")
        table = read_csv(path) if path.suffix.lower() == ".csv" else label_table(path, sample_table)
        if table is None:
            raise ValueError(f"train_csv={train_csv}: {path} is no label file (a CSV, or COCO-style JSON annotations)")
        col, _ = _id_column(table, images, preferred)
        if id_col and id_col not in table.columns:
            raise ValueError(f"{path}: missing column(s) {[id_col]} (has {list(table.columns)}); set id_col= and "
                             "label_col= to the right names")
        return path, table, id_col or col or table.columns[0]
    ranked = []
    for path in images.csvs + images.jsons:
        if path == sample or path.name.lower().startswith("test") or path.parent.name == PIXELS_DIR and \
                not path.name.startswith("train"):
            continue
        table = read_csv(path) if path.suffix.lower() == ".csv" else label_table(path, sample_table)
        if table is None or table.empty or len(table.columns) < 2:
            continue
        col, n = _id_column(table, images, preferred)
        if id_col and id_col in table.columns:
            col, n = id_col, images.matches(table[id_col], "train")
        if not col or n < len(table) / 2:
            continue
        unique = not table[col].duplicated().any()
        ranked.append(((_asks_for(table, sample_table), unique, n), path, table, col))
    if not ranked:
        return None
    ranked.sort(key=lambda r: r[0], reverse=True)
    if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
        both = " and ".join(r[1].relative_to(root).as_posix() for r in ranked[:2])
        raise ValueError(f"{root}: {both} both list the training images; set train_csv= to the label file")
    for _, path, _, _ in ranked[1:]:
        said.append(f"{path.relative_to(root).as_posix()} also names training images; {ranked[0][1].name} "
                    "holds what the sample asks for (train_csv= picks another)")
    return ranked[0][1], ranked[0][2], ranked[0][3]


def find_group(table: pd.DataFrame | None, key: str, where: Path | None) -> str:
    """The group column: group= names it (none: no grouping), else one named like a patient whose values repeat."""
    if key == "none":
        return ""
    if key != "auto":
        if table is None or key not in table.columns:
            has = list(table.columns) if table is not None else "no label file"
            raise ValueError(f"group={key}: no such column in {where or 'the data'} (has {has}); name one of its "
                             "columns, or group=none")
        return key
    if table is None:
        return ""
    for col in table.columns:
        if re.sub(r"[\s_-]", "", col.lower()) in GROUP_NAMES and table[col].duplicated().any():
            return col
    return ""


def pixels_to_images(root: Path, csvs: list[Path], sample: Path | None) -> bool:
    """A pixel CSV (pixel0..pixelN columns) becomes one PNG per row in DATA/kit-pixels/<train|test>/, once; the
    train rows get a label file there (id, the original label column). Returns whether there were any."""
    pixel = {p: cols for p in csvs if p.parent == root
             for cols in [list(pd.read_csv(p, nrows=0).columns)] if sum(bool(PIXEL.match(c)) for c in cols) >= 64}
    if not pixel:
        return False
    out = root / PIXELS_DIR
    stamp = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in pixel}
    done = out / "done.json"
    if done.is_file() and json.loads(done.read_text()) == stamp:
        return True
    sample_ids = read_csv(sample).iloc[:, 0] if sample is not None else None
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise ValueError(f"{root} is read-only ({e.strerror}): its pixel CSVs become images in {out}; copy the data "
                         "folder somewhere writable") from None
    from PIL import Image
    for path, cols in pixel.items():
        table = pd.read_csv(path)
        pix = [c for c in cols if PIXEL.match(c)]
        side = "test" if path.name.lower().startswith("test") else "train"
        arr = table[pix].to_numpy()
        n = len(pix)
        channels = 3 if n % 3 == 0 and int(round((n / 3) ** 0.5)) ** 2 == n // 3 else 1
        size = int(round((n / channels) ** 0.5))
        if size * size * channels != n:
            raise ValueError(f"{path}: {n} pixel columns make no square image; convert it to image files yourself")
        if side == "test" and sample_ids is not None and len(sample_ids) == len(table):
            ids = list(sample_ids)  # Digit Recognizer's ImageId: the row number from 1
        else:
            ids = [f"{side}_{i}" for i in range(len(table))]
        folder = out / side
        folder.mkdir(exist_ok=True)
        for key, row in zip(ids, arr):
            img = np.clip(row, 0, 255).astype(np.uint8).reshape(size, size, channels).squeeze()
            Image.fromarray(img).save(folder / f"{key}.png")
        if side == "train":
            rest = [c for c in table.columns if c not in pix]
            labels = table[rest].astype(str).assign(**{"id": ids})[["id", *rest]]
            atomic_write_text(out / "train.csv", labels.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(done, json.dumps(stamp) + "\n")
    log.info("%s: %s written as images into %s (once)", root, " and ".join(p.name for p in pixel), out)
    return True


def label_from_names(images: Images) -> tuple[list[str], list[str]] | None:
    """(paths, labels) where the training images' names carry their labels (cat.0.jpg), else None."""
    paths = sorted(p for ps in images.by_name.values() for p in ps if _side(p, "train") == 2)
    if not paths:
        return None
    labels = []
    for p in paths:
        m = NAMED_LABEL.match(Path(p).stem)
        if not m:
            return None
        labels.append(m.group("label"))
    return (paths, labels) if 2 <= len(set(labels)) <= len(labels) / 2 else None


def passed_over(images: Images, used: set[Path]) -> str:
    """One line: what the kit cannot read or does not need, passed over."""
    kinds = [f"{n} {kind}" for kind, n in images.passed.most_common() if kind != "other"]
    other = images.passed.get("other", 0)
    done = images.root / PIXELS_DIR / "done.json"  # the pixel CSVs it was made from were read
    read = set(json.loads(done.read_text())) if done.is_file() else set()
    banded = images.root / BANDS_DIR / "done.json"  # the band files it was made from were read
    read |= set(json.loads(banded.read_text())["files"]) if banded.is_file() else set()
    csvs = [p.relative_to(images.root).as_posix() for p in images.csvs + images.jsons + images.deep_jsons
            if p not in used | images.read and p.parent.name not in (PIXELS_DIR, BANDS_DIR) and
            not (p.parent == images.root and p.name in read) and p.relative_to(images.root).as_posix() not in read]
    parts = kinds + ([f"{other} other file(s)"] if other else []) + ([", ".join(csvs)] if csvs else [])
    return f"passed over: {'; '.join(parts)}" if parts else ""
