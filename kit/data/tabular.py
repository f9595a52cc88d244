"""The tabular columns a competition ships beside its images, for `kit stack` (kit/predict/stack.py).

    tab = tabular.find(layout)      # None where there are none; tab.said is the one line that names them

A column is used where the label file and a test file both have it (so nothing only the training rows
know, such as a diagnosis that restates the target, can leak in), it is not the id, a label or the
group column, and it holds more than one value: numeric where every non-empty value reads as a
number (empty ones left missing), categorical where it has at most MAX_LEVELS values repeating
(site, sex, a camera), and left out as free text or another id otherwise (or as one value everywhere).
The test file is the CSV of the data folder (a name with "test" first), other than the label file, the
sample and a local solution.csv, whose id column holds every test id.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.data.discover import read_csv
from kit.data.layout import Layout
from kit.data.shapes import summarize

MAX_LEVELS = 50  # a categorical column's values at most; more are names or ids, not categories


@dataclass
class Tabular:
    train: pd.DataFrame  # one row per layout.train row, in its order: numeric columns float, categorical category
    test: pd.DataFrame  # one row per layout.test row, the same columns and categories
    kinds: dict  # column -> "numeric" or "categorical"
    test_file: str  # relative to the data folder
    said: str


def _kind(train: pd.Series, test: pd.Series) -> str:
    """numeric, categorical, or "" (leave it out) for one column, from both sides' values."""
    both = pd.concat([train, test], ignore_index=True)
    filled = both[both != ""]
    if filled.nunique() < 2:
        return ""
    if pd.to_numeric(filled, errors="coerce").notna().all():
        return "numeric"
    levels = filled.nunique()
    return "categorical" if levels <= MAX_LEVELS and levels < len(filled) / 2 else ""


def _test_file(layout: Layout) -> tuple[Path, pd.DataFrame] | None:
    """The CSV beside the label file whose id column holds every test id (test.csv, test-metadata.csv)."""
    wanted = set(layout.test["id"].astype(str))
    found = sorted(layout.root.rglob("*.csv"), key=lambda p: ("test" not in p.name.lower(), p))  # test*.csv first
    for path in found:
        rel = path.relative_to(layout.root).as_posix()
        if rel == layout.label_file or path.name.startswith(("sample", "solution")) or rel.startswith("kit-"):
            continue  # the labels, the sample's placeholders, a local solution's answers, the kit's own files
        if layout.id_col not in pd.read_csv(path, nrows=0).columns:  # the header alone: a pixel CSV is large
            continue
        table = read_csv(path)
        if wanted <= set(table[layout.id_col]):
            return path, table
    return None


def find(layout: Layout) -> Tabular | None:
    """The competition's tabular columns for the training and test rows, or None where it has none."""
    if layout.train_ids is None or not layout.label_file.lower().endswith(".csv") or not len(layout.test):
        return None  # labels from folders, file names or a JSON's annotations: no columns to read back
    found = _test_file(layout)
    if found is None:
        return None
    path, test = found
    test = test.drop_duplicates(layout.id_col).set_index(layout.id_col).loc[layout.test["id"].astype(str)]
    # the label file read here, not kept by every scan: its rows of train's images, in train's order
    table = read_csv(layout.root / layout.label_file).drop_duplicates(layout.id_col).set_index(layout.id_col)
    table = table.loc[layout.train_ids].reset_index(drop=True)
    skip = {layout.id_col, *layout.label_cols, layout.group}
    names = [c for c in table.columns if c in test.columns and c not in skip]
    kinds = {c: k for c in names if (k := _kind(table[c], test[c]))}
    if not kinds:
        return None
    train_x, test_x = pd.DataFrame(index=table.index), pd.DataFrame(index=range(len(test)))
    for c, kind in kinds.items():
        a, b = table[c].replace("", None), test[c].replace("", None).reset_index(drop=True)
        if kind == "numeric":
            train_x[c], test_x[c] = pd.to_numeric(a).astype(float), pd.to_numeric(b).astype(float)
        else:
            levels = sorted(set(a.dropna()) | set(b.dropna()))
            train_x[c] = pd.Categorical(a, categories=levels)
            test_x[c] = pd.Categorical(b, categories=levels)
    left = [c for c in names if c not in kinds]
    rel = path.relative_to(layout.root).as_posix()
    parts = [f"{len(cols)} {kind} ({summarize(cols)})" for kind in ("numeric", "categorical")
             if (cols := [c for c, k in kinds.items() if k == kind])]
    said = (f"tabular columns of {layout.label_file} and {rel}: {', '.join(parts)}"
            f"{f'; left out (text, ids or one value): {summarize(left)}' if left else ''}")
    return Tabular(train_x, test_x, kinds, rel, said)
