"""The shape of a competition: its task and its submission format, read from the label file and the sample.

    task        single: one class per image (a label column, or one 0/1 column per class with a single 1 a row);
                multilabel: any number of tags (space-separated tags, or 0/1 columns); regression: a number
                to predict (a numeric label column ranked by RMSE or MAE, or holding fractions)
    submission  one of FORMATS, from sample_submission.csv's columns and placeholder values: label (the
                class), probs (a probability column per class), prob (two classes: the second's
                probability), tags (space-separated classes), topk (k classes, best first)

kit/data/layout.py finds the files; this module reads what they say. Each rule is a function of the
columns and values alone, so the keys task=, submission=, label_col= override exactly one decision.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SHOW = 5  # bad items named in a one-line error before "... and N more"
TAG_SEP = "|"  # between a multi-label image's tags in folds.csv (class names from 0/1 columns may hold spaces)
GENERIC = {"predicted", "prediction", "predictions", "expected", "label", "labels", "target", "category"}  # a sample's
# name for "the answer", whatever the label file calls it
RANKED = ("roc_auc", "log_loss")  # metrics that score a probability: a two-class competition ranked so wants one
FORMATS = {  # submission format -> what one row holds (and a Kaggle competition of that shape)
    "label": "the class (Dog vs cat folders, Cassava)",
    "probs": "one probability column per class (Dog Breed Identification, Plant Pathology 2020, RANZCR CLiP)",
    "prob": "the probability of the second class (Aerial Cactus, Histopathologic Cancer Detection)",
    "tags": "space-separated classes (Planet: Understanding the Amazon from Space, iMet)",
    "topk": "the k most likely classes, best first (Humpback Whale Identification)",
    "labelconf": "the class and its probability, space-separated (Google Landmark Recognition: `123 0.87`)",
    "value": "the predicted number (PetFinder Pawpularity)",
}
VALUE_METRICS = ("rmse", "mae")  # a competition ranked by one of these asks for a number, not a class
MAX_CLASS_VALUES = 10  # more distinct values than this, some fractions: a numeric label column is a number to predict


def natural_key(s: str):
    """'img10' after 'img9'; all-numeric labels sort as numbers ('2' < '10'), ties by the string."""
    parts = re.split(r"(\d+)", s)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts if p), s


def summarize(items: list[str]) -> str:
    more = f" ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
    return "; ".join(items[:SHOW]) + more


def label_columns(train_csv: pd.DataFrame, sample: pd.DataFrame | None, id_col: str, label_col: str,
                   path: Path) -> list[str]:
    """train.csv's label column (one name), or its 0/1 class columns (several)."""
    others = [c for c in train_csv.columns if c != id_col]
    if label_col or (sample is not None and sample.shape[1] == 2):
        asked = label_col or sample.columns[1]
        found = asked if asked in train_csv.columns else {c.lower(): c for c in train_csv.columns}.get(asked.lower())
        if found is None and not label_col and len(others) == 1 and (_related(asked, others[0]) or
                                                                       asked.lower() in GENERIC):
            found = others[0]  # the sample's `landmarks` where the label file's one other column is `landmark_id`;
            # its `Predicted` where that is `Target` (Human Protein Atlas)
        if found is None:  # the sample's `Label` is the label file's `label`
            raise ValueError(f"{path}: missing column(s) {[asked]} (has {list(train_csv.columns)}); "
                             "set id_col= and label_col= to the right names")
        return [found]
    if sample is not None:  # one column per class: those of train.csv are 0/1 class columns, or one holds the label
        shared = [c for c in sample.columns[1:] if c in train_csv.columns]
        if shared:
            return shared
        named = set(sample.columns[1:])  # Leaf's species among 192 features, State Farm's classname beside subject
        holds = [c for c in others if len(named) > 2 and train_csv[c].isin(named).all()]
        if len(holds) == 1:
            return holds
    if len(others) == 1:
        return others
    if len(others) >= 2 and all(train_csv[c].isin(["0", "1"]).all() for c in others):
        return others
    raise ValueError(f"{path}: cannot tell which column holds the labels among {others}; set label_col=")


