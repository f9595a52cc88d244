"""One flat, frozen config per experiment: a YAML preset, then `key=value` overrides.

    python -m kit train --exp demo stage1_epochs=3 batch_size=32      # a preset shipped in kit/configs/
    python -m kit train --exp my.yaml                                 # or a YAML file of your own

Every key, its type and its meaning live in `Config` below; `python -m kit --help-config`
prints them. Unknown keys and wrong types raise `ValueError` naming the key and what it accepts.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError

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


def _yaml_number(value):
    """YAML 1.1 reads `1e-4` as a string: a number in a string is the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _as_tuple(value):
    return tuple(value) if isinstance(value, list) else value  # YAML and the command line give lists


Auto = Literal["auto"]  # the one spelling of a value the kit decides at train or predict time
Number = Annotated[float, BeforeValidator(_yaml_number)]  # an int becomes a float (YAML's `lr: 1`)
NonNeg = Annotated[Number, Ge(0)]
Count = Annotated[int, Ge(1)]
Whole = Annotated[int, Ge(0)]
Str = Annotated[str, BeforeValidator(lambda v: "" if v is None else v)]  # an empty YAML value
RGB = Annotated[tuple[Number, Number, Number], BeforeValidator(_as_tuple)]
Views = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]


def _key(default, help: str, shapes: str = "nothing"):
    """A config field with its help text (--help-config) and what it shapes (one of SHAPES)."""
    assert shapes in SHAPES, f"shapes={shapes!r} is not one of {SHAPES}"
    return field(default=default, metadata={"help": help, "shapes": shapes})


@dataclass(frozen=True)
class DataKeys:
    """The data folder, the folds, and the submission's shape."""

    name: Str = _key("resnest50d_spinalnet", "experiment name: outputs go to <work_dir>/<name>/ (the defaults of "
                                             "every key are the write-up's recipe, kit/configs/resnest50d_spinalnet.yaml)")
    data: Str = _key("data/demo", "data folder (folder layout or Kaggle CSV layout, see docs/DATA.md)")
    work_dir: Str = _key("folds", "where folds.csv, checkpoints and logits are written")
    submissions_dir: Str = _key("submissions", "where submission CSVs and leaderboard.csv go")
    n_folds: Annotated[int, Ge(2)] = _key(5, "number of stratified cross-validation folds (>= 2)", "split")
    split_seed: int = _key(42, "seed of the stratified folds", "split")
    seed: int = _key(42, "seed of training: initialisation, shuffling, augmentation (several seeds on the same folds, "
                         "each under its own name=, make a seed ensemble)", "weights")
    val_mode: Literal["pool", "holdout"] = _key(
        "pool", "DATA/val: join the CV pool, or keep as a fixed holdout", "split")
    rare_classes: Literal["error", "train_only"] = _key(
        "error", "classes with fewer images than n_folds: fail, or always train on them", "split")
    skip_bad_images: bool = _key(False, "skip unreadable images with a warning instead of failing", "split")
    id_col: Str = _key("", "Kaggle CSV layout: id column of train.csv (default: from sample_submission.csv)", "split")
    label_col: Str = _key(
        "", "Kaggle CSV layout: label column of train.csv (default: from sample_submission.csv)", "split")
    task: Literal["auto", "single", "multilabel"] = _key(
        "auto", "single: one class per image; multilabel: any number of tags per image; auto = from train.csv "
                "(space-separated tags, or 0/1 class columns with more or less than one 1 in a row)", "split")
    submission: Literal["auto", "label", "probs", "prob", "tags", "topk"] = _key(
        "auto", "what a submission row holds: label (the class), probs (a probability column per class), prob (the "
                "probability of the second of two classes), tags (space-separated classes above their threshold), "
                "topk (the top_k most likely classes); auto = from sample_submission.csv", "split")
    top_k: Whole = _key(0, "classes per row of a topk submission; 0 = as many as sample_submission.csv shows (else 5)",
                      "split")
    max_pixels: Count = _key(MAX_PIXELS, "largest image accepted, in pixels (decompression-bomb guard)")


@dataclass(frozen=True)
class ModelKeys:
    """The backbone, its head and its start weights."""

    backbone: Str = _key("resnest50d", "any timm model name; created with num_classes=0 (pooled features)", "weights")
    head: Literal["spinal", "linear"] = _key(
        "spinal", "classifier head: SpinalNet or a single Linear layer", "weights")
    spinal_width: Count = _key(540, "width of each of the four SpinalNet layers", "weights")
    head_dropout: Annotated[Number, Ge(0), Le(1)] = _key(0.5, "dropout before every head layer", "weights")
    pretrained: bool | Auto = _key(True, "start from ImageNet weights (Hugging Face hub, or pretrained_file); auto = when "
                                  "they can be had, else from scratch (decided once per experiment: plan.json)",
                            "weights")
    pretrained_file: Str = _key("", "local weights file (.safetensors or .pth) used instead of the hub", "weights")


