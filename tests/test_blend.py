"""Blend: greedy weights on OOF, nested CV, submission and manifest.  pytest tests/test_blend.py -q"""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score

from conftest import exp_dir, tiny_cfg
from kit.data import folds
from kit.io import load_npz
from kit.jobs.cli import main
from kit.predict import blend, predict
from kit.train import loop as train
from kit.experiment import Experiment


def _onehot(pred, classes=3, sure=0.9):
    p = np.full((len(pred), classes), (1 - sure) / (classes - 1))
    p[np.arange(len(pred)), pred] = sure
    return p


def test_greedy_selection_puts_the_weight_on_the_better_member():
    labels = np.array([0, 1, 2] * 20)
    good, bad = _onehot(labels), _onehot((labels + 1) % 3)
    assert blend.caruana([bad, good], labels, 20).tolist() == [0.0, 1.0]
    w = blend.caruana([good, good.copy()], labels, 10)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all(), "weights are a distribution"


def test_the_steps_of_the_newest_blend_of_those_experiments_are_found(tmp_path):
    """What export --blend refits with: the newest run's steps, read from manifests written before "steps" was
    recorded too (its method's text); other experiments' blends and other files are not read as ours."""
    def manifest(name, *runs):
        (tmp_path / f"{name}.json").write_text(json.dumps({"sha256": "0", "runs": list(runs)}))

    def run(experiments, when, steps=None, method_steps=None):
        method = f"caruana greedy forward selection with replacement, log_loss, {method_steps or steps} steps"
        record = {"method": method}
        return {"experiments": experiments, "created_at": when, "blend": record | ({"steps": steps} if steps else {})}

    cfgs = [tiny_cfg(tmp_path, tmp_path, name=n, submissions_dir=str(tmp_path)) for n in ("A", "B")]
    assert blend.steps_of(cfgs) is None, "no blend yet"
    manifest("blend-A+B-11111111", run(["A", "B"], "2026-12-01T10:00:00+00:00", method_steps=30))
    assert blend.steps_of(cfgs) == 30, "an older manifest says its steps in the method only"
    manifest("blend-A+B-22222222", run(["A", "B"], "2026-12-02T10:00:00+00:00", steps=10),
             run(["A", "B"], "2026-11-30T10:00:00+00:00", steps=70))
    manifest("blend-A+B+C-33333333", run(["A", "B", "C"], "2026-12-03T10:00:00+00:00", steps=5))
    (tmp_path / "blend-A+B-44444444.json").write_text("not json")
    assert blend.steps_of(cfgs) == 10, "the newest run of A+B, whichever manifest holds it"


def test_nested_cv_never_fits_weights_on_the_rows_it_scores():
    """A is right only on fold 0, B only on fold 1: fitted on the other fold, each fold gets the wrong member."""
    labels = np.array([0, 1, 2] * 10)
    fold_of = np.repeat([0, 1], 15)
    wrong = (labels + 1) % 3
    a = _onehot(np.where(fold_of == 0, labels, wrong))
    b = _onehot(np.where(fold_of == 1, labels, wrong))
    held, weights = blend.nested([a, b], labels, fold_of, 10)
    assert weights["0"].tolist() == [0.0, 1.0] and weights["1"].tolist() == [1.0, 0.0]
    assert accuracy_score(labels, held.argmax(1)) == 0.0, "nested CV must show that these weights do not carry over"


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory, folder_data):
    tmp = tmp_path_factory.mktemp("blend")
    quick = dict(stage1_epochs=4, stage2_epochs=0, n_folds=2)
    cfgs = [tiny_cfg(tmp, folder_data, **quick), tiny_cfg(tmp, folder_data, **quick, name="lin", head="linear")]
    for cfg in cfgs:
        folds.make_folds(cfg)
    train.run(cfgs)
    predict.run(cfgs)
    return cfgs


def test_blend_writes_a_submission_whose_row_shows_the_nested_cv(two_experiments):
    cfgs = two_experiments
    path = blend.run(cfgs, steps=10)
    run = json.loads(path.with_suffix(".json").read_text())["runs"][-1]
    weights = run["blend"]["weights"]
    assert set(weights) == {"tiny", "lin"} and sum(weights.values()) == pytest.approx(1.0)
    board = pd.read_csv(cfgs[0].submissions_dir + "/leaderboard.csv", dtype=str)
    row = board[board["file"] == path.name].iloc[0]
    assert row["experiments"] == "tiny lin"
    # the row's CV recomputed from the experiments' own files: each fold blended by weights fitted on the other fold
    parts = {name: [load_npz(exp_dir(cfgs[0]).parent / name / f"fold{k}" / "oof_logits.npz") for k in range(2)]
             for name in ("tiny", "lin")}
    ids = np.concatenate([p["ids"] for p in parts["tiny"]])
    order = np.argsort(ids, kind="stable")
    fold_of = np.concatenate([np.full(len(p["ids"]), k) for k, p in enumerate(parts["tiny"])])[order]
    labels = np.concatenate([p["labels"] for p in parts["tiny"]])[order]
    probs = [softmax(np.concatenate([p["logits"] for p in parts[name]])[order], axis=1) for name in ("tiny", "lin")]
    held, _ = blend.nested(probs, labels, fold_of, 10)
    assert float(row["cv"]) == pytest.approx(accuracy_score(labels, held.argmax(1)), abs=1e-5), row["cv"]
    manifest = path.with_suffix(".json").read_bytes()
    assert blend.run(cfgs, steps=10) == path, "the same blend again: the same file"
    assert path.with_suffix(".json").read_bytes() == manifest, "... and the same manifest: no run added"