def _related(a: str, b: str) -> bool:
    """Do two column names name the same thing: `landmarks` and `landmark_id` (a word of one, less a plural s, is
    a word of the other)?"""
    words = [{w.removesuffix("s") for w in re.split(r"[\W_]+", n.lower()) if w} - {"id"} for n in (a, b)]
    return bool(words[0] & words[1])


def train_labels(train_csv: pd.DataFrame, columns: list[str], task: str, path: Path,
                 known: frozenset[str] = frozenset(), metric: str = "") -> tuple[list[str], str]:
    """(one label string per row, task): tags joined by TAG_SEP for multi-label. `known`: class names the
    competition spells elsewhere (the sample's columns or its value), each a whole class; `metric`: the one it
    ranks by (a regression's says so)."""
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
    if task == "auto" and _a_number(values, metric):
        task = "regression"
    if task == "regression":
        wrong = ~np.isfinite(pd.to_numeric(values.str.strip(), errors="coerce"))  # text (NaN) or an infinity
        bad = [f"line {i + 2}: {v!r}" for i, v in zip(np.flatnonzero(wrong), values[wrong])]
        if bad:
            raise ValueError(f"{path}: task=regression needs a number in {columns[0]} on every row: {summarize(bad)}")
        return list(values.str.strip()), task
    tags = values.str.split()
    task = task if task != "auto" else tags_or_names(values, path, known)
    if task == "single":
        return list(values), task
    return [TAG_SEP.join(t) for t in tags], task


def _a_number(values: pd.Series, metric: str) -> bool:
    """Is a label column a number to predict: all numbers, and the competition ranks by a regression metric, or
    the column holds fractions among more distinct values than classes would have (a whole-number column without a
    metric stays classes: digits, grades, landmark ids; task=regression reads it as a number)."""
    numbers = pd.to_numeric(values, errors="coerce")
    if values.empty or numbers.isna().any():
        return False
    return metric in VALUE_METRICS or bool((numbers != numbers.round()).any() and
                                           numbers.nunique() > MAX_CLASS_VALUES)


def tags_or_names(values: pd.Series, path: Path, known: frozenset[str] = frozenset()) -> str:
    """task=auto on a label column: multilabel where its values are sets of space-separated tags, single where
    each value is one whole class name, spaces and all ("Common Chickweed", "Wild Cat" beside "Cat").

    Spaces alone never make tags. Where every value is a class the competition names elsewhere (`known`), each
    is one class. Else tags show themselves by combining: more distinct values than distinct words (17 tags
    make hundreds of sets), or a value that is another plus words that also stand with others ("clear
    primary" + "water" beside "haze water"). Class names that share a word do neither: "Wild Cat" is "Cat"
    plus a word found nowhere else.
    """
    distinct = values.unique()
    sets = {frozenset(v.split()) for v in distinct}
    spaced = [s for s in sets if len(s) > 1]
    if not spaced or known and all(v in known for v in distinct):
        return "single"
    words = set().union(*sets)
    if len(sets) > len(words) or any(_recombines(t, s, sets) for s in spaced for t in sets if t < s):
        return "multilabel"
    names = sorted(v for v in distinct if len(v.split()) > 1)
    log.info("%s: labels with spaces read as whole class names (%s); task=multilabel reads them as space-separated "
             "tags", path, summarize(names))
    return "single"


def _recombines(part: frozenset, whole: frozenset, sets: set[frozenset]) -> bool:
    """Do the words `whole` adds to `part` also appear in a value that is neither?"""
    extra = whole - part
    return any(extra & s for s in sets if s not in (part, whole))


def classes_of(labels: list[str], task: str, columns: list[str]) -> tuple[str, ...]:
    """The model's outputs, named: the classes in natural order, or a regression's one, its column."""
    if task == "regression":
        return (columns[0],)
    if len(columns) > 1:
        return tuple(sorted(columns, key=natural_key))
    found = {t for v in labels for t in (v.split(TAG_SEP) if task == "multilabel" else [v]) if t}
    return tuple(sorted(found, key=natural_key))