@dataclass(frozen=True)
class TransformKeys:
    """What an image goes through before the model, in training and at inference."""

    resize: Count = _key(460, "train: resize to resize x resize before the random crop", "weights")
    img_size: Count = _key(448, "train crop size; val/test images are resized to this", "weights")
    resize_mode: Literal["squash", "pad"] = _key(
        "squash", "how images become square: squash (resize both sides, the recipe) or pad (longest side to size, "
                  "black bars: a 2:1 image keeps its shape)", "weights")
    rotate: NonNeg = _key(15.0, "train: rotate every image by a uniform angle in [-rotate, rotate] degrees", "weights")
    hflip: Annotated[Annotated[float, Ge(0), Le(1)] | Auto, BeforeValidator(_yaml_number)] = _key(0.5, "train: horizontal flip probability; auto = 0.5, or 0 where fold 0's data shows that a "
                             "flip changes the class (kit/train/flip.py; plan.json), the same for every fold", "weights")
    mean: RGB = _key((0.507, 0.487, 0.441), "normalisation mean (RGB, 0..1)", "weights")
    std: RGB = _key((0.267, 0.256, 0.276), "normalisation std (RGB, 0..1)", "weights")
    cache: bool = _key(False, "read images from a cache resized once to what the transforms need (fast data path)")
    cache_dir: Str = _key("cache", "where the resized-image cache lives (shared by every fold and experiment)")
    cache_draft: bool = _key(
        False, "build the cache from reduced-size JPEG decodes of large photos: faster, not exact", "weights")
    memory_cache_mb: Whole = _key(
        0, "keep decoded images in memory, up to this many MB in each loading process (every worker holds its "
           "own): for small data sets, where decoding is a large part of an epoch; 0 = off")


