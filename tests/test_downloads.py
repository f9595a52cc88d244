"""Twenty-five real competitions as Kaggle hands them over (tests/downloads.py), each served to the real `kaggle`
CLI from a loopback server and taken through download -> folds -> train -> predict -> submit -> leaderboard with
COMP alone: the written file checked as Kaggle would (the sample's header, every id once, values of the right
kind), no patient in two folds, and a CV above the constant submission's."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import downloads
from conftest import TINY
from kit import metrics
from kit.io import load_npz
from kit.jobs.cli import main

# COMP alone names the quick preset; its two probes before the first fold (the flip's 100 steps, the time budget's)
# are tested in tests/test_auto.py and were a third of each case's time here
FAST = {**TINY, "stage1_epochs": 1, "stage2_epochs": 0, "mixup_alpha": 0.0, "name": "tiny", "batch_size": 4,
        "hflip": 0.5, "time_budget": 0}
TRAINED = FAST | {"stage1_epochs": 6}  # enough for every stand-in to score above the constant (about 1 s more each)


@pytest.fixture
def kaggle_env(kaggle_env, tmp_path, monkeypatch):
    """conftest's loopback Kaggle, from a fresh working directory (downloads land in its data/)."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return kaggle_env


def _check_values(comp, sample: pd.DataFrame, sub: pd.DataFrame, classes: set[str]) -> None:
    values = sub.iloc[:, 1:]
    if comp.values in ("probs", "prob"):
        numbers = values.apply(pd.to_numeric, errors="coerce")
        assert numbers.notna().all().all() and ((numbers >= 0) & (numbers <= 1)).all().all(), values.head()
    elif comp.values == "label":
        assert sub.iloc[:, 1].isin(classes).all(), (sub.iloc[:, 1].unique(), classes)
    elif comp.values == "tags":
        assert all(v.split() and set(v.split()) <= classes for v in sub.iloc[:, 1]), sub.iloc[:, 1].unique()
    elif comp.values == "labelconf":  # a class and its confidence
        parts = sub.iloc[:, 1].str.split()
        assert (parts.str.len() == 2).all() and parts.str[0].isin(classes).all(), sub.iloc[:, 1].unique()
        assert pd.to_numeric(parts.str[1]).between(0, 1).all()
    elif comp.values == "value":  # a number, in the range the training values span
        numbers = pd.to_numeric(sub.iloc[:, 1], errors="coerce")
        assert numbers.notna().all() and np.isfinite(numbers).all(), sub.iloc[:, 1].head()
    else:  # topk: five classes, best first, none twice
        assert all(len(v.split()) == 5 == len(set(v.split())) and set(v.split()) <= classes for v in sub.iloc[:, 1])


def _above_the_constant(exp: Path, n_classes: int) -> None:
    """The experiment's CV beats the best constant submission (the prior, or the mean) by a tenth of its score."""
    cv = json.loads((exp / "cv.json").read_text())
    labels = np.concatenate([load_npz(p)["labels"] for p in sorted(exp.glob("fold*/oof.npz"))])
    metric = metrics.get(cv["metric"])
    constant = metrics.chance(metric, labels, n_classes)
    margin = 0.1 * max(abs(constant), 0.1)
    assert metric.better(cv["score"], constant) and abs(cv["score"] - constant) >= margin, (cv["metric"], cv["score"],
                                                                                            constant)


def _through(name, tmp_path, kaggle_env, capsys, config=FAST):
    data_zip, comp, sample = downloads.build(name, tmp_path / "build")
    kaggle_env.data_zip, kaggle_env.metric = data_zip, comp.metric
    assert main(["download", "--comp", comp.slug]) == 0
    keys = ["--comp", comp.slug, *(f"{k}={v}" for k, v in config.items())]
    for command in ("folds", "train", "predict"):
        assert main([command, *keys]) == 0, f"{comp.slug}: kit {command} failed: {capsys.readouterr().err[-2000:]}"
    return comp, sample


