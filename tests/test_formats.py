"""Every Kaggle submission shape: detected, trained, written and scored in the competition's metric.

    pytest tests/test_formats.py -q

One small data set per shape (kit/data/synth.py SHAPES: the files of a real competition of that shape),
run through `kit folds`, `train` and `predict` with no task, submission or metric key. The local
scores on the leaderboard are checked against scikit-learn's computation on the written file.
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from conftest import TINY
from kit.board import leaderboard
from kit.config import PRESETS, load_config
from kit.data.synth import write_competition
from kit.jobs.cli import main
from kit.predict import blend
from kit.train import loop as train

FAST = {**TINY, "stage1_epochs": 3, "stage2_epochs": 0, "mixup_alpha": 0.0, "stage1_lr": 0.1}
EXPECTED = {  # shape -> (metric, the sample's columns after the id)
    "label": "accuracy", "probs": "log_loss", "onehot": "log_loss", "prob": "roc_auc", "tags": "f1_samples",
    "multihot": "roc_auc", "topk": "map@4",
}
RUNS = {}  # shape -> (its folder, the command-line keys it ran with)


def _map_at_k(truth: list[str], ranked: list[list[str]], k: int) -> float:
    """MAP@k as Kaggle's Humpback Whale page defines it, written out: 1/(position of the answer), or 0."""
    return float(np.mean([1 / (r[:k].index(t) + 1) if t in r[:k] else 0.0 for t, r in zip(truth, ranked)]))


def _expected_score(shape: str, sol: pd.DataFrame, sub: pd.DataFrame) -> float:
    """The metric of one Usage part, by scikit-learn (or by hand for MAP@k), from the two files alone."""
    merged = sol.merge(sub, on=sub.columns[0], suffixes=("_true", ""))
    if shape == "label":
        return accuracy_score(merged["label_true"], merged["label"])
    if shape in ("probs", "onehot"):
        classes = list(sub.columns[1:])
        true = merged["breed"] if shape == "probs" else merged[[c + "_true" for c in classes]].to_numpy().argmax(1)
        y = [classes.index(t) for t in true] if shape == "probs" else true
        return log_loss(y, merged[classes].to_numpy(dtype=float), labels=range(len(classes)))
    if shape == "prob":
        return roc_auc_score(merged["has_cactus_true"].astype(int), merged["has_cactus"].astype(float))
    if shape == "tags":
        binarizer = MultiLabelBinarizer().fit([c.split() for c in sub["tags"]] + [c.split() for c in sol["tags"]])
        y = binarizer.transform(merged["tags_true"].str.split())
        return f1_score(y, binarizer.transform(merged["tags"].str.split()), average="samples", zero_division=0)
    if shape == "multihot":
        classes = list(sub.columns[1:])
        aucs = [roc_auc_score(merged[c + "_true"].astype(int), merged[c].astype(float)) for c in classes
                if merged[c + "_true"].nunique() == 2]
        return float(np.mean(aucs))
    return _map_at_k(list(merged["Id_true"]), [r.split() for r in merged["Id"]], 4)


@pytest.fixture(scope="module", params=list(EXPECTED))
def shaped_run(request, tmp_path_factory):
    shape = request.param
    tmp = tmp_path_factory.mktemp(shape)
    data = write_competition(tmp / "data", shape, classes=4, per_class=10, n_test=20, side=32)
    keys = ["--exp", "demo", *(f"{k}={v}" for k, v in FAST.items())]  # the demo's keys under FAST
    keys += [f"data={data}", f"work_dir={tmp / 'folds'}", f"submissions_dir={tmp / 'subs'}"]
    for command in ("folds", "train", "predict"):
        assert main([command, *keys]) == 0, f"{shape}: kit {command} failed"
    written = sorted((tmp / "subs").glob("tiny-*.csv"))
    assert len(written) == 1, written
    RUNS[shape] = (tmp, keys)
    return shape, data, pd.read_csv(written[0], dtype=str, keep_default_na=False), pd.read_csv(tmp / "subs" / "leaderboard.csv")


def test_submission_matches_the_sample_exactly(shaped_run):
    shape, data, sub, _ = shaped_run
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(sample.columns), f"{shape}: header"
    assert list(sub.iloc[:, 0]) == list(sample.iloc[:, 0]), f"{shape}: ids and their order"
    classes = set(sample.columns[1:]) if shape in ("probs", "onehot", "multihot") else None
    values = sub.iloc[:, 1:]
    if shape in ("probs", "onehot", "multihot", "prob"):
        p = values.to_numpy(dtype=float)
        assert ((p >= 0) & (p <= 1)).all(), f"{shape}: probabilities"
        assert len(np.unique(p.round(6))) > 2, f"{shape}: probabilities, not hard 0/1 labels"
        if shape in ("probs", "onehot"):
            assert np.allclose(p.sum(1), 1, atol=1e-9), "single-label probabilities sum to 1"
    else:
        classes = set(pd.read_csv(data / "train.csv", dtype=str).iloc[:, 1].str.split().explode())
        tokens = values.iloc[:, 0].str.split()
        assert set(tokens.explode()) <= classes, f"{shape}: every value a class"
        if shape == "label":
            assert (tokens.str.len() == 1).all()
        if shape == "topk":
            assert (tokens.str.len() == 4).all() and tokens.map(lambda t: len(set(t)) == 4).all(), "4 distinct ids"


