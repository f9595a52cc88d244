"""Submission formats: a test set's probabilities as the rows a competition wants, checked, and read back.

    label   the class                       probs   one probability column per class (named by class)
    prob    P(second of two classes)        tags    space-separated classes at or above their thresholds
    topk    the top_k classes, best first   labelconf  the class and its probability (`123 0.87`)
    value   a regression's predicted number

kit/data/layout.py detects the format of a data set (FORMATS there); kit/board/submission.py writes the file;
leaderboard.py reads a submission back (`read`) to score it against a solution file.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kit.data.layout import Layout, summarize
from kit.metrics import clip_probs, decide


def table(layout: Layout, probs: np.ndarray, thresholds=0.5, blank_below: float = 0.0) -> pd.DataFrame:
    """One row per test image in the sample's order: its id and, in the layout's submission format, what the
    probabilities (N, classes) say: the top class, each probability, the tags at or above their thresholds (at
    least the most likely one), the top_k classes, the top class and its confidence (left blank below
    blank_below: Global Average Precision's rule for an image of no class), or a regression's value."""
    classes, fmt, header = np.asarray(layout.classes, dtype=object), layout.submission, layout.header
    out = pd.DataFrame({header[0]: layout.test["id"].to_numpy()})
    if fmt == "label":
        out[header[1]] = classes[probs.argmax(1)]
    elif fmt == "prob":
        out[header[1]] = clip_probs(probs, True)[:, 1]
    elif fmt == "probs":
        p, index = clip_probs(probs, layout.task == "single"), {c: i for i, c in enumerate(layout.classes)}
        for c in header[1:]:
            out[c] = p[:, index[c]]
    elif fmt == "tags":
        chosen = decide(probs, thresholds)  # every image gets its most likely tag at least
        out[header[1]] = [" ".join(classes[row == 1]) for row in chosen]
    elif fmt == "value":  # a regression's predictions (N, 1): the number itself
        out[header[1]] = np.round(probs[:, 0].astype(np.float64), 6)
    elif fmt == "labelconf":  # the confidence as a probability of the single-label softmax
        p = clip_probs(probs, True)
        out[header[1]] = [f"{c} {v:.6f}" if v >= blank_below else "" for c, v in zip(classes[p.argmax(1)], p.max(1))]
    else:  # topk
        top = np.argsort(-probs, axis=1, kind="stable")[:, :layout.top_k]
        out[header[1]] = [" ".join(row) for row in classes[top]]
    return out


def to_bytes(sub: pd.DataFrame, layout: Layout) -> bytes:
    """The CSV as written, checked first against what the competition expects."""
    check(sub, layout.test["id"], list(layout.classes), layout.header, layout.submission, layout.top_k)
    return sub.to_csv(index=False, lineterminator="\n").encode()


def check(sub: pd.DataFrame, expected_ids: pd.Series, classes: list[str], header: tuple, fmt: str = "label",
          top_k: int = 0) -> None:
    """Raise ValueError unless sub is exactly what the competition expects."""
    if tuple(sub.columns) != tuple(header):
        raise ValueError(f"submission header {list(sub.columns)} != expected {list(header)}")
    ids = sub.iloc[:, 0].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"submission repeats ids: {summarize(sorted(set(ids[ids.duplicated()])))}")
    if list(ids) != list(expected_ids.astype(str)):
        missing = sorted(set(expected_ids) - set(ids))
        extra = sorted(set(ids) - set(expected_ids))
        raise ValueError(f"submission ids differ from the test set: missing {summarize(missing) or 'none'}, "
                         f"extra {summarize(extra) or 'none'} (or out of order)")
    if fmt == "value":
        values = pd.to_numeric(sub.iloc[:, 1], errors="coerce")
        if values.isna().any() or not np.isfinite(values).all():
            raise ValueError("submission rows must each hold a finite number")
        return
    if fmt in ("prob", "probs"):
        values = sub.iloc[:, 1:].to_numpy(dtype=np.float64)
        if not ((values >= 0) & (values <= 1)).all():
            raise ValueError("submission has probabilities outside [0, 1]")
        return
    if fmt == "labelconf":  # or nothing: an image of no class
        made = sub.iloc[:, 1].fillna("").astype(str).str.strip() != ""
        conf = pd.to_numeric(sub.iloc[:, 1][made].str.split().str[1], errors="coerce")
        if conf.isna().any() or not conf.between(0, 1).all():
            raise ValueError("submission rows must hold a class and a confidence from 0 to 1, or nothing")
    names = [t for v in sub.iloc[:, 1].fillna("").astype(str) for t in (v.split()[:1] if fmt == "labelconf" else
                                                  v.split() if fmt in ("tags", "topk") else [v])]
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ValueError(f"submission has labels that are not classes: {summarize(unknown)}")
    if fmt == "topk" and (sub.iloc[:, 1].str.split().str.len() != min(top_k, len(classes))).any():
        raise ValueError(f"submission rows must list {top_k} classes each")


def read(sub: pd.DataFrame, layout: Layout) -> np.ndarray:
    """A submission back as (rows, classes) scores, for scoring it: a 1 for the class (or each tag), the
    probabilities, or k..1 down the top-k list."""
    index = {c: i for i, c in enumerate(layout.classes)}
    fmt, n = layout.submission, len(layout.classes)
    if fmt == "probs":
        return sub[[c for c in layout.classes]].to_numpy(dtype=np.float64)
    if fmt == "prob":
        p = sub.iloc[:, 1].to_numpy(dtype=np.float64)
        return np.stack([1 - p, p], axis=1)
    if fmt == "value":
        return sub.iloc[:, 1].to_numpy(dtype=np.float64).reshape(-1, 1)
    scores = np.zeros((len(sub), n))
    if fmt == "labelconf":  # the class at its confidence: what GAP ranks by
        for row, value in enumerate(sub.iloc[:, 1].fillna("").astype(str)):
            if value.strip():  # a blank row: no prediction, all zeros (GAP leaves it out)
                name, conf = value.split()
                scores[row, index[name]] = float(conf)
        return scores
    for row, value in enumerate(sub.iloc[:, 1]):
        names = value.split() if fmt in ("tags", "topk") else [value]
        for rank, name in enumerate(names):
            scores[row, index[name]] = len(names) - rank if fmt == "topk" else 1
    return scores
