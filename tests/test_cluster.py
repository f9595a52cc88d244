"""Beyond one machine: job-array indices, submitit arrays.  pytest tests/test_cluster.py -q"""
import itertools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_cfg
from kit.config import PRESETS, load_config, parse_overrides
from kit.data import folds
from kit.jobs import cluster
from kit.jobs.cli import _parser
from kit.predict import predict
from kit.train import loop as train


@pytest.mark.parametrize("n_exps,n_folds", [(1, 2), (2, 5), (3, 4)])
def test_the_array_covers_every_experiment_and_fold_exactly_once(tmp_path, folder_data, n_exps, n_folds):
    cfgs = [tiny_cfg(tmp_path, folder_data, name=f"e{i}") for i in range(n_exps)]
    got = [cluster.pick(cfgs, n_folds, i) for i in range(n_exps * n_folds)]
    assert sorted((c.name, k) for c, k in got) == sorted(itertools.product([c.name for c in cfgs], range(n_folds)))
    assert [(c.name, k) for c, k in got[:2]] == [("e0", 0), ("e0", 1)], "every fold of the first --exp first"
    with pytest.raises(ValueError, match=rf"make {n_exps * n_folds} tasks.*--array=0-{n_exps * n_folds - 1}"):
        cluster.pick(cfgs, n_folds, n_exps * n_folds, "SLURM_ARRAY_TASK_ID")


@pytest.mark.parametrize("env,want", [
    # `sbatch --array=3,7` resubmits the failed pairs 3 and 7: the index is the pair, whatever the array's first
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "3"}, (7, "SLURM_ARRAY_TASK_ID")),
    ({"SLURM_ARRAY_TASK_ID": "3"}, (3, "SLURM_ARRAY_TASK_ID")),
    ({"JOB_COMPLETION_INDEX": "4"}, (4, "JOB_COMPLETION_INDEX")),  # Kubernetes Indexed Job
    ({"KIT_TASK_INDEX": "0"}, (0, "KIT_TASK_INDEX")),
])
def test_the_task_index_comes_from_the_scheduler(env, want):
    assert cluster.task_index(env) == want


def test_fold_auto_outside_an_array_says_what_to_set():
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID.*--fold K"):
        cluster.task_index({})


@pytest.mark.slow
def test_a_submitit_array_trains_what_train_does(tmp_path, folder_data):
    """Every fold as one task of a local submitit array, then predict: the same submission bytes as train + predict."""
    keys = dict(stage1_epochs=1, stage2_epochs=0)
    array = tiny_cfg(tmp_path / "array", folder_data, **keys)
    (got,) = cluster.submit_jobs([array], "local", 0, 10, -1, "")
    plain = tiny_cfg(tmp_path / "plain", folder_data, **keys)
    folds.make_folds(plain)
    train.run([plain])
    (want,) = predict.run([plain])
    assert got.read_bytes() == want.read_bytes()
    jobs = [d for d in (tmp_path / "array" / "folds" / ".jobs").iterdir() if d.name != "%j"]  # %j: submitit's own
    assert len(jobs) == 2, f"one job per fold: {jobs}"


def test_fold_auto_trains_the_pair_of_its_index(tmp_path, folder_data, monkeypatch):
    cfgs = [tiny_cfg(tmp_path, folder_data, name=n, stage1_epochs=1, stage2_epochs=0) for n in ("a", "b")]
    folds.make_folds(cfgs[0])
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")  # b, fold 0
    cluster.train_task(cfgs)
    done = sorted(p.parent.relative_to(tmp_path / "folds").as_posix() for p in (tmp_path / "folds").glob("*/fold*/oof.npz"))
    assert done == ["b/fold0"]


