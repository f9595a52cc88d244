"""Every config key: its type, choices and range (checked by pydantic), default, help text and what it shapes.

    python -m kit --help-config         # these declarations, printed

Five groups in pipeline order, which kit/config.py's Config joins into one flat, frozen config. A key's
annotation is its whole check: a range (`Annotated[int, Ge(2)]`), a choice (`Literal[...]`), or a value
the kit decides (`Auto`); checks that involve several keys are in kit/config.py (_check_values).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator

from kit.io import MAX_PIXELS
from kit.tta import AUTO_TTA, VIEWS

TTA_VIEWS = tuple(VIEWS)
AUTO_TTA_NAMES = ", ".join("+".join(c) or "none" for c in AUTO_TTA)


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
    """YAML and the command line give lists; a single value is a list of one (tta=hflip, tracking=mlflow), except
    auto, which stands alone."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value not in ("auto", ""):
        return (value,)
    return value


Auto = Literal["auto"]  # the one spelling of a value the kit decides at train or predict time


def _former_auto(value):
    """Earlier versions spelt auto -1 (workers, warmup_epochs) and [auto] (tta): their records read as auto."""
    return "auto" if value == -1 and not isinstance(value, bool) or value in (["auto"], ("auto",)) else value


FormerAuto = BeforeValidator(_former_auto)
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
    work_dir: Str = _key("auto", "where folds.csv, checkpoints and logits are written; auto = folds/<the data "
                                 "folder's name> (each data set's apart)")
    submissions_dir: Str = _key("auto", "where submission CSVs and leaderboard.csv go; auto = submissions/<the data "
                                        "folder's name>")
    n_folds: Annotated[int, Ge(2)] = _key(5, "number of stratified cross-validation folds (>= 2)", "split")
    split_seed: int = _key(42, "seed of the stratified folds", "split")
    seed: int = _key(42, "seed of training: initialisation, shuffling, augmentation", "weights")
    seeds: Annotated[int, Ge(1)] = _key(
        1, "a seed ensemble under one name: each fold trained seeds times (seed, seed + 1, ...: fold<k>-seed<s>/ "
           "beside fold<k>/), their logits averaged per fold before the fold average; raising it later trains only "
           "the new seeds", "ensemble")
    full_fit: bool | Literal["only"] = _key(
        False, "after the folds, one more model on every training image (full/) for the epochs the folds chose (per "
               "stage, the median of their best epochs; each epoch then holds K/(K-1) times the steps): true = its "
               "test logits join the fold average as one more member, only = they replace it. The CV stays the "
               "folds' (the refit has no out-of-fold rows): the leaderboard's full_fit column marks such rows",
        "ensemble")
    val_mode: Literal["pool", "holdout"] = _key(
        "pool", "DATA/val: join the CV pool, or keep as a fixed holdout", "split")
    rare_classes: Literal["error", "train_only"] = _key(
        "error", "classes with fewer images than n_folds: fail, or always train on them", "split")
    skip_bad_images: bool = _key(False, "skip unreadable images with a warning instead of failing", "split")
    id_col: Str = _key("", "the label file's id column (default: the sample's first column, else the one whose "
                           "values name images)", "split")
    label_col: Str = _key(
        "", "the label file's label column (default: the column(s) the sample asks for)", "split")
    train_csv: Str = _key("", "the label file, relative to data (default: the CSV whose ids name training images; "
                              "docs/DATA.md)", "split")
    sample_csv: Str = _key("", "the sample submission, relative to data (default: the CSV named like "
                               "sample_submission)", "split")
    images: Str = _key("", "the folder under data that holds the images (default: every folder; where two images "
                           "share an id)", "split")
    group: Str = _key("auto", "a label-file column whose values (patients) each stay in one fold; auto = a column "
                              "named like patient_id whose values repeat; none = no grouping", "split")
    task: Literal["auto", "single", "multilabel", "regression"] = _key(
        "auto", "single: one class per image; multilabel: any number of tags per image; regression: a number per "
                "image; auto = from train.csv (space-separated tags, or 0/1 class columns with more or less than "
                "one 1 in a row; numbers where the competition ranks by RMSE or MAE)", "split")
    submission: Literal["auto", "label", "probs", "prob", "tags", "topk", "labelconf", "value"] = _key(
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
    workers: Annotated[Annotated[int, Ge(0)] | Auto, FormerAuto] = _key(
        "auto", "DataLoader workers; auto = this process's share of the CPU cores")
    threads: Annotated[int, Ge(1)] | Auto = _key(
        "auto", "compute threads (torch, OpenMP and BLAS pools, OpenCV); auto = this process's share of the usable "
                "CPUs among the kit processes computing on them, counted again as they start and end (kit/cpus.py)")
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
    warmup_epochs: Annotated[Whole | Auto, FormerAuto] = _key(
        "auto", "stage 1: linear warm-up from lr/10 over this many epochs (at most stage1_epochs - 1), then cosine; "
                "auto = 0 from pretrained weights (the recipe), min(3, stage1_epochs // 5) from scratch or "
                "pretrained=auto", "weights")
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
    tracking: Annotated[tuple[Literal["tensorboard", "mlflow"], ...], BeforeValidator(_as_tuple)] = _key(
        (), "experiment trackers the runs are written to, one or both: tensorboard (event files in "
            "fold<k>/tensorboard/; tensorboard --logdir <work_dir>), mlflow (MLFLOW_TRACKING_URI, else "
            "sqlite:///<work_dir>/mlflow.db: a run per experiment, a child per fold, the submissions); [] = none")
    channels_last: bool = _key(False, "channels_last memory format (measure: it helps some models, slows others)")
    compile: bool = _key(False, "torch.compile the model for the training steps only: validation and prediction "
                                "run the plain, uncompiled module")


@dataclass(frozen=True)
class PredictKeys:
    """TTA, the fold ensemble, its post-processing, and the metric everything is ranked by."""

    tta: Annotated[Views | Auto, FormerAuto] = _key(
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
    bad_test_images: Literal["refuse", "prior"] = _key(
        "refuse", "a test image that cannot be read: refuse (every test image is checked before predicting; no file "
                  "written), or prior (predicted as the mean of the other test images' predictions, their number "
                  "said; each image decoded once, by the predictor). A code competition's kernel uses prior: its "
                  "hidden test set is seen only there")
    merge: Literal["logits", "probs"] = _key(
        "logits", "fold ensemble: average logits or softmax probabilities", "ensemble")
    allow_missing_folds: bool = _key(False, "predict with the folds that finished instead of failing", "ensemble")
    zip: bool = _key(False, "also write the submission CSV inside a .zip (Codabench-style platforms)")
    metric: Str = _key(
        "auto", "the metric the competition ranks by: it picks each fold's best epoch, early-stops, scores the CV, "
                "fits blends and thresholds, orders the leaderboard and picks what `make submit` uploads. One of "
                "accuracy, balanced_accuracy, f1_macro, f1_micro, log_loss, roc_auc, pauc80 (two classes: the ROC area "
                "above 80% TPR, ISIC 2024), gap (Global Average Precision), qwk, f1_samples, f2_samples, "
                "map@k; auto = from the submission format (label: accuracy, probs: log_loss (multi-label: roc_auc), "
                "prob: roc_auc, tags: f1_samples, topk: map@k, labelconf: gap)", "weights")
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
    blank_below: Annotated[Number, Ge(0), Lt(1)] = _key(
        0.0, "labelconf submissions (Global Average Precision): a test image whose top class is less sure than "
             "this is written without one (Landmark Recognition's images of no landmark). GAP ranks only the "
             "predictions made, so a blank scores as a miss ranked last: it never beats writing the class, and "
             "loses the images it blanks that were right; 0 = a class on every row (the best for GAP)",
        "ensemble")
    temperature: Literal["off", "fit"] = _key(
        "fit", "single-label probabilities: fit = divide the ensemble's logits by a temperature fitted on the "
               "out-of-fold predictions to lower the log loss (nested like threshold; it changes no top class, only "
               "the probabilities a probs or prob submission holds; not fitted for a roc_auc of more than two classes, "
               "whose one-vs-rest ranking it would change); off = as the ensemble gives them", "ensemble")
    tabular: bool = _key(
        True, "kit stack: use the competition's tabular columns beside the images (the label file's and the test "
              "file's shared columns, kit/data/tabular.py); false = the members' predictions alone", "ensemble")
    solution: Str = _key("", "solution CSV (id, label, Usage) for local scoring; default DATA/solution.csv")
