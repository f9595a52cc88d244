"""The metric table, thresholds, temperature and the leaderboard's direction.  pytest tests/test_metrics.py -q"""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, fbeta_score,
                             log_loss, roc_auc_score)

from kit.board import calibrate, leaderboard
from kit.metrics import METRICS, chance, from_kaggle, get, map_at_k, resolve


def _single(n=60, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 2 * np.eye(classes)[y] * rng.random((n, 1))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def _multi(n=60, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, classes)) < 0.4).astype(int)
    p = np.clip(0.5 * y + 0.5 * rng.random((n, classes)), 0, 1)
    return y, p


def test_map_at_k_matches_a_worked_example():
    # truth a for all three; a ranked 1st, 2nd, 3rd: 1, 1/2, 1/3 -> 11/18
    scores = np.array([[3, 2, 1], [2, 3, 1], [1, 2, 3.0]])
    assert map_at_k(np.zeros(3, dtype=int), scores, 3) == pytest.approx(11 / 18)
    assert map_at_k(np.zeros(3, dtype=int), scores, 2) == pytest.approx(0.5), "a class ranked below k counts 0"
    assert get("map@5").higher_is_better


def test_single_label_metrics_equal_scikit_learn():
    y, p = _single()
    pred = p.argmax(1)
    assert get("accuracy")(y, p) == pytest.approx(accuracy_score(y, pred))
    assert get("balanced_accuracy")(y, p) == pytest.approx(balanced_accuracy_score(y, pred))
    assert get("f1_macro")(y, p) == pytest.approx(f1_score(y, pred, average="macro"))
    assert get("f1_micro")(y, p) == pytest.approx(f1_score(y, pred, average="micro"))
    assert get("log_loss")(y, p) == pytest.approx(log_loss(y, p))
    assert get("roc_auc")(y, p) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert get("qwk")(y, p) == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"))
    y2, p2 = _single(classes=2)
    assert get("roc_auc")(y2, p2) == pytest.approx(roc_auc_score(y2, p2[:, 1])), "binary AUC: the second class"


def _with_top_tag(d, p):
    """What a tags submission holds: the tags at or above their thresholds, and each image's most likely one."""
    d = d.copy()
    d[np.arange(len(p)), p.argmax(1)] = 1
    return d


def test_multi_label_metrics_equal_scikit_learn():
    y, p = _multi()
    d = _with_top_tag((p >= 0.5).astype(int), p)
    assert get("f1_samples")(y, p) == pytest.approx(f1_score(y, d, average="samples", zero_division=0))
    assert get("f2_samples")(y, p) == pytest.approx(fbeta_score(y, d, beta=2, average="samples", zero_division=0))
    assert get("roc_auc")(y, p) == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert get("log_loss")(y, p) == pytest.approx(np.mean([log_loss(y[:, c], p[:, c]) for c in range(y.shape[1])]))
    t = np.full(y.shape[1], 0.7)
    assert get("f1_samples")(y, p, t) == pytest.approx(f1_score(y, _with_top_tag((p >= 0.7).astype(int), p),
                                                                average="samples", zero_division=0)), "thresholds decide"


def test_a_tags_cv_scores_exactly_what_the_submission_file_holds():
    """An image with no tag above its threshold still gets its most likely tag in the file: the metric (CV,
    threshold fitting, early stopping) must count it too."""
    from kit.board import formats
    from kit.data.layout import Layout
    y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    p = np.array([[0.40, 0.10, 0.05], [0.20, 0.90, 0.30], [0.10, 0.20, 0.45]])  # rows 0 and 2: nothing >= 0.5
    test = pd.DataFrame({"id": ["a", "b", "c"], "path": ["a", "b", "c"]})
    layout = Layout(None, "csv", ("x", "y", "z"), pd.DataFrame(), test, ("id", "tags"), "multilabel", "tags")
    written = formats.table(layout, p, 0.5)["tags"].str.split()
    held = np.array([[int(c in row) for c in "xyz"] for row in written])
    assert get("f1_samples")(y, p, 0.5) == pytest.approx(f1_score(y, held, average="samples", zero_division=0))