def _submitted(comp, tmp_path, kaggle_env, capsys, written, config=FAST) -> None:
    """`make submit` uploads the file predict wrote, byte for byte; `make leaderboard` reads Kaggle's row back."""
    keys = ["--comp", comp.slug, *(f"{k}={v}" for k, v in config.items())]
    assert main(["submit", *keys]) == 0, f"{comp.slug}: kit submit failed: {capsys.readouterr().err[-2000:]}"
    assert [u["data"] for u in kaggle_env.uploads.values()] == [written.read_bytes()]
    assert main(["leaderboard", *keys]) == 0, f"{comp.slug}: kit leaderboard: {capsys.readouterr().err[-2000:]}"
    board = pd.read_csv(tmp_path / "work" / "submissions" / comp.slug / "leaderboard.csv", dtype=str)
    assert board["kaggle_ref"].notna().all(), board


@pytest.mark.slow
@pytest.mark.parametrize("name", list(downloads.BUILDERS))
def test_a_real_download_goes_from_download_to_a_submission_kaggle_accepts(name, tmp_path, kaggle_env, capsys):
    comp, sample = _through(name, tmp_path, kaggle_env, capsys, TRAINED)
    data = tmp_path / "work" / "data" / comp.slug
    assert not [p for p in data.rglob("*") if p.suffix in (".zip", ".7z", ".tar")], "every archive is unpacked"
    written = sorted((tmp_path / "work" / "submissions" / comp.slug).glob("tiny-*.csv"))
    assert len(written) == 1, written
    sub = pd.read_csv(written[0], dtype=str, keep_default_na=False)
    assert list(sub.columns) == list(sample.columns), "the sample's header, exactly"
    _submitted(comp, tmp_path, kaggle_env, capsys, written[0], TRAINED)
    assert list(sub.iloc[:, 0]) == list(sample.iloc[:, 0]), "every sample id once, in its order and spelling"
    folds_dir = tmp_path / "work" / "folds" / comp.slug
    meta = json.loads((folds_dir / "folds.json").read_text())
    _above_the_constant(folds_dir / "tiny", len(meta["classes"]))
    table = pd.read_csv(folds_dir / "folds.csv", dtype=str, keep_default_na=False)
    classes = set(meta["classes"])
    _check_values(comp, sample, sub, classes)
    if comp.group:
        assert meta["group"] == comp.group
        cv = table[table["role"] == "cv"]
        assert (cv.groupby("group")["fold"].nunique() == 1).all(), "a patient's images in two folds"
        manifest = json.loads(written[0].with_suffix(".json").read_text())
        assert manifest["runs"][-1]["grouped_by"] == comp.group
    else:
        assert "group" not in meta


def test_the_sample_decides_the_label_column_and_the_header(tmp_path, kaggle_env, capsys):
    """ISIC: target is the label (diagnosis and benign_malignant restate it); Plant Seedlings: file,species."""
    from kit.data.layout import scan
    for name, header, label in (("isic", ("image_name", "target"), {"0", "1"}),
                                ("plant_seedlings", ("file", "species"), {"Black-grass", "Common Chickweed",
                                                                          "Sugar beet"})):
        data_zip, comp, _ = downloads.build(name, tmp_path / name)
        (tmp_path / f"{name}.zip").write_bytes(data_zip)
        with zipfile.ZipFile(tmp_path / f"{name}.zip") as z:
            z.extractall(tmp_path / "d" / name)
        layout = scan(tmp_path / "d" / name, submission="prob" if name == "isic" else "auto")  # no competition.json
        assert layout.header == header and set(layout.classes) == label, (layout.header, layout.classes)


