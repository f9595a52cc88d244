"""Config: presets load, overrides win, bad keys and values are named.  pytest tests/test_config.py -q"""
import dataclasses

import pytest
import yaml

from kit.config import PRESETS, Config, load_config, parse_overrides, save_config

PRESET_FILES = sorted(PRESETS.glob("*.yaml"))


@pytest.mark.parametrize("path", PRESET_FILES, ids=[p.stem for p in PRESET_FILES])
def test_presets_load(path):
    cfg = load_config(path)
    assert cfg.name == path.stem, "a preset's experiment name defaults to its file stem"


def test_recipe_preset_matches_the_write_up():
    cfg = load_config(PRESETS / "resnest50d_spinalnet.yaml")
    got = (cfg.backbone, cfg.head, cfg.spinal_width, cfg.resize, cfg.img_size, cfg.rotate, cfg.mean, cfg.std,
           cfg.mixup_alpha, cfg.label_smoothing, cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.batch_size,
           cfg.stage1_lr, cfg.stage1_epochs, cfg.stage2_lr, cfg.stage2_epochs, cfg.patience, cfg.pretrained)
    want = ("resnest50d", "spinal", 540, 460, 448, 15.0, (0.507, 0.487, 0.441), (0.267, 0.256, 0.276),
            1.0, 0.1, "sgd", 0.9, 1e-4, 16, 0.01, 40, 0.001, 20, 7, True)
    assert got == want, f"recipe preset drifted from the write-up: {got}"


def test_overrides_win_and_int_becomes_float():
    cfg = load_config(PRESETS / "demo.yaml", parse_overrides(["stage1_lr=1", "tta=[hflip, vflip]", "name=x"]))
    assert (cfg.stage1_lr, type(cfg.stage1_lr), cfg.tta, cfg.name) == (1.0, float, ("hflip", "vflip"), "x"), cfg