def test_direction_decides_what_is_better():
    assert get("log_loss").better(0.2, 0.3) and not get("log_loss").better(0.3, 0.2)
    assert get("accuracy").better(0.9, 0.8) and get("log_loss").best([0.5, 0.1, 0.3]) == 1
    assert get("roc_auc").best([0.5, 0.9, 0.7]) == 1


def test_metric_and_task_must_fit():
    with pytest.raises(ValueError, match="metric=qwk does not score a multilabel task"):
        resolve("qwk", "multilabel", "tags", 0)
    with pytest.raises(ValueError, match="not a metric the kit knows"):
        get("rmsle")
    with pytest.raises(ValueError, match="metric=rmse does not score a single task"):
        resolve("rmse", "single", "label", 0)
    assert resolve("auto", "regression", "value", 0).name == "rmse"
    assert resolve("auto", "single", "topk", 5).name == "map@5"
    assert resolve("auto", "multilabel", "probs", 0).name == "roc_auc"


def test_a_regressions_scores_are_its_errors_and_its_chance_the_means():
    y = np.array([[1.0], [2.0], [3.0], [6.0]])
    assert get("rmse")(y, y + np.array([[1.0], [-1.0], [1.0], [-1.0]])) == pytest.approx(1.0)
    assert get("mae")(y, y + 2.0) == pytest.approx(2.0)
    assert chance(get("rmse"), y, 1) == pytest.approx(np.std(y))
    assert not get("rmse").higher_is_better and from_kaggle("Root Mean Squared Error") == "rmse"


def test_chance_is_the_constant_predictors_score_so_imbalance_sets_its_own_bar():
    y = np.array([0] * 95 + [1] * 5)
    assert chance(get("roc_auc"), y, 2) == pytest.approx(0.5)
    prior = np.tile([0.95, 0.05], (100, 1))
    assert chance(get("log_loss"), y, 2) == pytest.approx(log_loss(y, prior))
    assert chance(get("accuracy"), y, 2) >= 0.95, "accuracy: the majority class plus luck"


def test_thresholds_are_fitted_for_the_metric_and_nested_for_the_cv():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 3)) < 0.3).astype(int)
    p = np.clip(0.25 * y + 0.3 * rng.random((200, 3)), 0, 1)  # positives around 0.4: 0.5 misses most of them
    metric = METRICS["f1_samples"]
    t = calibrate.fit_thresholds(metric, y, p)
    assert metric(y, p, t) > metric(y, p, 0.5), "fitted thresholds beat 0.5"
    fold_of = np.repeat([0, 1], 100)
    _, rows = calibrate.nested(metric, "multilabel", y, p, fold_of, 0.0, "off")
    want0 = calibrate.fit_thresholds(metric, y[fold_of == 1], p[fold_of == 1])
    assert np.allclose(rows[fold_of == 0], want0), "fold 0's rows use thresholds fitted on fold 1 only"


def test_temperature_lowers_the_log_loss_of_timid_probabilities():
    y, p = _single(n=300)
    timid = calibrate.temper(p, 3.0)  # as if the logits were 3x smaller: too unsure
    T = calibrate.fit_temperature(y, timid)
    assert T < 1 and get("log_loss")(y, calibrate.temper(timid, T)) < get("log_loss")(y, timid)


def test_submit_picks_the_best_row_in_the_metrics_direction(tmp_path):
    board = leaderboard.load(tmp_path / "none.csv")
    for name, loss, acc in (("a.csv", "0.40", "0.90"), ("b.csv", "0.30", "0.80"), ("c.csv", "0.50", "0.95")):
        (tmp_path / name).write_text("id,x\n")
        board = leaderboard.upsert(board, {"file": name, "experiments": "e", "metric": "log_loss", "cv": loss,
                                           "cv_top1": acc, "created_at": name})
    assert leaderboard.pick(board, ["e"], tmp_path).name == "b.csv", "log loss: lower is better, whatever top-1 says"
    assert list(leaderboard.ranked(board, get("log_loss"))["file"]) == ["b.csv", "a.csv", "c.csv"]