def test_two_label_files_that_both_fit_name_the_key(tmp_path):
    from kit.data.layout import scan
    data_zip, _, _ = downloads.build("histopathologic", tmp_path / "b")
    (tmp_path / "h.zip").write_bytes(data_zip)
    with zipfile.ZipFile(tmp_path / "h.zip") as z:
        z.extractall(tmp_path / "d")
    pd.read_csv(tmp_path / "d" / "train_labels.csv").to_csv(tmp_path / "d" / "labels_copy.csv", index=False)
    with pytest.raises(ValueError, match="train_csv="):
        scan(tmp_path / "d", submission="prob")
    assert len(scan(tmp_path / "d", submission="prob", train_csv="train_labels.csv").train) == 12


def _unzipped(name, tmp_path):
    data_zip, _, _ = downloads.build(name, tmp_path / "b")
    with zipfile.ZipFile(io.BytesIO(data_zip)) as z:
        z.extractall(tmp_path / "d")
    return tmp_path / "d"


def test_patients_never_share_two_folds_and_group_none_turns_it_off(tmp_path):
    from kit.data import folds
    from kit.data.layout import scan
    groups = np.repeat(np.arange(10), 3)
    labels = np.array([str(g % 2) for g in groups])
    fold = folds.stratify(labels, 3, 0, groups)
    assert all(len(set(fold[groups == g])) == 1 for g in range(10))
    multi = np.eye(4, dtype=int)[groups % 4]
    fold = folds.stratify(multi, 3, 0, groups)
    assert all(len(set(fold[groups == g])) == 1 for g in range(10)), "the grouped iterative split too"
    data = _unzipped("ranzcr", tmp_path)
    assert scan(data).group == "PatientID", "found by its name"
    assert scan(data, group="none").group == "" and "group" not in scan(data, group="none").train
    with pytest.raises(ValueError, match="group=Nope"):
        scan(data, group="Nope")


def test_bad_downloads_get_one_line_each(tmp_path):
    from kit.data import unpack
    (tmp_path / "cut.zip").write_bytes(downloads.build("aptos", tmp_path / "b")[0][:500])
    with pytest.raises(ValueError, match="cut.zip.*download it again"):
        unpack.unpack_all(tmp_path)
    (tmp_path / "cut.zip").unlink()
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        info = zipfile.ZipInfo("train/x.jpg")
        info.external_attr = 0o120777 << 16  # a symlink member
        z.writestr(info, "/etc/passwd")
    with pytest.raises(ValueError, match="link"):
        unpack.unpack_all(tmp_path)
    (tmp_path / "link.zip").unlink()
    with zipfile.ZipFile(tmp_path / "big.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", b"\0" * 2_000_000)
    with pytest.raises(ValueError, match="KIT_UNPACK_MAX_GB"):
        unpack.unpack_all(tmp_path, limit=1_000_000)
    assert not (tmp_path / "zeros.bin").exists(), "nothing written before the checks pass"
    data = _unzipped("cassava", tmp_path / "c")
    (data / "test_images" / "2216849948.jpg").unlink()
    with pytest.raises(ValueError, match="2216849948.jpg"):
        scan_data(data)


def scan_data(data):
    from kit.data.layout import scan
    return scan(data)


def test_a_rerun_of_download_unpacks_only_what_is_still_packed(tmp_path, kaggle_env):
    from kit.board import kaggle
    data_zip, comp, _ = downloads.build("planet", tmp_path / "b")
    kaggle_env.data_zip = data_zip
    out = kaggle.download(comp.slug)
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert "train-jpg/train_0.jpg" in first and "train_v2.csv" in first and "test-jpg-additional/file_0.jpg" in first
    stamp = (out / "train-jpg" / "train_0.jpg").stat().st_mtime_ns
    assert kaggle.download(comp.slug) == out
    assert (out / "train-jpg" / "train_0.jpg").stat().st_mtime_ns == stamp, "nothing unpacked twice"


