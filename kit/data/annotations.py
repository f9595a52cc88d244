"""Labels and test lists kept in JSON, as the FGVC competitions ship them (iWildCam, Herbarium): a reader that
discover.py's rules call.

    table = label_table(Path("data/iwildcam-2020-fgvc7/iwildcam2020_train_annotations.json"), sample)
    names = test_names([Path(".../test_metadata.json")], sample["Id"])      # {sample id: image file name}

COCO-style annotations are a dict of `images` (an id, a file_name and fields such as `location`),
`annotations` (an image id and a category id) and `categories` (an id and a name). Herbarium spells the
ids `image_id` and `category_id`, and the name `scientific_name`. label_table makes them one table a row
an annotated image: `file` (the file's name, which names the image under DATA), the label (under the
sample's column name, spelled as the sample spells it: the category's id where its values are numbers,
else its name) and every scalar field of the image (a group such as iWildCam's camera `location`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import pandas as pd

IMAGE_ID, CATEGORY_ID, NAMES = ("id", "image_id"), ("id", "category_id"), ("name", "scientific_name")
SKIP = {"file_name", "width", "height", "license", "rights_holder", "coco_url", "flickr_url"}


def load(path: Path):
    """The JSON at path, or None when it is no readable JSON (a rule that does not apply)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _key(entry: dict, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in entry), None)


def is_coco(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("images"), list) and isinstance(obj.get("annotations"), list) \
        and bool(obj["annotations"])


def label_table(path: Path, sample: pd.DataFrame | None) -> pd.DataFrame | None:
    """A COCO-style annotation file as a label table (see the module's docstring), or None if it is not one."""
    obj = load(path)
    if not is_coco(obj):
        return None
    images = obj["images"]
    image_key = _key(images[0], IMAGE_ID) if images else None
    if image_key is None or "file_name" not in images[0]:
        raise ValueError(f"{path}: its images have no id or file_name; set train_csv= to a label file instead")
    by_id = {str(img[image_key]): img for img in images}
    categories = obj.get("categories") or []
    cat_key = _key(categories[0], CATEGORY_ID) if categories else None
    name_key = _key(categories[0], NAMES) if categories else None
    names = {str(c[cat_key]): str(c[name_key]) for c in categories} if cat_key and name_key else {}
    label = sample.columns[1] if sample is not None and sample.shape[1] == 2 else "category"
    as_ids = sample is None or not names or pd.to_numeric(sample.iloc[:, 1], errors="coerce").notna().all()
    rows, lost = [], []
    for ann in obj["annotations"]:
        img = by_id.get(str(ann.get("image_id")))
        if img is None:
            lost.append(str(ann.get("image_id")))
            continue
        cat = str(ann.get("category_id"))
        fields = {k: str(v) for k, v in img.items() if k not in SKIP and k != image_key and
                  isinstance(v, (str, int, float, bool))}
        rows.append({"file": PurePosixPath(str(img["file_name"])).name, label: cat if as_ids else names.get(cat, cat),
                     **fields})
    if lost:
        raise ValueError(f"{path}: {len(lost)} annotation(s) name no image of its `images`: {', '.join(lost[:5])}")
    table = pd.DataFrame(rows).astype(str)
    return table.drop_duplicates(subset=["file", label]).reset_index(drop=True)


def _images_of(obj) -> list[dict]:
    """A JSON's list of images: a bare list (Herbarium's test_metadata.json) or its `images`."""
    entries = obj if isinstance(obj, list) else obj.get("images") if isinstance(obj, dict) else None
    return [e for e in entries or [] if isinstance(e, dict) and "file_name" in e]


def _digits(value: str) -> str:
    found = re.search(r"(\d+)$", value)
    return str(int(found.group(1))) if found else ""


def test_names(jsons: list[Path], ids: pd.Series) -> tuple[dict[str, str], Path | None]:
    """({sample id: file name}, the JSON it came from): a JSON list of the test images whose field (as written, or
    its trailing number: Herbarium's `test-000123` for id 123) holds the sample's ids, at least 9 in 10 of them;
    ({}, None) when none does."""
    want = set(ids.astype(str))
    for path in jsons:
        entries = _images_of(load(path))
        fields = sorted({k for e in entries for k, v in e.items() if k != "file_name" and isinstance(v, (str, int))})
        for field in fields:
            for spell in (str, lambda v: _digits(str(v))):
                names = {spell(e[field]): PurePosixPath(str(e["file_name"])).name for e in entries if field in e}
                if len(want & set(names)) >= 0.9 * len(want):
                    return {i: names[i] for i in want if i in names}, path
    return {}, None
