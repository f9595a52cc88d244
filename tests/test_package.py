"""The wheel: built from the sources, installed into a fresh venv, run from a directory outside the repo.

    .venv/bin/python -m pytest -q tests/test_package.py

The fresh venv reuses this environment's packages (torch, timm, ...) through a .pth file, as a
notebook reuses its preinstalled ones; pip runs with --no-index, so it installs only if every
dependency range in pyproject.toml is met by them.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from kit.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args, cwd, env=None):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(map(str, args))} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def kit_command(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"  # a copy: building in the checkout would leave build/ and *.egg-info in it
    shutil.copytree(REPO / "kit", src / "kit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", src], tmp)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp)
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp).stdout.strip())
    (site / "reuse.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this env's torch, timm, pip, ...
    wheel = next((tmp / "dist").glob("kit-*.whl"))
    _run([venv / "bin" / "python", "-m", "pip", "install", "--no-index", "-q", wheel], tmp)
    return venv / "bin" / "kit"


def test_wheel_installs_and_runs_every_stage_outside_the_repo(kit_command, tmp_path):
    data = write_synthetic(tmp_path / "data", classes=3, per_class=6, side=32)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([kit_command.parent / "python", "-c", "import kit; print(kit.__file__)"], work, env).stdout
    assert str(kit_command.parents[1]) in where, f"kit must come from the venv, not the checkout: {where}"
    keys = [f"data={data}", "n_folds=2", "stage1_epochs=1", "stage2_epochs=0", "max_epoch_steps=2", "resize=36",
            "img_size=32", "batch_size=4", "workers=0", "backbone=test_resnet", "warmup_epochs=0", "tta=[]",
            "hflip=0.5", "time_budget=0"]  # the preset's probes are tests/test_auto.py's
    for stage in ("run", "export"):  # run: folds, train and predict in one process, as `make` runs them
        _run([kit_command, stage, "--exp", "quick", *keys], work, env)  # a preset shipped inside the package
    made = sorted((work / "submissions" / "data").glob("quick-*.csv"))  # submissions/<the data folder's name>/
    assert len(made) == 1 and (work / "bundle" / "bundle.json").is_file(), "outputs go under the current directory"
    shutil.rmtree(work / "folds")
    _run([kit_command, "predict", "--bundle", "bundle", f"data={data}", "submissions_dir=inference"], work, env)
    assert (work / "inference" / "submission.csv").read_bytes() == made[0].read_bytes(), \
        "the bundle's submission must be byte-identical to the one predicted from the folds"


def test_console_script_equals_python_m_kit(kit_command, tmp_path):
    ours = _run([kit_command, "--help-config"], tmp_path).stdout
    theirs = _run([kit_command.parent / "python", "-m", "kit", "--help-config"], tmp_path).stdout
    assert ours == theirs and "shapes" in ours, "`kit` and `python -m kit` are the same command"
