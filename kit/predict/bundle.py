"""Inference bundles: what predict needs to write a submission, and nothing else, in one folder and a zip.

    python -m kit export --exp demo demo_baseline --out bundle     # bundle/ and bundle.zip
    python -m kit predict --bundle bundle data=/kaggle/input/comp submissions_dir=/kaggle/working

bundle.json holds the layout (classes, task, submission format and header), the metric and the post-processing
(thresholds, temperature), per experiment its resolved
config and each fold's weights file (its best.pt, copied) with its sha256, and the submission the
bundle reproduces (file, sha256, CV). `export --stack` carries `kit stack`'s second level instead of the
average: its fitted learner (stack.pkl, a pickle of scikit-learn's trees, with its sha256) and the test file's
columns it reads (names, types, categories); predicting then needs that file beside the test images.
Predicting from a bundle needs no folds, training images or out-of-fold files: the test images, the weights and the same TTA and merge give the same CSV,
written under its usual name (<name>-<sha8>.csv, with a manifest) and as submission.csv.
Only keys that shape nothing (data, submissions_dir, device, workers, ...) may be overridden.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from kit import __version__
from kit.board import calibrate, formats, submission
from kit.config import Config, check_known, shapes, to_dict, upgrade
from kit.data.folds import layout_keys
from kit.data.layout import summarize
from kit.data.testset import scan_test
from kit.data.loaders import UNREADABLE
from kit.io import atomic_path, atomic_write_bytes, check_writable, sha256_file
from kit.metrics import probs_of
from kit.predict import ensemble as ens
from kit.predict import predict
from kit.predict.inference import fold_logits, start
from kit.experiment import Experiment, fold_name, mean_of

log = logging.getLogger(__name__)
STACK = "stack.pkl"  # export --stack: the second level's fitted learner
FORMAT = 2  # bundle.json's schema version (2: the layout's task and submission format, the post-processing)
# The packages whose versions can move a prediction: the model code, the decode and resize, the arithmetic.
# bundle.json records them at export; predicting from the bundle says where they differ (a Kaggle image's).
PREDICTS = ("torch", "torchvision", "timm", "albumentations", "opencv", "numpy", "pillow", "ttach", "scikit-learn")


def versions() -> dict[str, str]:
    """{package: installed version} of PREDICTS ('' where one is not installed). OpenCV by its module: Kaggle's
    image may hold opencv-python where the kit pins opencv-python-headless, the same library."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in PREDICTS:
        try:
            out[name] = __import__("cv2").__version__ if name == "opencv" else version(name)
        except (PackageNotFoundError, ImportError):
            out[name] = ""
    return out


def version_skew(recorded: dict[str, str]) -> str:
    """One line naming each package whose version here differs from the one the bundle was exported with."""
    here = versions()
    moved = [f"{n} {v} -> {here.get(n) or 'none'}" for n, v in sorted(recorded.items()) if here.get(n, v) != v]
    if not moved:
        return ""
    return (f"versions differ from the bundle's export: {', '.join(moved)}; predictions may differ a little from "
            "the exported submission (pin them in the notebook, or export where they match)")


def export(cfgs: list[Config], out: str | Path, how: str = "average", steps: int | None = None) -> Path:
    """Predict (reusing up-to-date logits), then copy the weights and settings into `out` and `out`.zip. How the
    experiments combine: their average; "blend", kit blend's weights (fitted anew on their OOF rows with `steps`:
    by default the steps of their newest `kit blend`, else 50); or "stack", their stack (kit/predict/stack.py) and
    its learner."""
    out = Path(out)
    if how == "blend" and len(cfgs) < 2:
        raise ValueError("export --blend needs at least two experiments: --exp A B [C ...]")
    if out.exists() and not (out / "bundle.json").is_file():
        raise ValueError(f"--out {out} exists and is not a bundle; choose another folder")
    check_writable(out.parent, "--out")
    device = start(cfgs[0], "export")
    if how == "stack":
        from kit.predict import stack
        results, tab = stack.prepare(cfgs, device)
        r, learner = stack.stack(results, tab)
    else:
        results = [predict.predict_experiment(cfg, device) for cfg in cfgs]
        if how == "blend":
            from kit.predict import blend
            if steps is None:
                found = blend.steps_of(cfgs)
                steps = found or 50
                log.info("export --blend: %d steps (%s)", steps, "those of the newest kit blend of these experiments"
                         if found else "no kit blend of these experiments yet: the default")
            r = blend.blend(results, steps)
        else:
            r = ens.combine(results) if len(results) > 1 else results[0]
    sub_path = submission.write(r)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    experiments = [_copy_weights(res, tmp) for res in results]
    spec = {"format": FORMAT, "kit": __version__, "versions": versions(), "name": r.name, "layout": r.layout.as_record(),
            "metric": r.metric.name, "post": r.post, "experiments": experiments,
            "submission": {"file": sub_path.name, "sha256": sha256_file(sub_path), "cv": r.cv,
                           "holdout_score": r.holdout_score}}
    if how == "blend":  # the weights fitted on every OOF row, in the experiments' order
        spec["blend"] = {"method": r.blend["method"], "weights": [r.blend["weights"][c.name] for c in cfgs]}
    if how == "stack":
        (tmp / STACK).write_bytes(pickle.dumps(learner))
        spec["stack"] = {"file": STACK, "sha256": sha256_file(tmp / STACK), "method": r.blend["method"],
                         "tabular": tab.record() if tab is not None else None}
    (tmp / "bundle.json").write_text(json.dumps(spec, indent=2) + "\n")
    _replace_dir(tmp, out)
    archive = out.with_name(out.name + ".zip")  # bundle.v2 -> bundle.v2.zip (with_suffix would make bundle.zip)
    _zip(out, archive)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    log.info("bundle %s (%.0f MB, and %s): %s, %d experiment(s), reproduces %s", out, size, archive.name, r.name,
             len(experiments), sub_path.name)
    return out


