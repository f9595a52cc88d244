"""Prediction: TTA, fold ensemble, submissions, leaderboard, local scores.  pytest tests/test_predict.py -q"""
import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import ttach
from sklearn.metrics import accuracy_score

from conftest import exp_dir, make_image, tiny_cfg, write_mirror_data
from kit.board import formats, leaderboard
from kit.config import save_config
from kit.data import folds
from kit.data.layout import scan
from kit.io import load_npz
from kit.jobs.cli import main
from kit.model import create_model
from kit.predict import ensemble, predict
from kit.train import loop as train
from kit.tta import transforms as tta_transforms

QUICK = dict(stage1_epochs=2, stage2_epochs=1, n_folds=2)


def _pipeline(tmp, data, **kw):
    cfg = tiny_cfg(tmp, data, **{**QUICK, **kw})
    folds.make_folds(cfg)
    train.run([cfg])
    return cfg, predict.run([cfg])[0]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, folder_data):
    return _pipeline(tmp_path_factory.mktemp("folder_run"), folder_data)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, csv_data):
    return _pipeline(tmp_path_factory.mktemp("csv_run"), csv_data, zip=True)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("test_resnet", "spinal", 3, spinal_width=8).eval()


def test_identity_tta_equals_plain_inference(model):
    x = torch.randn(4, 3, 32, 32)
    wrapped = ttach.ClassificationTTAWrapper(model, tta_transforms((), 32), merge_mode="mean")
    with torch.inference_mode():
        assert torch.equal(wrapped(x), model(x)), "identity-only TTA must be plain inference"


