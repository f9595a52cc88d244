"""End-to-end runs (marked slow; CI runs them too).  pytest tests/test_smoke.py -q

The recipe's own presets at full size (resnest50d+SpinalNet and resnet50 at 448 px, both stages,
TTA) on a handful of generated 500x375 photos with a one-step epoch: proof that the real config
runs, not only the demo's. And the demo pipeline through the command line, as `make` runs it.
"""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import exp_dir, make_image
from kit.config import PRESETS, load_config
from kit.data import folds
from kit.io import load_npz
from kit.predict import predict
from kit.train import loop as train

pytestmark = pytest.mark.slow
SMALL_RUN = dict(pretrained=False, n_folds=2, stage1_epochs=1, stage2_epochs=1, max_epoch_steps=1, batch_size=2,
                 workers=0, eval_batch_size=4)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for label, color in (("oak", (60, 140, 60)), ("owl", (140, 110, 80))):
        for i in range(2):
            make_image(root / "train" / label / f"{label}{i}.jpg", color, rng, size=(500, 375))
    for i in range(2):
        make_image(root / "test" / f"q{i}.jpg", (100, 120, 70), rng, size=(500, 375))
    return root


@pytest.mark.parametrize("preset", ["resnest50d_spinalnet"])
def test_recipe_preset_runs_at_full_size(tmp_path, photos, preset):
    cfg = load_config(PRESETS / f"{preset}.yaml", {**SMALL_RUN, "data": str(photos), "work_dir": str(tmp_path / "f"),
                                                  "submissions_dir": str(tmp_path / "s")})
    assert (cfg.img_size, cfg.resize) == (448, 460)
    folds.make_folds(cfg)
    train.run([cfg])
    sub = predict.run([cfg])[0]
    for k in range(2):
        fold = exp_dir(cfg) / f"fold{k}"
        for name in ("best.pt", "history.csv", "curves.png", "oof.npz", "config.yaml", "test_logits.npz",
                     "oof_logits.npz"):
            assert (fold / name).is_file(), f"{preset} fold {k}: {name} missing"
        assert sorted(p.name for p in fold.glob("*.pt")) == ["best.pt", "final.pt"], \
            "a finished fold keeps its best weights and its last (for cv_last) alone"
        assert list(pd.read_csv(fold / "history.csv")["stage"]) == [1, 2], "both stages ran"
    best = torch.load(exp_dir(cfg) / "fold0" / "best.pt", weights_only=True)
    assert best["cfg"]["backbone"] == cfg.backbone
    assert load_npz(exp_dir(cfg) / "fold0" / "test_logits.npz")["logits"].shape == (2, 2)
    assert (exp_dir(cfg) / "cv.json").is_file() and (exp_dir(cfg) / "confusion_matrix.png").is_file()
    assert len(pd.read_csv(sub)) == 2


def test_the_baseline_preset_builds_its_model_at_full_size():
    """resnet50, the write-up's baseline, goes through the pipeline above as the recipe does; here its config and
    model at 448 px: one training step, a forward pass of the size its folds take."""
    from kit.model import from_config
    cfg = load_config(PRESETS / "resnet50.yaml", SMALL_RUN)
    assert (cfg.img_size, cfg.resize, cfg.backbone) == (448, 460, "resnet50")
    model = from_config(cfg, 2, pretrained=False)
    model(torch.rand(2, 3, 448, 448)).logsumexp(1).mean().backward()
    assert model.eval()(torch.rand(1, 3, 448, 448)).shape == (1, 2)


def test_demo_pipeline_through_the_cli(tmp_path):
    """`kit run` (what `make` runs) writes the submission the three stages write one by one, byte for byte.
    The stages run in this process (cli.main, what `kit <stage>` calls), `kit run` as `make` starts it."""
    from kit.data import demo
    from kit.jobs import cli
    env = dict(os.environ)
    kit = [sys.executable, "-m", "kit"]
    demo.run(tmp_path / "demo")  # `make`'s data, in this process (the demo-data command runs in tests/killtest.py)

    def args(out: str) -> list[str]:
        return ["--exp", "demo", f"data={tmp_path / 'demo'}", f"work_dir={tmp_path / out / 'folds'}",
                f"submissions_dir={tmp_path / out / 'subs'}", "n_folds=2", "stage1_epochs=1", "stage2_epochs=1",
                "max_epoch_steps=4"]
    for stage in ("folds", "train", "predict"):
        assert cli.main([stage, *args("staged")]) == 0, stage
    out = subprocess.run([*kit, "run", *args("run")], check=True, env=env, capture_output=True, text=True).stdout
    board = pd.read_csv(tmp_path / "run" / "subs" / "leaderboard.csv", dtype=str)
    assert sorted(board["experiments"]) == ["demo"], board
    assert (board["public"] != "").all() and (board["private"] != "").all(), "demo has a solution.csv: scores filled"
    assert "demo-" in out and "private" in out, f"leaderboard table printed:\n{out}"
    staged = sorted(p.name for p in (tmp_path / "staged" / "subs").glob("demo*.csv"))
    assert sorted(board["file"]) == staged, "kit run and the three stages wrote different submissions"