def test_blend_needs_two_experiments(two_experiments):
    with pytest.raises(ValueError, match="at least two"):
        blend.run(two_experiments[:1])


@pytest.fixture(scope="module")
def pseudo_run(two_experiments):
    from kit.jobs import pipeline
    source = two_experiments[0]
    return source, pipeline.pseudo_label(source, threshold=0.34, name="tiny_pseudo")  # 3 classes: above uniform


def test_pseudo_labels_train_but_never_validate_and_the_row_shows_the_gain(pseudo_run):
    source, path = pseudo_run
    new_dir = exp_dir(source).parent / "tiny_pseudo"
    record = json.loads((new_dir / "fold0" / "pseudo.json").read_text())
    assert record["images"] > 0 and record["threshold"] == 0.34, record
    oof_ids = np.concatenate([load_npz(new_dir / f"fold{k}" / "oof.npz")["ids"] for k in range(2)])
    assert not any(i.startswith("test/") for i in oof_ids), "pseudo-labelled test images are never validated on"
    board = pd.read_csv(source.submissions_dir + "/leaderboard.csv", dtype=str, keep_default_na=False)
    row = board[board["file"] == path.name].iloc[0]
    assert row["pseudo"].startswith("from tiny >= 0.34") and "cv " in row["pseudo"], row["pseudo"]


def test_pseudo_needs_the_source_predicted(tmp_path, folder_data):
    cfg = tiny_cfg(tmp_path, folder_data, n_folds=2, stage1_epochs=1, stage2_epochs=0, name="new", pseudo_from="none")
    folds.make_folds(cfg)
    with pytest.raises(ValueError, match="run `kit predict --exp none` first"):
        train.run([cfg])


def test_any_trained_experiment_is_named_again_by_its_name(two_experiments, capsys):
    """The README's `kit blend --exp resnest_ema resnet50`: experiments trained under name= are no presets."""
    cfg = two_experiments[0]
    keys = [f"work_dir={cfg.work_dir}", f"submissions_dir={cfg.submissions_dir}"]
    assert main(["blend", "--exp", "tiny", "lin", *keys]) == 0, capsys.readouterr().err
    assert main(["predict", "--exp", "lin", *keys]) == 0, "every command takes it"


def test_two_experiments_with_one_name_are_refused(tmp_path, capsys):
    assert main(["train", "--exp", "demo", "demo_baseline", "name=x", f"work_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "two experiments named x" in err and len(err.strip().splitlines()) == 1, err


def test_a_finished_pseudo_experiment_outlives_a_new_prediction_of_its_source(pseudo_run):
    from kit.train import pseudo
    source, _ = pseudo_run
    new = pseudo.derive(source, 0.34, "tiny_pseudo")
    predict.run([dataclasses.replace(source, tta=("hflip",))])  # the source's test_logits.npz: other bytes now
    train.run([new])  # every fold finished: resumes (at once) instead of refusing
    record = pseudo.select(new, 0, folds.load(new).layout)[1]
    saved = json.loads((exp_dir(new) / "fold0" / "pseudo.json").read_text())
    assert record["sha256"] != saved["sha256"], "the source's file did change"
    fold = Experiment.of(new).fold(0)
    pseudo.check(fold, {**saved, "sha256": record["sha256"]})  # the same choice from other bytes: a fold goes on
    with pytest.raises(ValueError, match="other pseudo-labels"):
        pseudo.check(fold, {**saved, "chosen": "0" * 64})


def test_auc_blend_weights_are_fitted_on_the_folds_own_aucs_not_the_pooled_rows():
    """An AUC CV is the mean of each fold's AUC; weights fitted on pooled rows would reward a member whose folds
    share one scale over one that ranks every fold perfectly on a scale of its own."""
    from kit.metrics import METRICS, cv_score
    rng = np.random.default_rng(0)
    y = np.r_[rng.random(40) < 0.9, rng.random(40) < 0.1].astype(int)  # fold 0 mostly positive, fold 1 negative
    fold_of = np.repeat([0, 1], 40)
    ranks = np.where(fold_of == 0, 0.1, 0.8) + 0.05 * y + rng.normal(0, 0.005, 80)  # perfect within a fold
    steady = np.clip(0.5 + 0.2 * np.where(rng.random(80) < 0.7, y, 1 - y) + rng.normal(0, 0.01, 80), 0, 1)
    members = [np.c_[1 - p, p] for p in (ranks, steady)]
    auc = METRICS["roc_auc"]
    assert cv_score(auc, y, members[0], fold_of) > 0.95 > auc(y, members[0]), "the case: pooling hides member 0"
    weights = blend.caruana(members, y, 20, auc, fold_of)
    assert weights[0] > weights[1], weights