@dataclass(frozen=True)
class TrainKeys:
    """Optimisation, the two stages, early stopping, and how a fold runs."""

    batch_size: Annotated[int, Ge(2)] = _key(16, "training batch size (even: mixup pairs images within a batch)", "weights")
    workers: Annotated[int, Ge(-1)] = _key(-1, "DataLoader workers; -1 = one per CPU core")
    mixup_alpha: NonNeg = _key(1.0, "mixup Beta(alpha, alpha); 0 turns mixup off", "weights")
    cutmix_alpha: NonNeg = _key(0.0, "cutmix alpha; 0 = no cutmix", "weights")
    label_smoothing: NonNeg = _key(0.1, "label smoothing of the soft targets", "weights")
    optimizer: Str = _key("sgd", "sgd (the recipe's: momentum, weight decay on every parameter) or a timm "
                                 "optimizer name (adamw, lamb, ...: no decay on biases and norms)", "weights")
    momentum: NonNeg = _key(0.9, "SGD momentum", "weights")
    weight_decay: NonNeg = _key(1e-4, "weight decay", "weights")
    stage1_lr: Annotated[Annotated[float, Gt(0)] | Auto, BeforeValidator(_yaml_number)] = _key(0.01, "stage 1 learning rate (cosine-annealed over stage1_epochs); auto = from a range "
                                  "test on fold 0's training part (kit/train/lr_find.py), the same for every fold", "weights")
    stage1_epochs: Count = _key(40, "stage 1 epochs", "weights")
    stage2_lr: Annotated[Annotated[float, Ge(0)] | Auto, BeforeValidator(_yaml_number)] = _key(0.001, "stage 2 learning rate; stage 2 starts from the stage-1 best weights; auto = a "
                                   "tenth of stage 1's (the recipe's ratio)", "weights")
    stage2_epochs: Whole = _key(20, "stage 2 epochs; 0 skips stage 2", "weights")
    time_budget: NonNeg = _key(0.0, "minutes for the whole run (every fold, then predict): the epochs as set (or as "
                                   "min_fold_steps raises them), trimmed where a measured probe says they do not fit "
                                   "(kit/train/budget.py; plan.json), in the ratio of stage1_epochs to stage2_epochs; "
                                   "0 = no limit", "weights")
    min_fold_steps: Whole = _key(0, "optimizer steps a fold takes at the least (both stages): where the epochs as set give "
                             "fewer (small data), they are raised in their ratio, at most 4 times (kit/train/budget.py: "
                             "plan.json); time_budget still trims; 0 = the epochs as set", "weights")
    lr_reference_batch: Whole = _key(
        0, "linear lr scaling: lr x batch_size / this (e.g. 16 for the recipe); 0 = off", "weights")
    warmup_epochs: Annotated[int, Ge(-1)] = _key(
        -1, "stage 1: linear warm-up from lr/10 over this many epochs, then cosine; -1 = auto: 0 from pretrained "
            "weights (the recipe), min(3, stage1_epochs // 5) from scratch or pretrained=auto", "weights")
    min_epochs: Whole = _key(
        0, "early stopping counts patience only after this many epochs of a stage (and never before stage 1's "
           "warm-up ends), and never stops a stage whose best val top-1 is still within noise of chance", "weights")
    ema_decay: Annotated[Number, Ge(0), Lt(1)] = _key(
        0.0, "exponential moving average of the weights (timm ModelEmaV3), its decay warming up to this value "
             "(e.g. 0.999); validation, best.pt, OOF and predict then use the EMA weights. 0 = off (the recipe)",
        "weights")
    pseudo_from: Str = _key(
        "", "pseudo-labels: an experiment (same work_dir, predicted) whose fold-k model labels the test images that "
            "fold k also trains on, never validates on; '' = off. `kit pseudo` sets it", "weights")
    pseudo_threshold: Annotated[Number, Gt(0), Le(1)] = _key(0.9, "pseudo-labels: keep test images labelled with at least this probability",
                                   "weights")
    patience: Count = _key(7, "early stopping: epochs without a better val top-1 before a stage stops", "weights")
    max_epoch_steps: Whole = _key(0, "at most this many training steps in each epoch (0 = the whole epoch; for smoke "
                                   "tests)", "weights")
    amp: bool = _key(
        True, "mixed precision on CUDA (bf16 where supported, else fp16), for training and predict; CPU runs fp32",
        "weights")
    device: Literal["auto", "cpu", "cuda"] = _key(
        "auto", "auto: CUDA when it works (an NVIDIA driver where CUDA does not start is an error), else the CPU")
    deterministic: bool = _key(
        False, "GPU: deterministic kernels, no cuDNN autotuning: a resumed fold ends bit-equal to an uninterrupted "
               "one, at a cost in speed. Without it resume on a GPU is close, not exact (on the CPU: always exact)")
    checkpoint_every_s: NonNeg = _key(
        0.0, "write last.pt (the point a killed run resumes from) after an epoch only once this many seconds have "
             "passed since the last write, and at the end of each stage; 0 = after every epoch. For epochs of a "
             "second or two, where the write is a tenth of the epoch; a resumed fold ends the same either way")
    keep_checkpoints: bool = _key(
        False, "keep stage1_best.pt, last.pt and last.prev.pt when a fold is done (default: best.pt and final.pt stay)")
    channels_last: bool = _key(False, "channels_last memory format (measure: it helps some models, slows others)")
    compile: bool = _key(False, "torch.compile the model for the training steps only: validation and prediction "
                                "run the plain, uncompiled module")