def test_compiled_training_saves_plain_weights(tmp_path, photos, monkeypatch):
    """compile=true trains through torch.compile; best.pt still loads into an uncompiled model. Dynamo's eager
    backend: the wrapper and its `_orig_mod.` keys are the same as under inductor, whose code generation (45 s of
    a CPU's time here) is torch's to test."""
    import functools

    from kit.model import create_model
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    cfg = load_config(PRESETS / "demo.yaml", {**SMALL_RUN, "data": str(photos), "work_dir": str(tmp_path / "f"),
                                            "backbone": "test_resnet", "img_size": 32, "resize": 36, "compile": True})
    folds.make_folds(cfg)
    train.run([cfg], only=[0])
    best = torch.load(exp_dir(cfg) / "fold0" / "best.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in best["model"]), "checkpoint keys must be the plain module's"
    create_model("test_resnet", cfg.head, 2, spinal_width=cfg.spinal_width).load_state_dict(best["model"])


def test_clean_removes_the_demo_and_nothing_else(tmp_path, monkeypatch):
    """make clean: the demo's data, folds, experiments, submissions and rows go; another experiment's stay."""
    from kit.board import leaderboard
    from kit.jobs import clean
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "demo").mkdir(parents=True)
    (tmp_path / "folds" / "demo" / "fold0").mkdir(parents=True)
    (tmp_path / "folds" / "mine" / "fold0").mkdir(parents=True)
    (tmp_path / "folds" / "folds.json").write_text('{"data": "data/demo", "fingerprint": "x"}')
    (tmp_path / "folds" / "folds.csv").write_text("path\n")
    subs = tmp_path / "submissions"
    subs.mkdir()
    board = leaderboard.load(subs / "leaderboard.csv")
    for file, exps in (("demo-1.csv", "demo"), ("demo+demo_baseline-2.csv", "demo demo_baseline"), ("mine-3.csv", "mine")):
        (subs / file).write_text("x\n")
        (subs / file).with_suffix(".json").write_text("{}")
        board = leaderboard.upsert(board, {"file": file, "experiments": exps})
    leaderboard.save(board, subs / "leaderboard.csv")
    clean.demo(work_dir="folds", submissions_dir="submissions")  # where an earlier version wrote
    assert not (tmp_path / "data" / "demo").exists() and not (tmp_path / "folds" / "demo").exists()
    assert not (tmp_path / "folds" / "folds.json").exists(), "folds made from the demo data go"
    assert (tmp_path / "folds" / "mine" / "fold0").is_dir(), "another experiment stays"
    assert sorted(p.name for p in subs.iterdir() if p.suffix != ".lock") == ["leaderboard.csv", "mine-3.csv", "mine-3.json"]
    assert leaderboard.load(subs / "leaderboard.csv")["file"].tolist() == ["mine-3.csv"]


def test_clean_keeps_a_run_of_your_own_named_demo_and_its_rows(tmp_path, monkeypatch):
    """An experiment named demo trained on your data is not the demo's: make clean leaves it and its rows."""
    import yaml

    from kit.board import leaderboard
    from kit.jobs import clean
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "demo").mkdir(parents=True)
    mine = tmp_path / "folds" / "demo"
    (mine / "fold0").mkdir(parents=True)
    (mine / "config.yaml").write_text(yaml.safe_dump({"name": "demo", "data": "data/plants"}))
    (tmp_path / "folds" / "folds.json").write_text('{"data": "data/plants", "fingerprint": "abcdef0123456789"}')
    subs = tmp_path / "submissions"
    subs.mkdir()
    (subs / "demo-1.csv").write_text("x\n")
    board = leaderboard.upsert(leaderboard.load(subs / "leaderboard.csv"),
                               {"file": "demo-1.csv", "experiments": "demo", "data": "abcdef012345"})
    leaderboard.save(board, subs / "leaderboard.csv")
    clean.demo(work_dir="folds", submissions_dir="submissions")  # where an earlier version wrote
    assert (mine / "fold0").is_dir() and (tmp_path / "folds" / "folds.json").is_file(), "your run and its folds stay"
    assert leaderboard.load(subs / "leaderboard.csv")["file"].tolist() == ["demo-1.csv"], "its row stays"
    assert (subs / "demo-1.csv").is_file()