def test_old_boards_read_as_accuracy(tmp_path):
    path = tmp_path / "leaderboard.csv"
    pd.DataFrame({"file": ["x.csv"], "cv_top1": ["0.9"], "cv_last_top1": ["0.8"], "holdout_top1": [""]}).to_csv(
        path, index=False)
    row = leaderboard.load(path).iloc[0]
    assert (row["metric"], row["cv"], row["cv_last"]) == ("accuracy", "0.9", "0.8")


def test_balanced_sampler_draws_every_class_equally_often():
    from kit.data.loaders import SeededSampler
    targets = np.array([0] * 90 + [1] * 10)
    sampler = SeededSampler(len(targets), seed=0, weights=1.0 / np.bincount(targets)[targets])
    drawn = targets[[i for i, _ in sampler]]
    assert len(drawn) == 100 and 35 <= (drawn == 1).sum() <= 65, f"class 1 drawn {(drawn == 1).sum()} times of 100"
    again = [i for i, _ in SeededSampler(len(targets), seed=0, weights=1.0 / np.bincount(targets)[targets])]
    assert again == [i for i, _ in sampler], "seeded: the same draws"


def test_balanced_class_weights_weigh_rare_classes_more():
    import torch

    from kit.engine import criterion
    loss = criterion(np.array([0] * 9 + [1]), 2, "balanced")
    assert loss.weight[1] / loss.weight[0] == pytest.approx(9), "n / (classes x count)"
    multi = criterion(np.array([[1, 0]] * 9 + [[1, 1]]), 2, "balanced")
    assert multi.pos_weight[1] == pytest.approx(9) and multi.pos_weight[0] == pytest.approx(0.1)
    assert criterion(np.array([0, 1]), 2, "none")(torch.zeros(2, 2), torch.eye(2)).item() == pytest.approx(np.log(2))


def test_multi_label_pseudo_labels_take_only_images_sure_of_every_tag(tmp_path):
    from kit.config import Config
    from kit.data.layout import Layout
    from kit.io import save_npz
    from kit.experiment import Experiment
    from kit.train.pseudo import select
    test = pd.DataFrame({"id": ["a", "b", "c"], "path": ["test/a.png", "test/b.png", "test/c.png"]})
    layout = Layout(tmp_path, "csv", ("x", "y"), pd.DataFrame(), test, ("id", "tags"), "multilabel", "tags")
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    logits = logit(np.array([[0.95, 0.02], [0.95, 0.5], [0.99, 0.97]]))  # b is unsure of y
    save_npz(Experiment.at(tmp_path, "src").fold(0).logits("test"), ids=test["id"].to_numpy().astype(str), logits=logits)
    cfg = Config(name="new", work_dir=str(tmp_path), pseudo_from="src", pseudo_threshold=0.9)
    rows, record = select(cfg, 0, layout)
    assert rows["path"].tolist() == ["test/a.png", "test/c.png"] and rows["label"].tolist() == ["x", "x|y"]
    assert record["images"] == 2 and record["of"] == 3


def test_submit_compares_rows_over_the_same_folds_only(tmp_path):
    board = leaderboard.load(tmp_path / "none.csv")
    for name, cv, n in (("all.csv", "0.90", "5"), ("three.csv", "0.99", "3")):
        (tmp_path / name).write_text("id,x\n")
        board = leaderboard.upsert(board, {"file": name, "experiments": "e", "metric": "accuracy", "cv": cv,
                                           "folds": n})
    assert leaderboard.pick(board, ["e"], tmp_path).name == "all.csv", "a CV over 3 of 5 folds is not comparable"


