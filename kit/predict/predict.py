"""The `predict` command: every fold's best weights through TTA, the fold ensemble, the submission.

    python -m kit predict --exp demo demo_baseline             # one submission per experiment
    python -m kit predict --exp demo demo_baseline --ensemble  # ... plus one of both together

Per fold, with its best weights and the TTA views: test_logits.npz, and oof_logits.npz for its
validation images (the CV of the submission is the CV of these), each with the key it was
computed under: best.pt's hash, every config key that shapes predictions (config.SHAPES) and
the images (path, size, modification time). An up-to-date file is reused, a stale one
recomputed. Keys that shape the weights come from the checkpoints; a config that contradicts
them is refused.
Submissions: <submissions_dir>/<exp>-<sha8>.csv (+ .json manifest), never overwritten (kit/board/submission.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from kit.board import leaderboard, submission
from kit.config import Config, shaping
from kit.data import folds as folds_command
from kit.data.checks import describe_bad, find_bad_images
from kit.data.layout import Layout, summarize
from kit.data.loaders import UNREADABLE
from kit.io import image_stat, load_npz, save_npz, sha256_file
from kit.metrics import probs_of
from kit.predict import ensemble as ens
from kit.predict.inference import fold_logits, start
from kit.experiment import FULL, Experiment, FoldFiles, mean_logits
from kit.tta import AUTO_TTA, tag
from kit.tta import transforms as tta_transforms
from kit.tta import untag

log = logging.getLogger(__name__)


def _fold_key(ckpt: Path, cfg: Config, root: Path, paths: list[str]) -> str:
    """What a fold's saved logits depend on: its weights, every key that shapes predictions, the images.

    An image is its path, size and modification time: another file under the same name (another
    data= folder, a replaced image) makes the saved logits stale.
    """
    h = hashlib.sha256(sha256_file(ckpt).encode())
    files = [(p, *image_stat(root / p)) for p in paths]
    h.update(json.dumps([shaping(cfg, "predictions"), files], sort_keys=True).encode())
    return h.hexdigest()


def predict_fold(cfg: Config, fold: int, layout: Layout, classes: list[str], device, paths: list[str],
                 ids, labels=None, split: str = "test", replica: int = 0) -> Path:
    """Batched, TTA-merged logits of one fold's best weights (final.pt's for split oof_last) on `paths`:
    fold<k>/<split>_logits.npz (its seed replica's, fold<k>-seed<s>/, with seeds=N).

    The file holds ids, logits, labels (-1 when unknown) and the key it was computed under; a file
    whose key matches is reused, any other is recomputed.
    """
    files: FoldFiles = Experiment.of(cfg).fold(fold, replica)
    out = files.logits(split)
    weights = files.final if split == "oof_last" else files.best
    key = _fold_key(weights, cfg, layout.root, paths)
    if out.is_file() and str(load_npz(out)["key"]) == key:
        log.info("%s %s logits up to date: %s", files.dir.name, split, out)
        return out
    tolerate = split == "test" and cfg.bad_test_images == "prior"  # an unreadable image's label: UNREADABLE
    logits, labels = fold_logits(cfg, weights, classes, layout.root, paths, labels, device, tolerate)
    save_npz(out, ids=np.asarray(ids).astype(str), labels=labels, logits=logits, key=np.array(key))
    log.info("%s: %s logits for %d images with %d TTA view(s)", files.dir.name, split, len(paths),
             len(tta_transforms(cfg.tta, cfg.img_size)))
    return out


def _ready_folds(cfg: Config, n_folds: int) -> list[int]:
    done = Experiment.of(cfg).done_folds(n_folds, cfg.seeds)
    missing = sorted(set(range(n_folds)) - set(done))
    if missing and not cfg.allow_missing_folds:
        seeds = f" (all {cfg.seeds} seeds, seeds={cfg.seeds})" if cfg.seeds > 1 else ""
        raise ValueError(f"{cfg.name}: fold(s) {missing} not trained yet{seeds}; run `make train`, "
                         "or set allow_missing_folds=true to predict with the others")
    if not done:
        raise ValueError(f"{cfg.name}: no trained folds in {Experiment.of(cfg).dir}; run `make train` first")
    return done


def models(cfg: Config, done: list[int]) -> list[int]:
    """The models whose test logits make the submission: the folds; with full_fit, they and the full-data model
    (FULL), or that model alone (only), refused, saying what to run, before it is trained."""
    if not cfg.full_fit:
        return done
    if not all(m.done for m in Experiment.of(cfg).members(FULL, cfg.seeds)):
        raise ValueError(f"{cfg.name}: full_fit={cfg.full_fit} but the full-data model is not trained yet; run "
                         "`make train` (it trains it once every fold is done)")
    return [FULL] if cfg.full_fit == "only" else [*done, FULL]


def check_test(layout: Layout, cfg: Config) -> None:
    if layout.test.empty:
        raise ValueError(f"no test images in {layout.root}: no sample submission lists any and no test*/ folder "
                         "holds any; point data= at the competition folder (its sample_submission.csv and test images)")
    if cfg.bad_test_images == "prior":  # each image is decoded once, by the predictor, which tolerates it
        return
    bad = find_bad_images(layout.root, list(layout.test["path"]), cfg.max_pixels)
    if bad:
        raise ValueError(f"{len(bad)} unreadable test image(s): {describe_bad(bad)}; no submission written (or "
                         "bad_test_images=prior predicts them from the others)")


def from_prior(scores: np.ndarray, unreadable: np.ndarray, layout: Layout) -> np.ndarray:
    """An experiment's test scores (N, classes) with the rows of unreadable images (bad_test_images=prior) the mean
    of the other rows: the prediction that knows nothing of the image but what the test set looks like. Said in
    one line; predict and predict --bundle both call it on the fold ensemble, so their files stay the same."""
    if not unreadable.any():
        return scores
    if unreadable.all():
        raise ValueError(f"none of the {len(scores)} test images in {layout.root} could be read; check the data")
    scores = scores.copy()
    scores[unreadable] = scores[~unreadable].mean(0)
    named = summarize(list(layout.test["id"].astype(str)[unreadable]))
    log.warning("%d of %d test image(s) could not be read, predicted as the mean of the others: %s",
                int(unreadable.sum()), len(scores), named)
    return scores


def predict_experiment(cfg: Config, device) -> ens.Result:
    """Per fold: test, out-of-fold and holdout logits through the same TTA; then the fold ensemble.

    The out-of-fold images go through exactly what the test images go through, so the CV of the
    result is the CV of the submission it writes. With tta=auto, every candidate of tta.AUTO_TTA is
    scored on the out-of-fold images first (oof-<views>_logits.npz); the test images get the best, and
    each fold's rows in the CV come from the candidate the other folds chose.
    """
    f = folds_command.load(cfg)
    table, layout = f.table, f.layout
    check_test(layout, cfg)
    done = _ready_folds(cfg, f.n_folds)
    val = {k: table[table["fold"] == k] for k in done}

    exp = Experiment.of(cfg)
    seeds = range(cfg.seeds)

    def logits(c: Config, k: int, rows, split: str) -> list[Path]:  # one file per member of fold k (seeds=N)
        return [predict_fold(c, k, layout, f.classes, device, list(rows["path"]), rows["path"],
                             layout.targets(rows["label"]), split, s) for s in seeds]

    choice = {}
    if cfg.tta == "auto":
        choice, cfg = _choose_tta(cfg, f, done, val, logits)
        oof = [[m.logits(f"oof-{choice['per_fold'][str(k)]}") for m in exp.members(k, cfg.seeds)] for k in done]
        views = {k: untag(choice["per_fold"][str(k)]) for k in done}
    else:
        oof = [logits(cfg, k, val[k], "oof") for k in done]
        views = {k: cfg.tta for k in done}
    used = models(cfg, done)  # full_fit: the full-data model joins (or replaces) the folds
    test = [[predict_fold(cfg, k, layout, f.classes, device, list(layout.test["path"]), layout.test["id"],
                          replica=s) for s in seeds] for k in used]
    held = table[table["role"] == "holdout"]  # DATA/val kept aside (val_mode=holdout): scored, never trained on
    holdout = [logits(cfg, k, held, "holdout") for k in used] if len(held) else []
    # cv_last: the last epochs' weights through the same TTA (folds trained before final.pt: none)
    last = [logits(dataclasses.replace(cfg, tta=views[k]), k, val[k], "oof_last") for k in done] if all(
        m.final.is_file() for k in done for m in exp.members(k, cfg.seeds)) else []
    r = ens.from_folds(cfg, layout, f.metric, f.meta, done, test, oof, holdout, last)
    unreadable = np.any([load_npz(t)["labels"] == UNREADABLE for fold in test for t in fold], axis=0)
    r = dataclasses.replace(r, test_scores=from_prior(r.test_scores, unreadable, layout))
    return dataclasses.replace(r, tta_choice={cfg.name: choice}) if choice else r


def _choose_tta(cfg: Config, f, done: list[int], val: dict, logits) -> tuple[dict, Config]:
    """tta=auto: each candidate's out-of-fold logits, the choice (ensemble.choose), and cfg with the chosen views."""
    candidates, y, fold_of = {}, None, None
    for views in AUTO_TTA:
        files = [logits(dataclasses.replace(cfg, tta=views), k, val[k], f"oof-{tag(views)}") for k in done]
        parts = [mean_logits(p) for p in files]
        candidates[tag(views)] = probs_of(np.concatenate([z["logits"] for z in parts]), f.layout.task)
        y = np.concatenate([z["labels"] for z in parts])
        fold_of = np.concatenate([np.full(len(z["labels"]), k) for k, z in zip(done, parts)])
    choice = ens.choose(f.metric, y, fold_of, candidates)
    log.info("%s: tta=auto, out-of-fold %s: %s -> %s (each fold's CV rows: %s)", cfg.name, f.metric.name,
             ", ".join(f"{n} {v:.4f}" for n, v in choice["cv"].items()), choice["chosen"],
             " ".join(f"{k}:{n}" for k, n in choice["per_fold"].items()))
    Experiment.of(cfg).record_tta(choice)
    return choice, dataclasses.replace(cfg, tta=untag(choice["chosen"]))


def run(cfgs: list[Config], ensemble: bool = False) -> list[Path]:
    """The `predict` command: a submission per experiment (and, with ensemble, one of them all)."""
    device = start(cfgs[0], "predict")
    results = [predict_experiment(cfg, device) for cfg in cfgs]
    if ensemble and len(results) > 1:
        results.append(ens.combine(results))
    written = [submission.write(r) for r in results]
    leaderboard.show(leaderboard.path_of(cfgs[0]), results[0].fingerprint)
    return written
