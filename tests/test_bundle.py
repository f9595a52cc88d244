"""Inference bundles: export, predict from the bundle alone, refusals.  pytest tests/test_bundle.py -q"""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import make_image, tiny_cfg, write_csv_data
from kit.data import folds
from kit.jobs.cli import main
from kit.predict import blend, bundle, predict
from kit.train import loop as train

QUICK = dict(stage1_epochs=2, stage2_epochs=0, n_folds=2, tta=["hflip"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two experiments on the CSV layout, trained and predicted, exported; then their folds deleted."""
    tmp = tmp_path_factory.mktemp("bundle")
    data = write_csv_data(tmp / "data")
    cfgs = [tiny_cfg(tmp, data, **QUICK), tiny_cfg(tmp, data, **QUICK, name="tiny_probs", merge="probs", head="linear")]
    for cfg in cfgs:
        folds.make_folds(cfg)
    train.run(cfgs)
    written = predict.run(cfgs, ensemble=True)
    out = bundle.export(cfgs, tmp / "bundle")
    files = [out / "bundle.json", tmp / "bundle.zip", written[-1].with_suffix(".json"), written[-1]]
    first = [f.read_bytes() for f in files]
    bundle.export(cfgs, tmp / "bundle")  # a rerun
    v2 = bundle.export(cfgs, tmp / "bundle.v2")  # its zip is bundle.v2.zip, not over bundle.zip
    RERUN.update(same=[f.read_bytes() == b for f, b in zip(files, first)], v2=v2)
    BLENDED["submission"] = blend.run(cfgs, steps=10)
    # kit blend's own run, read before export adds its run to the same manifest where its bytes are the same
    BLENDED["run"] = json.loads(BLENDED["submission"].with_suffix(".json").read_text())["runs"][-1]["blend"]
    # no steps given: export takes those of the newest kit blend of the two (10 here, not the default 50)
    BLENDED["bundle"] = bundle.export(cfgs, tmp / "bundle.blend", "blend")
    shutil.rmtree(cfgs[0].work_dir)  # folds.csv, checkpoints, OOF and test logits: the bundle needs none of them
    return tmp, data, written[-1], out


RERUN = {}  # what exporting twice did (the fixture's)
BLENDED = {}  # kit blend's submission of the two, and their bundle with its weights (the fixture's)


def test_export_twice_leaves_the_same_files(exported):
    assert RERUN["same"] == [True] * 4, "bundle.json, bundle.zip, the manifest and the submission, byte for byte"
    assert (RERUN["v2"].parent / "bundle.v2.zip").is_file(), "--out bundle.v2 writes bundle.v2.zip"


def test_bundle_predicts_the_same_bytes_without_folds(exported):
    tmp, data, submission, out = exported
    written = bundle.predict_bundle(out, {"data": str(data), "submissions_dir": str(tmp / "from_bundle")})
    assert written.name == submission.name, "the bundle's submission keeps its usual name (same bytes, same hash)"
    assert written.read_bytes() == submission.read_bytes(), "bundle predictions must equal the exported submission"
    assert (tmp / "from_bundle" / "submission.csv").read_bytes() == submission.read_bytes(), "submission.csv too"


def test_a_blend_bundle_carries_its_weights_and_predicts_the_blends_bytes(exported, tmp_path):
    """export --blend: kit blend's weights (at that blend's steps) in bundle.json; the bundle alone writes the
    blend's submission."""
    _, data, average, _ = exported
    assert BLENDED["submission"].read_bytes() != average.read_bytes(), "here the blend's weights change the file"
    spec = json.loads((BLENDED["bundle"] / "bundle.json").read_text())
    manifest = BLENDED["run"]
    assert spec["blend"]["method"] == manifest["method"], "refitted with the blend's own steps (10), not 50"
    assert spec["blend"]["weights"] == list(manifest["weights"].values()), (spec["blend"], manifest)
    written = bundle.predict_bundle(BLENDED["bundle"], {"data": str(data), "submissions_dir": str(tmp_path)})
    assert written.read_bytes() == BLENDED["submission"].read_bytes(), "the blend's bytes, not the average's"


def test_bundle_zip_needs_no_training_images(exported, tmp_path):
    _, data, submission, out = exported
    test_only = tmp_path / "test_only"  # what an inference notebook may get: test/ and sample_submission.csv
    shutil.copytree(data / "test", test_only / "test")
    shutil.copy(data / "sample_submission.csv", test_only)
    written = bundle.predict_bundle(out.with_suffix(".zip"), {"data": str(test_only), "submissions_dir": str(tmp_path)})
    assert written.read_bytes() == submission.read_bytes(), "the zip, on test images alone, gives the same CSV"


def test_bundle_holds_weights_and_settings_only(exported):
    _, _, submission, out = exported
    spec = json.loads((out / "bundle.json").read_text())
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    want = sorted(["bundle.json"] + [f["file"] for e in spec["experiments"] for f in e["folds"]])
    assert files == want, f"a bundle is bundle.json and one weights file per fold, got {files}"
    assert spec["submission"]["file"] == submission.name
    assert [e["config"]["tta"] for e in spec["experiments"]] == [["hflip"], ["hflip"]], "TTA travels in the bundle"


def test_tampered_weights_are_refused(exported, tmp_path, capsys):
    tmp, data, _, out = exported
    copy = shutil.copytree(out, tmp_path / "b")
    with open(copy / "tiny" / "fold0.pt", "ab") as f:
        f.write(b"x")
    assert main(["predict", "--bundle", str(copy), f"data={data}", f"submissions_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "tiny/fold0.pt (sha256 differs)" in err and len(err.strip().splitlines()) == 1, err


def test_other_competition_is_refused(exported, tmp_path, capsys):
    _, data, _, out = exported
    other = tmp_path / "other"
    shutil.copytree(data, other)
    rows = pd.read_csv(other / "train.csv")
    rows.loc[0, "breed"] = "wolf"  # a fourth class
    rows.to_csv(other / "train.csv", index=False)
    assert main(["predict", "--bundle", str(out), f"data={other}", f"submissions_dir={tmp_path}"]) == 2
    assert "classes" in capsys.readouterr().err, "a data set with other classes is refused"
    shutil.rmtree(other / "train")
    (other / "train.csv").unlink()
    pd.DataFrame({"image": ["x000"], "label": ["cat"]}).to_csv(other / "sample_submission.csv", index=False)
    assert main(["predict", "--bundle", str(out), f"data={other}", f"submissions_dir={tmp_path}"]) == 2
    assert "header" in capsys.readouterr().err, "a sample submission with another header is refused"


@pytest.mark.parametrize("override", ["tta=[]", "merge=probs", "img_size=64"])
def test_keys_the_bundle_fixes_are_refused(exported, tmp_path, capsys, override):
    _, data, _, out = exported
    assert main(["predict", "--bundle", str(out), f"data={data}", f"submissions_dir={tmp_path}", override]) == 2
    assert "fixes" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.csv")), "nothing written"


def test_unwritable_output_is_one_clear_line(exported, tmp_path, capsys):
    _, data, _, out = exported
    blocker = tmp_path / "file"
    blocker.write_text("")  # a path under a file cannot be created, as root or not
    assert main(["predict", "--bundle", str(out), f"data={data}", f"submissions_dir={blocker / 'sub'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "submissions_dir=" in err and "not writable" in err and len(err.splitlines()) == 1, err


def test_export_refuses_a_folder_that_is_not_a_bundle(tmp_path, folder_data, capsys):
    cfg = tiny_cfg(tmp_path, folder_data)
    (tmp_path / "mine").mkdir()
    make_image(tmp_path / "mine" / "photo.png", (0, 0, 0), np.random.default_rng(0))
    with pytest.raises(ValueError, match="not a bundle"):
        bundle.export([cfg], tmp_path / "mine")
    assert (tmp_path / "mine" / "photo.png").is_file(), "the user's folder is left alone"


def test_an_unreadable_hidden_test_image_is_predicted_from_the_others(exported, tmp_path, monkeypatch, caplog):
    """A code competition's kernel (bad_test_images=prior): one broken image among the hidden ones costs its row,
    not the submission; each image is decoded once (no check pass before the predictor's)."""
    import logging
    _, data, submission, out = exported
    hidden = tmp_path / "hidden"
    shutil.copytree(data / "test", hidden / "test")
    shutil.copy(data / "sample_submission.csv", hidden)
    (hidden / "test" / "x002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match=r"x002.jpg.*bad_test_images=prior"):
        bundle.predict_bundle(out, {"data": str(hidden), "submissions_dir": str(tmp_path / "refused")})

    def no_second_decode(*args, **kwargs):
        raise AssertionError("the test images are decoded before predicting, a second time")
    monkeypatch.setattr(predict, "find_bad_images", no_second_decode)  # as predict imports it
    with caplog.at_level(logging.WARNING):
        written = bundle.predict_bundle(out, {"data": str(hidden), "submissions_dir": str(tmp_path / "prior"),
                                              "bad_test_images": "prior"})
    assert "1 of 6 test image(s) could not be read" in caplog.text and "x002" in caplog.text, caplog.text
    ours = pd.read_csv(written, dtype=str).set_index("id")
    theirs = pd.read_csv(submission, dtype=str).set_index("id")
    assert list(ours.index) == list(theirs.index), "every id, in the sample's order"
    others = [i for i in theirs.index if i != "x002"]
    assert ours.loc[others].equals(theirs.loc[others]), "the readable images' rows are unchanged"


def test_the_prior_in_probability_space_is_the_mean_of_the_other_rows():
    from kit.predict.predict import from_prior
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.0, 0.0], [0.4, 0.6]])
    layout = type("L", (), {"test": pd.DataFrame({"id": ["a", "b", "c", "d"]}), "root": "data"})()
    out = from_prior(scores, np.array([False, False, True, False]), layout)
    assert np.allclose(out[2], [0.5, 0.5]) and np.allclose(out[[0, 1, 3]], scores[[0, 1, 3]])
    with pytest.raises(ValueError, match="none of the 4 test images"):
        from_prior(scores, np.ones(4, bool), layout)
