"""One flat, frozen config per experiment: a YAML preset, then `key=value` overrides.

    python -m kit train --exp demo stage1_epochs=3 batch_size=32      # a preset shipped in kit/configs/
    python -m kit train --exp my.yaml                                 # or a YAML file of your own

Every key, its type and its meaning are declared in kit/keys.py, joined here in `Config`;
`python -m kit --help-config` prints them. Unknown keys and wrong types raise `ValueError` naming the key and what it accepts.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from kit.io import atomic_write_text, sha256_file
from kit.keys import SHAPES, TTA_VIEWS, Auto, DataKeys, ModelKeys, PredictKeys, TrainKeys, TransformKeys

PRESETS = Path(__file__).parent / "configs"  # shipped inside the package: `kit` works from any directory


@dataclass(frozen=True)
class Config(PredictKeys, TrainKeys, TransformKeys, ModelKeys, DataKeys):
    """One experiment's every key (the groups above, in pipeline order), checked at construction: types, choices
    and ranges by pydantic (each key's annotation), then what involves several keys (_check_values)."""

    def __post_init__(self):
        for key, root in (("work_dir", "folds"), ("submissions_dir", "submissions")):
            if getattr(self, key) == "auto":  # each data set's outputs apart: folds/<data>/, submissions/<data>/
                object.__setattr__(self, key, output_dir(root, self.data))
        _check_types(self)
        _check_values(self)

    @property
    def warmup(self) -> int:
        """Stage 1's warm-up epochs, with auto resolved; at most stage1_epochs - 1, so that stage 1 always ends at the
        full rate (a preset's warm-up with a short ARGS="stage1_epochs=1" is shortened, not refused)."""
        if self.warmup_epochs != "auto":
            return max(0, min(self.warmup_epochs, self.stage1_epochs - 1))
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


def output_dir(root: str, data: str) -> str:
    """work_dir=auto and submissions_dir=auto: <root>/<the data folder's name> (folds/demo, submissions/<slug>)."""
    return f"{root}/{Path(str(data)).name or 'data'}"


def _check_values(cfg: Config) -> None:
    """What involves several keys, or a name only a library knows (a metric, a timm optimizer, a TTA view)."""
    problems = []
    if cfg.batch_size % 2:
        problems.append(f"batch_size={cfg.batch_size}: must be even (mixup pairs images)")
    if cfg.pseudo_from and cfg.pseudo_from == cfg.name:
        problems.append(f"pseudo_from={cfg.pseudo_from}: an experiment cannot label its own training data; "
                        "give the new experiment another name=")
    if cfg.full_fit and cfg.pseudo_from:
        problems.append(f"full_fit={cfg.full_fit} with pseudo_from={cfg.pseudo_from}: pseudo-labels come per fold from "
                        "the source's fold model, and the full-data model has no fold; use one of them")
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
    if cfg.resize < cfg.img_size:
        problems.append(f"resize={cfg.resize} < img_size={cfg.img_size}: the random crop needs resize >= img_size")
    bad_views = [v for v in cfg.tta if v not in TTA_VIEWS] if cfg.tta != "auto" else []
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
    of an experiment of that name trained in work_dir: kit/experiment.py knows where). A shipped preset's name
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


# auto's former spellings, which the records and cache keys of runs trained before the one spelling hold: they
# are still hashed and recorded so, and those runs stay valid (their config.yaml reads as auto: keys._former_auto)
FORMER_AUTO = {"warmup_epochs": -1, "tta": ["auto"]}


def shaping(cfg: Config, what: str) -> dict:
    """{key: value} of the keys that shape `what`, as plain data (what caches and manifests record)."""
    values = _identity(to_dict(cfg))
    values |= {k: v for k, v in FORMER_AUTO.items() if values.get(k) == "auto"}
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
        old = "auto" if k in FORMER_AUTO and old == FORMER_AUTO[k] else old  # a record of before the one spelling
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
               "the fix: another `name=` (a seed ensemble under one name: `seeds=N`)",
    "predictions": "free: each fold's test and out-of-fold logits are recomputed for the new values",
    "ensemble": "free: a new submission, with its own CV (a higher `seeds`, or `full_fit`: `train` trains the new "
                "models first, `predict` says so until then)",
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
