"""Error analysis beside cv.json: per-class table, confused pairs, worst mistakes.  pytest tests/test_analysis.py -q"""
import numpy as np
from sklearn.metrics import precision_score, recall_score

from kit import figures

CLASSES = ["cat", "dog", "fox"]
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PREDS = np.array([0, 0, 1, 1, 1, 1, 0, 2, 1, 2])


def test_per_class_accuracy_and_precision_equal_sklearn():
    table = figures.per_class(LABELS, PREDS, CLASSES).set_index("class").loc[CLASSES]
    assert np.allclose(table["top1"], recall_score(LABELS, PREDS, average=None)), "top1 per class is its recall"
    assert np.allclose(table["precision"], precision_score(LABELS, PREDS, average=None))
    assert table.loc["cat", "most_taken_for"] == "dog" and table.loc["cat", "times"] == 2


def test_per_class_lists_the_worst_class_first():
    assert figures.per_class(LABELS, PREDS, CLASSES)["class"].iloc[0] == "cat", "cat: 2 of 4 right, the worst"


def test_confused_pairs_count_each_off_diagonal_cell():
    pairs = figures.confused_pairs(LABELS, PREDS, CLASSES)
    assert list(pairs.itertuples(index=False, name=None))[0] == ("cat", "dog", 2, 0.5), pairs
    assert pairs["count"].sum() == int((LABELS != PREDS).sum()), "every mistake is in exactly one pair"
    assert pairs["count"].is_monotonic_decreasing


def test_worst_mistakes_are_the_most_confident_wrong_ones():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.05, 0.95], [0.4, 0.6], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 1, 1])  # wrong: rows 1 (0.8), 2 (0.95), 4 (0.7)
    assert figures.worst_mistakes(labels, probs, 2).tolist() == [2, 1]
    assert figures.worst_mistakes(labels, probs, 10).tolist() == [2, 1, 4], "only wrong predictions"


def test_multilabel_worst_mistakes_are_the_images_furthest_from_their_tags():
    labels = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    probs = np.array([[0.9, 0.1], [0.4, 0.45], [0.6, 0.9], [0.2, 0.7]])  # wrong at 0.5: rows 1 (1.15), 2 (1.5)
    assert figures.worst_mistakes(labels, probs, 10).tolist() == [2, 1], "only images with a wrong decision"
    assert figures._mistake_title(labels[2], probs[2], ["sky", "sea"]) == "missed -\nextra sky sea"


def test_per_tag_auc_is_sklearns_and_empty_where_a_tag_is_everywhere():
    from sklearn.metrics import roc_auc_score
    labels = np.array([[1, 1], [0, 1], [1, 1], [0, 1]])
    probs = np.array([[0.8, 0.9], [0.3, 0.2], [0.4, 0.7], [0.6, 0.5]])
    table = figures.per_tag(labels, probs >= 0.5, ["sky", "sea"], probs).set_index("tag")
    assert table.loc["sky", "auc"] == roc_auc_score(labels[:, 0], probs[:, 0])
    assert np.isnan(table.loc["sea", "auc"]), "every image has sea: no AUC"