def test_flip_tta_is_the_mean_over_x_and_flipped_x(model):
    x = torch.randn(4, 3, 32, 32)
    wrapped = ttach.ClassificationTTAWrapper(model, tta_transforms(("hflip",), 32), merge_mode="mean")
    with torch.inference_mode():
        want = (model(x) + model(torch.flip(x, dims=[3]))) / 2
        torch.testing.assert_close(wrapped(x), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("merge", ["logits", "probs"])
def test_one_member_ensemble_is_that_member(merge):
    a = np.random.default_rng(0).normal(size=(5, 3))
    out = ensemble.average([a], merge)
    assert np.array_equal(out.argmax(1), a.argmax(1))
    if merge == "logits":
        assert np.array_equal(out, a)


def test_one_fold_submission_is_that_fold(tmp_path, folder_data):
    cfg = tiny_cfg(tmp_path, folder_data, **QUICK, allow_missing_folds=True)
    folds.make_folds(cfg)
    train.run([cfg], only=[1])
    sub = pd.read_csv(predict.run([cfg])[0], dtype=str)
    logits = load_npz(exp_dir(cfg) / "fold1" / "test_logits.npz")["logits"]
    assert list(sub["pred_label"]) == [["0", "1", "2"][i] for i in logits.argmax(1)]


def test_missing_folds_are_listed(tmp_path, folder_data):
    cfg = tiny_cfg(tmp_path, folder_data, **QUICK)
    folds.make_folds(cfg)
    train.run([cfg], only=[1])
    with pytest.raises(ValueError, match=r"fold\(s\) \[0\] not trained.*allow_missing_folds"):
        predict.run([cfg])


def test_folder_submission_format(folder_run, folder_data):
    cfg, path = folder_run
    sub = pd.read_csv(path, dtype=str)
    assert list(sub.columns) == ["image_name", "pred_label"]
    assert list(sub["image_name"]) == sorted(p.stem for p in (folder_data / "test").iterdir())
    assert set(sub["pred_label"]) <= {"0", "1", "2"}
    assert path.name.startswith("tiny-") and path.with_suffix(".json").is_file()


def test_csv_submission_matches_sample_submission_exactly(csv_run, csv_data):
    cfg, path = csv_run
    sub = pd.read_csv(path, dtype=str, keep_default_na=False)
    sample = pd.read_csv(csv_data / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert list(sub.columns) == list(sample.columns), "same header"
    assert list(sub["id"]) == list(sample["id"]), "same ids, same order, same format"
    assert set(sub["breed"]) <= {"cat", "dog", "fox"}
    with zipfile.ZipFile(path.with_suffix(".zip")) as z:
        assert z.read(path.name) == path.read_bytes(), "zip holds the same CSV"


def test_numeric_class_folders_are_written_as_folder_names(tmp_path):
    rng = np.random.default_rng(0)
    for c in [str(i) for i in range(100)]:
        make_image(tmp_path / "train" / c / "a.png", (1, 2, 3), rng, size=(4, 4))
    make_image(tmp_path / "test" / "q.png", (1, 2, 3), rng, size=(4, 4))
    layout = scan(tmp_path)
    scores = np.zeros((1, 100))
    scores[0, 10] = 1.0  # class index 10 is folder "10" (as strings, "10" would sort at index 2)
    assert formats.table(layout, scores)["pred_label"].tolist() == ["10"]


def test_submission_validation_catches_mistakes():
    ids = pd.Series(["a", "b"])
    good = pd.DataFrame({"id": ["a", "b"], "y": ["cat", "dog"]})
    formats.check(good, ids, ["cat", "dog"], ("id", "y"))
    for bad, needle in [(good.iloc[:1], "missing"), (good.assign(y=["cat", "cow"]), "cow"),
                        (good.rename(columns={"y": "label"}), "header"), (good.iloc[[0, 0]], "repeats")]:
        with pytest.raises(ValueError, match=needle):
            formats.check(bad, ids, ["cat", "dog"], ("id", "y"))


def test_local_scores_equal_sklearn_on_usage_subsets(folder_run, folder_data):
    cfg, path = folder_run
    board = leaderboard.load(exp_dir(cfg).parent.parent / "submissions" / "leaderboard.csv")
    row = board[board["file"] == path.name].iloc[0]
    sol = pd.read_csv(folder_data / "solution.csv", dtype=str)
    merged = sol.merge(pd.read_csv(path, dtype=str), on="image_name")
    for usage in ("Public", "Private"):
        part = merged[merged["Usage"] == usage]
        assert float(row[usage.lower()]) == pytest.approx(accuracy_score(part["label"], part["pred_label"]), abs=1e-5)


def test_rerun_skips_and_leaderboard_keeps_rows(folder_run):
    cfg, path = folder_run
    board_path = exp_dir(cfg).parent.parent / "submissions" / "leaderboard.csv"
    logits = exp_dir(cfg) / "fold0" / "test_logits.npz"
    before = logits.stat().st_mtime_ns
    assert predict.run([cfg])[0] == path, "same predictions, same file"
    assert logits.stat().st_mtime_ns == before, "up-to-date test logits are not recomputed"
    board = leaderboard.load(board_path)
    board = leaderboard.upsert(board, {"file": "other.csv", "public": "0.5"})
    leaderboard.save(board, board_path)
    predict.run([cfg])
    after = leaderboard.load(board_path)
    assert set(after["file"]) == {path.name, "other.csv"} and len(after) == 2, after


def test_leaderboard_of_two_data_sets_compares_and_picks_within_one(tmp_path, folder_run, capsys):
    """Each row names its data set; a better-looking row of other data is never shown beside, or picked over,
    this data's rows."""
    cfg, _ = folder_run
    cfg = dataclasses.replace(cfg, submissions_dir=str(tmp_path / "subs"))
    path = predict.run([cfg])[0]
    board_path = tmp_path / "subs" / "leaderboard.csv"
    mine = leaderboard.data_tag(leaderboard.data_of(cfg))
    assert mine and leaderboard.load(board_path)["data"].tolist() == [mine], "the row names the folds' data set"
    (tmp_path / "subs" / "elsewhere.csv").write_text(path.read_text())
    board = leaderboard.upsert(leaderboard.load(board_path), {
        "file": "elsewhere.csv", "experiments": cfg.name, "metric": "accuracy", "cv": "0.99999", "public": "0.99999",
        "created_at": "2999-01-01T00:00:00+00:00", "data": "ffffffffffff"})
    leaderboard.save(board, board_path)
    capsys.readouterr()
    predict.run([cfg])
    out = capsys.readouterr().out
    assert f"data {mine}'s, 1 of 2 rows" in out and "elsewhere.csv" not in out, out
    assert f"final pick 1 (best CV): {path.name}" in out, out
    board = leaderboard.load(board_path)
    assert leaderboard.pick(board, [cfg.name], tmp_path / "subs", leaderboard.data_of(cfg)) == path
    with pytest.raises(ValueError, match="2 data sets .* no data set .*FILE="):
        leaderboard.pick(board, [cfg.name], tmp_path / "subs")  # no folds.json: no guess, however new a row is


def test_checkpoint_for_other_classes_is_refused(tmp_path, folder_run, folder_data):
    cfg, _ = folder_run
    data = tmp_path / "data"
    shutil.copytree(folder_data, data)
    shutil.copytree(data / "train" / "2", data / "train" / "3")
    other = tiny_cfg(tmp_path, data, **QUICK)
    folds.make_folds(other)
    shutil.copytree(exp_dir(cfg), exp_dir(other))
    for k in range(2):
        (exp_dir(other) / f"fold{k}" / "test_logits.npz").unlink()
    with pytest.raises(ValueError, match=r"trained for 3 classes.*data has 4"):
        predict.run([other])


def test_unreadable_test_image_is_listed_and_no_csv(tmp_path, folder_run, folder_data):
    cfg, _ = folder_run
    data = tmp_path / "data"
    shutil.copytree(folder_data, data)
    (data / "test" / "broken.png").write_bytes(b"\x89PNG not really")
    other = tiny_cfg(tmp_path, data, **QUICK)
    shutil.copytree(exp_dir(cfg).parent, exp_dir(other).parent, dirs_exist_ok=True)
    with pytest.raises(ValueError, match="broken.png"):
        predict.run([other])
    assert not list((tmp_path / "submissions").glob("*.csv")), "no submission may be written"


def test_two_experiments_ensemble(tmp_path, folder_data):
    a = tiny_cfg(tmp_path, folder_data, **QUICK, name="a")
    b = tiny_cfg(tmp_path, folder_data, **QUICK, name="b", head="linear", merge="probs")
    folds.make_folds(a)
    for cfg in (a, b):
        train.run([cfg])
    paths = predict.run([a, b], ensemble=True)
    assert [p.name.split("-")[0] for p in paths] == ["a", "b", "a+b"]
    board = leaderboard.load(tmp_path / "submissions" / "leaderboard.csv")
    assert board.loc[board["file"] == paths[2].name, "experiments"].item() == "a b"


def test_holdout_is_scored_not_trained_on(tmp_path):
    from conftest import write_folder_data
    data = write_folder_data(tmp_path / "data", n_per_class=8)
    write_folder_data(tmp_path / "val_src", n_per_class=3, seed=5)
    shutil.copytree(tmp_path / "val_src" / "train", data / "val")
    cfg, path = _pipeline(tmp_path, data, val_mode="holdout")
    parts = [load_npz(exp_dir(cfg) / f"fold{k}" / "holdout_logits.npz") for k in range(2)]
    assert all(p["ids"][0].startswith("val/") for p in parts) and len(parts[0]["ids"]) == 9
    labels = np.array([int(i.split("/")[1]) for i in parts[0]["ids"]])  # class folders 0, 1, 2
    want = accuracy_score(labels, ensemble.average([p["logits"] for p in parts], "logits").argmax(1))
    row = leaderboard.load(tmp_path / "submissions" / "leaderboard.csv").iloc[0]
    assert float(row["holdout"]) == pytest.approx(want, abs=1e-5), row
    oof = np.concatenate([load_npz(exp_dir(cfg) / f"fold{k}" / "oof.npz")["ids"] for k in range(2)])
    assert not any(i.startswith("val/") for i in oof), "holdout images are never in a validation fold"


def test_data_folder_is_never_written(tmp_path, csv_data):
    def snapshot(root):
        return sorted((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in root.rglob("*"))
    data = tmp_path / "data"
    shutil.copytree(csv_data, data)
    before = snapshot(data)
    _pipeline(tmp_path, data, zip=True)
    assert snapshot(data) == before, "folds, train and predict must leave DATA exactly as it was"


def _board(cfg):
    return leaderboard.load(Path(cfg.submissions_dir) / "leaderboard.csv")


def test_predict_refuses_settings_the_folds_were_not_trained_with(tmp_path, folder_run, capsys):
    cfg, path = folder_run
    before = sorted(p.name for p in Path(cfg.submissions_dir).iterdir())
    saved = tmp_path / "tiny.yaml"
    save_config(cfg, saved)
    rc = main(["predict", "--config", str(saved), "img_size=64", "resize=64", "mean=[0.1,0.1,0.1]", "std=[1,1,1]"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "img_size=32 (now 64)" in err and "mean=[0.5, 0.5, 0.5] (now [0.1, 0.1, 0.1])" in err, err
    assert sorted(p.name for p in Path(cfg.submissions_dir).iterdir()) == before, "no new submission or row"


def test_oof_through_identity_tta_equals_the_training_oof(folder_run):
    cfg, path = folder_run
    for k in range(2):
        trained = load_npz(exp_dir(cfg) / f"fold{k}" / "oof.npz")
        predicted = load_npz(exp_dir(cfg) / f"fold{k}" / "oof_logits.npz")
        assert np.array_equal(trained["ids"], predicted["ids"]) and np.array_equal(trained["labels"], predicted["labels"])
        np.testing.assert_allclose(predicted["logits"], trained["logits"], rtol=0, atol=1e-5)


def test_cv_goes_through_the_same_tta_as_the_submission(tmp_path):
    data = write_mirror_data(tmp_path / "mirror")
    cfg = tiny_cfg(tmp_path, data, stage1_epochs=25, stage2_epochs=0, hflip=0.0, rotate=0.0, mixup_alpha=0.0)
    folds.make_folds(cfg)
    train.run([cfg])
    plain = predict.run([cfg])[0]
    flipped = predict.run([dataclasses.replace(cfg, tta=("hflip",))])[0]
    board = _board(cfg).set_index("file")
    cv_plain, cv_flip = (float(board.loc[p.name, "cv_top1"]) for p in (plain, flipped))
    assert cv_plain >= 0.9, f"the mirror task should be learnt without flips: {cv_plain}"
    assert cv_flip < cv_plain - 0.2, f"a flip turns one class into the other, and the CV must show it: {cv_flip}"
    oof = [load_npz(exp_dir(cfg) / f"fold{k}" / "oof_logits.npz") for k in range(2)]
    want = accuracy_score(np.concatenate([o["labels"] for o in oof]), np.concatenate([o["logits"] for o in oof]).argmax(1))
    assert cv_flip == pytest.approx(want, abs=1e-5), "the row's CV is the CV of the hflip OOF logits"

    # tta=auto scores every candidate on the OOF images and keeps one that does not flip
    auto = predict.run([dataclasses.replace(cfg, tta=("auto",))])[0]
    choice = json.loads(auto.with_suffix(".json").read_text())["runs"][-1]["tta_auto"][cfg.name]
    assert "hflip" not in choice["chosen"] and choice["cv"]["hflip"] < choice["cv"][choice["chosen"]], choice
    assert json.loads((exp_dir(cfg) / "cv.json").read_text())["tta_auto"] == choice
    row = _board(cfg).set_index("file").loc[auto.name]
    assert row["tta"] == f"auto:{choice['chosen']}" and f"hflip={choice['cv']['hflip']:.5f}" in row["tta_cv"]
    # each fold's CV rows come from the candidate chosen on the other fold
    parts = [load_npz(exp_dir(cfg) / f"fold{k}" / f"oof-{choice['per_fold'][str(k)]}_logits.npz") for k in range(2)]
    want = accuracy_score(np.concatenate([o["labels"] for o in parts]), np.concatenate([o["logits"] for o in parts]).argmax(1))
    assert float(row["cv_top1"]) == pytest.approx(want, abs=1e-5)
    manifest = auto.with_suffix(".json").read_bytes()
    assert predict.run([dataclasses.replace(cfg, tta=("auto",))])[0] == auto, "the same choice, the same file"
    assert auto.with_suffix(".json").read_bytes() == manifest, "a rerun adds no manifest run"


def test_tta_choice_for_a_fold_is_made_on_the_other_folds():
    from kit.metrics import get
    y, fold_of = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    right, wrong = np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[0.1, 0.9], [0.9, 0.1]])
    candidates = {"none": np.vstack([right, wrong]), "hflip": np.vstack([wrong, right])}  # each right on one fold
    choice = ensemble.choose(get("accuracy"), y, fold_of, candidates)
    assert choice["per_fold"] == {"0": "hflip", "1": "none"}, "fold 0 must not pick what is right on fold 0 itself"
    assert choice["chosen"] == "none" and choice["cv"] == {"none": 0.5, "hflip": 0.5}, "a tie goes to the cheaper"


def test_same_bytes_from_other_settings_keep_both_runs(tmp_path, folder_run):
    cfg, path = folder_run
    other = dataclasses.replace(cfg, threshold=0.3)  # an ensemble key that a single-label submission does not use
    assert predict.run([other])[0] == path, "same predictions, same file"
    runs = json.loads(path.with_suffix(".json").read_text())["runs"]
    assert [r["settings"][0]["threshold"] for r in runs] == [cfg.threshold, 0.3], "the manifest names both runs"
    assert _board(cfg).set_index("file").loc[path.name, "run"] == "2", "the row points at the run that made it"
    predict.run([cfg])
    assert len(json.loads(path.with_suffix(".json").read_text())["runs"]) == 2, "a repeated run is not added again"
    assert _board(cfg).set_index("file").loc[path.name, "run"] == "1"


def test_a_replaced_test_image_makes_the_saved_logits_stale(tmp_path, folder_run, folder_data):
    cfg, _ = folder_run
    data = tmp_path / "data"
    shutil.copytree(folder_data, data)
    other = dataclasses.replace(cfg, data=str(data), work_dir=str(tmp_path / "folds"))
    shutil.copytree(exp_dir(cfg).parent, exp_dir(other).parent)
    logits = exp_dir(other) / "fold0" / "test_logits.npz"
    predict.run([other])
    stamp = load_npz(logits)["key"]
    make_image(data / "test" / "t00.png", (250, 250, 250), np.random.default_rng(9))  # same name, other picture
    predict.run([other])
    assert load_npz(logits)["key"] != stamp, "a replaced test image must not reuse the old logits"


def test_cv_last_goes_through_the_same_tta_merge_and_calibration_as_cv(tmp_path, folder_data):
    """One epoch: the last weights are the best, so cv_last equals cv exactly, TTA and temperature included."""
    cfg = tiny_cfg(tmp_path, folder_data, stage1_epochs=1, stage2_epochs=0, tta=("hflip",), metric="log_loss",
                   temperature="fit")
    folds.make_folds(cfg)
    train.run([cfg])
    path = predict.run([cfg])[0]
    row = _board(cfg).set_index("file").loc[path.name]
    assert float(row["cv_last"]) == pytest.approx(float(row["cv"]), abs=1e-6), row
    assert (exp_dir(cfg) / "fold0" / "oof_last_logits.npz").is_file()


def test_an_ensemble_describes_every_members_tta_choice_not_the_firsts():
    from types import SimpleNamespace

    from kit.board import leaderboard
    a = SimpleNamespace(name="a", cfgs=[SimpleNamespace(name="a", tta=("hflip",))], checkpoints={}, epochs=3.0,
                        trained_on={}, warning="", tta_choice={"a": {"chosen": "hflip", "cv": {"none": 0.8, "hflip": 0.9}}})
    b = SimpleNamespace(name="b", cfgs=[SimpleNamespace(name="b", tta=())], checkpoints={}, epochs=3.0,
                        trained_on={}, warning="", tta_choice={"b": {"chosen": "none", "cv": {"none": 0.7, "hflip": 0.6}}})
    c = SimpleNamespace(name="c", cfgs=[SimpleNamespace(name="c", tta=("vflip",))], checkpoints={}, epochs=3.0,
                        trained_on={}, warning="", tta_choice={})  # tta as set, no choice
    both = ensemble.combined_fields([a, b, c], "a+b+c")
    assert set(both["tta_choice"]) == {"a", "b"}, both["tta_choice"]
    assert leaderboard.tta_of(both["cfgs"], both["tta_choice"]) == "auto:hflip auto:none vflip"
    assert leaderboard.tta_cv(both["tta_choice"]) == "a: none=0.80000 hflip=0.90000; b: none=0.70000 hflip=0.60000"


def test_bad_test_images_prior_in_predict_too(folder_run, folder_data, tmp_path, caplog):
    """The key works outside a kernel: an unreadable test image's row from the others, the rest unchanged."""
    import logging
    cfg, path = folder_run
    data = tmp_path / "data"
    shutil.copytree(folder_data, data)
    broken = sorted((data / "test").glob("*.png"))[0]
    broken.write_bytes(b"\x89PNG cut")
    other = dataclasses.replace(cfg, data=str(data), submissions_dir=str(tmp_path / "subs"))
    with pytest.raises(ValueError, match="bad_test_images=prior"):
        predict.run([other])
    with caplog.at_level(logging.WARNING):
        (written,) = predict.run([dataclasses.replace(other, bad_test_images="prior")])
    assert f"1 of {len(list((data / 'test').glob('*.png')))} test image(s) could not be read" in caplog.text
    ours, theirs = pd.read_csv(written, dtype=str), pd.read_csv(path, dtype=str)
    keep = ours.iloc[:, 0] != broken.stem
    assert ours[keep].reset_index(drop=True).equals(theirs[keep].reset_index(drop=True))
