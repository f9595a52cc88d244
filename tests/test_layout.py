"""Data layouts, the label rule and image decoding.  pytest tests/test_layout.py -q"""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import make_image
from kit.data.layout import natural_key, scan
from kit.io import load_rgb


def test_folder_layout(folder_data):
    layout = scan(folder_data)
    assert layout.kind == "folder" and layout.classes == ("0", "1", "2"), layout.classes
    assert len(layout.train) == 24 and len(layout.test) == 9, (len(layout.train), len(layout.test))
    assert layout.header == ("image_name", "pred_label")
    assert list(layout.test["id"])[:2] == ["t00", "t01"], "test ids are file stems"


def test_csv_layout_keeps_sample_submission_order(csv_data):
    layout = scan(csv_data)
    sample = pd.read_csv(csv_data / "sample_submission.csv", dtype=str)
    assert layout.kind == "csv" and layout.classes == ("cat", "dog", "fox"), layout.classes
    assert list(layout.test["id"]) == list(sample["id"]), "test ids must follow sample_submission.csv"
    assert layout.header == ("id", "breed")
    assert layout.train["path"].str.startswith("train/").all()


def test_numeric_labels_keep_folder_names_in_numeric_order(tmp_path):
    rng = np.random.default_rng(0)
    for c in [str(i) for i in range(100)] + ["07"]:
        make_image(tmp_path / "train" / c / "a.png", (1, 2, 3), rng, size=(4, 4))
    classes = scan(tmp_path).classes
    want = [str(i) for i in range(8)] + ["07"] + [str(i) for i in range(8, 100)]
    assert list(classes) == sorted(want, key=natural_key), classes[:12]
    assert classes[:3] == ("0", "1", "2") and classes[10] == "9" and "07" in classes, "2 before 10, '07' kept"


