"""`kit stack`: a second level on experiments' out-of-fold predictions and the competition's tabular columns
(kit/predict/stack.py, kit/data/tabular.py), on a stand-in whose images say nothing of the label and whose
columns do."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, make_image
from kit.board import leaderboard
from kit.data import tabular
from kit.data.layout import scan
from kit.jobs.cli import main

FAST = {**TINY, "stage1_epochs": 1, "stage2_epochs": 0, "mixup_alpha": 0.0, "batch_size": 8}


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """Two classes; every image the same grey noise; `age` and `site` carry the label, `diagnosis` restates it (in
    train.csv only), `note` is free text; solution.csv holds the test labels."""
    root = tmp_path_factory.mktemp("clinic")
    rng = np.random.default_rng(0)

    def rows(n, prefix):
        label = rng.integers(0, 2, n)
        return pd.DataFrame({"id": [f"{prefix}{i:03d}" for i in range(n)], "label": np.where(label, "mel", "nev"),
                             "age": np.round(40 + 25 * label + rng.normal(0, 8, n), 1),
                             "site": np.where(rng.random(n) < 0.8, np.where(label, "back", "arm"), "leg"),
                             "note": [f"seen by dr {rng.integers(10**6)}" for _ in range(n)],
                             "diagnosis": np.where(label, "melanoma", "nevus")})

    train, test = rows(80, "tr"), rows(60, "te")
    for side, table in (("train", train), ("test", test)):
        for i in table["id"]:
            make_image(root / side / f"{i}.png", (120, 120, 120), rng, size=(24, 24))
    train[["id", "label", "age", "site", "note", "diagnosis"]].to_csv(root / "train.csv", index=False)
    test[["id", "age", "site", "note"]].to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "label": "nev"}).to_csv(root / "sample_submission.csv", index=False)
    usage = np.where(np.arange(len(test)) % 2, "Private", "Public")
    pd.DataFrame({"id": test["id"], "label": test["label"], "Usage": usage}).to_csv(root / "solution.csv", index=False)
    return root


def _keys(tmp_path, data, **more):
    values = {**FAST, "data": data, "work_dir": tmp_path / "folds", "submissions_dir": tmp_path / "subs", **more}
    return [f"{k}={v}" for k, v in values.items()]


def test_the_columns_both_files_share_are_typed_and_the_rest_left_out(clinic):
    tab = tabular.find(scan(clinic))
    assert tab.kinds == {"age": "numeric", "site": "categorical"}, "not the id, the label, free text or train-only"
    assert "left out (text, ids or one value): note" in tab.said and tab.test_file == "test.csv"
    assert len(tab.test) == 60 and tab.test["age"].notna().all()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, clinic):
    """The image experiment `img` trained and predicted on the clinic: (its keys, its folder)."""
    tmp = tmp_path_factory.mktemp("img")
    keys = _keys(tmp, clinic, name="img")
    for command in ("folds", "train", "predict"):
        assert main([command, *keys]) == 0
    return keys, tmp


def test_a_stack_with_the_columns_beats_the_image_model_on_held_out_images(trained, caplog):
    keys, tmp = trained
    with caplog.at_level("INFO"):
        assert main(["stack", *keys]) == 0
    assert "tabular columns of train.csv and test.csv: 1 numeric (age), 1 categorical (site)" in caplog.text
    board = leaderboard.load(tmp / "subs" / "leaderboard.csv")
    image, stacked = (board[board["file"].str.startswith(prefix)].iloc[0] for prefix in ("img-", "stack-img-"))
    assert float(image["private"]) < 0.75, "the images say nothing of the label"
    assert float(stacked["private"]) >= float(image["private"]) + 0.2, board[["cv", "public", "private"]]
    assert float(stacked["cv"]) >= 0.8 and abs(float(stacked["cv"]) - float(stacked["private"])) < 0.15, \
        "nested CV near the held-out score"
    manifest = json.loads((tmp / "subs" / stacked["file"]).with_suffix(".json").read_text())
    record = manifest["runs"][-1]["blend"]
    assert record["members"] == ["img"] and record["columns"] == {"age": "numeric", "site": "categorical"}
    assert record["params"]["learning_rate"] == 0.05
    from kit.config import load_config, parse_overrides
    from kit.jobs import notebook
    cfg = load_config(None, parse_overrides(keys))
    assert notebook.submitted([cfg]) == ([cfg], "stack"), "the notebook's bundle carries the stack make submit picks"


def test_one_member_and_no_columns_is_one_line(trained, capsys):
    keys, _ = trained
    assert main(["stack", *keys, "tabular=false"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one experiment and no columns (tabular=off)" in err[0], err


def test_a_bundle_carries_the_stack_and_predicts_its_submission_from_the_test_file(trained, clinic, tmp_path):
    """export --stack: the learner and the columns it reads travel; predict --bundle on the competition's folder
    (its test.csv beside the test images, no training images) writes the stack's submission byte for byte."""
    keys, tmp = trained
    assert main(["export", *keys, "--stack", "--out", str(tmp_path / "bundle")]) == 0
    spec = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert spec["name"] == "stack-img" and spec["stack"]["tabular"]["kinds"] == {"age": "numeric", "site": "categorical"}
    exported = tmp / "subs" / spec["submission"]["file"]
    kaggle = tmp_path / "input"  # what a code competition's kernel sees: the test images, test.csv, the sample
    shutil.copytree(clinic / "test", kaggle / "test")
    for name in ("test.csv", "sample_submission.csv"):
        shutil.copy(clinic / name, kaggle / name)
    out = tmp_path / "out"
    assert main(["predict", "--bundle", str(tmp_path / "bundle.zip"), f"data={kaggle}", f"submissions_dir={out}"]) == 0
    assert (out / "submission.csv").read_bytes() == exported.read_bytes(), "the bundle's stack is the exported one"
    plain = pd.read_csv(tmp / "subs" / next(p.name for p in (tmp / "subs").glob("img-*.csv")))
    assert not pd.read_csv(out / "submission.csv").equals(plain), "the stack's labels, not the image model's"