def test_an_auc_cv_is_the_folds_own_auc_not_the_pooled_rows():
    """Two fold models, each ranking its own rows perfectly, on other scales: pooled, they would rank badly."""
    from kit.metrics import cv_score
    y = np.array([0, 1, 0, 1])
    p1 = np.array([0.10, 0.20, 0.80, 0.90])  # fold 0 scores low, fold 1 high
    probs, fold_of = np.stack([1 - p1, p1], axis=1), np.array([0, 0, 1, 1])
    assert get("roc_auc")(y, probs) == pytest.approx(0.75), "pooled: fold 0's positive ranks below fold 1's negative"
    assert cv_score(get("roc_auc"), y, probs, fold_of) == pytest.approx(1.0), "each fold's own AUC"
    assert cv_score(get("log_loss"), y, probs, fold_of) == pytest.approx(get("log_loss")(y, probs)), "others pool"


def test_scoring_many_classes_on_few_images_warns_nothing():
    """100 classes in 120 validation images: scikit-learn's "could represent a regression problem" guess is noise
    on every epoch of such data; the kit silences that one warning."""
    import subprocess
    import sys
    code = ("import kit, numpy as np\nfrom sklearn.metrics import accuracy_score\n"
            "y = np.arange(120) % 100\naccuracy_score(y, y)")
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_temperature_is_not_fitted_where_it_would_change_a_one_vs_rest_auc():
    from scipy.special import softmax as sm
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    probs = sm(rng.normal(0, 1, (200, 3)) + 2 * np.eye(3)[y], axis=1)
    auc = get("roc_auc")
    hot = calibrate.temper(probs, 3.0)
    assert auc(y, hot) != pytest.approx(auc(y, probs), abs=1e-6), "the case: a temperature moves a 3-class AUC"
    assert calibrate.fit(auc, "single", y, probs, 0.0, "fit")["temperature"] is None
    assert calibrate.fit(get("log_loss"), "single", y, probs, 0.0, "fit")["temperature"] is not None
    two = np.c_[probs[:, 0], 1 - probs[:, 0]]
    assert calibrate.fit(auc, "single", (y == 1).astype(int), two, 0.0, "fit")["temperature"] is not None, \
        "a binary AUC keeps its order under any temperature: fitted for the log loss as before"


def test_partial_auc_is_the_area_above_80_percent_tpr():
    """ISIC 2024's pAUC, checked against the area under the ROC curve above TPR 0.8, integrated directly."""
    from sklearn.metrics import roc_curve

    from kit.metrics import from_kaggle, get
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    p = np.clip(y * 0.3 + rng.random(400) * 0.8, 0, 1)
    fpr, tpr, _ = roc_curve(y, p)
    grid = np.linspace(0, 1, 200001)
    above = np.clip(np.interp(grid, fpr, tpr) - 0.8, 0, None)
    want = float(np.sum((above[1:] + above[:-1]) / 2 * np.diff(grid)))
    pauc = get("pauc80")
    assert pauc(y, np.stack([1 - p, p], 1)) == pytest.approx(want, abs=1e-4)
    assert pauc(y, np.eye(2)[y].astype(float)) == pytest.approx(0.2), "a perfect ranking: the whole 0.2"
    assert pauc.higher_is_better and from_kaggle("pAUC above 80% TPR") == "pauc80"
    assert from_kaggle("Partial AUC") == "pauc80" and from_kaggle("AUC") == "roc_auc"


def test_global_average_precision_ranks_every_prediction_by_its_confidence():
    """Google Landmark Recognition's GAP: (1/M) sum over the ranked predictions of precision@i x correct_i."""
    from kit.metrics import from_kaggle, get
    y = np.array([0, 1, 2, 0])
    p = np.array([[.9, .05, .05], [.2, .7, .1], [.5, .3, .2], [.1, .1, .8]])
    # ranked by confidence: .9 right, .8 wrong, .7 right, .5 wrong -> (1/1 + 2/3) / 4
    assert get("gap")(y, p) == pytest.approx((1 + 2 / 3) / 4)
    assert get("gap")(y, np.eye(3)[y]) == 1.0 and from_kaggle("Global Average Precision") == "gap"
    assert resolve("auto", "single", "labelconf", 0).name == "gap"