def test_val_folder_joins_pool(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in "ab":
            make_image(tmp_path / split / c / f"{split}.png", (9, 9, 9), rng, size=(4, 4))
    layout = scan(tmp_path)
    assert sorted(layout.train["source"]) == ["train", "train", "val", "val"], layout.train


def test_extensions_match_case_insensitively(tmp_path):
    rng = np.random.default_rng(0)
    make_image(tmp_path / "train" / "a" / "x.PNG", (1, 1, 1), rng, size=(4, 4))
    make_image(tmp_path / "train" / "a" / "y.JpEg", (1, 1, 1), rng, size=(4, 4))
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    assert len(scan(tmp_path).train) == 2


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_every_mode_loads_as_rgb(tmp_path, mode):
    ext = ".jpg" if mode == "CMYK" else ".png"
    path = make_image(tmp_path / f"img{ext}", (200, 100, 50), np.random.default_rng(0), size=(6, 5), mode=mode)
    arr = load_rgb(path)
    assert arr.shape == (5, 6, 3) and arr.dtype == np.uint8, (mode, arr.shape, arr.dtype)


def test_16_bit_scales_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(path)
    assert load_rgb(path).min() == 255, "full-scale 16-bit must map to 255, not clip garbage"


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (8, 4), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(tmp_path / "rot.jpg").shape == (8, 4, 3), "EXIF-rotated image must come out upright (H=8, W=4)"


SEEDLINGS = ["Common Chickweed", "Common wheat", "Loose Silky-bent", "Fat Hen", "Maize"]  # Plant Seedlings' names


def write_spaced_labels(root, placeholder: str, species=SEEDLINGS, per_class: int = 3):
    rng, rows = np.random.default_rng(0), []
    for c, name in enumerate(species):
        for i in range(per_class):
            make_image(root / "train" / f"s{c}_{i}.png", (40 * c, 200 - 30 * c, 90), rng)
            rows.append({"file": f"s{c}_{i}.png", "species": name})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    make_image(root / "test" / "t0.png", (0, 0, 0), rng)
    pd.DataFrame({"file": ["t0.png"], "species": [placeholder]}).to_csv(root / "sample_submission.csv", index=False)
    return root


def test_labels_with_spaces_are_whole_class_names(tmp_path):
    layout = scan(write_spaced_labels(tmp_path / "d", "Fat Hen"))
    assert layout.task == "single", "'Common Chickweed' is one class, not the tags 'Common' and 'Chickweed'"
    assert set(layout.classes) == set(SEEDLINGS), layout.classes
    assert (layout.submission, layout.header) == ("label", ("file", "species")), (layout.submission, layout.header)


def test_space_separated_tags_still_read_as_tags(tmp_path):
    rng, rows = np.random.default_rng(0), []
    for i, tags in enumerate(["clear primary", "clear primary water", "haze primary", "cloudy", "clear", "haze"]):
        make_image(tmp_path / "train" / f"p{i}.png", (i * 30, 0, 0), rng)
        rows.append({"image_name": f"p{i}", "tags": tags})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    assert scan(tmp_path).task == "multilabel"


def test_a_spaced_placeholder_that_is_no_class_with_spaced_classes_is_one_label(tmp_path):
    """Plant Seedlings: the sample's `species` holds a class the data at hand may lack; class names hold spaces, so
    it is one class name, never five ids of a top-k row (which could not be written anyway)."""
    data = write_spaced_labels(tmp_path / "d", "Scentless Mayweed")
    layout = scan(data)
    assert (layout.task, layout.submission) == ("single", "label"), (layout.task, layout.submission)


@pytest.mark.parametrize("species", [["Cat", "Wild Cat", "Dog"], ["Sparrow", "House Sparrow", "Robin"]])
def test_classes_that_share_a_word_stay_single_label(tmp_path, species):
    layout = scan(write_spaced_labels(tmp_path / "d", species[0], species=species))
    assert layout.task == "single" and set(layout.classes) == set(species), (layout.task, layout.classes)
    assert layout.submission == "label" and not any("tags" in line for line in layout.found), layout.found


def test_tags_are_said_with_the_key_that_reads_them_otherwise(tmp_path):
    rng, rows = np.random.default_rng(0), []
    for i, tags in enumerate(["clear primary", "clear primary water", "haze primary", "haze water", "cloudy"]):
        make_image(tmp_path / "train" / f"p{i}.png", (i * 30, 0, 0), rng)
        rows.append({"image_name": f"p{i}", "tags": tags})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    layout = scan(tmp_path)
    assert layout.task == "multilabel"
    assert any("read as space-separated tags" in line and "task=single" in line for line in layout.found), layout.found


def _same_names(tmp_path, n=6):
    """Invasive Species: train/1.jpg ... and test/1.jpg ..., the same names on both sides."""
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        make_image(tmp_path / "train" / f"{i}.jpg", (200 * (i % 2), 0, 0), rng, size=(8, 8))
        make_image(tmp_path / "test" / f"{i}.jpg", (0, 0, 200), rng, size=(8, 8))
    pd.DataFrame({"name": range(1, n + 1), "invasive": [i % 2 for i in range(1, n + 1)]}).to_csv(
        tmp_path / "train_labels.csv", index=False)
    pd.DataFrame({"name": range(1, n + 1), "invasive": 0.5}).to_csv(tmp_path / "sample_submission.csv", index=False)
    return tmp_path


def test_a_missing_training_image_is_never_taken_from_the_test_side(tmp_path):
    data = _same_names(tmp_path)
    (data / "train" / "3.jpg").unlink()
    with pytest.raises(ValueError, match=r"1 id\(s\) have no image.*: 3$"):
        scan(data)  # one of six is many: refused, naming it
    assert scan(_same_names(tmp_path / "b")).train["path"].str.startswith("train/").all()


def test_one_missing_image_among_many_is_left_out_in_one_line(tmp_path):
    data = _same_names(tmp_path, n=120)
    (data / "train" / "3.jpg").unlink()
    layout = scan(data)
    assert len(layout.train) == 119 and layout.train["path"].str.startswith("train/").all(), layout.train
    assert "test/3.jpg" not in set(layout.train["path"]) and set(layout.test["path"]) >= {"test/3.jpg"}
    assert any("1 row(s) of train_labels.csv left out" in line and ": 3" in line for line in layout.found)


def test_ids_written_as_paths_under_the_data_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(2):
        for i in range(3):
            make_image(tmp_path / "train" / f"a{c}{i}.jpg", (200 * c, 0, 0), rng, size=(8, 8))
    pd.DataFrame({"path": [f"train/a{c}{i}.jpg" for c in range(2) for i in range(3)],
                  "label": [str(c) for c in range(2) for i in range(3)]}).to_csv(tmp_path / "train.csv", index=False)
    layout = scan(tmp_path)
    assert sorted(layout.train["path"]) == sorted(f"train/a{c}{i}.jpg" for c in range(2) for i in range(3))