def submission_format(sample: pd.DataFrame | None, classes: tuple[str, ...], task: str, submission: str, top_k: int,
                      header: tuple[str, ...], path: Path, metric: str = "") -> tuple[str, tuple[str, ...], int]:
    """(submission format, header, k): from the sample's shape and values (and the metric the competition ranks by,
    where they fit two), or the submission= key."""
    fmt = submission if submission != "auto" else detect_format(sample, classes, task, header, path, metric)
    if fmt == "probs" and sample is not None and sample.shape[1] > 2:
        header = tuple(sample.columns)
    elif fmt == "probs":
        header = (header[0], *classes)
    else:
        header = header[:2]
    if fmt == "prob" and (task != "single" or len(classes) != 2):
        raise ValueError(f"submission=prob needs a single-label task with two classes; this one is {task} with "
                         f"{len(classes)}: set submission= to one of {', '.join(FORMATS)}")
    if (fmt == "value") != (task == "regression"):
        fix = "task=regression and submission=value" if fmt == "value" else "submission= to another format"
        raise ValueError(f"submission={fmt} does not fit a {task} task; set {fix}")
    if fmt == "tags" and task != "multilabel" or fmt == "topk" and task != "single":
        raise ValueError(f"submission={fmt} does not fit a {task} task; set task= or submission=")
    spaced = [c for c in classes if any(ch.isspace() for ch in c)]
    if fmt == "labelconf" and task != "single":
        raise ValueError(f"submission=labelconf does not fit a {task} task; set task= or submission=")
    if fmt in ("tags", "topk", "labelconf") and spaced:  # they would read back as two classes
        fix = ("submission=label (the one class a row that the sample's column holds)"
               if task == "single" and (sample is None or sample.shape[1] == 2) else "submission=probs")
        raise ValueError(f"submission={fmt} separates classes by spaces, and {summarize(spaced)} hold spaces; set "
                         f"{fix}")
    k = top_k or (max(len(v.split()) for v in sample.iloc[:, 1]) if sample is not None and fmt == "topk" else 5)
    return fmt, header, (k if fmt == "topk" else 0)


def _label_confidence(values: pd.Series) -> bool:
    """Every value two words, the second a decimal fraction from 0 to 1 (`123 0.5`)."""
    parts = values.str.split()
    if values.empty or not (parts.str.len() == 2).all():
        return False
    conf = pd.to_numeric(parts.str[1], errors="coerce")
    return bool(conf.notna().all() and conf.between(0, 1).all() and parts.str[1].str.contains(".", regex=False).all())


def detect_format(sample: pd.DataFrame | None, classes: tuple[str, ...], task: str, header: tuple[str, ...],
                  path: Path, metric: str = "") -> str:
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
    if task == "regression":
        return "value"
    if _label_confidence(values) and metric in ("", "gap"):
        return "labelconf"  # `1 1.0`: a class and a confidence (Landmark Recognition)
    spaced = any(any(ch.isspace() for ch in c) for c in classes)
    if (values.str.split().str.len() > 1).any() and not values.isin(classes).all() and not spaced:
        # several classes a row. Not where class names hold spaces (Plant Seedlings' folders): there a placeholder
        # with a space is one class name, a class of the real data the folders at hand may lack
        return "topk"
    numbers = pd.to_numeric(values, errors="coerce")
    if len(classes) == 2 and numbers.notna().all():
        if (numbers != numbers.round()).any():
            return "prob"  # a placeholder like 0.5: a probability
        if set(classes) == {"0", "1"} and metric in RANKED:
            return "prob"  # a 0 placeholder where the competition ranks by AUC or log loss (Histopathologic, ISIC)
        if set(classes) == {"0", "1"} and metric not in ("accuracy", "balanced_accuracy", "f1_macro", "f1_micro", "qwk"):
            raise ValueError(f"{path}: its {header[1]} column holds whole numbers for a two-class task: the class "
                             "(submission=label) or the probability of class 1 (submission=prob)? Set submission=")
    return "label"