def test_leaderboard_row_is_in_the_competition_metric(shaped_run):
    shape, _, _, board = shaped_run
    row = board.iloc[0]
    assert row["metric"] == EXPECTED[shape], f"{shape}: {row['metric']}"
    assert np.isfinite(row["cv"]), f"{shape}: a CV in {row['metric']}"


def test_local_scores_equal_scikit_learn_on_the_file(shaped_run):
    shape, data, sub, board = shaped_run
    sol = pd.read_csv(data / "solution.csv", dtype=str, keep_default_na=False)
    for usage, column in (("Public", "public"), ("Private", "private")):
        want = _expected_score(shape, sol[sol["Usage"] == usage].drop(columns="Usage"), sub)
        assert board.iloc[0][column] == pytest.approx(want, abs=1e-5), f"{shape} {usage}"


def test_multi_label_predicts_tag_combinations_never_seen_in_training(shaped_run):
    shape, data, sub, _ = shaped_run
    if shape != "tags":
        pytest.skip("multi-label tags only")
    seen = set(pd.read_csv(data / "train.csv", dtype=str)["tags"].map(lambda t: frozenset(t.split())))
    predicted = set(sub["tags"].map(lambda t: frozenset(t.split())))
    assert predicted - seen, f"every predicted combination was a training one: {predicted}"


def test_a_bundle_writes_the_same_bytes_in_every_format(shaped_run):
    shape, data, _, _ = shaped_run
    tmp, keys = RUNS[shape]
    assert main(["export", *keys, "--out", str(tmp / "bundle")]) == 0
    spec = json.loads((tmp / "bundle" / "bundle.json").read_text())
    exported = (tmp / "subs" / spec["submission"]["file"]).read_bytes()
    assert main(["predict", "--bundle", str(tmp / "bundle"), f"data={data}", f"submissions_dir={tmp / 'out'}"]) == 0
    assert (tmp / "out" / "submission.csv").read_bytes() == exported, f"{shape}: the bundle's bytes differ"


def test_blend_fits_its_weights_to_the_metric_in_its_direction(shaped_run):
    shape, data, _, _ = shaped_run
    if shape != "probs":
        pytest.skip("one log-loss shape is enough")
    tmp, _ = RUNS[shape]
    paths = {"data": str(data), "work_dir": str(tmp / "folds"), "submissions_dir": str(tmp / "subs")}
    first = load_config(PRESETS / "demo.yaml", {**FAST, **paths})  # what the command line above ran
    other = load_config(PRESETS / "demo.yaml", {**FAST, **paths, "name": "lin", "head": "linear"})
    train.run([other])
    path = blend.run([first, other], steps=10)
    run = json.loads(path.with_suffix(".json").read_text())["runs"][-1]
    assert "log_loss" in run["blend"]["method"] and sum(run["blend"]["weights"].values()) == pytest.approx(1)
    row = leaderboard.load(tmp / "subs" / "leaderboard.csv").set_index("file").loc[path.name]
    assert row["metric"] == "log_loss" and float(row["cv"]) == pytest.approx(run["cv"]["score"], abs=1e-5)


def test_a_sample_that_fits_two_formats_is_a_one_line_error_naming_the_key(tmp_path):
    from kit.data.layout import scan
    data = write_competition(tmp_path / "d", "prob", per_class=3, n_test=4)
    pd.read_csv(data / "sample_submission.csv").assign(has_cactus=0).to_csv(data / "sample_submission.csv", index=False)
    with pytest.raises(ValueError, match=r"the class \(submission=label\) or the probability of class 1 \(submission="
                                         r"prob\)\? Set submission="):
        scan(data)
    assert scan(data, submission="prob").submission == "prob" and scan(data, submission="label").submission == "label"


def test_sample_columns_that_are_not_the_classes_are_refused(tmp_path):
    from kit.data.layout import scan
    data = write_competition(tmp_path / "d", "probs", per_class=3, n_test=4)
    pd.read_csv(data / "sample_submission.csv").rename(columns={"c001": "zebra"}).to_csv(
        data / "sample_submission.csv", index=False)
    with pytest.raises(ValueError, match=r"missing c001; not classes zebra"):
        scan(data)