class _Record:
    """A task that writes when it ran and which GPUs it saw (picklable: submitit's local jobs are processes)."""

    def __init__(self, folder):
        self.folder = folder

    def __call__(self, i):
        start = time.time()
        time.sleep(0.5)
        (self.folder / f"{i}.json").write_text(json.dumps({"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                           "start": start, "end": time.time()}))
        return i


def _local_run(tmp_path, slots, tasks, monkeypatch):
    import submitit
    here = os.path.dirname(__file__)  # the jobs unpickle _Record from this module
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    executor = submitit.LocalExecutor(folder=tmp_path / "logs" / "%j")
    executor.update_parameters(timeout_min=5)
    jobs = cluster._run_local(executor, _Record(tmp_path), list(range(tasks)), slots, poll_s=0.05)
    assert [j.result() for j in jobs] == list(range(tasks))
    runs = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(tasks)]
    most = max(sum(r["start"] < s["end"] and s["start"] < r["end"] for r in runs) for s in runs)
    return runs, most


def test_local_jobs_run_one_per_gpu_at_a_time_each_on_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "local_gpus", lambda: [0, 1])
    each, slots = cluster._slots("local", -1, 0)
    assert (each, slots) == (1, [[0], [1]]), "auto: one GPU a task, one task per GPU"
    runs, most = _local_run(tmp_path, slots, 4, monkeypatch)
    assert most <= 2, f"{most} tasks ran at once on 2 GPUs"
    assert sorted(r["gpus"] for r in runs) == ["0", "0", "1", "1"], [r["gpus"] for r in runs]


def test_local_jobs_on_a_cpu_run_one_at_a_time_and_slurm_asks_for_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "local_gpus", lambda: [])
    each, slots = cluster._slots("local", -1, 0)
    assert (each, slots) == (0, [None]), "a CPU machine: no GPU asked for, one task at a time"
    assert cluster._slots("local", -1, 2)[1] == [None, None], "--parallel 2: two at once"
    runs, most = _local_run(tmp_path, slots, 2, monkeypatch)
    assert most == 1
    assert cluster._slots("slurm", -1, 0)[0] == 1, "on SLURM the default asks for one GPU a task"
    with pytest.raises(ValueError, match="--gpus 1: this machine has 0 GPU"):
        cluster._slots("local", 1, 0)


def test_without_submitit_jobs_names_the_extra(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ModuleNotFoundError("No module named 'submitit'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(ValueError, match=r"pip install 'kit\[cluster\]'"):
        cluster._submitit()


def test_the_cluster_command_has_a_verb_of_its_own(capsys):
    """`kit submit` uploads to Kaggle; the job array is `kit jobs`."""
    from kit.jobs.cli import COMMANDS, main
    assert "jobs" in COMMANDS and "submit-jobs" not in COMMANDS
    assert main(["submit-jobs"]) == 2
    capsys.readouterr()


def _template_commands(path) -> list[list[str]]:
    """The kit command lines a cluster/ template runs, as argv after `python -m kit`: a Job's container command, or
    a batch script's `python -m kit` lines with its variables set by bash itself."""
    if path.suffix == ".yaml":
        command = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[:3] == ["python", "-m", "kit"], (path.name, command)
        return [command[3:]]
    script = [line for line in path.read_text().splitlines() if not line.lstrip().startswith(("#", "cd ", "trap "))]
    lines = [line.removesuffix(" &").replace("python -m kit ", "printf '%s\\0' ", 1) if "python -m kit " in line
             else line for line in script if not line.startswith("wait")]
    out = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True, check=True).stdout
    assert out, f"{path.name} runs no kit command"
    return [out.rstrip("\0").split("\0")]


@pytest.mark.parametrize("name", ["slurm.sbatch", "sweep.sbatch", "k8s-indexed-job.yaml", "k8s-sweep-job.yaml"])
def test_each_cluster_template_runs_a_command_the_kit_takes(name):
    """The templates are copied and edited by hand, never run here: their kit command must still parse, name shipped
    presets and set only config keys, or a cluster user's first job fails on a flag that has moved."""
    path = Path(__file__).parent.parent / "cluster" / name
    for argv in _template_commands(path):
        args = _parser().parse_args(argv)
        assert args.exp, (name, argv)
        for exp in args.exp:
            assert (PRESETS / f"{exp}.yaml").is_file(), f"{name}: --exp {exp} is not a shipped preset"
            load_config(PRESETS / f"{exp}.yaml", parse_overrides(args.overrides))  # an unknown key raises
