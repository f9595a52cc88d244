"""Beyond one machine: job-array indices, submitit arrays.  pytest tests/test_cluster.py -q"""
import itertools

import pytest

from conftest import tiny_cfg
from kit import cluster, folds, predict, train


@pytest.mark.parametrize("n_exps,n_folds", [(1, 2), (2, 5), (3, 4)])
def test_the_array_covers_every_experiment_and_fold_exactly_once(tmp_path, folder_data, n_exps, n_folds):
    cfgs = [tiny_cfg(tmp_path, folder_data, name=f"e{i}") for i in range(n_exps)]
    got = [cluster.pick(cfgs, n_folds, i) for i in range(n_exps * n_folds)]
    assert sorted((c.name, k) for c, k in got) == sorted(itertools.product([c.name for c in cfgs], range(n_folds)))
    assert [(c.name, k) for c, k in got[:2]] == [("e0", 0), ("e0", 1)], "every fold of the first --exp first"
    with pytest.raises(ValueError, match=rf"make {n_exps * n_folds} tasks.*--array=0-{n_exps * n_folds - 1}"):
        cluster.pick(cfgs, n_folds, n_exps * n_folds, "SLURM_ARRAY_TASK_ID")


@pytest.mark.parametrize("env,want", [
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5"}, (2, "SLURM_ARRAY_TASK_ID")),  # --array=5-9
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
    (got,) = cluster.submit_jobs([array], "local", 0, 10, 0, "")
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
