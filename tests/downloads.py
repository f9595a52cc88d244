"""Twenty-five real Kaggle image competitions' downloads, laid out file for file as `kaggle competitions download`
hands them over (the real names of files, folders, columns and ids; archives where the real download has
them), with a few small stand-in images per class.

    zip_bytes, competition = build("dog-breed-identification", tmp_path / "src")

`competition` says what Kaggle would accept: the sample's header, its ids, the kind of value a row holds
(label, probs, prob, tags, topk), the metric Kaggle names, and the column that groups patients.
"""
from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

PALETTE = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40), (40, 220, 220), (220, 40, 220)]


@dataclass
class Competition:
    slug: str
    values: str  # label, probs, prob, tags, topk, labelconf or value
    metric: str  # as Kaggle names it
    group: str = ""  # the column whose patients may not share two folds


def _img(path: Path, k: int, rng, size: int = 32) -> None:
    arr = np.clip(np.array(PALETTE[k % len(PALETTE)]) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _csv(path: Path, table: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def _zip_folder(folder: Path, out: Path, under: str = "") -> None:
    """folder's files into out.zip, named under/<relative path> (under="" : bare names)."""
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, (Path(under) / p.relative_to(folder)).as_posix())


def _tar_7z(folder: Path, out: Path) -> None:
    """Planet's .tar.7z: a tar of folder/ inside a 7z."""
    import py7zr
    tar = out.with_suffix("")  # x.tar
    with tarfile.open(tar, "w") as t:
        t.add(folder, arcname=folder.name)
    with py7zr.SevenZipFile(out, "w") as z:
        z.write(tar, tar.name)
    tar.unlink()


def _pack(src: Path) -> bytes:
    """The download itself: one zip of every file of the competition (what the CLI saves as <slug>.zip)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(src).as_posix())
    return buf.getvalue()


def dog_breed(src, rng):
    breeds = ["affenpinscher", "afghan_hound", "boston_bull"]
    rows = [(f"{k:02d}{i:030x}", b) for k, b in enumerate(breeds) for i in range(4)]
    for id_, b in rows:
        _img(src / "train" / f"{id_}.jpg", breeds.index(b), rng)
    _csv(src / "labels.csv", pd.DataFrame(rows, columns=["id", "breed"]))
    test = [f"f{i:031x}" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "test" / f"{t}.jpg", i, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"id": test, **{b: 1 / len(breeds) for b in breeds}}))
    return Competition("dog-breed-identification", "probs", "Multi Class Log Loss")


def cassava(src, rng):
    rows = [(f"{1000015157 + 7 * i + k}.jpg", str(k)) for k in range(3) for i in range(4)]
    for name, k in rows:
        _img(src / "train_images" / name, int(k), rng)
    _csv(src / "train.csv", pd.DataFrame(rows, columns=["image_id", "label"]))
    _img(src / "test_images" / "2216849948.jpg", 0, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"image_id": ["2216849948.jpg"], "label": [4]}))
    (src / "label_num_to_disease_map.json").write_text('{"0": "Cassava Bacterial Blight (CBB)", "1": "Healthy"}')
    for side in ("train", "test"):
        (src / f"{side}_tfrecords").mkdir()
        (src / f"{side}_tfrecords" / f"ld_{side}00-1.tfrec").write_bytes(b"\0" * 64)
    return Competition("cassava-leaf-disease-classification", "label", "Categorization Accuracy")


def plant_pathology(src, rng):
    classes = ["healthy", "multiple_diseases", "rust", "scab"]
    rows = [{"image_id": f"Train_{i}", **{c: int(i % 4 == k) for k, c in enumerate(classes)}} for i in range(16)]
    for i, r in enumerate(rows):
        _img(src / "images" / f"{r['image_id']}.jpg", i % 4, rng)
    _csv(src / "train.csv", pd.DataFrame(rows))
    test = [f"Test_{i}" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "images" / f"{t}.jpg", i, rng)
    _csv(src / "test.csv", pd.DataFrame({"image_id": test}))
    _csv(src / "sample_submission.csv", pd.DataFrame({"image_id": test, **{c: 0.25 for c in classes}}))
    return Competition("plant-pathology-2020-fgvc7", "probs", "Mean Column-Wise ROC AUC")


def aerial_cactus(src, rng):
    rows = [(f"{k}{i:031x}.jpg", k) for k in range(2) for i in range(6)]
    bare, test = src.parent / "cactus-train", src.parent / "cactus-test"
    for name, k in rows:
        _img(bare / name, k, rng)
    _csv(src / "train.csv", pd.DataFrame(rows, columns=["id", "has_cactus"]))
    ids = [f"{i:032x}.jpg" for i in range(5)]
    for i, t in enumerate(ids):
        _img(test / t, i % 2, rng)
    src.mkdir(parents=True, exist_ok=True)
    _zip_folder(bare, src / "train.zip")  # bare images: they get a train/ of their own
    _zip_folder(test, src / "test.zip", "test")  # test/<id>.jpg inside
    _csv(src / "sample_submission.csv", pd.DataFrame({"id": ids, "has_cactus": 0.5}))
    return Competition("aerial-cactus-identification", "prob", "Area Under Receiver Operating Characteristic Curve")


def planet(src, rng):
    tags = ["clear primary", "clear primary water", "haze primary", "haze primary agriculture", "cloudy",
            "clear primary agriculture road"]
    rows = [(f"train_{i}", tags[i % len(tags)]) for i in range(18)]
    work = src.parent / "planet-work"
    for i, (name, _) in enumerate(rows):
        _img(work / "train-jpg" / f"{name}.jpg", i % len(tags), rng)
    test = [f"test_{i}" for i in range(3)] + [f"file_{i}" for i in range(2)]
    for i, t in enumerate(test):
        _img(work / ("test-jpg" if t.startswith("test") else "test-jpg-additional") / f"{t}.jpg", i, rng)
    src.mkdir(parents=True, exist_ok=True)
    _csv(work / "train_v2.csv", pd.DataFrame(rows, columns=["image_name", "tags"]))
    _csv(work / "sample_submission_v2.csv",
         pd.DataFrame({"image_name": test, "tags": "primary clear agriculture road water"}))
    for name in ("train_v2.csv", "sample_submission_v2.csv"):
        with zipfile.ZipFile(src / f"{name}.zip", "w") as z:
            z.write(work / name, name)
    for folder in ("train-jpg", "test-jpg", "test-jpg-additional"):
        _tar_7z(work / folder, src / f"{folder}.tar.7z")
    return Competition("planet-understanding-the-amazon-from-space", "tags", "F2 Score")


def aptos(src, rng):
    rows = [(f"{k}{i:011x}", str(k)) for k in range(3) for i in range(4)]
    for id_, k in rows:
        _img(src / "train_images" / f"{id_}.png", int(k), rng)
    _csv(src / "train.csv", pd.DataFrame(rows, columns=["id_code", "diagnosis"]))
    test = [f"f{i:011x}" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "test_images" / f"{t}.png", i, rng)
    _csv(src / "test.csv", pd.DataFrame({"id_code": test}))
    _csv(src / "sample_submission.csv", pd.DataFrame({"id_code": test, "diagnosis": 0}))
    return Competition("aptos2019-blindness-detection", "label", "Quadratic Weighted Kappa")


def humpback(src, rng):
    whales = ["new_whale", "w_0369a5c", "w_23a388d", "w_9b5109b", "w_9c506f6", "w_f48451c"]
    rows = [(f"{k:02x}{i:06x}.jpg", w) for k, w in enumerate(whales) for i in range(3)]
    for name, w in rows:
        _img(src / "train" / name, whales.index(w), rng)
    _csv(src / "train.csv", pd.DataFrame(rows, columns=["Image", "Id"]))
    test = [f"ff{i:06x}.jpg" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "test" / t, i, rng)
    _csv(src / "sample_submission.csv",
         pd.DataFrame({"Image": test, "Id": "new_whale w_23a388d w_9b5109b w_9c506f6 w_0369a5c"}))
    return Competition("humpback-whale-identification", "topk", "MAP@5")


RANZCR = ["ETT - Abnormal", "ETT - Borderline", "ETT - Normal", "NGT - Abnormal", "NGT - Borderline",
          "NGT - Incompletely Imaged", "NGT - Normal", "CVC - Abnormal", "CVC - Borderline", "CVC - Normal",
          "Swan Ganz Catheter Present"]


def ranzcr(src, rng):
    rows = []
    for n in range(24):  # 8 patients, 3 films each
        hot = {c: int((n + k) % 4 == 0 or k == n % len(RANZCR)) for k, c in enumerate(RANZCR)}
        rows.append({"StudyInstanceUID": f"1.2.826.0.1.3680043.8.498.{10000 + n}", **hot,
                     "PatientID": f"ec{n // 3:07x}"})
    for n, r in enumerate(rows):
        _img(src / "train" / f"{r['StudyInstanceUID']}.jpg", n, rng)
    _csv(src / "train.csv", pd.DataFrame(rows))
    _csv(src / "train_annotations.csv", pd.DataFrame({"StudyInstanceUID": [rows[0]["StudyInstanceUID"]] * 2,
                                                      "label": ["CVC - Normal", "ETT - Normal"],
                                                      "data": ["[[1, 2], [3, 4]]"] * 2}))
    test = [f"1.2.826.0.1.3680043.8.498.{90000 + i}" for i in range(4)]
    for i, t in enumerate(test):
        _img(src / "test" / f"{t}.jpg", i, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"StudyInstanceUID": test, **{c: 0 for c in RANZCR}}))
    (src / "train_tfrecords").mkdir()
    (src / "train_tfrecords" / "00-1881.tfrec").write_bytes(b"\0" * 64)
    return Competition("ranzcr-clip-catheter-line-classification", "probs", "AUC", group="PatientID")


def dogs_vs_cats(src, rng):
    work = src.parent / "dvc-work"
    for k, animal in enumerate(("cat", "dog")):
        for i in range(6):
            _img(work / "train" / f"{animal}.{i}.jpg", k, rng)
    for i in range(1, 6):
        _img(work / "test" / f"{i}.jpg", i, rng)
    src.mkdir(parents=True, exist_ok=True)
    _zip_folder(work / "train", src / "train.zip", "train")
    _zip_folder(work / "test", src / "test.zip", "test")
    _csv(src / "sample_submission.csv", pd.DataFrame({"id": range(1, 6), "label": 0.5}))
    return Competition("dogs-vs-cats-redux-kernels-edition", "prob", "Log Loss")


def histopathologic(src, rng):
    rows = [(f"{k}{i:039x}", k) for k in range(2) for i in range(6)]
    for id_, k in rows:
        _img(src / "train" / f"{id_}.tif", k, rng)
    _csv(src / "train_labels.csv", pd.DataFrame(rows, columns=["id", "label"]))
    test = [f"f{i:039x}" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "test" / f"{t}.tif", i, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"id": test, "label": 0}))
    return Competition("histopathologic-cancer-detection", "prob", "Area Under ROC Curve")


def plant_seedlings(src, rng):
    species = ["Black-grass", "Common Chickweed", "Sugar beet"]
    for k, s in enumerate(species):
        for i in range(4):
            _img(src / "train" / s / f"{k}{i:08x}.png", k, rng)
    test = [f"f{i:08x}.png" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "test" / t, i, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"file": test, "species": "Sugar beet"}))
    return Competition("plant-seedlings-classification", "label", "Micro-averaged F1-Score")


def digit_recognizer(src, rng):
    digits = np.repeat(np.arange(3), 4)
    pixels = (rng.random((len(digits), 784)) * 40 + digits[:, None] * 90).astype(int)
    train = pd.DataFrame(pixels, columns=[f"pixel{i}" for i in range(784)])
    train.insert(0, "label", digits)
    _csv(src / "train.csv", train)
    test = (rng.random((5, 784)) * 255).astype(int)
    _csv(src / "test.csv", pd.DataFrame(test, columns=[f"pixel{i}" for i in range(784)]))
    _csv(src / "sample_submission.csv", pd.DataFrame({"ImageId": range(1, 6), "Label": 0}))
    return Competition("digit-recognizer", "label", "Categorization Accuracy")


def isic(src, rng):
    rows = []
    for n in range(16):  # 8 patients, 2 images each
        target = n % 2
        rows.append({"image_name": f"ISIC_{2637011 + n:07d}", "patient_id": f"IP_{7279968 + n // 2:07d}",
                     "sex": "male", "age_approx": "45.0", "anatom_site_general_challenge": "head/neck",
                     "diagnosis": "melanoma" if target else "nevus",
                     "benign_malignant": "malignant" if target else "benign", "target": target})
    for r in rows:
        _img(src / "jpeg" / "train" / f"{r['image_name']}.jpg", r["target"], rng)
        (src / "train").mkdir(parents=True, exist_ok=True)
        (src / "train" / f"{r['image_name']}.dcm").write_bytes(b"\0" * 128 + b"DICM")
    _csv(src / "train.csv", pd.DataFrame(rows))
    test = [f"ISIC_{52060 + i:07d}" for i in range(4)]
    for i, t in enumerate(test):
        _img(src / "jpeg" / "test" / f"{t}.jpg", i, rng)
        (src / "test").mkdir(parents=True, exist_ok=True)
        (src / "test" / f"{t}.dcm").write_bytes(b"\0" * 128 + b"DICM")
    _csv(src / "test.csv", pd.DataFrame({"image_name": test, "patient_id": "IP_3579794", "sex": "male",
                                         "age_approx": "70.0", "anatom_site_general_challenge": "torso"}))
    _csv(src / "sample_submission.csv", pd.DataFrame({"image_name": test, "target": 0}))
    (src / "tfrecords").mkdir()
    (src / "tfrecords" / "train00-2182.tfrec").write_bytes(b"\0" * 64)
    return Competition("siim-isic-melanoma-classification", "prob", "AUC", group="patient_id")


def state_farm(src, rng):
    """Class folders imgs/train/c0.. and beside them the drivers' file (subject, classname, img): the drivers
    are the groups (test drivers are unseen)."""
    rows = []
    for c in range(3):
        for i in range(4):
            name = f"img_{c}{i:04d}.jpg"
            _img(src / "imgs" / "train" / f"c{c}" / name, c, rng)
            rows.append({"subject": f"p{i + 2:03d}", "classname": f"c{c}", "img": name})
    _csv(src / "driver_imgs_list.csv", pd.DataFrame(rows))
    test = [f"img_{90000 + i}.jpg" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "imgs" / "test" / t, i, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"img": test, **{f"c{c}": 0.1 for c in range(3)}}))
    return Competition("state-farm-distracted-driver-detection", "probs", "Multi Class Log Loss", group="subject")


def leaf(src, rng):
    """One images/ folder of train and test ids alike; the species among 192 shape, margin and texture features."""
    species = ["Acer_Capillipes", "Alnus_Rubra", "Quercus_Rubra"]
    work, rows, n = src.parent / "leaf-work", [], 1
    features = [f"{kind}{j}" for kind in ("margin", "shape", "texture") for j in range(1, 65)]
    for k, name in enumerate(species):
        for _ in range(4):
            _img(work / "images" / f"{n}.jpg", k, rng)
            rows.append({"id": n, "species": name, **dict(zip(features, rng.random(len(features)).round(6)))})
            n += 1
    test = list(range(n, n + 5))
    for i, t in enumerate(test):
        _img(work / "images" / f"{t}.jpg", i, rng)
    _csv(work / "train.csv", pd.DataFrame(rows))
    _csv(work / "test.csv", pd.DataFrame([{"id": t, **dict(zip(features, rng.random(len(features))))} for t in test]))
    _csv(work / "sample_submission.csv", pd.DataFrame({"id": test, **{name: 1 / 3 for name in species}}))
    src.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        with zipfile.ZipFile(src / f"{name}.zip", "w") as z:
            z.write(work / name, name)
    _zip_folder(work / "images", src / "images.zip", "images")
    return Competition("leaf-classification", "probs", "Multi Class Log Loss")


def _coco(images: list[dict], annotations: list[dict], categories: list[dict]) -> str:
    return json.dumps({"info": {"version": "1.0"}, "images": images, "annotations": annotations,
                       "categories": categories})


def iwildcam(src, rng):
    """COCO-style JSON annotations; test cameras at other locations: the location is the group."""
    cats = [{"id": 0, "name": "empty"}, {"id": 372, "name": "tayassu pecari"}, {"id": 10, "name": "meleagris ocellata"}]
    images, annotations = [], []
    for n in range(18):
        uuid, k = f"8b{n:06x}-21bc-11ea-a13a-137349068a90", n % 3
        _img(src / "train" / f"{uuid}.jpg", k, rng)
        images.append({"seq_num_frames": 6, "location": n % 6, "datetime": "2013-06-05 05:44:19.000",
                       "id": uuid, "frame_num": 1, "seq_id": f"s{n // 2}", "width": 32, "height": 32,
                       "file_name": f"{uuid}.jpg"})
        annotations.append({"count": 1, "image_id": uuid, "id": f"a{n:05d}", "category_id": cats[k]["id"]})
    (src / "iwildcam2020_train_annotations.json").write_text(_coco(images, annotations, cats))
    test = [f"91{i:06x}-21bc-11ea-a13a-137349068a90" for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "test" / f"{t}.jpg", i, rng)
    (src / "iwildcam2020_test_information.json").write_text(json.dumps(
        {"images": [{"id": t, "file_name": f"{t}.jpg", "location": 50} for t in test], "categories": cats}))
    (src / "iwildcam2020_megadetector_results.json").write_text(json.dumps(
        {"images": [{"id": t, "detections": [], "max_detection_conf": 0.0} for t in test]}))
    _csv(src / "sample_submission.csv", pd.DataFrame({"Id": test, "Category": 0}))
    return Competition("iwildcam-2020-fgvc7", "label", "Categorization Accuracy", group="location")


def herbarium(src, rng):
    """Images nested by category id, JSON metadata spelt image_id/category_id/scientific_name; the test set a bare
    JSON list whose image_id `test-000003` the sample writes as 3."""
    cats = [{"category_id": c, "scientific_name": f"Abies {name}", "family": "Pinaceae", "genus": "Abies",
             "species": name, "authors": "(Nutt.) Nutt."} for c, name in ((0, "amabilis"), (4, "balsamea"), (7, "x"))]
    images, annotations = [], []
    for n in range(12):
        k = n % 3
        cid = cats[k]["category_id"]
        image_id = f"{cid:05d}__{n:03d}"
        file_name = f"{cid:05d}"[:3] + "/" + f"{cid:05d}"[3:] + f"/{image_id}.jpg"
        _img(src / "train_images" / file_name, k, rng)
        images.append({"file_name": file_name, "image_id": image_id, "license": 0})
        annotations.append({"genus_id": 1, "institution_id": 0, "category_id": cid, "image_id": image_id})
    (src / "train_metadata.json").write_text(json.dumps(
        {"annotations": annotations, "images": images, "categories": cats, "genera": [{"genus": "Abies", "genus_id": 1}],
         "institutions": [{"collectionCode": "NY", "institution_id": 0}], "distances": [], "license": []}))
    test = [{"file_name": f"000/test-{i:06d}.jpg", "image_id": f"test-{i:06d}", "license": 0} for i in range(5)]
    for i, t in enumerate(test):
        _img(src / "test_images" / t["file_name"], i, rng)
    (src / "test_metadata.json").write_text(json.dumps(test))
    _csv(src / "sample_submission.csv", pd.DataFrame({"Id": range(5), "Predicted": 42}))
    return Competition("herbarium-2022-fgvc9", "label", "Macro F1 Score")


def isic_2024(src, rng):
    """Images in HDF5 files (isic_id -> JPEG bytes); the training ones also as JPEGs, the test ones only in HDF5;
    patients the groups; partial AUC above 80% TPR."""
    import h5py
    rows = []
    for n in range(16):  # 8 patients, 2 images each
        target = int(n % 4 == 0)
        rows.append({"isic_id": f"ISIC_{15670 + n:07d}", "target": target, "patient_id": f"IP_{1235828 + n // 2}",
                     "age_approx": 60.0, "sex": "male", "anatom_site_general": "lower extremity",
                     "clin_size_long_diam_mm": 3.04, "image_type": "TBP tile: close-up", "tbp_lv_A": 20.24})
    src.mkdir(parents=True, exist_ok=True)
    with h5py.File(src / "train-image.hdf5", "w") as f:
        for r in rows:
            path = src / "train-image" / "image" / f"{r['isic_id']}.jpg"
            _img(path, r["target"], rng)
            f.create_dataset(r["isic_id"], data=np.void(path.read_bytes()))
    _csv(src / "train-metadata.csv", pd.DataFrame(rows))
    test = [f"ISIC_{15657 + i:07d}" for i in range(3)]
    with h5py.File(src / "test-image.hdf5", "w") as f:
        for i, t in enumerate(test):
            buf = io.BytesIO()
            Image.fromarray(np.full((32, 32, 3), PALETTE[i], np.uint8)).save(buf, "JPEG")
            f.create_dataset(t, data=np.void(buf.getvalue()))
    _csv(src / "test-metadata.csv", pd.DataFrame({"isic_id": test, "patient_id": "IP_6074337", "age_approx": 45.0}))
    _csv(src / "sample_submission.csv", pd.DataFrame({"isic_id": test, "target": 0.3}))
    return Competition("isic-2024-challenge", "prob", "pAUC above 80% TPR", group="patient_id")


def landmark(src, rng):
    """Images nested three levels by their id's first characters; the sample's `landmarks` a class and a
    confidence; Global Average Precision."""
    rows = []
    for k, landmark_id in enumerate((1, 7, 138982)):
        for i in range(4):
            image_id = f"{k}{i}{rng.integers(16**14):014x}"
            _img(src / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg", k, rng)
            rows.append({"id": image_id, "landmark_id": landmark_id})
    _csv(src / "train.csv", pd.DataFrame(rows))
    test = [f"{rng.integers(16**15):015x}0" for _ in range(5)]
    for i, t in enumerate(test):
        _img(src / "test" / t[0] / t[1] / t[2] / f"{t}.jpg", i, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"id": test, "landmarks": "1 1.0"}))
    return Competition("landmark-recognition-2021", "labelconf", "Global Average Precision")


def protein_atlas(src, rng):
    """Four greyscale PNGs an id (<Id>_red, _green, _blue, _yellow: the stains), stacked as one four-channel image;
    the targets space-separated protein-location ids ("16 0"); macro F1."""
    tags = ["0", "16 0", "25", "16", "0 25", "25 16"]
    def stains(folder: Path, key: str, on: set[str]) -> None:
        for c, stain in enumerate(("red", "green", "blue", "yellow")):
            level = 40 + 60 * len(on) + (120 if c == 1 and "0" in on else 0) + (120 if c == 3 and "25" in on else 0)
            arr = np.clip(level + rng.normal(0, 15, (32, 32)) + (90 if c == 2 and "16" in on else 0), 0, 255)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.astype(np.uint8), "L").save(folder / f"{key}_{stain}.png")
    rows = []
    for n in range(18):
        key, target = f"{n:08x}-bbc3-11e8-b2bc-ac1f6b6435d0", tags[n % len(tags)]
        stains(src / "train", key, set(target.split()))
        rows.append({"Id": key, "Target": target})
    _csv(src / "train.csv", pd.DataFrame(rows))
    test = [f"{n:08x}-bac7-11e8-b2b7-ac1f6b6435d0" for n in range(5)]
    for i, t in enumerate(test):
        stains(src / "test", t, set(tags[i].split()))
    _csv(src / "sample_submission.csv", pd.DataFrame({"Id": test, "Predicted": "0 1"}))
    return Competition("human-protein-atlas-image-classification", "tags", "Macro F1")


def pawpularity(src, rng):
    """A score from 1 to 100 to predict (a regression, ranked by RMSE), beside 12 binary photo flags; the images
    brighter the higher the score."""
    flags = ["Subject Focus", "Eyes", "Face", "Near", "Action", "Accessory", "Group", "Collage", "Human", "Occlusion",
             "Info", "Blur"]
    def photo(path: Path, score: float) -> None:
        level = 30 + 2 * score
        arr = np.clip(level + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
    rows = []
    for n in range(24):
        key, score = f"{n:04x}{rng.integers(16**14):014x}{rng.integers(16**14):014x}", int(rng.integers(1, 101))
        photo(src / "train" / f"{key}.jpg", score)
        rows.append({"Id": key, **{f: int(rng.integers(0, 2)) for f in flags}, "Pawpularity": score})
    _csv(src / "train.csv", pd.DataFrame(rows))
    test = [f"{n + 99:04x}{rng.integers(16**14):014x}{rng.integers(16**14):014x}" for n in range(5)]
    for t in test:
        photo(src / "test" / f"{t}.jpg", float(rng.integers(1, 101)))
    _csv(src / "test.csv", pd.DataFrame([{"Id": t, **{f: 0 for f in flags}} for t in test]))
    _csv(src / "sample_submission.csv", pd.DataFrame({"Id": test, "Pawpularity": [67.75, 12.0, 72.15, 5.5, 39.0]}))
    return Competition("petfinder-pawpularity-score", "value", "Root Mean Squared Error")


def kannada_mnist(src, rng):
    """Pixels in CSVs (label or id, pixel0..783) and more labelled digits in Dig-MNIST.csv; a code competition."""
    digits = np.repeat(np.arange(3), 4)
    pixels = (rng.random((len(digits), 784)) * 40 + digits[:, None] * 90).astype(int)
    columns = [f"pixel{i}" for i in range(784)]
    train = pd.DataFrame(pixels, columns=columns)
    train.insert(0, "label", digits)
    _csv(src / "train.csv", train)
    _csv(src / "Dig-MNIST.csv", train.head(6))
    test = pd.DataFrame((rng.random((5, 784)) * 255).astype(int), columns=columns)
    test.insert(0, "id", range(5))
    _csv(src / "test.csv", test)
    _csv(src / "sample_submission.csv", pd.DataFrame({"id": range(5), "label": 0}))
    return Competition("Kannada-MNIST", "label", "Categorization Accuracy")


def invasive_species(src, rng):
    """train.7z and test.7z holding train/1.jpg... and test/1.jpg...: the same names on both sides; AUC."""
    work = src.parent / "invasive-work"
    for i in range(1, 13):
        _img(work / "train" / f"{i}.jpg", i % 2, rng)
    for i in range(1, 6):
        _img(work / "test" / f"{i}.jpg", 2 + i % 3, rng)
    _csv(work / "train_labels.csv", pd.DataFrame({"name": range(1, 13), "invasive": [i % 2 for i in range(1, 13)]}))
    _csv(work / "sample_submission.csv", pd.DataFrame({"name": range(1, 6), "invasive": 0.5}))
    src.mkdir(parents=True, exist_ok=True)
    for side in ("train", "test"):
        _7z({f"{side}/{p.name}": p for p in sorted((work / side).glob("*.jpg"))}, src / f"{side}.7z")
    for name in ("train_labels.csv", "sample_submission.csv"):
        with zipfile.ZipFile(src / f"{name}.zip", "w") as z:
            z.write(work / name, name)
    return Competition("invasive-species-monitoring", "prob", "Area Under ROC Curve")


def plant_pathology_2021(src, rng):
    """labels as space-separated words (`scab frog_eye_leaf_spot`), image names with .jpg; mean F1."""
    tags = ["healthy", "scab", "frog_eye_leaf_spot", "scab frog_eye_leaf_spot", "rust", "complex"]
    rows = []
    for n in range(18):
        name = f"{800113 + n * 7919:x}bb{n:02d}.jpg"
        _img(src / "train_images" / name, n % len(tags), rng)
        rows.append({"image": name, "labels": tags[n % len(tags)]})
    _csv(src / "train.csv", pd.DataFrame(rows))
    test = ["85f8cb619c66b863.jpg", "ad8770db05586b59.jpg", "c7b03e718489f3ca.jpg"]
    for i, t in enumerate(test):
        _img(src / "test_images" / t, i, rng)
    _csv(src / "sample_submission.csv", pd.DataFrame({"image": test, "labels": "healthy"}))
    return Competition("plant-pathology-2021-fgvc8", "tags", "Mean F1-Score")


def _7z(files: dict[str, Path], out: Path) -> None:
    import py7zr
    with py7zr.SevenZipFile(out, "w") as z:
        for arcname, path in files.items():
            z.write(path, arcname)


def statoil(src, rng):
    """75 x 75 float bands in dB inside JSON inside 7z; some inc_angle "na"; machine-made test rows."""
    def record(i: int, berg: int) -> dict:
        base = -20.0 + 8.0 * berg  # an iceberg returns more of the signal
        b1 = (base + rng.normal(0, 3, 75 * 75)).round(4).tolist()
        b2 = (base - 6 + rng.normal(0, 3, 75 * 75)).round(4).tolist()
        return {"id": f"{rng.integers(16**7):07x}{i}", "band_1": b1, "band_2": b2,
                "inc_angle": "na" if i % 5 == 0 else round(38 + rng.random() * 5, 4)}
    work = src.parent / "statoil-work"
    (work / "data" / "processed").mkdir(parents=True)
    train = [{**record(i, i % 2), "is_iceberg": i % 2} for i in range(12)]
    test = [record(100 + i, i % 2) for i in range(5)]
    for name, rows in (("train.json", train), ("test.json", test)):
        (work / "data" / "processed" / name).write_text(json.dumps(rows))
    _csv(work / "sample_submission.csv", pd.DataFrame({"id": [r["id"] for r in test], "is_iceberg": 0.5}))
    src.mkdir(parents=True, exist_ok=True)
    for name in ("train.json", "test.json"):
        _7z({f"data/processed/{name}": work / "data" / "processed" / name}, src / f"{name}.7z")
    _7z({"sample_submission.csv": work / "sample_submission.csv"}, src / "sample_submission.csv.7z")
    return Competition("statoil-iceberg-classifier-challenge", "prob", "Log Loss")


FIRST = (dog_breed, cassava, plant_pathology, aerial_cactus, planet, aptos, humpback, ranzcr, dogs_vs_cats,
         histopathologic, plant_seedlings, digit_recognizer, isic)
SECOND = (state_farm, leaf, iwildcam, herbarium, isic_2024, landmark, statoil, protein_atlas, pawpularity,
          kannada_mnist, invasive_species, plant_pathology_2021)  # the second dozen's, as the kit reads them
BUILDERS = {f.__name__: f for f in FIRST + SECOND}


def _seed(name: str) -> int:
    """Each builder's images from a seed of its own (the first wave's as before the second was added)."""
    first = sorted(f.__name__ for f in FIRST)
    return first.index(name) if name in first else 100 + sorted(f.__name__ for f in SECOND).index(name)


def build(name: str, where: Path) -> tuple[bytes, Competition, pd.DataFrame]:
    """(the download's zip, what Kaggle accepts, the sample) of competition `name` (a BUILDERS key)."""
    src = where / "src"
    comp = BUILDERS[name](src, np.random.default_rng(_seed(name)))
    sample_zip = next(src.glob("sample_submission*.csv.zip"), None)
    if (src / "sample_submission.csv.7z").is_file():
        import py7zr
        with py7zr.SevenZipFile(src / "sample_submission.csv.7z") as z:
            z.extractall(where / "sample")
        sample = pd.read_csv(where / "sample" / "sample_submission.csv", dtype=str, keep_default_na=False)
    elif sample_zip is not None:
        with zipfile.ZipFile(sample_zip) as z:
            sample = pd.read_csv(io.BytesIO(z.read(z.namelist()[0])), dtype=str, keep_default_na=False)
    else:
        sample = pd.read_csv(src / "sample_submission.csv", dtype=str, keep_default_na=False)
    data = _pack(src)
    shutil.rmtree(where)
    return data, comp, sample
