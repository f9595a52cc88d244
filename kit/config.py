"""One flat, frozen config per experiment: a YAML preset, then `key=value` overrides.

    python -m kit train --exp demo stage1_epochs=3 batch_size=32      # a preset shipped in kit/configs/
    python -m kit train --exp my.yaml                                 # or a YAML file of your own

Every key, its type and its meaning live in `Config` below; `python -m kit --help-config`
prints them. Unknown keys and wrong types raise `ValueError` naming the key and what it accepts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from kit.io import MAX_PIXELS, atomic_write_text, sha256_file
from kit.tta import AUTO_TTA, VIEWS

TTA_VIEWS = tuple(VIEWS)
AUTO_TTA_NAMES = ", ".join("+".join(c) or "none" for c in AUTO_TTA)
PRESETS = Path(__file__).parent / "configs"  # shipped inside the package: `kit` works from any directory


# What a key shapes, in pipeline order. A key invalidates the outputs of its own level and of
# every later one: a "weights" key makes trained folds stale, and with them their predictions.
#   split        folds.csv (folds.json records these keys)
#   weights      every checkpoint (each fold's config.yaml and best.pt record them; predict takes them from best.pt)
#   predictions  each fold's test/OOF logits (their cache key holds these keys and every earlier one)
#   ensemble     how fold logits become one submission (the manifest records every key that shapes it)
#   nothing      paths, speed, scoring: free to change at any stage
SHAPES = ("split", "weights", "predictions", "ensemble", "nothing")


def _key(default, help: str, shapes: str = "nothing"):
    """A config field with its help text (--help-config) and what it shapes (one of SHAPES)."""
    assert shapes in SHAPES, f"shapes={shapes!r} is not one of {SHAPES}"
    return field(default=default, metadata={"help": help, "shapes": shapes})


@dataclass(frozen=True)
class Config:
    # --- data and folds -------------------------------------------------------------
    name: str = _key("resnest50d_spinalnet", "experiment name: outputs go to <work_dir>/<name>/ (the defaults of "
                                             "every key are the write-up's recipe, kit/configs/resnest50d_spinalnet.yaml)")
    data: str = _key("data/demo", "data folder (folder layout or Kaggle CSV layout, see docs/DATA.md)")
    work_dir: str = _key("folds", "where folds.csv, checkpoints and logits are written")
    submissions_dir: str = _key("submissions", "where submission CSVs and leaderboard.csv go")
    n_folds: int = _key(5, "number of stratified cross-validation folds (>= 2)", "split")
    split_seed: int = _key(42, "seed of the stratified folds", "split")
    seed: int = _key(42, "seed of training: initialisation, shuffling, augmentation (several seeds on the same folds, "
                         "each under its own name=, make a seed ensemble)", "weights")
    val_mode: Literal["pool", "holdout"] = _key(
        "pool", "DATA/val: join the CV pool, or keep as a fixed holdout", "split")
    rare_classes: Literal["error", "train_only"] = _key(
        "error", "classes with fewer images than n_folds: fail, or always train on them", "split")
    skip_bad_images: bool = _key(False, "skip unreadable images with a warning instead of failing", "split")
    id_col: str = _key("", "Kaggle CSV layout: id column of train.csv (default: from sample_submission.csv)", "split")
    label_col: str = _key(
        "", "Kaggle CSV layout: label column of train.csv (default: from sample_submission.csv)", "split")
    task: Literal["auto", "single", "multilabel"] = _key(
        "auto", "single: one class per image; multilabel: any number of tags per image; auto = from train.csv "
                "(space-separated tags, or 0/1 class columns with more or less than one 1 in a row)", "split")
    submission: Literal["auto", "label", "probs", "prob", "tags", "topk"] = _key(
        "auto", "what a submission row holds: label (the class), probs (a probability column per class), prob (the "
                "probability of the second of two classes), tags (space-separated classes above their threshold), "
                "topk (the top_k most likely classes); auto = from sample_submission.csv", "split")
    top_k: int = _key(0, "classes per row of a topk submission; 0 = as many as sample_submission.csv shows (else 5)",
                      "split")
    max_pixels: int = _key(MAX_PIXELS, "largest image accepted, in pixels (decompression-bomb guard)")
    # --- model ----------------------------------------------------------------------
    backbone: str = _key("resnest50d", "any timm model name; created with num_classes=0 (pooled features)", "weights")
    head: Literal["spinal", "linear"] = _key(
        "spinal", "classifier head: SpinalNet or a single Linear layer", "weights")
    spinal_width: int = _key(540, "width of each of the four SpinalNet layers", "weights")
    head_dropout: float = _key(0.5, "dropout before every head layer", "weights")
    pretrained: bool = _key(True, "start from ImageNet weights (Hugging Face hub, or pretrained_file); auto = when "
                                  "they can be had, else from scratch (decided once per experiment: start.json)",
                            "weights")
    pretrained_file: str = _key("", "local weights file (.safetensors or .pth) used instead of the hub", "weights")
    # --- transforms -----------------------------------------------------------------
    resize: int = _key(460, "train: resize to resize x resize before the random crop", "weights")
    img_size: int = _key(448, "train crop size; val/test images are resized to this", "weights")
    resize_mode: Literal["squash", "pad"] = _key(
        "squash", "how images become square: squash (resize both sides, the recipe) or pad (longest side to size, "
                  "black bars: a 2:1 image keeps its shape)", "weights")
    rotate: float = _key(15.0, "train: rotate every image by a uniform angle in [-rotate, rotate] degrees", "weights")
    hflip: float = _key(0.5, "train: horizontal flip probability; auto = 0.5, or 0 where fold 0's data shows that a "
                             "flip changes the class (kit/train/flip.py: hflip.json), the same for every fold", "weights")
    mean: tuple[float, float, float] = _key((0.507, 0.487, 0.441), "normalisation mean (RGB, 0..1)", "weights")
    std: tuple[float, float, float] = _key((0.267, 0.256, 0.276), "normalisation std (RGB, 0..1)", "weights")
    cache: bool = _key(False, "read images from a cache resized once to what the transforms need (fast data path)")
    cache_dir: str = _key("cache", "where the resized-image cache lives (shared by every fold and experiment)")
    cache_draft: bool = _key(
        False, "build the cache from reduced-size JPEG decodes of large photos: faster, not exact", "weights")
    memory_cache_mb: int = _key(
        0, "keep decoded images in memory, up to this many MB in each loading process (every worker holds its "
           "own): for small data sets, where decoding is a large part of an epoch; 0 = off")
    # --- training -------------------------------------------------------------------
    batch_size: int = _key(16, "training batch size (even: mixup pairs images within a batch)", "weights")
    workers: int = _key(-1, "DataLoader workers; -1 = one per CPU core")
    mixup_alpha: float = _key(1.0, "mixup Beta(alpha, alpha); 0 turns mixup off", "weights")
    cutmix_alpha: float = _key(0.0, "cutmix alpha; 0 = no cutmix", "weights")
    label_smoothing: float = _key(0.1, "label smoothing of the soft targets", "weights")
    optimizer: str = _key("sgd", "sgd (the recipe's: momentum, weight decay on every parameter) or a timm "
                                 "optimizer name (adamw, lamb, ...: no decay on biases and norms)", "weights")
    momentum: float = _key(0.9, "SGD momentum", "weights")
    weight_decay: float = _key(1e-4, "weight decay", "weights")
    stage1_lr: float = _key(0.01, "stage 1 learning rate (cosine-annealed over stage1_epochs); auto = from a range "
                                  "test on fold 0's training part (kit/train/lr_find.py), the same for every fold", "weights")
    stage1_epochs: int = _key(40, "stage 1 epochs", "weights")
    stage2_lr: float = _key(0.001, "stage 2 learning rate; stage 2 starts from the stage-1 best weights; auto = a "
                                   "tenth of stage 1's (the recipe's ratio)", "weights")
    stage2_epochs: int = _key(20, "stage 2 epochs; 0 skips stage 2", "weights")
    time_budget: float = _key(0.0, "minutes for the whole run (every fold, then predict): the epochs as set (or as "
                                   "min_fold_steps raises them), trimmed where a measured probe says they do not fit "
                                   "(kit/train/budget.py: budget.json), in the ratio of stage1_epochs to stage2_epochs; "
                                   "0 = no limit", "weights")
    min_fold_steps: int = _key(0, "optimizer steps a fold takes at the least (both stages): where the epochs as set give "
                             "fewer (small data), they are raised in their ratio, at most 4 times (kit/train/budget.py: "
                             "budget.json); time_budget still trims; 0 = the epochs as set", "weights")
    lr_reference_batch: int = _key(
        0, "linear lr scaling: lr x batch_size / this (e.g. 16 for the recipe); 0 = off", "weights")
    warmup_epochs: int = _key(
        -1, "stage 1: linear warm-up from lr/10 over this many epochs, then cosine; -1 = auto: 0 from pretrained "
            "weights (the recipe), min(3, stage1_epochs // 5) from scratch or pretrained=auto", "weights")
    min_epochs: int = _key(
        0, "early stopping counts patience only after this many epochs of a stage (and never before stage 1's "
           "warm-up ends), and never stops a stage whose best val top-1 is still within noise of chance", "weights")
    ema_decay: float = _key(
        0.0, "exponential moving average of the weights (timm ModelEmaV3), its decay warming up to this value "
             "(e.g. 0.999); validation, best.pt, OOF and predict then use the EMA weights. 0 = off (the recipe)",
        "weights")
    pseudo_from: str = _key(
        "", "pseudo-labels: an experiment (same work_dir, predicted) whose fold-k model labels the test images that "
            "fold k also trains on, never validates on; '' = off. `kit pseudo` sets it", "weights")
    pseudo_threshold: float = _key(0.9, "pseudo-labels: keep test images labelled with at least this probability",
                                   "weights")
    patience: int = _key(7, "early stopping: epochs without a better val top-1 before a stage stops", "weights")
    max_epoch_steps: int = _key(0, "at most this many training steps in each epoch (0 = the whole epoch; for smoke "
                                   "tests)", "weights")
    amp: bool = _key(
        True, "mixed precision on CUDA (bf16 where supported, else fp16), for training and predict; CPU runs fp32",
        "weights")
    device: Literal["auto", "cpu", "cuda"] = _key(
        "auto", "auto: CUDA when it works (an NVIDIA driver where CUDA does not start is an error), else the CPU")
    deterministic: bool = _key(
        False, "GPU: deterministic kernels, no cuDNN autotuning: a resumed fold ends bit-equal to an uninterrupted "
               "one, at a cost in speed. Without it resume on a GPU is close, not exact (on the CPU: always exact)")
    checkpoint_every_s: float = _key(
        0.0, "write last.pt (the point a killed run resumes from) after an epoch only once this many seconds have "
             "passed since the last write, and at the end of each stage; 0 = after every epoch. For epochs of a "
             "second or two, where the write is a tenth of the epoch; a resumed fold ends the same either way")
    keep_checkpoints: bool = _key(
        False, "keep stage1_best.pt, last.pt and last.prev.pt when a fold is done (default: best.pt and final.pt stay)")
    channels_last: bool = _key(False, "channels_last memory format (measure: it helps some models, slows others)")
    compile: bool = _key(False, "torch.compile the model for the training steps only: validation and prediction "
                                "run the plain, uncompiled module")
    # --- prediction -----------------------------------------------------------------
    tta: tuple[str, ...] = _key(
        ("hflip",), f"test-time augmentation transforms, composed; from {TTA_VIEWS}; [] = none; auto = the set of "
                    f"{AUTO_TTA_NAMES} with the best out-of-fold score (chosen on the other folds for the CV)",
        "predictions")
    batched_tta: Literal["auto", "on", "off"] = _key(
        "auto", "all TTA views of a batch in one forward pass (same result as ttach's loop); auto = on CUDA only, "
                "where it pays (on the CPU it measured slower: docs/BENCHMARKS.md)")
    tta_max_images: int = _key(
        256, "batched TTA: at most this many images (views x batch) in one forward pass; 256 at 448 px fits a "
             "16 GB GPU")
    eval_batch_size: int = _key(64, "batch size for validation and test inference")
    merge: Literal["logits", "probs"] = _key(
        "logits", "fold ensemble: average logits or softmax probabilities", "ensemble")
    allow_missing_folds: bool = _key(False, "predict with the folds that finished instead of failing", "ensemble")
    zip: bool = _key(False, "also write the submission CSV inside a .zip (Codabench-style platforms)")
    metric: str = _key(
        "auto", "the metric the competition ranks by: it picks each fold's best epoch, early-stops, scores the CV, "
                "fits blends and thresholds, orders the leaderboard and picks what `make submit` uploads. One of "
                "accuracy, balanced_accuracy, f1_macro, f1_micro, log_loss, roc_auc, qwk, f1_samples, f2_samples, "
                "map@k; auto = from the submission format (label: accuracy, probs: log_loss (multi-label: roc_auc), "
                "prob: roc_auc, tags: f1_samples, topk: map@k)", "weights")
    sampler: Literal["shuffle", "balanced"] = _key(
        "shuffle", "training order: shuffle (every image once an epoch), or balanced (images drawn with weights "
                   "1 / their class's count: every class equally often; single-label only)", "weights")
    class_weight: Literal["none", "balanced"] = _key(
        "none", "loss weights: none, or balanced (single-label: each class n / (classes x its count); multi-label: "
                "each class's positives weighted by its negatives / positives)", "weights")
    threshold: float = _key(
        0.0, "multi-label decisions: a class is predicted where its probability >= this; 0 = one threshold per "
             "class fitted on the out-of-fold predictions for the metric (nested: a fold's CV never sees "
             "thresholds fitted on itself)", "ensemble")
    temperature: Literal["off", "fit"] = _key(
        "fit", "single-label probabilities: fit = divide the ensemble's logits by a temperature fitted on the "
               "out-of-fold predictions to lower the log loss (nested like threshold; it changes no top class, only "
               "the probabilities a probs or prob submission holds; not fitted for a roc_auc of more than two classes, "
               "whose one-vs-rest ranking it would change); off = as the ensemble gives them", "ensemble")
    solution: str = _key("", "solution CSV (id, label, Usage) for local scoring; default DATA/solution.csv")

    def __post_init__(self):
        if self.tta in ("auto", ["auto"]):  # tta=auto: chosen per experiment by its out-of-fold score (kit/predict/predict.py)
            object.__setattr__(self, "tta", ("auto",))
        _check_types(self)
        _check_values(self)

    @property
    def warmup(self) -> int:
        """Stage 1's warm-up epochs, with auto (-1) resolved."""
        if self.warmup_epochs >= 0:
            return self.warmup_epochs
        return 0 if self.pretrained is True else min(3, self.stage1_epochs // 5)  # auto may end from scratch

    def stage_lr(self, stage: int, found: float | None = None) -> float:
        """The stage's learning rate, scaled linearly with the batch when lr_reference_batch is set.
        `found`: stage1_lr=auto's value (kit/train/lr_find.py; found at this batch size, so never scaled)."""
        if self.stage1_lr == "auto":
            assert found is not None, "stage1_lr=auto: kit/train/lr_find.py finds the value before training"
            if stage == 1:
                return found
        if stage == 2 and self.stage2_lr == "auto":
            return self.stage_lr(1, found) / 10
        lr = self.stage1_lr if stage == 1 else self.stage2_lr
        return lr * self.batch_size / self.lr_reference_batch if self.lr_reference_batch else lr


def _check_values(cfg: Config) -> None:
    problems = []
    if cfg.n_folds < 2:
        problems.append(f"n_folds={cfg.n_folds}: need at least 2 folds for cross-validation")
    if cfg.batch_size < 2 or cfg.batch_size % 2:
        problems.append(f"batch_size={cfg.batch_size}: must be even and >= 2 (mixup pairs images)")
    if not 0 < cfg.pseudo_threshold <= 1:
        problems.append(f"pseudo_threshold={cfg.pseudo_threshold}: must be in (0, 1]")
    if cfg.pseudo_from and cfg.pseudo_from == cfg.name:
        problems.append(f"pseudo_from={cfg.pseudo_from}: an experiment cannot label its own training data; "
                        "give the new experiment another name=")
    if not 0 <= cfg.threshold < 1:
        problems.append(f"threshold={cfg.threshold}: must be in [0, 1) (0 fits one per class)")
    if cfg.top_k < 0:
        problems.append(f"top_k={cfg.top_k}: must be >= 0 (0 = from sample_submission.csv)")
    if cfg.metric != "auto":
        from kit.metrics import get  # scikit-learn: imported only when a metric is named
        try:
            get(cfg.metric)
        except ValueError as e:
            problems.append(str(e))
    if cfg.optimizer != "sgd":
        from timm.optim import list_optimizers  # timm: imported only when another optimizer is named
        if cfg.optimizer not in list_optimizers():
            problems.append(f"optimizer={cfg.optimizer}: not sgd or a timm optimizer (adamw, lamb, nadamw, ...; "
                            "timm.optim.list_optimizers())")
    if not 0 <= cfg.ema_decay < 1:
        problems.append(f"ema_decay={cfg.ema_decay}: must be in [0, 1) (0 turns the EMA off; try 0.999)")
    for key in ("stage1_lr", "stage2_lr", "weight_decay", "momentum", "label_smoothing",
                "mixup_alpha", "cutmix_alpha", "head_dropout", "rotate", "memory_cache_mb", "checkpoint_every_s",
                "time_budget"):
        if getattr(cfg, key) != "auto" and getattr(cfg, key) < 0:
            problems.append(f"{key}={getattr(cfg, key)}: must be >= 0")
    if cfg.hflip != "auto" and not 0 <= cfg.hflip <= 1:
        problems.append(f"hflip={cfg.hflip}: a probability, from 0 to 1 (or auto)")
    if cfg.stage1_lr == 0:
        problems.append("stage1_lr=0: must be > 0")
    if cfg.lr_reference_batch < 0:
        problems.append(f"lr_reference_batch={cfg.lr_reference_batch}: must be >= 0 (0 turns scaling off)")
    for key in ("stage1_epochs", "img_size", "resize", "spinal_width", "eval_batch_size", "patience", "tta_max_images"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key}={getattr(cfg, key)}: must be >= 1")
    if cfg.stage2_epochs < 0 or cfg.max_epoch_steps < 0 or cfg.min_epochs < 0 or cfg.min_fold_steps < 0:
        problems.append("stage2_epochs, max_epoch_steps, min_epochs and min_fold_steps must be >= 0")
    if cfg.warmup_epochs < -1 or cfg.warmup >= cfg.stage1_epochs:
        problems.append(f"warmup_epochs={cfg.warmup_epochs}: must be -1 (auto) or from 0 to stage1_epochs - 1 "
                        f"({cfg.stage1_epochs - 1})")
    if cfg.resize < cfg.img_size:
        problems.append(f"resize={cfg.resize} < img_size={cfg.img_size}: the random crop needs resize >= img_size")
    bad_views = [v for v in cfg.tta if v not in TTA_VIEWS] if cfg.tta != ("auto",) else []
    if bad_views:
        alone = "; auto stands alone (tta=auto)" if "auto" in bad_views else ""
        problems.append(f"tta={list(cfg.tta)}: unknown {bad_views}; choose from {list(TTA_VIEWS)}{alone}")
    if problems:
        raise ValueError("; ".join(problems))


def _describe(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        inner = args[0].__name__
        return f"a list of {inner}" if args[-1] is Ellipsis else f"a list of {len(args)} {inner}"
    return tp.__name__


def _coerce(key: str, value, tp):
    """Return value as type tp, or raise ValueError naming the key and what it accepts."""
    bad = ValueError(f"config key {key!r}: got {value!r}, expected {_describe(tp)}")
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        if args[-1] is not Ellipsis and len(value) != len(args):
            raise bad
        return tuple(_coerce(key, v, args[0]) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # YAML `lr: 1` means 1.0
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads `1e-4` as a string
        except ValueError:
            raise bad from None
    if tp is str and value is None:
        return ""
    if type(value) is not tp:
        raise bad
    return value


AUTO_KEYS = ("stage1_lr", "stage2_lr", "pretrained", "hflip")  # keys that also take "auto" (decided at train time)


def _check_types(cfg: Config) -> None:
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(cfg):
        if f.name in AUTO_KEYS and getattr(cfg, f.name) == "auto":
            continue
        try:
            value = _coerce(f.name, getattr(cfg, f.name), hints[f.name])
        except ValueError as e:
            raise ValueError(f"{e}, or auto" if f.name in AUTO_KEYS else str(e)) from None
        object.__setattr__(cfg, f.name, value)  # frozen: set the coerced value once, at construction


def parse_overrides(items: list[str]) -> dict:
    """`["lr=0.1", "tta=[hflip,vflip]"]` -> {"lr": 0.1, "tta": ["hflip", "vflip"]} (values are YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value, e.g. batch_size=32")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise ValueError(f"override {item!r}: not a valid value ({str(e).splitlines()[0]}); quote it or close "
                             "its brackets, e.g. tta=[hflip,vflip]") from None
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Defaults <- YAML preset <- overrides. `name` defaults to the preset's file stem."""
    values = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} not found; presets: {', '.join(preset_names())}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config file {path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ValueError(f"config file {path}: expected key: value pairs at the top level")
        values.setdefault("name", path.stem)
        values = upgrade(values)  # a trained experiment's config.yaml from before a key was renamed
        values = {k: v for k, v in values.items() if k.removesuffix("_sha256") not in FILE_KEYS or k in FILE_KEYS}
    check_known(values, f" in {path}")
    check_known(overrides or {}, " on the command line")
    values.update(overrides or {})
    return Config(**values)


def check_known(values: dict, where: str) -> None:
    """Raise ValueError naming every key of `values` that is not a config key."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(Config)})
    renamed = [f"{k} is now {FORMER_NAMES[k]}" for k in unknown if k in FORMER_NAMES]
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}{where}{' (' + '; '.join(renamed) + ')' if renamed else ''}; "
                         "`python -m kit --help-config` lists them")


def default(key: str):
    """A key's default value (the recipe's, for the model keys), for code that builds things outside a config."""
    return Config.__dataclass_fields__[key].default


def shapes(key: str) -> str:
    """What the key shapes: one of SHAPES."""
    return Config.__dataclass_fields__[key].metadata["shapes"]


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def find_preset(exp: str, trained: Path | None = None) -> Path:
    """--exp takes a YAML path (my.yaml, ./dir/x.yml) or a name, looked for in this order: configs/NAME.yaml
    under the current directory (your own presets), the preset shipped in kit/configs/, `trained` (the config.yaml
    of an experiment of that name trained in work_dir: kit/train/experiment.py knows where). A shipped preset's name
    always means the preset, so a smoke run's overrides (`--exp quick stage1_epochs=1`) never outlive it: a run
    of your own keeps its settings under its own name= (train then refuses a preset whose keys differ from it)."""
    path = Path(exp)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
        if not path.is_file():
            raise ValueError(f"--exp {exp}: no such config file; give a YAML path or a preset name "
                             f"({', '.join(preset_names())})")
        return path
    for candidate in (Path("configs") / f"{exp}.yaml", PRESETS / f"{exp}.yaml", trained):
        if candidate is not None and candidate.is_file():
            return candidate
    raise ValueError(f"--exp {exp}: no preset or trained experiment of that name; presets: "
                     f"{', '.join(preset_names())} (or give a path to a YAML file)")


def keys_shaping(what: str) -> tuple[str, ...]:
    """The keys whose change makes `what` (one of SHAPES) stale: those declared for it or anything before it."""
    upto = SHAPES.index(what)
    return tuple(f.name for f in dataclasses.fields(Config) if SHAPES.index(f.metadata["shapes"]) <= upto)


def shaping(cfg: Config, what: str) -> dict:
    """{key: value} of the keys that shape `what`, as plain data (what caches and manifests record)."""
    values = _identity(to_dict(cfg))
    return {k: values[k] for k in keys_shaping(what)}


def shaping_key(cfg: Config, what: str, *also) -> str:
    """A hash of the keys that shape `what`, and of `also` (e.g. the folds' fingerprint): what a kept decision,
    such as stage1_lr=auto's value, was made under."""
    return hashlib.sha256(json.dumps([shaping(cfg, what), *also], sort_keys=True).encode()).hexdigest()


def changed(recorded: dict, cfg: Config, what: str) -> list[str]:
    """'key=recorded (now: value)' for each key shaping `what` whose recorded value differs from cfg's.

    A key missing from `recorded` (written before the key existed) counts as its default, or as the
    key it was split from (RENAMED).
    """
    now, defaults = to_dict(cfg), to_dict(Config())
    diff = []
    for k in keys_shaping(what):
        old = _plain(recorded.get(k, recorded.get(RENAMED.get(k, k), defaults[k])))
        if k in FILE_KEYS and now[k] and recorded.get(f"{k}_sha256") and Path(now[k]).is_file():
            if recorded[f"{k}_sha256"] != sha256_file(now[k]):  # the same file anywhere is the same weights
                diff.append(f"{k}={old!r} (now {now[k]!r}, other content)")
        elif old != now[k]:
            diff.append(f"{k}={old!r} (now {now[k]!r})")
    return diff


# key -> the key that held its value in configs written before it existed (or before it had its name)
RENAMED = {"split_seed": "seed", "max_epoch_steps": "max_steps", "min_fold_steps": "min_steps"}
FORMER_NAMES = {"max_steps": "max_epoch_steps", "min_steps": "min_fold_steps"}  # renamed keys: old -> new


def upgrade(values: dict) -> dict:
    """A recorded config (config.yaml, a checkpoint's cfg, bundle.json) written under former key names, in today's."""
    out = dict(values)
    for old, new in FORMER_NAMES.items():
        if old in out:
            out.setdefault(new, out.pop(old))
    return out


# Keys naming a file: identified by its content, so the same weights under another path (a new notebook
# session, another mount) are the same. Records (config.yaml, checkpoints) keep the hash as <key>_sha256.
FILE_KEYS = ("pretrained_file",)


def _identity(values: dict) -> dict:
    """`values` with each file key that names a file replaced by the sha256 of its bytes."""
    return values | {k: sha256_file(values[k]) for k in FILE_KEYS if k in values and values[k]
                     and Path(values[k]).is_file()}


def record(cfg: Config) -> dict:
    """What config.yaml and checkpoints keep: the keys, and the content hash of each file key."""
    values = to_dict(cfg)
    return values | {f"{k}_sha256": h for k, h in _identity(values).items() if k in FILE_KEYS and h != values[k]}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value  # tuples and YAML lists compare equal


def to_dict(cfg: Config) -> dict:
    """Plain data (lists, not tuples) for YAML, JSON and checkpoints."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Config, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(record(cfg), sort_keys=False))


def help_text() -> str:
    hints = typing.get_type_hints(Config)
    lines = ["  'shapes' is what a change of the key makes stale: split (folds.csv, and all after it), weights",
             "  (trained folds, and all after them), predictions (test and OOF logits), ensemble (the submission),",
             "  or nothing. After training, only predictions, ensemble and nothing keys may change.", ""]
    for f in dataclasses.fields(Config):
        default = f.default if not isinstance(f.default, tuple) else list(f.default)
        lines.append(f"  {f.name} ({_describe(hints[f.name])}, default {default!r}; shapes {f.metadata['shapes']})"
                     f"\n      {f.metadata['help']}")
    return "\n".join(lines)