@dataclass(frozen=True)
class PredictKeys:
    """TTA, the fold ensemble, its post-processing, and the metric everything is ranked by."""

    tta: Views = _key(
        ("hflip",), f"test-time augmentation transforms, composed; from {TTA_VIEWS}; [] = none; auto = the set of "
                    f"{AUTO_TTA_NAMES} with the best out-of-fold score (chosen on the other folds for the CV)",
        "predictions")
    batched_tta: Literal["auto", "on", "off"] = _key(
        "auto", "all TTA views of a batch in one forward pass (same result as ttach's loop); auto = on CUDA only, "
                "where it pays (on the CPU it measured slower: docs/BENCHMARKS.md)")
    tta_max_images: Count = _key(
        256, "batched TTA: at most this many images (views x batch) in one forward pass; 256 at 448 px fits a "
             "16 GB GPU")
    eval_batch_size: Count = _key(64, "batch size for validation and test inference")
    merge: Literal["logits", "probs"] = _key(
        "logits", "fold ensemble: average logits or softmax probabilities", "ensemble")
    allow_missing_folds: bool = _key(False, "predict with the folds that finished instead of failing", "ensemble")
    zip: bool = _key(False, "also write the submission CSV inside a .zip (Codabench-style platforms)")
    metric: Str = _key(
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
    threshold: Annotated[Number, Ge(0), Lt(1)] = _key(
        0.0, "multi-label decisions: a class is predicted where its probability >= this; 0 = one threshold per "
             "class fitted on the out-of-fold predictions for the metric (nested: a fold's CV never sees "
             "thresholds fitted on itself)", "ensemble")
    temperature: Literal["off", "fit"] = _key(
        "fit", "single-label probabilities: fit = divide the ensemble's logits by a temperature fitted on the "
               "out-of-fold predictions to lower the log loss (nested like threshold; it changes no top class, only "
               "the probabilities a probs or prob submission holds; not fitted for a roc_auc of more than two classes, "
               "whose one-vs-rest ranking it would change); off = as the ensemble gives them", "ensemble")
    solution: Str = _key("", "solution CSV (id, label, Usage) for local scoring; default DATA/solution.csv")


@dataclass(frozen=True)
class Config(PredictKeys, TrainKeys, TransformKeys, ModelKeys, DataKeys):
    """One experiment's every key (the groups above, in pipeline order), checked at construction: types, choices
    and ranges by pydantic (each key's annotation), then what involves several keys (_check_values)."""

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
    """What involves several keys, or a name only a library knows (a metric, a timm optimizer, a TTA view)."""
    problems = []
    if cfg.batch_size % 2:
        problems.append(f"batch_size={cfg.batch_size}: must be even (mixup pairs images)")
    if cfg.pseudo_from and cfg.pseudo_from == cfg.name:
        problems.append(f"pseudo_from={cfg.pseudo_from}: an experiment cannot label its own training data; "
                        "give the new experiment another name=")
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
    if cfg.warmup >= cfg.stage1_epochs:
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
    """A key's type as --help-config and the errors say it: 'int >= 2', "one of 'pool', 'holdout'", 'float or auto'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        bounds = [f"{op} {getattr(m, name)}" for m in args[1:] for name, op in
                  (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if hasattr(m, name)]
        return " ".join([_describe(args[0]), ", ".join(bounds)]).strip() if bounds else _describe(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join("auto" if a == Auto else _describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        inner = _describe(args[0])
        return f"a list of {inner}" if args[-1] is Ellipsis else f"a list of {len(args)} {inner}"
    return tp.__name__


@functools.cache
def _hints() -> dict:
    return typing.get_type_hints(Config, include_extras=True)


@functools.cache
def _adapter(key: str) -> TypeAdapter:
    # strict: "16" or 1.0 for an int key, 1 for a bool, are refused (the annotations' validators take YAML's
    # strings for numbers, YAML lists for tuples, an empty YAML value for a string)
    return TypeAdapter(_hints()[key], config=ConfigDict(strict=True))


BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
          "less_than": ("<", "lt")}


def _one_line(key: str, value, e: ValidationError) -> str:
    """pydantic's error as the kit says it: the key, the value given, what it accepts."""
    for error in e.errors():
        if error["type"] in BOUNDS:
            op, name = BOUNDS[error["type"]]
            auto = ", or auto" if "auto" in _describe(_hints()[key]).split(" or ") else ""
            return f"{key}={value}: must be {op} {error['ctx'][name]:g}{auto}"
    return f"config key {key!r}: got {value!r}, expected {_describe(_hints()[key])}"


def _check_types(cfg: Config) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        try:
            checked = _adapter(f.name).validate_python(value)
        except ValidationError as e:
            raise ValueError(_one_line(f.name, value, e)) from None
        object.__setattr__(cfg, f.name, checked)  # frozen: set the checked value once, at construction


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


CHANGED = {  # what changing a key of each level does once there are outputs (docs/REFERENCE.md shows this table)
    "split": "`folds`, `train` and `predict` refuse the existing folds: set `work_dir=` for a new split",
    "weights": "`train` refuses trained folds and `predict` their checkpoints, naming the key, the trained value and "
               "the fix: another `name=` (several `seed`s on the same folds, each under its own name, make a seed "
               "ensemble)",
    "predictions": "free: each fold's test and out-of-fold logits are recomputed for the new values",
    "ensemble": "free: a new submission, with its own CV",
    "nothing": "free",
}


def shapes_table() -> str:
    """The markdown table of what may change after training, from each key's declaration (docs/REFERENCE.md):
    python -c "from kit.config import shapes_table; print(shapes_table())" """
    rows = ["| shapes | keys | change it and |", "|---|---|---|"]
    for level in SHAPES:
        keys = [f"`{f.name}`" for f in dataclasses.fields(Config) if f.metadata["shapes"] == level]
        rows.append(f"| {level} | {', '.join(keys)} | {CHANGED[level]} |")
    return "\n".join(rows)


def help_text() -> str:
    hints = _hints()
    lines = ["  'shapes' is what a change of the key makes stale: split (folds.csv, and all after it), weights",
             "  (trained folds, and all after them), predictions (test and OOF logits), ensemble (the submission),",
             "  or nothing. After training, only predictions, ensemble and nothing keys may change.", ""]
    for f in dataclasses.fields(Config):
        default = f.default if not isinstance(f.default, tuple) else list(f.default)
        lines.append(f"  {f.name} ({_describe(hints[f.name])}, default {default!r}; shapes {f.metadata['shapes']})"
                     f"\n      {f.metadata['help']}")
    return "\n".join(lines)
