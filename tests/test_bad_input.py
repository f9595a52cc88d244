"""Bad input ends in exit status 2 and one line naming the file or value, never a traceback, no output.

    pytest tests/test_bad_input.py -q
"""
import os
import shutil
import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from conftest import make_image, write_csv_data, write_folder_data
from kit.jobs.cli import main


def run_folds(tmp_path, data, *extra, capsys):
    rc = main(["folds", "--exp", "demo", f"data={data}", f"work_dir={tmp_path / 'out'}", *extra])
    err = capsys.readouterr().err.strip()
    return rc, err


def assert_one_line_error(rc, err, *needles, tmp_path=None):
    assert rc == 2, f"exit status should be 2, got {rc}: {err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("kit ")]
    assert len(lines) == 1, f"expected one error line, got: {err}"
    for needle in needles:
        assert str(needle) in lines[0], f"{needle!r} not named in: {lines[0]}"
    if tmp_path is not None:
        assert not (tmp_path / "out" / "folds.csv").exists(), "no output may be written on bad input"


def huge_png(path, width=20000, height=20000):
    """A valid PNG header claiming width x height pixels (a decompression bomb, a few bytes on disk)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def data(tmp_path, folder_data):
    shutil.copytree(folder_data, tmp_path / "data")
    return tmp_path / "data"


def test_missing_data_folder(tmp_path, capsys):
    assert_one_line_error(*run_folds(tmp_path, tmp_path / "nope", capsys=capsys), "nope", "does not exist", tmp_path=tmp_path)


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*run_folds(tmp_path, tmp_path / "empty", capsys=capsys), "no train/", tmp_path=tmp_path)


def test_empty_class_folder(tmp_path, data, capsys):
    (data / "train" / "9").mkdir()
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "empty class folder", "train/9", tmp_path=tmp_path)


def test_bad_images_are_all_listed_or_skipped(tmp_path, data, capsys):
    (data / "train" / "0" / "text.jpg").write_text("this is not a jpeg")
    (data / "train" / "1" / "empty.png").write_bytes(b"")
    good = (data / "train" / "2" / "img_2_0.png").read_bytes()
    (data / "train" / "2" / "cut.png").write_bytes(good[: len(good) // 2])
    rc, err = run_folds(tmp_path, data, capsys=capsys)
    assert_one_line_error(rc, err, "3 unreadable", "text.jpg", "empty.png", "cut.png", "skip_bad_images", tmp_path=tmp_path)
    assert main(["folds", "--exp", "demo", f"data={data}", f"work_dir={tmp_path / 'out'}", "skip_bad_images=true"]) == 0
    table = pd.read_csv(tmp_path / "out" / "folds.csv")
    assert len(table) == 24 and not table["path"].str.contains("text.jpg|empty.png|cut.png").any()


def test_decompression_bomb_is_refused(tmp_path, data, capsys):
    huge_png(data / "train" / "0" / "bomb.png")
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "bomb.png", "max_pixels", tmp_path=tmp_path)


def test_duplicate_test_stems(tmp_path, data, capsys):
    make_image(data / "test" / "t00.jpg", (1, 2, 3), np.random.default_rng(0))
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "t00", "rename", tmp_path=tmp_path)


def test_symlink_outside_data_folder(tmp_path, data, capsys):
    outside = make_image(tmp_path / "elsewhere.png", (1, 2, 3), np.random.default_rng(0))
    os.symlink(outside, data / "train" / "0" / "link.png")
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "outside", "link.png", tmp_path=tmp_path)


def test_csv_missing_columns(tmp_path, capsys):
    data = write_csv_data(tmp_path / "data")
    pd.read_csv(data / "train.csv").rename(columns={"breed": "kind"}).to_csv(data / "train.csv", index=False)
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "breed", "label_col", tmp_path=tmp_path)


def test_csv_rows_without_images(tmp_path, capsys):
    data = write_csv_data(tmp_path / "data")
    (data / "train" / "dog002.jpg").unlink()
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "dog002", "train.csv", tmp_path=tmp_path)


def test_sample_submission_ids_without_images(tmp_path, capsys):
    data = write_csv_data(tmp_path / "data")
    (data / "test" / "x001.jpg").unlink()
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "x001", "sample_submission", tmp_path=tmp_path)


def test_csv_path_escaping_data_folder(tmp_path, capsys):
    data = write_csv_data(tmp_path / "data")
    train = pd.read_csv(data / "train.csv", dtype=str)
    train.loc[0, "id"] = "../../etc/passwd"
    train.to_csv(data / "train.csv", index=False)
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "../../etc/passwd", tmp_path=tmp_path)


@pytest.mark.parametrize("override, needle", [
    ("stage1_lr=-0.01", "stage1_lr=-0.01"), ("n_folds=1", "n_folds=1"), ("colour=red", "colour"),
    ("tta=[hflip", "tta=[hflip"),  # YAML that does not parse
])
def test_bad_config_values(tmp_path, data, capsys, override, needle):
    assert_one_line_error(*run_folds(tmp_path, data, override, capsys=capsys), needle, tmp_path=tmp_path)


def test_yaml_with_unknown_key(tmp_path, data, capsys):
    (tmp_path / "bad.yaml").write_text("backbone: resnet18\nepochs: 3\n")
    rc = main(["folds", "--config", str(tmp_path / "bad.yaml"), f"data={data}", f"work_dir={tmp_path / 'out'}"])
    assert_one_line_error(rc, capsys.readouterr().err, "epochs", "bad.yaml", tmp_path=tmp_path)


def test_class_with_one_image_and_five_folds(tmp_path, capsys):
    data = write_folder_data(tmp_path / "data", n_per_class=5)
    for p in sorted((data / "train" / "1").iterdir())[1:]:
        p.unlink()
    assert_one_line_error(*run_folds(tmp_path, data, "n_folds=5", capsys=capsys), "'1' has 1", "n_folds=5", tmp_path=tmp_path)


def test_odd_names_are_fine(tmp_path, capsys):
    data = write_folder_data(tmp_path / "data", n_per_class=5)
    make_image(data / "train" / "0" / "ünïcode name é.png", (220, 40, 40), np.random.default_rng(0))
    assert run_folds(tmp_path, data, capsys=capsys)[0] == 0
    assert "ünïcode name é.png" in (tmp_path / "out" / "folds.csv").read_text(encoding="utf-8")


def test_truncated_jpeg_and_bad_crc_png_are_listed(tmp_path, data, capsys):
    rng = np.random.default_rng(0)
    jpeg = make_image(tmp_path / "full.jpg", (10, 200, 30), rng, size=(64, 64)).read_bytes()
    (data / "train" / "0" / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])
    png = bytearray(make_image(tmp_path / "full.png", (10, 200, 30), rng, size=(8, 8)).read_bytes())
    png[29] ^= 0xFF  # inside IHDR: its CRC no longer matches
    (data / "train" / "1" / "crc.png").write_bytes(bytes(png))
    rc, err = run_folds(tmp_path, data, capsys=capsys)
    assert_one_line_error(rc, err, "2 unreadable", "cut.jpg", "crc.png", tmp_path=tmp_path)


def test_palette_png_with_transparency_loads_as_rgb(tmp_path):
    from PIL import Image

    from kit.io import load_rgb
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 1  # palette entry 1 is fully transparent
    img.save(tmp_path / "p.png", transparency=1)
    arr = load_rgb(tmp_path / "p.png")
    assert arr.shape == (4, 4, 3) and (arr == 255).all(), "transparent pixels become white"


def test_data_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("not a folder")
    assert_one_line_error(*run_folds(tmp_path, tmp_path / "data.txt", capsys=capsys), "data.txt", "not a folder",
                          tmp_path=tmp_path)


def test_header_only_train_csv(tmp_path, capsys):
    data = write_csv_data(tmp_path / "data")
    (data / "train.csv").write_text("id,breed\n")
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "train.csv", "no training images",
                          tmp_path=tmp_path)


def test_sample_submission_with_repeated_ids(tmp_path, capsys):
    data = write_csv_data(tmp_path / "data")
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    pd.concat([sample, sample.iloc[:1]]).to_csv(data / "sample_submission.csv", index=False)
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "sample_submission.csv", sample["id"][0],
                          "more than once", tmp_path=tmp_path)


@pytest.mark.parametrize("stage,key", [("folds", "work_dir"), ("predict", "submissions_dir"), ("cache", "cache_dir")])
def test_unwritable_output_folder_is_one_line_before_any_work(tmp_path, data, capsys, stage, key):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # nothing can be created under a file, as root or not (a read-only /kaggle/input alike)
    rc = main([stage, "--exp", "demo", f"data={data}", f"work_dir={tmp_path / 'out'}", f"{key}={blocker / 'x'}"])
    assert_one_line_error(rc, capsys.readouterr().err.strip(), f"{key}={blocker / 'x'}", "not writable")


def test_skipped_images_whose_reason_holds_parentheses_leave_the_folds(tmp_path, data, capsys):
    rng = np.random.default_rng(0)
    arr = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    from PIL import Image
    Image.fromarray(arr).save(tmp_path / "full.jpg")
    jpeg = (tmp_path / "full.jpg").read_bytes()
    (data / "train" / "0" / "cut (1).jpg").write_bytes(jpeg[: len(jpeg) // 2])  # "image file is truncated (N bytes ...)"
    assert main(["folds", "--exp", "demo", f"data={data}", f"work_dir={tmp_path / 'out'}", "skip_bad_images=true"]) == 0
    table = pd.read_csv(tmp_path / "out" / "folds.csv")
    assert "train/0/cut (1).jpg" not in set(table["path"]), "a skipped image must leave folds.csv"
    assert len(table) == 24


def test_main_returns_the_exit_status_of_bad_arguments(capsys):
    assert main(["train", "--no-such-option"]) == 2, "argparse's exit becomes a return value"
    assert main(["--help"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("argv, needle", [
    (["export", "--exp", "demo", "--steps", "10"], "--steps goes with --blend"),
    (["export", "--exp", "demo", "demo_baseline", "--blend", "--steps", "0"], "--steps 0: must be >= 1"),
    (["export", "--exp", "demo", "demo_baseline", "--blend", "--stack"], "not allowed with argument"),
    (["jobs", "--exp", "demo", "--trials", "3", "--screen"], "--trials --screen: only with --sweep"),
    (["jobs", "--exp", "demo", "--sweep", "--trials", "0"], "--trials 0: must be >= 1"),
    (["jobs", "--exp", "demo", "demo_baseline", "--sweep"], "one experiment to search around (--exp A)"),
])
def test_export_and_jobs_arguments_that_do_not_go_together_are_one_line(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1], err


@pytest.mark.parametrize("rows, needles", [
    ([("cat000", "cat"), ("cat000", "dog")], ["cat000", "one row per tag", "space-separated"]),
    ([("cat000", "cat"), ("cat000.jpg", "cat")], ["cat000", "cat000.jpg", "one image"]),
])
def test_duplicate_training_ids_are_refused(tmp_path, capsys, rows, needles):
    data = write_csv_data(tmp_path / "data")
    train = pd.read_csv(data / "train.csv", dtype=str)
    extra = pd.DataFrame(rows[1:], columns=["id", "breed"])
    train = pd.concat([train, extra], ignore_index=True)
    train.to_csv(data / "train.csv", index=False)
    assert_one_line_error(*run_folds(tmp_path, data, capsys=capsys), "train.csv", *needles, tmp_path=tmp_path)
