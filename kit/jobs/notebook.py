"""A code competition's notebook: from trained experiments, a Kaggle dataset (the bundle and the wheels Kaggle's
image lacks) and a kernel (a notebook that predicts offline), each a folder in Kaggle's own format.

    python -m kit notebook --comp SLUG [--exp A B] [--user NAME] [--gpu] [--wheels DIR]
        -> notebook/<slug>/dataset/{dataset-metadata.json, bundle/, wheels/}
           notebook/<slug>/kernel/{kernel-metadata.json, notebook.ipynb}

The notebook runs with the internet off: it installs the wheels from the attached dataset (no index),
finds the competition folder and the bundle under its input root (/kaggle/input; the environment's
KIT_KAGGLE_INPUT elsewhere, as in the tests), predicts whatever test set that folder holds (on Kaggle,
the hidden one swapped in when it is scored), writes /kaggle/working/submission.csv in the competition's
format, and prints images per second and the time the images it found take. The wheels come from
--wheels DIR when given (offline), else `pip download` of the pinned versions.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kit.io import sha256_file

log = logging.getLogger(__name__)

# The kit's requirements as Kaggle's Python image holds them: those it lacks travel as wheels in the dataset;
# those it has are used as they are. tests/test_notebook.py checks that every requirement is in one of the two.
KAGGLE_LACKS = ("ttach", "iterative-stratification")
KAGGLE_HAS = ("torch", "torchvision", "timm", "albumentations", "opencv-python-headless", "numpy", "scikit-learn",
              "threadpoolctl", "h5py", "pandas", "pillow", "kaggle", "six", "matplotlib", "tqdm", "pyyaml", "pydantic",
              "safetensors", "jinja2", "tensorboard")
# the kit's set-up and tests, and a tracker a notebook goes without
TOOLING = ("py7zr", "submitit", "optuna", "cmeel-mimalloc", "setuptools", "pytest", "pytest-xdist", "nbformat",
           "nbclient", "ipykernel", "playwright", "mlflow")


def pinned(requirements: Path) -> dict[str, str]:
    """{name: version} of requirements.txt's pins."""
    out = {}
    for line in requirements.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def specs() -> list[str]:
    """KAGGLE_LACKS as pip specs, at requirements.txt's pins (make's .whl/notebook downloads these)."""
    root = Path(__file__).resolve().parents[2]
    pins = pinned(root / "requirements.txt") if (root / "requirements.txt").is_file() else {}
    return [f"{n}=={pins[n]}" if n in pins else n for n in KAGGLE_LACKS]


def _user(user: str) -> str:
    if user:
        return user
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    from kit.board.kaggle import _config_dir
    try:
        return json.loads((_config_dir() / "kaggle.json").read_text())["username"]
    except (OSError, ValueError, KeyError):
        raise ValueError("no Kaggle user name for the dataset and kernel ids: pass --user NAME (or set "
                         "KAGGLE_USERNAME)") from None