def _copy_weights(r: ens.Result, folder: Path) -> dict:
    cfg = r.cfgs[0]
    (folder / cfg.name).mkdir(parents=True)
    folds = []
    for k in predict.models(cfg, r.folds):  # the folds' weights, and full_fit's model (fold -1, full.pt)
        for s, member in enumerate(Experiment.of(cfg).members(k, cfg.seeds)):  # seeds=N: each of the fold's seeds
            dst = folder / cfg.name / f"{fold_name(k, s)}.pt"
            shutil.copyfile(member.best, dst)
            folds.append({"fold": k, **({"seed": s} if s else {}), "file": dst.relative_to(folder).as_posix(),
                          "sha256": sha256_file(dst)})
    return {"name": cfg.name, "config": to_dict(cfg), "folds": folds,
            **({"plan": plan} if (plan := submission.plans([cfg], r.fingerprint).get(cfg.name)) else {})}


def _replace_dir(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out`; an old bundle there goes only once the new one is whole."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _zip(folder: Path, path: Path) -> None:
    """The folder as a zip whose bytes depend on its files' contents alone (fixed times): an export run twice
    writes the same zip."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:  # weights do not compress
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.writestr(zipfile.ZipInfo(f.relative_to(folder).as_posix(), date_time=(2020, 1, 1, 0, 0, 0)),
                           f.read_bytes())


def _open(bundle: Path, stack) -> Path:
    """The bundle's folder: itself, or a zip extracted to a temporary folder."""
    if bundle.is_file() and zipfile.is_zipfile(bundle):
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kit-bundle-")))
        with zipfile.ZipFile(bundle) as z:
            z.extractall(tmp)
        return tmp
    if not (bundle / "bundle.json").is_file():
        raise ValueError(f"--bundle {bundle}: no bundle.json there; give the folder (or .zip) `kit export` wrote")
    return bundle


def read_spec(folder: Path, name: str) -> dict:
    """bundle.json, refused unless every weights file (and a stack's learner) is there with the sha256 it was
    exported with."""
    spec = json.loads((folder / "bundle.json").read_text())
    if spec.get("format") != FORMAT:
        raise ValueError(f"{name}: bundle format {spec.get('format')!r}, this kit reads {FORMAT}; export it again")
    bad = []
    for f in [f for e in spec["experiments"] for f in e["folds"]] + ([spec["stack"]] if "stack" in spec else []):
        path = folder / f["file"]
        if not path.is_file():
            bad.append(f"{f['file']} (missing)")
        elif sha256_file(path) != f["sha256"]:
            bad.append(f"{f['file']} (sha256 differs)")
    if bad:
        raise ValueError(f"{name}: weights do not match bundle.json: {summarize(bad)}; export the bundle again")
    return spec


def bundle_configs(spec: dict, overrides: dict, name: str) -> list[Config]:
    """Each experiment's config as exported; overrides only of keys that shape nothing (paths, device, speed)."""
    check_known(overrides, " on the command line")
    fixed = sorted(k for k in overrides if shapes(k) != "nothing")
    if fixed:
        raise ValueError(f"{name} fixes {fixed}: they shape the weights or predictions it reproduces; "
                         "change them before `kit export`")
    try:
        return [Config(**{**upgrade(e["config"]), **overrides}) for e in spec["experiments"]]
    except TypeError as e:  # keys this kit does not know: written by another version
        raise ValueError(f"{name}: config not readable by kit {__version__} ({e}); export it again") from None


def predict_bundle(bundle: str | Path, overrides: dict) -> Path:
    """TTA + fold ensemble (+ experiments) from a bundle: <submissions_dir>/<name>-<sha8>.csv and submission.csv."""
    with contextlib.ExitStack() as stack:
        folder = _open(Path(bundle), stack)
        spec = read_spec(folder, f"--bundle {bundle}")
        if skew := version_skew(spec.get("versions", {})):  # a bundle exported before versions were kept: none
            log.warning("%s", skew)
        cfgs = bundle_configs(spec, overrides, f"--bundle {bundle}")
        check_writable(cfgs[0].submissions_dir, "submissions_dir")
        device = start(cfgs[0], "predict")
        layout = scan_test(cfgs[0].data, spec["layout"], cfgs[0].id_col, cfgs[0].label_col,
                           **layout_keys(cfgs[0]))
        predict.check_test(layout, cfgs[0])
        paths = list(layout.test["path"])
        task, classes = layout.task, list(layout.classes)
        tolerate, unreadable = cfgs[0].bad_test_images == "prior", np.zeros(len(paths), bool)

        def logits(cfg: Config, f: dict):
            x, seen = fold_logits(cfg, folder / f["file"], classes, layout.root, paths, None, device, tolerate)
            unreadable[(seen == UNREADABLE) if seen.ndim == 1 else (seen == UNREADABLE).all(1)] = True
            return x
        averaged = [ens.average([mean_of([logits(cfg, f) for f in fold]) for fold in _by_fold(e["folds"])],
                                cfg.merge, task) for e, cfg in zip(spec["experiments"], cfgs)]
        parts = [(predict.from_prior(x, unreadable, layout), cfg.merge == "probs") for x, cfg in zip(averaged, cfgs)]
        if "stack" in spec or "blend" in spec:  # both act on each experiment's probabilities
            members = [x if as_probs else probs_of(x, task) for x, as_probs in parts]
        if "stack" in spec:
            scores, is_probs = _stacked(spec["stack"], folder, members, cfgs, layout), True
        elif "blend" in spec:
            from kit.predict.blend import mixed
            scores, is_probs = mixed(spec["blend"]["weights"], members), True
        else:
            scores, is_probs = ens.mean_scores(parts, task) if len(parts) > 1 else parts[0]
        probs, thresholds = calibrate.apply(spec["post"], scores if is_probs else probs_of(scores, task))
        data = formats.to_bytes(formats.table(layout, probs, thresholds, spec["post"].get("blank_below", 0.0)), layout)
        return _write(data, spec, cfgs, Path(bundle))


def _stacked(record: dict, folder: Path, members: list[np.ndarray], cfgs: list[Config], layout) -> np.ndarray:
    """The stack's test probabilities: its learner on the members' probabilities and the test file's columns,
    the features kit/predict/stack.py fitted it on."""
    import pandas as pd

    from kit.data import tabular
    from kit.predict.stack import member_columns
    learner = pickle.loads((folder / record["file"]).read_bytes())  # checked against its sha256 (read_spec)
    columns = {}
    for probs, cfg in zip(members, cfgs):
        columns |= member_columns(cfg.name, layout.classes, probs)
    x = pd.DataFrame(columns)
    if record["tabular"] is not None:
        x = pd.concat([x, tabular.test_columns(layout.root, record["tabular"], list(layout.test["id"].astype(str)))],
                      axis=1)
    return learner.predict(x)


def _by_fold(entries: list[dict]) -> list[list[dict]]:
    """bundle.json's weights entries of one experiment grouped by fold (a fold and its seeds), in fold order."""
    groups: dict[int, list[dict]] = {}
    for f in entries:
        groups.setdefault(f["fold"], []).append(f)
    return list(groups.values())


def _write(data: bytes, spec: dict, cfgs: list[Config], bundle: Path) -> Path:
    """<name>-<sha8>.csv with its manifest (kit/board/submission.py), and the same bytes as submission.csv."""
    out_dir = Path(cfgs[0].submissions_dir)
    folds = [fold[0]["fold"] for fold in _by_fold(spec["experiments"][0]["folds"])]
    run = submission.run_record(
        cfgs, {f["file"]: f["sha256"] for e in spec["experiments"] for f in e["folds"]}, folds,
        spec["submission"]["cv"], bundle=str(bundle), exported_submission=spec["submission"]["file"])
    path, _ = submission.save(data, spec["name"], out_dir, run, cfgs[0].zip)
    atomic_write_bytes(out_dir / "submission.csv", data)
    same = ("the same as" if hashlib.sha256(data).hexdigest() == spec["submission"]["sha256"]
            else "different from (other test images, hardware or versions)")
    cv = spec["submission"]["cv"]
    log.info("wrote %s and %s: %s the exported %s (CV %s %.4f)", path, out_dir / "submission.csv", same,
             spec["submission"]["file"], cv["metric"], cv["score"])
    return path