def test_task_key_overrides_what_the_labels_suggest(tmp_path):
    from kit.data.layout import scan
    data = write_competition(tmp_path / "d", "onehot", per_class=3, n_test=4)
    layout = scan(data, task="multilabel")
    assert layout.task == "multilabel" and layout.submission == "probs"
    multi = write_competition(tmp_path / "m", "multihot", per_class=3, n_test=4)
    with pytest.raises(ValueError, match="task=single needs exactly one 1 per row"):
        scan(multi, task="single")


def test_the_metric_a_download_recorded_is_the_default(tmp_path):
    from conftest import tiny_cfg
    from kit.data import folds
    data = write_competition(tmp_path / "d", "label", per_class=3, n_test=4)
    (data / "competition.json").write_text(json.dumps({"competition": "x", "evaluation_metric": "Macro F1",
                                                       "metric": "f1_macro"}))
    cfg = tiny_cfg(tmp_path, data)
    folds.make_folds(cfg)
    assert folds.load(cfg).metric.name == "f1_macro", "metric=auto: the competition's own"
    assert folds.load(tiny_cfg(tmp_path, data, metric="accuracy")).metric.name == "accuracy", "a key still wins"


def test_a_multi_label_fold_resumed_after_a_kill_ends_as_one_that_never_stopped(tmp_path):
    from test_train import _fold_result, ref_and_interrupted

    from conftest import exp_dir, tiny_cfg
    from kit.data import folds
    data = write_competition(tmp_path / "d", "tags", classes=4, per_class=6, n_test=4)
    settings = {"stage1_epochs": 2, "stage2_epochs": 1, "n_folds": 2, "keep_checkpoints": True}
    ref, cut = ref_and_interrupted(tmp_path, data, settings, epochs=1)
    train.run([cut], only=[0])
    a, b = _fold_result(ref), _fold_result(cut)
    assert a[0] == b[0] and all(torch.equal(a[1][k], b[1][k]) for k in a[1]), "the same best weights and score"
    assert list(a[2]["val_score"]) == list(b[2]["val_score"]) and "val_top1" not in a[2], "multi-label history"
    assert folds.load(tiny_cfg(tmp_path / "ref", data)).layout.task == "multilabel" and exp_dir(ref).is_dir()


def test_a_class_and_its_confidence_is_written_checked_and_read_back(tmp_path):
    """Landmark Recognition's `landmarks`: `<class> <confidence>`, read back as the confidence at the class."""
    import numpy as np
    import pandas as pd

    from kit.board import formats
    from kit.data.layout import Layout
    test = pd.DataFrame({"id": ["a", "b"], "path": ["test/a.jpg", "test/b.jpg"]})
    layout = Layout(tmp_path, "csv", ("1", "7", "138982"), pd.DataFrame(), test, ("id", "landmarks"),
                    submission="labelconf")
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    sub = formats.table(layout, probs)
    assert list(sub["landmarks"]) == ["7 0.800000", "138982 0.600000"]
    formats.to_bytes(sub, layout)  # checked: classes known, confidences in [0, 1]
    assert np.allclose(formats.read(sub, layout), [[0, 0.8, 0], [0, 0, 0.6]])
    with pytest.raises(ValueError, match="confidence"):
        formats.check(sub.assign(landmarks=["7 1.8", "1 0.1"]), test["id"], ["1", "7", "138982"], ("id", "landmarks"),
                      "labelconf")


def test_an_unsure_landmark_can_be_left_blank_which_gap_scores_as_no_prediction(tmp_path):
    """blank_below: a labelconf row less sure than it is written empty, passes the check and reads back as no
    prediction. GAP ranks only the predictions made: a blank costs what a miss ranked last costs (nothing more
    than its own point), never more."""
    import numpy as np
    import pandas as pd

    from kit.board import formats
    from kit.data.layout import Layout
    from kit.metrics import get
    test = pd.DataFrame({"id": ["a", "b", "c"], "path": ["test/a.jpg", "test/b.jpg", "test/c.jpg"]})
    layout = Layout(tmp_path, "csv", ("1", "7", "138982"), pd.DataFrame(), test, ("id", "landmarks"),
                    submission="labelconf")
    probs = np.array([[0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    sub = formats.table(layout, probs, blank_below=0.55)
    assert list(sub["landmarks"]) == ["7 0.800000", "", "138982 0.600000"]
    written = pd.read_csv(pd.io.common.BytesIO(formats.to_bytes(sub, layout)), dtype=str, keep_default_na=False)
    back = formats.read(written, layout)
    assert np.allclose(back[1], 0), "a blank row is no prediction"
    gap, every = get("gap"), formats.read(formats.table(layout, probs), layout)
    y = np.array([1, 2, 2])  # b's guess (class 0) is wrong and least sure: ranked last, it costs nothing
    assert gap(y, back) == pytest.approx(2 / 3) and gap(y, every) == pytest.approx(2 / 3)
    y = np.array([1, 0, 2])  # b's guess is right: blank, its point is lost
    assert gap(y, back) == pytest.approx(2 / 3) and gap(y, every) == pytest.approx(1.0)