def _wheels(out: Path, source: str) -> list[str]:
    """The kit's wheel (built from this checkout) and KAGGLE_LACKS's, pinned, into out; their file names."""
    out.mkdir(parents=True)
    root = Path(__file__).resolve().parents[2]
    if source:
        folder = Path(source)
        for name, _, version in (spec.partition("==") for spec in specs()):
            stem = name.replace("-", "_")
            found = [p for n in (stem, name) for p in sorted(folder.glob(f"{n}-{version or '*'}-*.whl"))]
            if not found:
                raise ValueError(f"--wheels {folder}: no wheel of {name}{'==' + version if version else ''}; fetch it "
                                 f"with: pip download --no-deps {name}{'==' + version if version else ''} -d {folder}")
            shutil.copy(found[0], out)
    else:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(out), *specs()],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ValueError(f"pip download {' '.join(specs())} failed (offline?): download them on a machine with "
                             "the internet and pass --wheels DIR")
    if not (root / "pyproject.toml").is_file():
        raise ValueError(f"the kit's wheel is built from its checkout, and {root} is none: run kit notebook from a "
                         "clone of the kit (or pass its wheel in --wheels)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "kit", src / "kit", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(root / name, src)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                               "-w", str(out), str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ValueError(f"building the kit's wheel failed: {proc.stderr.strip().splitlines()[-1][:300]}")
    return sorted(p.name for p in out.glob("*.whl"))


CELLS = [
    ("markdown", "# {title}\n\nPredicts `{slug}` offline from the kit's bundle ({experiments}; CV {cv}), attached as "
                 "the dataset `{dataset}`. Written by `kit notebook`; rerun it there, not here."),
    ("code", "import hashlib, importlib.util, os, subprocess, sys, time\nfrom pathlib import Path\n\n"
             "INPUT = Path(os.environ.get('KIT_KAGGLE_INPUT', '/kaggle/input'))  # where Kaggle mounts the inputs\n"
             "WORKING = Path(os.environ.get('KIT_KAGGLE_WORKING', '/kaggle/working'))\n"
             "COMP, DATASET = {slug!r}, {dataset_slug!r}\n\n"
             "def find(name, *markers):\n"
             "    # INPUT/<name>, or a folder of that name deeper below INPUT (mount paths vary) that holds a marker\n"
             "    for folder in [INPUT / name, *sorted(INPUT.glob(f'*/**/{{name}}'))]:\n"
             "        if any((folder / m).exists() for m in markers):\n"
             "            return folder\n"
             "    raise SystemExit(f'{{name}} not found under {{INPUT}}: attach it to the notebook (Add input)')\n\n"
             "def unpacked(what):\n"
             "    # the dataset's folders travel zipped (kaggle datasets create --dir-mode zip): Kaggle unpacks them,\n"
             "    # and where a zip is still packed it is unpacked here, into the working folder\n"
             "    if (DATA_DIR / what).is_dir():\n"
             "        return DATA_DIR / what\n"
             "    import zipfile\n"
             "    out = WORKING / 'kit-input' / what\n"
             "    zipfile.ZipFile(DATA_DIR / f'{{what}}.zip').extractall(out)\n"
             "    return out\n\n"
             "DATA_DIR = find(DATASET, 'bundle/bundle.json', 'bundle.zip')\n"
             "COMP_DIR = find(COMP, '')\n"
             "BUNDLE = next(unpacked('bundle').rglob('bundle.json')).parent\n"
             "# the bundle pushed with this notebook, not an earlier version of the dataset that Kaggle attached\n"
             "FOUND = hashlib.sha256((BUNDLE / 'bundle.json').read_bytes()).hexdigest()\n"
             "if FOUND != {fingerprint!r}:\n"
             "    raise SystemExit(f'kit: the attached dataset holds another bundle (bundle.json {{FOUND[:12]}}, this '\n"
             "                     f'notebook was written for {fingerprint:.12}): attach the newest version of '\n"
             "                     f'{{DATASET}} (make notebook-push waits for it), then run again')\n"
             "WHEELS = sorted(str(p) for p in unpacked('wheels').rglob('*.whl'))\n"
             "print('bundle:', BUNDLE, ' competition:', COMP_DIR, ' wheels:', len(WHEELS))"),
    ("code", "# the kit and what Kaggle's image lacks, from the dataset's wheels: no index, the internet is off\n"
             "if importlib.util.find_spec('kit') is None:\n"
             "    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', *WHEELS],"
             " check=True)"),
    ("code", "start = time.time()\n"
             "run = subprocess.run([sys.executable, '-m', 'kit', 'predict', '--bundle', str(BUNDLE),\n"
             "                      f'data={{COMP_DIR}}', f'submissions_dir={{WORKING}}',\n"
             "                      'bad_test_images=prior'],  # one unreadable hidden image must not fail it all\n"
             "                     capture_output=True, text=True)\n"
             "print(run.stderr[-3000:])\n"
             "if run.returncode != 0:\n"
             "    raise SystemExit(run.returncode)\n"
             "seconds = time.time() - start\n"
             "n = sum(1 for _ in open(WORKING / 'submission.csv')) - 1\n"
             "print(f'{{n}} test images in {{seconds:.0f}} s: {{n / seconds:.1f}} images/s; the hidden set, as large as '\n"
             "      f'this folder holds, takes about {{seconds / 60:.1f}} min (the limit: the competition page)')"),
]


def _notebook(values: dict):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(text.format(**values)) if kind == "markdown" else
                nbformat.v4.new_code_cell(text.format(**values)) for kind, text in CELLS]
    return nb