@pytest.mark.parametrize("overrides, needle", [
    ({"nope": 1}, "'nope'"),
    ({"batch_size": "big"}, "'batch_size'"),
    ({"head": "mlp"}, "one of 'spinal', 'linear'"),
    ({"stage1_lr": -0.1}, "stage1_lr=-0.1"),
    ({"n_folds": 1}, "n_folds=1"),
    ({"batch_size": 7}, "batch_size=7"),
    ({"tta": ["spin"]}, "spin"),
    ({"mean": [0.5, 0.5]}, "'mean'"),
    ({"memory_cache_mb": -1}, "memory_cache_mb=-1"),
    ({"checkpoint_every_s": -5}, "checkpoint_every_s=-5"),
    ({"optimizer": "adamm"}, "optimizer=adamm"),
])
def test_bad_values_name_the_key(overrides, needle):
    with pytest.raises(ValueError, match=None) as e:
        load_config(PRESETS / "demo.yaml", overrides)
    assert needle in str(e.value), f"error should name {needle}: {e.value}"


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("backbone: resnet18\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError) as e:
        load_config(path)
    assert "learning_rate" in str(e.value) and str(path) in str(e.value), str(e.value)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(PRESETS / "resnest50d_spinalnet.yaml")
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["mean"] == [0.507, 0.487, 0.441]
    assert load_config(tmp_path / "config.yaml") == cfg, "a saved config must load back to the same Config"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().seed = 1  # type: ignore[misc]


def test_linear_lr_scaling():
    base = load_config(PRESETS / "resnest50d_spinalnet.yaml")
    assert base.stage_lr(1) == 0.01, "the recipe's lr stays as written unless scaling is asked for"
    scaled = load_config(PRESETS / "resnest50d_spinalnet.yaml", {"batch_size": 64, "lr_reference_batch": 16})
    assert (scaled.stage_lr(1), scaled.stage_lr(2)) == pytest.approx((0.04, 0.004))


def test_every_key_declares_what_it_shapes_and_help_shows_it():
    from kit.config import SHAPES, help_text, keys_shaping
    for f in dataclasses.fields(Config):
        assert f.metadata["shapes"] in SHAPES, f"{f.name} declares no stage it shapes"
        assert f"  {f.name} (" in help_text() and f"shapes {f.metadata['shapes']})" in help_text()
    assert set(keys_shaping("split")) < set(keys_shaping("weights")) < set(keys_shaping("predictions")), \
        "a key that shapes an earlier stage makes every later one stale"
    assert {"img_size", "mean", "std", "backbone"} <= set(keys_shaping("weights")) and "tta" not in keys_shaping("weights")


def test_a_shipped_presets_name_means_the_preset_not_a_run_trained_under_it(tmp_path, monkeypatch):
    """`--exp quick stage1_epochs=1` once (a smoke run) must not make `--exp quick` mean stage1_epochs=1 later."""
    from kit.jobs.cli import _configs, _parser
    monkeypatch.chdir(tmp_path)
    smoke = load_config(PRESETS / "quick.yaml", {"stage1_epochs": 1, "work_dir": str(tmp_path / "folds")})
    save_config(smoke, tmp_path / "folds" / "quick" / "config.yaml")  # what `kit train` keeps of the smoke run
    save_config(dataclasses.replace(smoke, name="mine"), tmp_path / "folds" / "mine" / "config.yaml")
    args = _parser().parse_args(["train", "--exp", "quick", "mine", f"work_dir={tmp_path / 'folds'}"])
    quick, mine = _configs(args, None)
    assert quick.stage1_epochs == load_config(PRESETS / "quick.yaml").stage1_epochs, "the smoke run's key lived on"
    assert mine.stage1_epochs == 1, "a run of your own is still found by its name"


def test_renamed_keys_say_their_new_name_and_old_records_still_load(tmp_path):
    """max_steps counted steps per epoch, min_steps a fold's steps: renamed to say so."""
    with pytest.raises(ValueError, match="max_steps is now max_epoch_steps"):
        load_config(None, {"max_steps": 2})
    old = tmp_path / "config.yaml"  # a trained experiment's config.yaml written under the old names
    old.write_text("name: old\nmax_steps: 3\nmin_steps: 500\n")
    cfg = load_config(old)
    assert (cfg.max_epoch_steps, cfg.min_fold_steps) == (3, 500), (cfg.max_epoch_steps, cfg.min_fold_steps)


def test_without_exp_every_entry_point_takes_one_default_said_in_one_line(tmp_path, monkeypatch, caplog):
    """The demo's pair on the demo data, the quick preset on any other: `kit folds data=X` as `make` does."""
    import logging

    from kit.jobs.cli import _configs, _parser
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        own = _configs(_parser().parse_args(["folds", f"data={tmp_path / 'plants'}"]), None)
        demo = _configs(_parser().parse_args(["folds", "data=data/demo"]), None)
    assert [c.name for c in own] == ["quick"], "your data: the quick preset, not the 16 px digits demo"
    assert [c.name for c in demo] == ["demo", "demo_baseline"]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no --exp")]
    assert len(said) == 2 and "quick preset" in said[0], said
    assert Config().name == "resnest50d_spinalnet", "Config()'s defaults are the recipe, and its name says so"


@pytest.mark.parametrize("key, value, ok", [
    ("batch_size", "16", False), ("batch_size", 16.0, False), ("amp", 1, False), ("amp", True, True),
    ("weight_decay", "1e-4", True),  # YAML 1.1 reads 1e-4 as a string
    ("stage1_lr", 1, True), ("stage1_lr", "auto", True), ("stage1_lr", "soon", False),
    ("n_folds", 1, False), ("head", "mlp", False), ("mean", [0.5, 0.5, 0.5], True)])
def test_types_choices_and_ranges_are_checked_strictly(key, value, ok):
    if ok:
        load_config(None, {key: value})
        return
    with pytest.raises(ValueError, match=rf"{key}") as e:
        load_config(None, {key: value})
    assert len(str(e.value).splitlines()) == 1, str(e.value)


def test_auto_has_one_spelling_and_records_of_its_former_ones_stay_valid():
    """auto is "auto" for every key the kit decides; -1 (workers, warmup_epochs) and [auto] (tta), which earlier
    versions wrote into config.yaml and checkpoints, read as auto, and a fold trained under them is not stale."""
    from kit.config import changed, shaping
    now = load_config(None, {"tta": "auto"})
    old = load_config(None, {"workers": -1, "warmup_epochs": -1, "tta": ["auto"]})
    assert (now.workers, now.warmup_epochs, now.tta) == ("auto", "auto", "auto") == (old.workers, old.warmup_epochs,
                                                                                      old.tta)
    assert changed({"warmup_epochs": -1, "tta": ["auto"]}, now, "predictions") == [], "an earlier run is not stale"
    assert shaping(now, "predictions") == shaping(old, "predictions"), "and its cache keys still match"
    with pytest.raises(ValueError, match="workers=-2"):
        load_config(None, {"workers": -2})


@pytest.mark.parametrize("key,value,want", [("tracking", "mlflow", ("mlflow",)), ("tta", "hflip", ("hflip",)),
                                            ("tta", "auto", "auto")])
def test_a_single_value_is_a_list_of_one(key, value, want):
    """ARGS="tracking=mlflow" as a user writes it: every list key takes one value bare; auto stands alone."""
    assert getattr(load_config(None, parse_overrides([f"{key}={value}"])), key) == want
