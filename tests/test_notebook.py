"""`kit notebook`: a code competition's dataset and kernel folders in Kaggle's formats, and the notebook itself
run by a real Jupyter kernel with its input root pointed at a stand-in of /kaggle/input: it writes the
bundle's submission, byte for byte."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import TINY, write_csv_data, write_folder_data
from kit.jobs import notebook
from kit.jobs.cli import main

REPO = Path(__file__).resolve().parents[1]
SLUG = "some-code-competition"


def test_every_requirement_is_on_kaggle_or_travels_as_a_wheel():
    pins = notebook.pinned(REPO / "requirements.txt")
    named = set(notebook.KAGGLE_LACKS) | set(notebook.KAGGLE_HAS) | set(notebook.TOOLING)
    assert set(pins) <= named, f"say whether Kaggle's image has them: {sorted(set(pins) - named)}"
    assert set(notebook.KAGGLE_LACKS) <= set(pins), "what the dataset carries is pinned in requirements.txt"


def _fake_wheels(folder: Path) -> Path:
    folder.mkdir()
    pins = notebook.pinned(REPO / "requirements.txt")
    for name in notebook.KAGGLE_LACKS:
        (folder / f"{name.replace('-', '_')}-{pins[name]}-py3-none-any.whl").write_bytes(b"PK")
    return folder


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nb")
    data = write_csv_data(tmp / SLUG)
    keys = [f"{k}={v}" for k, v in {**TINY, "stage1_epochs": 1, "stage2_epochs": 0, "batch_size": 4}.items()]
    keys += [f"data={data}", f"work_dir={tmp / 'folds'}", f"submissions_dir={tmp / 'subs'}"]
    for command in ("folds", "train"):
        assert main([command, "--exp", "demo", *keys]) == 0
    wheels = _fake_wheels(tmp / "wheels")
    assert main(["notebook", "--exp", "demo", "--comp", SLUG, "--user", "someone", "--wheels", str(wheels),
                 "--out", str(tmp / "notebook"), *keys]) == 0
    return tmp, data, tmp / "notebook" / SLUG


def test_the_folders_are_in_kaggles_formats(written):
    _, _, folder = written
    kernel = json.loads((folder / "kernel" / "kernel-metadata.json").read_text())
    assert kernel["code_file"] == "notebook.ipynb" and (folder / "kernel" / kernel["code_file"]).is_file()
    assert kernel["competition_sources"] == [SLUG] and kernel["enable_internet"] is False
    dataset = json.loads((folder / "dataset" / "dataset-metadata.json").read_text())
    assert kernel["dataset_sources"] == [dataset["id"]] and dataset["id"].startswith("someone/")
    assert 6 <= len(dataset["title"]) <= 50 and dataset["licenses"]
    wheels = sorted(p.name for p in (folder / "dataset" / "wheels").glob("*.whl"))
    assert any(w.startswith("kit-") for w in wheels) and any(w.startswith("ttach-") for w in wheels), wheels
    assert (folder / "dataset" / "bundle" / "bundle.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("packed", [False, True], ids=["unpacked by Kaggle", "still zipped"])
def test_the_notebook_run_by_a_kernel_writes_the_bundles_submission(written, tmp_path, packed):
    import nbclient
    import nbformat
    _, data, folder = written
    root = tmp_path / "kaggle" / "input"
    shutil.copytree(data, root / SLUG)  # the competition, mounted read-only on Kaggle
    dataset_slug = json.loads((folder / "dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    mounted = root / "datasets" / "someone" / dataset_slug  # a deeper mount path
    shutil.copytree(folder / "dataset", mounted)
    if packed:  # as `datasets create --dir-mode zip` uploads the folders
        for what in ("bundle", "wheels"):
            shutil.make_archive(str(mounted / what), "zip", mounted / what)
            shutil.rmtree(mounted / what)
    working = tmp_path / "kaggle" / "working"
    working.mkdir()
    nb = nbformat.read(str(folder / "kernel" / "notebook.ipynb"), as_version=4)
    env = {"KIT_KAGGLE_INPUT": str(root), "KIT_KAGGLE_WORKING": str(working), "PYTHONPATH": str(REPO),
           "KIT_ALLOCATOR": "off"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel and the predict it starts inherit them
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    spec = json.loads((folder / "dataset" / "bundle" / "bundle.json").read_text())
    from kit.io import sha256_file
    assert sha256_file(working / "submission.csv") == spec["submission"]["sha256"], "the bundle's bytes"
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "images/s" in printed and "min" in printed, printed[-500:]


def test_a_wheel_that_cannot_be_found_offline_names_the_fix(written, tmp_path, capsys):
    tmp, data, _ = written
    empty = tmp_path / "wheels"
    empty.mkdir()
    rc = main(["notebook", "--exp", "demo", "--comp", SLUG, "--user", "someone", "--wheels", str(empty),
               "--out", str(tmp_path / "nb"), f"data={data}", f"work_dir={tmp / 'folds'}",
               f"submissions_dir={tmp / 'subs'}", *[f"{k}={v}" for k, v in {**TINY, "stage1_epochs": 1,
                                                                           "stage2_epochs": 0, "batch_size": 4}.items()]])
    err = capsys.readouterr().err
    assert rc == 2 and "pip download --no-deps ttach" in err and "Traceback" not in err, err[-1000:]
    assert not (tmp_path / "nb" / SLUG).exists(), "nothing half-written"


def test_no_user_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="--user"):
        notebook._user("")


def test_push_creates_the_dataset_then_versions_it_and_pushes_the_kernel(written, kaggle_env, capsys):
    _, _, folder = written
    out = str(folder.parent)
    assert main(["notebook-push", "--comp", SLUG, "--out", out]) == 0, capsys.readouterr().err[-2000:]
    dataset = json.loads((folder / "dataset" / "dataset-metadata.json").read_text())["id"]
    kernel = json.loads((folder / "kernel" / "kernel-metadata.json").read_text())
    assert list(kaggle_env.datasets) == [dataset] and len(kaggle_env.datasets[dataset]) == 1
    uploaded = set(kaggle_env.datasets[dataset][0])
    assert {"bundle.zip", "wheels.zip"} <= uploaded, f"the folders travel zipped: {uploaded}"
    pushed = kaggle_env.kernels[kernel["id"]][-1]
    assert pushed["enableInternet"] is False and pushed["competitionDataSources"] == [SLUG]
    assert pushed["datasetDataSources"] == [dataset] and json.loads(pushed["text"])["cells"], "the notebook itself"
    assert main(["notebook-push", "--comp", SLUG, "--out", out]) == 0, capsys.readouterr().err[-2000:]
    assert len(kaggle_env.datasets[dataset]) == 2, "a second push makes a new version, not a second dataset"
    assert main(["notebook-status", "--comp", SLUG, "--out", out]) == 0
    from kit.board import kaggle
    assert kaggle.notebook_status(folder) == "complete", "the kernel's status as Kaggle reports it"


def _pushed(written, capsys) -> tuple[Path, Path, str, list[str]]:
    """The notebook pushed to the loopback Kaggle; (tmp, the notebook's folder, --notebook, the run's keys)."""
    tmp, data, folder = written
    out = str(folder.parent)
    assert main(["notebook-push", "--comp", SLUG, "--out", out]) == 0, capsys.readouterr().err[-2000:]
    keys = [f"{k}={v}" for k, v in {**TINY, "stage1_epochs": 1, "stage2_epochs": 0, "batch_size": 4}.items()]
    return tmp, folder, out, keys + [f"data={data}", f"work_dir={tmp / 'folds'}", f"submissions_dir={tmp / 'subs'}"]


def test_submit_of_a_code_competition_submits_the_pushed_kernel_version(written, kaggle_env, capsys):
    tmp, folder, out, keys = _pushed(written, capsys)
    assert main(["submit", "--exp", "demo", "--comp", SLUG, "--notebook", out, *keys]) == 0, capsys.readouterr().err
    (sent,) = kaggle_env.code_submissions
    kernel = json.loads((folder / "kernel" / "kernel-metadata.json").read_text())["id"]
    assert sent["kernelSlug"] == kernel.split("/")[1] and sent["kernelVersion"] == 1 and sent["fileName"] == \
        "submission.csv", sent
    from kit.board import leaderboard
    spec = json.loads((folder / "dataset" / "bundle" / "bundle.json").read_text())
    row = leaderboard.load(tmp / "subs" / "leaderboard.csv").set_index("file").loc[spec["submission"]["file"]]
    assert row["kaggle_ref"] and row["kaggle_status"] == "pending", "Kaggle's scores will join the bundle's row"


def test_submit_naming_other_experiments_than_the_pushed_kernels_is_refused(written, kaggle_env, capsys):
    """pushed.json holds the kernel of experiment `tiny`: EXP=other must not spend a daily submission on it."""
    _, _, out, keys = _pushed(written, capsys)
    capsys.readouterr()
    rc = main(["submit", "--exp", "demo_baseline", "--comp", SLUG, "--notebook", out, *keys, "name=other"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "predicts tiny, not other" in err and len(err.splitlines()) == 1, err
    assert not kaggle_env.code_submissions and not kaggle_env.submissions, "nothing submitted"


def test_push_before_the_notebook_is_written_says_how(tmp_path, kaggle_env, capsys):
    assert main(["notebook-push", "--comp", SLUG, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "make notebook COMP=slug" in err and "Traceback" not in err


def test_a_run_saved_as_a_notebooks_output_resumes_in_the_next_session(tmp_path):
    """docs/NOTEBOOKS.md: /kaggle/working/folds kept as the version's output, attached to the next session and
    copied back into /kaggle/working: finished epochs are not trained again, the fold ends as one that never
    stopped (same epochs, same best score)."""
    import pandas as pd
    import torch

    from conftest import tiny_cfg, train_interrupted
    from kit.data import folds
    from kit.train import loop
    easy_data = write_folder_data(tmp_path / "data", n_per_class=16, n_test=6)
    straight = tiny_cfg(tmp_path / "straight", easy_data, stage1_epochs=4, stage2_epochs=0)
    folds.make_folds(straight)
    loop.run([straight], only=[0])
    first = tiny_cfg(tmp_path / "session1" / "working", easy_data, stage1_epochs=4, stage2_epochs=0)
    folds.make_folds(first)
    train_interrupted(first, epochs=2)  # the session's time ran out
    saved = tmp_path / "session2" / "input" / "previous-version" / "folds"  # the output, attached read-only
    shutil.copytree(first.work_dir, saved)
    shutil.copytree(saved, tmp_path / "session2" / "working" / "folds")  # the documented step
    second = tiny_cfg(tmp_path / "session2" / "working", easy_data, stage1_epochs=4, stage2_epochs=0)
    loop.run([second], only=[0])
    history = pd.read_csv(Path(second.work_dir) / "tiny" / "fold0" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4], "epochs 1 and 2 were not trained again"
    ours = torch.load(Path(second.work_dir) / "tiny" / "fold0" / "best.pt", weights_only=True)["score"]
    theirs = torch.load(Path(straight.work_dir) / "tiny" / "fold0" / "best.pt", weights_only=True)["score"]
    assert ours == pytest.approx(theirs), "the same fold as a run that never stopped"


def test_no_trained_experiment_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = write_csv_data(tmp_path / SLUG)
    keys = [f"{k}={v}" for k, v in {**TINY, "batch_size": 4}.items()]
    keys += [f"data={data}", f"work_dir={tmp_path / 'folds'}", f"submissions_dir={tmp_path / 'subs'}"]
    assert main(["folds", "--exp", "demo", *keys]) == 0
    rc = main(["notebook", "--exp", "demo", "--comp", SLUG, "--user", "someone", "--wheels", str(tmp_path),
               "--out", str(tmp_path / "notebook"), *keys])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("kit ")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-1500:]
    assert not (tmp_path / "notebook" / SLUG).exists() and not list((tmp_path / "notebook").glob(".*"))


KAGGLE_ABSENT = ("ttach", "iterstrat", "iterative_stratification", "cmeel", "mimalloc", "kit")  # Kaggle lacks them
# the kit's set-up, tests and trackers, which no kernel may need: a stray import of one fails the notebook here
TOOLING_ABSENT = ("mlflow", "submitit", "py7zr", "playwright", "pytest", "xdist", "_pytest")


def _kaggle_like(tmp: Path) -> tuple[Path, dict]:
    """A Python with what Kaggle's image has, at its own versions: this venv's packages less the kit, ttach,
    iterative-stratification, the CPU allocator and the kit's tooling, seen through a .pth, with another timm
    than the kit's pin (make test fetches it into .whl/kaggle-image); and a Jupyter kernel of it."""
    import site
    import subprocess
    import sys
    import zipfile
    ours = Path(site.getsitepackages()[0])
    shown = tmp / "site"
    shown.mkdir(parents=True)
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(KAGGLE_ABSENT + TOOLING_ABSENT + ("timm",)):
            (shown / entry.name).symlink_to(entry)
    (timm,) = (REPO / ".whl" / "kaggle-image").glob("timm-*.whl")
    with zipfile.ZipFile(timm) as z:
        z.extractall(shown)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = next(venv.glob("lib/python*/site-packages"))
    (purelib / "kaggle-image.pth").write_text(f"{shown}\n")
    spec = tmp / "jupyter" / "kernels" / "kaggle"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher",
                                                           "-f", "{connection_file}"], "display_name": "kaggle",
                                                  "language": "python"}))
    dead = "http://127.0.0.1:9"  # the internet is off: every request fails
    env = {"JUPYTER_PATH": str(tmp / "jupyter"), "PYTHONPATH": "", "PIP_NO_INDEX": "1", "HTTP_PROXY": dead,
           "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead, "HF_HUB_OFFLINE": "1"}
    return venv / "bin" / "python", env, timm.name.split("-")[1]


@pytest.mark.slow
def test_the_notebook_installs_offline_and_predicts_fewer_test_images_as_kit_predict_does(tmp_path):
    """As on Kaggle: no kit and no ttach until the dataset's wheels are installed with no index, the internet off,
    and a competition folder holding fewer test images than the kit trained beside (the hidden set's stand-in)."""
    import subprocess
    import sys

    import nbclient
    import nbformat
    import pandas as pd
    wheels = REPO / ".whl" / "notebook"
    assert (wheels / ".done").is_file(), "make test fetches them first (make .whl/notebook/.done)"
    data = write_csv_data(tmp_path / SLUG)
    keys = [f"{k}={v}" for k, v in {**TINY, "stage1_epochs": 1, "stage2_epochs": 0, "batch_size": 4}.items()]
    keys += [f"data={data}", f"work_dir={tmp_path / 'folds'}", f"submissions_dir={tmp_path / 'subs'}"]
    for command in ("folds", "train"):
        assert main([command, "--exp", "demo", *keys]) == 0
    assert main(["notebook", "--exp", "demo", "--comp", SLUG, "--user", "someone", "--wheels", str(wheels),
                 "--out", str(tmp_path / "notebook"), *keys]) == 0
    folder = tmp_path / "notebook" / SLUG
    root = tmp_path / "kaggle" / "input"
    shutil.copytree(data, root / SLUG)
    sample = pd.read_csv(root / SLUG / "sample_submission.csv", dtype=str)
    for gone in sample["id"][:2]:  # the hidden set is another size than the public one
        (root / SLUG / "test" / f"{gone}.jpg").unlink()
    sample.iloc[2:].to_csv(root / SLUG / "sample_submission.csv", index=False)
    dataset_slug = json.loads((folder / "dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    shutil.copytree(folder / "dataset", root / dataset_slug)
    python, env, their_timm = _kaggle_like(tmp_path / "image")
    probe = subprocess.run([str(python), "-c", "import importlib.util as u, timm; print(u.find_spec('kit'), "
                            "u.find_spec('ttach'), u.find_spec('mlflow'), u.find_spec('torch') is not None, "
                            "timm.__version__)"], capture_output=True, text=True, env={**os.environ, **env}, cwd=tmp_path)
    assert probe.stdout.split() == ["None", "None", "None", "True", their_timm], probe.stdout + probe.stderr
    import timm as ours
    assert their_timm != ours.__version__, "the image's timm is not the kit's"
    working = tmp_path / "kaggle" / "working"
    working.mkdir()
    env |= {"KIT_KAGGLE_INPUT": str(root), "KIT_KAGGLE_WORKING": str(working)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nb = nbformat.read(str(folder / "kernel" / "notebook.ipynb"), as_version=4)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="kaggle",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    theirs = tmp_path / "at-home"
    assert main(["predict", "--bundle", str(folder / "dataset" / "bundle"), f"data={root / SLUG}",
                 f"submissions_dir={theirs}"]) == 0
    written = (working / "submission.csv").read_bytes()
    assert written == (theirs / "submission.csv").read_bytes(), "the kit's predictions for the images present"
    assert len(pd.read_csv(working / "submission.csv")) == len(sample) - 2
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"versions differ from the bundle's export: timm {ours.__version__} -> {their_timm}" in printed, printed


def _mounted(written, tmp_path) -> tuple[Path, Path]:
    """The competition and the notebook's dataset as Kaggle mounts them under an input folder; (input, dataset)."""
    _, data, folder = written
    root = tmp_path / "input"
    shutil.copytree(data, root / SLUG)
    slug = json.loads((folder / "dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    shutil.copytree(folder / "dataset", root / slug)
    (tmp_path / "working").mkdir()
    return root, root / slug


def _run_failing(folder: Path, root: Path, tmp_path: Path, match: str = ""):
    """Run the kernel's notebook on `root` (the input folder); it must stop with an error. The notebook, run."""
    import nbclient
    import nbformat
    env = {"KIT_KAGGLE_INPUT": str(root), "KIT_KAGGLE_WORKING": str(tmp_path / "working"), "PYTHONPATH": str(REPO)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    nb = nbformat.read(str(folder / "kernel" / "notebook.ipynb"), as_version=4)
    try:
        with pytest.raises(nbclient.exceptions.CellExecutionError, match=match or None):
            nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                    resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return nb


def test_a_competition_folder_without_test_images_ends_the_notebook_in_one_line(written, tmp_path):
    folder = written[2]
    root, _ = _mounted(written, tmp_path)
    (root / SLUG / "sample_submission.csv").unlink()
    shutil.rmtree(root / SLUG / "test")
    nb = _run_failing(folder, root, tmp_path)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    said = [line for line in printed.splitlines() if line.startswith("kit predict: error")]
    assert len(said) == 1 and "Traceback" not in printed.split("kit predict: error")[0][-2000:], printed[-2000:]
    assert not (tmp_path / "working" / "submission.csv").exists()


def test_the_notebook_predicts_the_submission_make_submit_would_pick(tmp_path, monkeypatch):
    """Two experiments predicted apart: the bundle holds the one of the best-CV row, as make submit uploads it."""
    import pandas as pd

    from kit.board import leaderboard
    data = write_csv_data(tmp_path / SLUG)
    keys = [f"{k}={v}" for k, v in {**TINY, "stage1_epochs": 1, "stage2_epochs": 0, "batch_size": 4}.items()
            if k != "name"]
    keys += [f"data={data}", f"work_dir={tmp_path / 'folds'}", f"submissions_dir={tmp_path / 'subs'}"]
    for command in ("folds", "train", "predict"):
        assert main([command, "--exp", "demo", "demo_baseline", *keys]) == 0
    board = leaderboard.load(tmp_path / "subs" / "leaderboard.csv")
    board.loc[board["experiments"] == "demo_baseline", "cv"] = "0.99999"  # make the baseline the best CV
    leaderboard.save(board, tmp_path / "subs" / "leaderboard.csv")
    assert main(["notebook", "--exp", "demo", "demo_baseline", "--comp", SLUG, "--user", "someone", "--wheels",
                 str(_fake_wheels(tmp_path / "w")), "--out", str(tmp_path / "nb"), *keys]) == 0
    spec = json.loads((tmp_path / "nb" / SLUG / "dataset" / "bundle" / "bundle.json").read_text())
    assert [e["name"] for e in spec["experiments"]] == ["demo_baseline"], spec["experiments"]
    assert pd.notna(spec["submission"]["cv"])


def test_push_waits_for_the_new_dataset_version_before_pushing_the_kernel(written, kaggle_env, monkeypatch, capsys):
    _, _, folder = written
    kaggle_env.pending_versions = 2  # Kaggle builds each version a while before it can be attached
    monkeypatch.setenv("KIT_DATASET_POLL_S", "0.05")
    assert main(["notebook-push", "--comp", SLUG, "--out", str(folder.parent)]) == 0, capsys.readouterr().err[-2000:]
    asked = [r.rsplit(" ", 1)[-1] for r in kaggle_env.requests if r.startswith("POST ")]
    made = max(i for i, m in enumerate(asked) if m.startswith("CreateDataset"))
    push = asked.index("SaveKernel")
    assert asked[made + 1:push].count("GetDatasetStatus") == 3, f"pending, pending, ready, then the push: {asked}"


def test_push_gives_up_in_one_line_when_the_version_is_never_ready(written, kaggle_env, monkeypatch, capsys):
    _, _, folder = written
    kaggle_env.pending_versions = 10**6
    monkeypatch.setenv("KIT_DATASET_POLL_S", "0.05")
    monkeypatch.setenv("KIT_DATASET_READY_S", "0.3")
    rc = main(["notebook-push", "--comp", SLUG, "--out", str(folder.parent)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "not ready" in err[-1] and "kernel was not pushed" in err[-1], err[-3:]
    assert not any(r.endswith("SaveKernel") for r in kaggle_env.requests), "no kernel with the old weights"


def test_notebook_status_says_what_the_kernel_noticed(written, kaggle_env, capsys, caplog):
    import logging
    _, _, folder = written
    assert main(["notebook-push", "--comp", SLUG, "--out", str(folder.parent)]) == 0
    said = "12:00:01 W versions differ from the bundle's export: timm 1.0.31 -> 1.0.20; predictions may differ\n"
    kaggle_env.kernel_log = json.dumps([{"stream_name": "stdout", "time": 1.0, "data": "bundle: ...\n"},
                                        {"stream_name": "stderr", "time": 2.0, "data": said}])
    with caplog.at_level(logging.WARNING):
        assert main(["notebook-status", "--comp", SLUG, "--out", str(folder.parent)]) == 0
    assert "timm 1.0.31 -> 1.0.20" in caplog.text and "bundle: ..." not in caplog.text, caplog.text


@pytest.mark.slow
def test_a_kernel_given_another_bundle_than_its_own_fails_loudly(written, tmp_path):
    """Kaggle attached an earlier version of the dataset: the kernel refuses to predict with its weights."""
    root, dataset = _mounted(written, tmp_path)
    spec = dataset / "bundle" / "bundle.json"
    spec.write_text(spec.read_text().replace('"name"', '"name" ', 1))  # another export
    _run_failing(written[2], root, tmp_path, "another bundle")
    assert not (tmp_path / "working" / "submission.csv").exists()