@pytest.mark.parametrize("target", ["folds", "train", "predict", "submit", "leaderboard"])
def test_comp_alone_carries_every_make_target_to_its_download(target):
    import subprocess
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", target, "COMP=some-comp"], capture_output=True,
                         text=True, check=True).stdout
    assert "data=data/some-comp" in out, f"make {target} COMP= reads data/some-comp: {out}"


def test_each_data_set_has_its_own_outputs(tmp_path):
    from kit.config import load_config
    a, b = load_config(None, {"data": "data/some-comp"}), load_config(None, {"data": "data/demo"})
    assert (a.work_dir, a.submissions_dir) == ("folds/some-comp", "submissions/some-comp")
    assert (b.work_dir, b.submissions_dir) == ("folds/demo", "submissions/demo")
    assert load_config(None, {"data": "data/x", "work_dir": str(tmp_path)}).work_dir == str(tmp_path), "a key wins"


def test_a_label_file_with_two_candidate_label_columns_names_label_col(tmp_path):
    from kit.data.layout import scan
    data = _unzipped("histopathologic", tmp_path)
    labels = pd.read_csv(data / "train_labels.csv", dtype=str)
    labels.assign(stain=["he"] * len(labels)).to_csv(data / "train_labels.csv", index=False)
    (data / "sample_submission.csv").unlink()  # without the sample, nothing says which column is the label
    with pytest.raises(ValueError, match="label_col="):
        scan(data)
    assert set(scan(data, label_col="label").classes) == {"0", "1"}


@pytest.mark.parametrize("name,label,group", [("state_farm", "classname", "subject"), ("leaf", "species", ""),
                                               ("iwildcam", "Category", "location"), ("herbarium", "Predicted", "")])
def test_the_second_dozens_labels_are_found_where_the_competition_keeps_them(tmp_path, name, label, group):
    """State Farm: the drivers' file beside the class folders; Leaf: the species among 192 features; iWildCam and
    Herbarium: COCO-style JSON, the category as the sample spells it (its id), Herbarium's test ids through its
    JSON list; the groups from a column of the drivers' file and from a JSON field."""
    from kit.data.layout import scan
    data = _unzipped(name, tmp_path)
    from kit.data import unpack
    unpack.unpack_all(data)
    layout = scan(data)
    sample = pd.read_csv(next(data.glob("sample_submission.csv")), dtype=str)
    assert any(f"label {label})" in line for line in layout.found), layout.found
    assert list(layout.test["id"]) == list(sample.iloc[:, 0]) and layout.test["path"].notna().all()
    assert layout.group == group, layout.group
    if name in ("iwildcam", "herbarium"):
        assert set(layout.classes) <= {"0", "4", "7", "10", "372"}, "category ids, as the sample's numbers spell them"


def test_a_json_whose_file_names_name_no_image_is_one_line(tmp_path):
    from kit.data.layout import scan
    data = _unzipped("iwildcam", tmp_path)
    for p in (data / "train").glob("*.jpg"):
        p.rename(p.with_name("x" + p.name))
    with pytest.raises(ValueError, match=r"iwildcam2020_train_annotations.json: 18 id\(s\) have no image"):
        scan(data)


@pytest.mark.slow
def test_isic_2024_predicts_from_hdf5_and_ranks_by_partial_auc(tmp_path, kaggle_env, capsys):
    """The test images only in test-image.hdf5, read by key in the loader; the CV in the metric Kaggle names."""
    comp, sample = _through("isic_2024", tmp_path, kaggle_env, capsys)
    folds_dir = tmp_path / "work" / "folds" / comp.slug
    assert json.loads((folds_dir / "tiny" / "cv.json").read_text())["metric"] == "pauc80"
    table = pd.read_csv(folds_dir / "folds.csv", dtype=str)
    assert table["path"].str.startswith("train-image/image/").all(), "a file preferred to the same image in HDF5"
    data = tmp_path / "work" / "data" / comp.slug
    assert not list(data.rglob("ISIC_0015657*")), "nothing unpacked from the HDF5 file"