def submitted(cfgs: list) -> tuple[list, str]:
    """The experiments of the submission `make submit` would pick among cfgs' (the best CV of A, B or A+B); all of
    cfgs before any was predicted. And how that submission combines them (bundle.export's `how`): their stack
    (kit stack), their blend (kit blend's weights) or their average; the bundle carries it."""
    from kit.board import leaderboard
    board = leaderboard.load(leaderboard.path_of(cfgs[0]))
    try:
        best = leaderboard.pick(board, [c.name for c in cfgs], Path(cfgs[0].submissions_dir),
                                leaderboard.data_of(cfgs[0]), cfgs[0].metric)
    except ValueError:  # nothing predicted yet: the bundle's export predicts them all
        return cfgs, "average"
    names = board.loc[board["file"] == best.name, "experiments"].iloc[0].split()
    log.info("the notebook predicts as %s does (the best CV of %s)", best.name, " ".join(c.name for c in cfgs))
    how = next((h for h in ("stack", "blend") if best.name.startswith(f"{h}-")), "average")
    return [c for c in cfgs if c.name in names], how


def write(cfgs, comp: str, user: str = "", gpu: bool = False, wheels: str = "", out: str | Path = "notebook") -> Path:
    """notebook/<slug>/dataset/ and kernel/ for the submission `make submit` would pick among the experiments cfgs
    name (see the module's docstring)."""
    if not comp:
        raise ValueError("no competition: pass COMP=slug (make) or --comp slug")
    cfgs, how = submitted(cfgs)
    import nbformat

    from kit.predict import bundle
    user = _user(user)
    folder = Path(out) / comp
    tmp = folder.with_name(f".{comp}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset_slug = f"{comp}-kit"[:50]
    try:
        bundle.export(cfgs, tmp / "dataset" / "bundle", how)
        (tmp / "dataset" / "bundle.zip").unlink(missing_ok=True)  # the folder travels; the zip would double it
        names = _wheels(tmp / "dataset" / "wheels", wheels)
        (tmp / "dataset" / "dataset-metadata.json").write_text(json.dumps(
            {"title": f"kit bundle for {comp}"[:50], "id": f"{user}/{dataset_slug}",
             "licenses": [{"name": "CC0-1.0"}]}, indent=2) + "\n")
        spec = json.loads((tmp / "dataset" / "bundle" / "bundle.json").read_text())
        values = {"title": f"kit: {comp}", "slug": comp, "dataset": f"{user}/{dataset_slug}",
                  "fingerprint": sha256_file(tmp / "dataset" / "bundle" / "bundle.json"),
                  "dataset_slug": dataset_slug, "experiments": ", ".join(e["name"] for e in spec["experiments"]),
                  "cv": spec["submission"]["cv"]}
        (tmp / "kernel").mkdir()
        nbformat.write(_notebook(values), str(tmp / "kernel" / "notebook.ipynb"))
        (tmp / "kernel" / "kernel-metadata.json").write_text(json.dumps(
            {"id": f"{user}/{comp}-kit-predict"[:100], "title": f"{comp} kit predict"[:50], "code_file": "notebook.ipynb",
             "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": gpu,
             "enable_internet": False, "dataset_sources": [f"{user}/{dataset_slug}"], "competition_sources": [comp],
             "kernel_sources": []}, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("notebook for %s: %s (dataset %s/%s: the bundle and %d wheel(s); kernel: notebook.ipynb, internet off%s)",
             comp, folder, user, dataset_slug, len(names), ", GPU" if gpu else "")
    return folder