def test_a_stacked_bundle_without_its_test_file_says_which_file_in_one_line(trained, clinic, tmp_path, capsys):
    keys, _ = trained
    assert main(["export", *keys, "--stack", "--out", str(tmp_path / "bundle")]) == 0
    shutil.copytree(clinic / "test", tmp_path / "input" / "test")
    shutil.copy(clinic / "sample_submission.csv", tmp_path / "input")
    capsys.readouterr()
    assert main(["predict", "--bundle", str(tmp_path / "bundle"), f"data={tmp_path / 'input'}",
                 f"submissions_dir={tmp_path / 'out'}"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test.csv" in err[0] and "age, site" in err[0], err


def test_two_members_of_a_multi_label_task_stack_one_learner_per_class(tmp_path):
    """Plant Pathology 2021 (space-separated tags, no tabular columns): the members' probabilities alone."""
    import yaml
    from test_downloads import TRAINED, _unzipped
    data = _unzipped("plant_pathology_2021", tmp_path)
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**TRAINED, "name": name, "seed": seed}))
    keys = [f"data={data}", f"work_dir={tmp_path / 'f'}", f"submissions_dir={tmp_path / 's'}"]
    exps = ["--exp", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    for command in ("folds", "train", "predict", "stack"):
        assert main([command, *exps, *keys]) == 0, command
    written = sorted((tmp_path / "s").glob("stack-a+b-*.csv"))
    sub = pd.read_csv(written[0], keep_default_na=False)
    assert len(written) == 1 and list(sub.columns) == ["image", "labels"] and (sub["labels"] != "").all(), sub
    record = json.loads(written[0].with_suffix(".json").read_text())["runs"][-1]["blend"]
    assert record["members"] == ["a", "b"] and record["columns"] == {} and "one per class" in record["method"]


def test_a_stack_of_two_members_is_scored_on_the_holdout_images(tmp_path):
    """val_mode=holdout: DATA/val, never trained on, gets the stack's score as the members' (the leaderboard's
    holdout column), from the learner fitted on every OOF row."""
    from conftest import write_folder_data
    data = write_folder_data(tmp_path / "data", n_per_class=8)
    write_folder_data(tmp_path / "val_src", n_per_class=3, seed=5)
    shutil.copytree(tmp_path / "val_src" / "train", data / "val")
    import yaml
    keys = [f"data={data}", f"work_dir={tmp_path / 'folds'}", f"submissions_dir={tmp_path / 'subs'}",
            "val_mode=holdout"]
    exps = ["--exp", *[str(tmp_path / f"{n}.yaml") for n in "ab"]]
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**FAST, "name": name, "seed": seed}))
    for command in ("folds", "train", "stack"):
        assert main([command, *exps, *keys]) == 0, command
    board = leaderboard.load(tmp_path / "subs" / "leaderboard.csv").set_index("experiments")
    assert board["holdout"].ne("").all() and board.loc["a b", "file"].startswith("stack-a+b-"), board
    held = float(board.loc["a b", "holdout"])
    assert 0 <= held <= 1


def test_a_regression_stacks_its_members_values_with_the_photo_flags(tmp_path):
    """PetFinder Pawpularity (a score ranked by RMSE, 12 photo flags in train.csv and test.csv): one regressor on
    the members' values and the flags; the submission is a value per test image, in the sample's columns."""
    import yaml
    from test_downloads import TRAINED, _unzipped
    data = _unzipped("pawpularity", tmp_path)  # without the download's competition.json (RMSE): the task said
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**TRAINED, "name": name, "seed": seed}))
    keys = [f"data={data}", f"work_dir={tmp_path / 'f'}", f"submissions_dir={tmp_path / 's'}", "task=regression"]
    exps = ["--exp", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    for command in ("folds", "train", "stack"):
        assert main([command, *exps, *keys]) == 0, command
    written = sorted((tmp_path / "s").glob("stack-a+b-*.csv"))
    sub = pd.read_csv(written[0])
    assert len(written) == 1 and list(sub.columns) == ["Id", "Pawpularity"] and len(sub) == 5, sub
    assert sub["Pawpularity"].between(-100, 200).all(), "values in the target's units, not probabilities"
    record = json.loads(written[0].with_suffix(".json").read_text())["runs"][-1]["blend"]
    assert record["members"] == ["a", "b"] and {"Eyes", "Blur"} <= set(record["columns"]), record
    board = leaderboard.load(tmp_path / "s" / "leaderboard.csv").set_index("experiments")
    assert board.loc["a b", "metric"] == "rmse" and float(board.loc["a b", "cv"]) > 0, board