def test_an_hdf5_file_missing_a_test_id_is_one_line(tmp_path):
    import h5py

    from kit.data.layout import scan
    data = _unzipped("isic_2024", tmp_path)
    with h5py.File(data / "test-image.hdf5", "a") as f:
        del f["ISIC_0015658"]
    with pytest.raises(ValueError, match=r"sample_submission.csv: 1 id\(s\) have no image .*ISIC_0015658"):
        scan(data)


def test_radar_bands_become_images_once_with_their_scaling_recorded(tmp_path):
    """Statoil: band_1, band_2 and their mean as RGB, one dB scaling from the training records for both sides."""
    import numpy as np
    from PIL import Image

    from kit.data import unpack
    from kit.data.layout import scan
    data = _unzipped("statoil", tmp_path)
    unpack.unpack_all(data)
    layout = scan(data)
    done = json.loads((data / "kit-bands" / "done.json").read_text())
    lo, hi = (float(x) for x in done["scaling"].split("[")[1].split("]")[0].split(", "))
    record = json.loads((data / "data" / "processed" / "train.json").read_text())[3]
    img = np.asarray(Image.open(data / "kit-bands" / "train" / f"{record['id']}.png"))
    b1 = np.asarray(record["band_1"]).reshape(75, 75)
    assert img.shape == (75, 75, 3)
    assert np.abs(img[..., 0].astype(float) - np.clip((b1 - lo) / (hi - lo), 0, 1) * 255).max() <= 0.5 + 0.01 * 255
    assert set(layout.classes) == {"0", "1"} and layout.submission == "prob" and len(layout.test) == 5
    stamp = (data / "kit-bands" / "train.csv").stat().st_mtime_ns
    scan(data)
    assert (data / "kit-bands" / "train.csv").stat().st_mtime_ns == stamp, "written once"
    assert not [line for line in layout.found if "passed over" in line and "train.json" in line], layout.found


def test_four_stain_files_an_id_are_one_image_of_four_channels(tmp_path):
    """Human Protein Atlas: <Id>_red/_green/_blue/_yellow.png found by the Id, read as (4, H, W) in that order, and
    a model made for four channels; an id whose yellow file is lost is one line, not a three-channel image."""
    import torch
    from PIL import Image

    from kit.data.layout import scan
    from kit.data.loaders import ImageDataset, eval_transform
    from kit.model import create_model
    data = _unzipped("protein_atlas", tmp_path)
    layout = scan(data)
    first = layout.train["path"].iloc[0]
    assert layout.channels == 4 and first.endswith("_{red,green,blue,yellow}.png"), first
    assert layout.as_record()["channels"] == 4 and any("4 channels" in line for line in layout.found)
    x, _ = ImageDataset(root=data, paths=[first], labels=None, transform=eval_transform(32))[0]
    stem = first.split("{")[0]
    for c, stain in enumerate(("red", "green", "blue", "yellow")):
        assert torch.equal(x[c], torch.from_numpy(np.array(Image.open(data / f"{stem}{stain}.png")))), stain
    model = create_model("test_resnet", "linear", 3, pretrained=False, channels=4)
    assert model.eval()(x[None].float()).shape == (1, 3) and model.mean.shape == (1, 4, 1, 1)
    (data / f"{stem}yellow.png").unlink()
    with pytest.raises(ValueError, match=r"images of different channel counts \(1 image\(s\) of 3 channels"):
        scan(data)


def test_pretrained_rgb_weights_are_adapted_to_four_channels(tmp_path):
    """timm's in_chans: the RGB filters kept and scaled, a fourth made from them, for a local weights file too."""
    import timm
    import torch

    from kit.model import create_model
    rgb = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    torch.save(rgb.state_dict(), tmp_path / "w.pth")
    four = create_model("test_resnet", "linear", 2, pretrained=True, pretrained_file=str(tmp_path / "w.pth"), channels=4)
    name = next(k for k, v in rgb.state_dict().items() if v.ndim == 4)
    w3, w4 = rgb.state_dict()[name], four.backbone.state_dict()[name]
    assert w4.shape[1] == 4 and torch.allclose(w4[:, :3], w3 * 3 / 4)


