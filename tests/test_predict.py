"""Prediction: TTA, fold ensemble, submissions, leaderboard, local scores.  pytest tests/test_predict.py -q"""
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
import ttach
from sklearn.metrics import accuracy_score

from conftest import make_image, tiny_cfg
from kit import ensemble, folds, leaderboard, predict, train
from kit.io import load_npz
from kit.layout import scan
from kit.model import create_model

QUICK = dict(stage1_epochs=2, stage2_epochs=1, n_folds=2)


def _pipeline(tmp, data, **kw):
    cfg = tiny_cfg(tmp, data, **{**QUICK, **kw})
    folds.run(cfg)
    train.run(cfg)
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
    wrapped = ttach.ClassificationTTAWrapper(model, predict.tta_transforms((), 32), merge_mode="mean")
    with torch.inference_mode():
        assert torch.equal(wrapped(x), model(x)), "identity-only TTA must be plain inference"


def test_flip_tta_is_the_mean_over_x_and_flipped_x(model):
    x = torch.randn(4, 3, 32, 32)
    wrapped = ttach.ClassificationTTAWrapper(model, predict.tta_transforms(("hflip",), 32), merge_mode="mean")
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
    folds.run(cfg)
    train.run(cfg, only=[1])
    sub = pd.read_csv(predict.run([cfg])[0], dtype=str)
    logits = load_npz(cfg.exp_dir / "fold1" / "test_logits.npz")["logits"]
    assert list(sub["pred_label"]) == [["0", "1", "2"][i] for i in logits.argmax(1)]


def test_missing_folds_are_listed(tmp_path, folder_data):
    cfg = tiny_cfg(tmp_path, folder_data, **QUICK)
    folds.run(cfg)
    train.run(cfg, only=[1])
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
    r = ensemble.Result("x", [], layout, list(layout.classes), [0], scores, np.array([]), np.array([]),
                        np.zeros((0, 100)), [1.0])
    assert ensemble.build_submission(r)["pred_label"].tolist() == ["10"]


def test_submission_validation_catches_mistakes():
    ids = pd.Series(["a", "b"])
    good = pd.DataFrame({"id": ["a", "b"], "y": ["cat", "dog"]})
    ensemble.validate_submission(good, ids, ["cat", "dog"], ("id", "y"))
    for bad, needle in [(good.iloc[:1], "missing"), (good.assign(y=["cat", "cow"]), "cow"),
                        (good.rename(columns={"y": "label"}), "header"), (good.iloc[[0, 0]], "repeats")]:
        with pytest.raises(ValueError, match=needle):
            ensemble.validate_submission(bad, ids, ["cat", "dog"], ("id", "y"))


def test_local_scores_equal_sklearn_on_usage_subsets(folder_run, folder_data):
    cfg, path = folder_run
    board = leaderboard.load(cfg.exp_dir.parent.parent / "submissions" / "leaderboard.csv")
    row = board[board["file"] == path.name].iloc[0]
    sol = pd.read_csv(folder_data / "solution.csv", dtype=str)
    merged = sol.merge(pd.read_csv(path, dtype=str), on="image_name")
    for usage in ("Public", "Private"):
        part = merged[merged["Usage"] == usage]
        assert float(row[usage.lower()]) == pytest.approx(accuracy_score(part["label"], part["pred_label"]), abs=1e-5)


def test_rerun_skips_and_leaderboard_keeps_rows(folder_run):
    cfg, path = folder_run
    board_path = cfg.exp_dir.parent.parent / "submissions" / "leaderboard.csv"
    logits = cfg.exp_dir / "fold0" / "test_logits.npz"
    before = logits.stat().st_mtime_ns
    assert predict.run([cfg])[0] == path, "same predictions, same file"
    assert logits.stat().st_mtime_ns == before, "up-to-date test logits are not recomputed"
    board = leaderboard.load(board_path)
    board = leaderboard.upsert(board, {"file": "other.csv", "public": "0.5"})
    leaderboard.save(board, board_path)
    predict.run([cfg])
    after = leaderboard.load(board_path)
    assert set(after["file"]) == {path.name, "other.csv"} and len(after) == 2, after


def test_checkpoint_for_other_classes_is_refused(tmp_path, folder_run, folder_data):
    cfg, _ = folder_run
    data = tmp_path / "data"
    shutil.copytree(folder_data, data)
    shutil.copytree(data / "train" / "2", data / "train" / "3")
    other = tiny_cfg(tmp_path, data, **QUICK)
    folds.run(other)
    shutil.copytree(cfg.exp_dir, other.exp_dir)
    for k in range(2):
        (other.exp_dir / f"fold{k}" / "test_logits.npz").unlink()
    with pytest.raises(ValueError, match=r"trained for 3 classes.*data has 4"):
        predict.run([other])


def test_unreadable_test_image_is_listed_and_no_csv(tmp_path, folder_run, folder_data):
    cfg, _ = folder_run
    data = tmp_path / "data"
    shutil.copytree(folder_data, data)
    (data / "test" / "broken.png").write_bytes(b"\x89PNG not really")
    other = tiny_cfg(tmp_path, data, **QUICK)
    shutil.copytree(cfg.exp_dir.parent, other.exp_dir.parent, dirs_exist_ok=True)
    with pytest.raises(ValueError, match="broken.png"):
        predict.run([other])
    assert not list((tmp_path / "submissions").glob("*.csv")), "no submission may be written"


def test_two_experiments_ensemble(tmp_path, folder_data):
    a = tiny_cfg(tmp_path, folder_data, **QUICK, name="a")
    b = tiny_cfg(tmp_path, folder_data, **QUICK, name="b", head="linear", merge="probs")
    folds.run(a)
    for cfg in (a, b):
        train.run(cfg)
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
    parts = [load_npz(cfg.exp_dir / f"fold{k}" / "holdout_logits.npz") for k in range(2)]
    assert all(p["ids"][0].startswith("val/") for p in parts) and len(parts[0]["ids"]) == 9
    labels = np.array([int(i.split("/")[1]) for i in parts[0]["ids"]])  # class folders 0, 1, 2
    want = accuracy_score(labels, ensemble.average([p["logits"] for p in parts], "logits").argmax(1))
    row = leaderboard.load(tmp_path / "submissions" / "leaderboard.csv").iloc[0]
    assert float(row["holdout_top1"]) == pytest.approx(want, abs=1e-5), row
    oof = np.concatenate([load_npz(cfg.exp_dir / f"fold{k}" / "oof.npz")["ids"] for k in range(2)])
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
