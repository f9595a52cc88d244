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
    levels: dict  # categorical column -> its categories (both sides' values, sorted): a bundle's test rows get these
    id_col: str  # the test file's id column

    def record(self) -> dict:
        """What a bundle needs to read its test rows' columns again (test_columns)."""
        return {"test_file": self.test_file, "id_col": self.id_col, "kinds": self.kinds, "levels": self.levels}


def _typed(values: pd.Series, kind: str, levels: list | None) -> pd.Series:
    values = values.replace("", None).reset_index(drop=True)
    return pd.to_numeric(values).astype(float) if kind == "numeric" else pd.Categorical(values, categories=levels)


def test_columns(root: Path, record: dict, ids: list[str]) -> pd.DataFrame:
    """The test rows' columns (`ids`, in order) of the test file as Tabular.record() describes them: the same
    columns, types and categories the learner was fitted with (a category the fit never saw reads as missing)."""
    path = Path(root) / record["test_file"]
    if not path.is_file():
        raise ValueError(f"{path}: the stack's test columns ({', '.join(record['kinds'])}) are read from this file, "
                         "as at export; point data= at a folder that has it")
    table, id_col = read_csv(path), record["id_col"]
    missing = [c for c in [id_col, *record["kinds"]] if c not in table.columns]
    lacking = sorted(set(ids) - set(table[id_col])) if id_col in table.columns else []
    if missing or lacking:
        what = f"no column(s) {', '.join(missing)}" if missing else f"no row for {summarize(lacking)}"
        raise ValueError(f"{path}: {what}; the stack was fitted with {', '.join(record['kinds'])} for every test id")
    table = table.drop_duplicates(id_col).set_index(id_col).loc[ids]
    return pd.DataFrame({c: _typed(table[c], kind, record["levels"].get(c)) for c, kind in record["kinds"].items()})


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
    levels = {c: sorted(set(table[c].replace("", None).dropna()) | set(test[c].replace("", None).dropna()))
              for c, kind in kinds.items() if kind == "categorical"}
    train_x = pd.DataFrame({c: _typed(table[c], kind, levels.get(c)) for c, kind in kinds.items()})
    test_x = pd.DataFrame({c: _typed(test[c], kind, levels.get(c)) for c, kind in kinds.items()})
    left = [c for c in names if c not in kinds]
    rel = path.relative_to(layout.root).as_posix()
    parts = [f"{len(cols)} {kind} ({summarize(cols)})" for kind in ("numeric", "categorical")
             if (cols := [c for c, k in kinds.items() if k == kind])]
    said = (f"tabular columns of {layout.label_file} and {rel}: {', '.join(parts)}"
            f"{f'; left out (text, ids or one value): {summarize(left)}' if left else ''}")
    return Tabular(train_x, test_x, kinds, rel, said, levels, layout.id_col)