def test_a_score_to_predict_is_a_regression_that_beats_the_mean(tmp_path, capsys):
    """PetFinder Pawpularity: a 1-100 score ranked by RMSE is a number to predict (from the metric Kaggle names),
    folds stratified on its quantiles, the CV in RMSE clearly below the mean's, the submission numbers; without
    the metric, the same column is classes until task=regression says otherwise."""
    from conftest import TINY
    from kit.data.layout import scan
    data = _unzipped("pawpularity", tmp_path)
    (data / "competition.json").write_text(json.dumps({"metric": "rmse"}))
    layout = scan(data)
    assert (layout.task, layout.submission, layout.classes) == ("regression", "value", ("Pawpularity",))
    keys = [f"data={data}", f"work_dir={tmp_path / 'f'}", f"submissions_dir={tmp_path / 's'}",
            *(f"{k}={v}" for k, v in TINY.items())]
    for command in ("folds", "train", "predict"):
        assert main([command, *keys]) == 0, capsys.readouterr().err[-2000:]
    table = pd.read_csv(tmp_path / "f" / "folds.csv")
    top, bottom = table["label"] >= table["label"].quantile(0.75), table["label"] <= table["label"].quantile(0.25)
    assert set(table.loc[top, "fold"]) == set(table.loc[bottom, "fold"]) == {0, 1}, "each fold spans the range"
    cv = json.loads((tmp_path / "f" / "tiny" / "cv.json").read_text())
    assert cv["metric"] == "rmse" and cv["score"] < 0.6 * table["label"].std(ddof=0), (cv["score"], "vs the mean's")
    sub = pd.read_csv(next((tmp_path / "s").glob("tiny-*.csv")))
    assert list(sub.columns) == ["Id", "Pawpularity"] and sub["Pawpularity"].nunique() > 1
    assert (tmp_path / "f" / "tiny" / "predicted.png").is_file() and (tmp_path / "f" / "tiny" / "worst.csv").is_file()
    (data / "competition.json").unlink()
    assert scan(data).task == "single", "whole numbers without a regression metric stay classes"
    assert scan(data, task="regression").submission == "value"
    capsys.readouterr()
    assert main(["folds", *keys, f"work_dir={tmp_path / 'g'}"]) == 2
    assert "task=regression" in capsys.readouterr().err, "the refusal of 1-image classes names the way out"


def test_a_regression_target_with_text_in_it_is_one_line(tmp_path):
    from kit.data.layout import scan
    data = _unzipped("pawpularity", tmp_path)
    table = pd.read_csv(data / "train.csv", dtype=str)
    table.loc[3, "Pawpularity"] = "n/a"
    table.to_csv(data / "train.csv", index=False)
    with pytest.raises(ValueError, match=r"train.csv: task=regression needs a number in Pawpularity on every row: "
                                         r"line 5: 'n/a'"):
        scan(data, task="regression")


def test_an_infinite_target_and_pseudo_labels_for_a_regression_are_one_line_each(tmp_path):
    from kit.config import Config
    from kit.data.layout import scan
    from kit.train import pseudo
    data = _unzipped("pawpularity", tmp_path)
    layout = scan(data, task="regression")
    with pytest.raises(ValueError, match="pseudo_from=src: .*a regression has none"):
        pseudo.select(Config(name="new", work_dir=str(tmp_path), pseudo_from="src"), 0, layout)
    table = pd.read_csv(data / "train.csv", dtype=str)
    table.loc[0, "Pawpularity"] = "inf"
    table.to_csv(data / "train.csv", index=False)
    with pytest.raises(ValueError, match=r"needs a number in Pawpularity on every row: line 2: 'inf'"):
        scan(data, task="regression")
