"""`kit sweep`: Optuna over a YAML search space, each trial an experiment of its own name on the same folds, a study
shared by several processes through its journal file, the best trial's config written as a preset."""
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from conftest import TINY
from kit.board import leaderboard
from kit.jobs.cli import main
from kit.jobs.sweep import space_of

BASE = {**{k: v for k, v in TINY.items() if k != "name"}, "stage1_epochs": 1, "stage2_epochs": 0, "batch_size": 8}
SPACE = {"stage1_lr": {"low": 0.01, "high": 0.1, "log": True}, "spinal_width": [8, 16]}


@pytest.fixture
def study_dir(tmp_path, folder_data, monkeypatch):
    """tmp_path as the working directory, with configs/a.yaml (the base experiment) and configs/a.sweep.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text(yaml.safe_dump(
        {**BASE, "data": str(folder_data), "work_dir": str(tmp_path / "folds"),
         "submissions_dir": str(tmp_path / "subs")}))
    (tmp_path / "configs" / "a.sweep.yaml").write_text(yaml.safe_dump(SPACE))
    return tmp_path


def _study(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "folds" / "a.sweep.journal")))
    return optuna.load_study(study_name="a-sweep", storage=storage)


def test_trials_are_experiments_and_the_best_becomes_a_preset(study_dir, caplog):
    with caplog.at_level("INFO"):
        assert main(["sweep", "--exp", "a", "--trials", "2"]) == 0
    trials = _study(study_dir).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        name = "a" if t.number == 0 else f"a-t{t.number:03d}"
        cv = json.loads((study_dir / "folds" / name / "cv.json").read_text())
        assert cv["score"] == t.value and set(t.params) == set(SPACE)
    assert trials[0].params == {"stage1_lr": BASE["stage1_lr"], "spinal_width": BASE["spinal_width"]}, \
        "trial 0 is the experiment itself"
    board = leaderboard.load(study_dir / "subs" / "leaderboard.csv")
    assert sorted(board["experiments"]) == ["a", "a-t001"], "each trial a leaderboard row, trial 0 under a's name"
    best = _study(study_dir).best_trial
    marks = dict(zip(board["experiments"], board["sweep"]))
    best_name = "a" if best.number == 0 else "a-t001"
    assert marks[best_name].startswith(f"a best t{best.number}: ") and "stage1_lr=" in marks[best_name], marks
    assert all(m.startswith("a t") for n, m in marks.items() if n != best_name), marks
    preset = yaml.safe_load((study_dir / "configs" / "a_best.yaml").read_text())
    assert {k: preset[k] for k in SPACE} == best.params and "data" not in preset and "name" not in preset
    assert f"best trial {best.number} of 2" in caplog.text
    base = yaml.safe_load((study_dir / "configs" / "a.yaml").read_text())
    assert main(["folds", "--exp", "a_best", f"data={base['data']}", f"work_dir={base['work_dir']}"]) == 0, \
        "--exp a_best names it"


def test_two_processes_share_one_study(study_dir):
    """Two sweeps at once on one journal: each takes its own next trial; none is run twice."""
    assert main(["folds", "--exp", "a"]) == 0  # the folds first, as `kit jobs` makes them before its tasks
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(repo)}  # the kit of this checkout
    cmd = [sys.executable, "-m", "kit", "sweep", "--exp", "a", "--trials", "1"]
    procs = [subprocess.Popen(cmd, cwd=study_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trials = _study(study_dir).trials
    assert sorted(t.number for t in trials) == [0, 1] and all(t.state.name == "COMPLETE" for t in trials)
    assert {p.name for p in (study_dir / "folds").iterdir() if p.is_dir()} == {"a", "a-t001"}, \
        "trial 0 is a itself"


@pytest.mark.parametrize("space, said", [
    ({"learning_rate": [0.1]}, "'learning_rate' is not a config key"),
    ({"n_folds": [3, 5]}, "n_folds changes the folds"),
    ({"stage1_lr": {"low": 0.1, "high": 0.01}}, "low < high"),
    ({"stage1_lr": {"low": 0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
    ({"mixup_alpha": 0.5}, "give a list of choices"),
])
def test_a_bad_search_space_is_one_line(tmp_path, space, said):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(ValueError, match=said):
        space_of(path)


def test_a_sweep_without_a_space_says_how_to_write_one(study_dir, capsys):
    (study_dir / "configs" / "a.sweep.yaml").unlink()
    assert main(["sweep", "--exp", "a", "--trials", "1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no search space at configs/a.sweep.yaml" in err[0], err


def test_a_trial_worse_than_the_median_on_fold_0_is_pruned_before_its_other_folds(study_dir, caplog):
    """Earlier trials (stand-ins scoring beyond any real one at every epoch) make this trial's fold 0 worse than
    their median once PRUNE_FROM epochs are past: it stops there, PRUNED, fold 1 never trained."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from kit.jobs.sweep import PRUNE_AFTER, PRUNE_FROM
    base = yaml.safe_load((study_dir / "configs" / "a.yaml").read_text())
    # spinal_width 24, outside the space: a itself is not a trial (it would never be pruned)
    (study_dir / "configs" / "a.yaml").write_text(yaml.safe_dump({**base, "stage1_epochs": PRUNE_FROM + 3,
                                                                  "spinal_width": 24}))
    (study_dir / "folds").mkdir()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    study = optuna.create_study(study_name="a-sweep", direction="maximize", storage=JournalStorage(
        JournalFileBackend(str(study_dir / "folds" / "a.sweep.journal"))))
    space = {"stage1_lr": FloatDistribution(0.01, 0.1, log=True), "spinal_width": CategoricalDistribution([8, 16])}
    for _ in range(PRUNE_AFTER):
        study.add_trial(optuna.trial.create_trial(params={"stage1_lr": 0.05, "spinal_width": 8}, distributions=space,
                                                  value=2.0, intermediate_values={e: 2.0 for e in range(1, 20)}))
    with caplog.at_level("INFO"):
        assert main(["sweep", "--exp", "a", "--trials", "1"]) == 0
    trial = _study(study_dir).trials[-1]
    assert trial.state.name == "PRUNED", trial.state
    assert max(trial.intermediate_values) == PRUNE_FROM + 1, "pruned at the first epoch it may be judged"
    folder = study_dir / "folds" / f"a-t{trial.number:03d}"
    assert (folder / "fold0" / "history.csv").is_file() and not (folder / "fold1").exists()
    assert f"sweep trial {trial.number} pruned: fold 0 at epoch {PRUNE_FROM + 1}" in caplog.text


def test_a_screened_sweep_trains_the_best_on_fold_0_and_the_experiment_on_every_fold(study_dir, caplog):
    """--screen: each trial trains fold 0 and is ranked by it; the best of them and `a` (already trained: not
    again) then train every fold, and the better CV is the preset. The trials take a's flip (hflip=auto's probe,
    decided once from the images) rather than probe again."""
    base = yaml.safe_load((study_dir / "configs" / "a.yaml").read_text())
    (study_dir / "configs" / "a.yaml").write_text(yaml.safe_dump({**base, "hflip": "auto"}))
    assert main(["run", "--exp", "a"]) == 0
    flip = json.loads((study_dir / "folds" / "a" / "plan.json").read_text())["flip"]["hflip"]
    trained = (study_dir / "folds" / "a" / "fold1" / "best.pt").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        assert main(["sweep", "--exp", "a", "--trials", "3", "--screen"]) == 0
    trials = _study(study_dir).trials
    assert trials[0].params == {"stage1_lr": BASE["stage1_lr"], "spinal_width": BASE["spinal_width"]}
    assert (study_dir / "folds" / "a" / "fold1" / "best.pt").stat().st_mtime_ns == trained, "a is not trained again"
    screened = max(trials, key=lambda t: t.value)
    for t in trials[1:]:
        folder = study_dir / "folds" / f"a-t{t.number:03d}"
        score = torch.load(folder / "fold0" / "best.pt", weights_only=True)["score"]
        assert t.value == score, "a trial's value is its fold 0's best score"
        assert (folder / "fold1").is_dir() == (t is screened), "only the best screened trial trains fold 1"
        assert yaml.safe_load((folder / "config.yaml").read_text())["hflip"] == flip, "a's flip, not a probe"
        assert not (folder / "plan.json").is_file() or "flip" not in json.loads((folder / "plan.json").read_text())
    board = leaderboard.load(study_dir / "subs" / "leaderboard.csv")
    finalists = {"a", "a" if screened.number == 0 else f"a-t{screened.number:03d}"}
    assert set(board["experiments"]) == finalists, board["experiments"]
    cvs = {n: json.loads((study_dir / "folds" / n / "cv.json").read_text())["score"] for n in finalists}
    pick = max(cvs, key=cvs.get)
    header = (study_dir / "configs" / "a_best.yaml").read_text().splitlines()[0]
    assert header.endswith(f"CV accuracy {cvs[pick]:.4f}"), (header, cvs)
    assert board.set_index("experiments").loc[pick, "sweep"].startswith("a best t"), board[["experiments", "sweep"]]


@pytest.mark.slow
def test_kit_jobs_sweep_runs_a_task_a_trial_then_writes_the_preset(study_dir, monkeypatch):
    """`kit jobs --sweep` on submitit's local executor: each task a process that takes the next trial of the one
    study (none twice), then the best trial's preset, as `kit sweep` writes it."""
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("PYTHONPATH", str(repo))  # the tasks unpickle kit.jobs.sweep from this checkout
    assert main(["jobs", "--exp", "a", "--sweep", "--trials", "2", "--cluster", "local"]) == 0
    trials = _study(study_dir).trials
    assert sorted(t.number for t in trials) == [0, 1] and all(t.state.name == "COMPLETE" for t in trials)
    assert {p.name for p in (study_dir / "folds").iterdir() if p.is_dir() and p.name != ".jobs"} == {"a", "a-t001"}
    assert len([d for d in (study_dir / "folds" / ".jobs").iterdir() if d.name != "%j"]) == 2, "a task per trial"
    best = _study(study_dir).best_trial
    preset = yaml.safe_load((study_dir / "configs" / "a_best.yaml").read_text())
    assert {k: preset[k] for k in SPACE} == best.params


def test_kit_jobs_sweep_screened_trains_the_finalists_folds_as_a_second_array(study_dir, monkeypatch, caplog):
    """--screen: the trials' array trains fold 0 each; then the finalists' every fold goes out as an array of its
    own (here the tasks run in this process, in the order the local executor would start them)."""
    from kit.jobs import cluster
    ran = []

    def inline(executor, task, indices, slots, poll_s=0.5):
        ran.append((type(task).__name__, list(indices)))
        for i in indices:
            task(i)
        return [type("Done", (), {"result": lambda self: None, "job_id": "inline"})() for _ in indices]

    monkeypatch.setattr(cluster, "_run_local", inline)
    with caplog.at_level("INFO"):
        assert main(["jobs", "--exp", "a", "--sweep", "--trials", "1", "--screen", "--cluster", "local"]) == 0
    assert ran == [("SweepTask", [0]), ("TrainTask", [0, 1])], "trial 0 (a itself) on fold 0, then a's two folds"
    a = study_dir / "folds" / "a"
    assert (a / "fold1" / "best.pt").is_file() and (a / "cv.json").is_file()
    assert yaml.safe_load((study_dir / "configs" / "a_best.yaml").read_text())["stage1_lr"] == BASE["stage1_lr"]
    assert "jobs: 2 kit-train task(s)" in caplog.text


def test_the_tasks_of_an_array_draw_their_own_values(study_dir):
    """Each task of an array is a process with a sampler of its own: seeded by its index, two tasks that start
    together draw different values (seeded alike, both would train the same trial under two names)."""
    from kit.config import load_config
    from kit.jobs import sweep
    base = load_config(study_dir / "configs" / "a.yaml", {"name": "a"})
    drawn = []
    for task in (0, 1, 2):
        study, space, _, own = sweep.open_study(base, study_dir / "configs" / "a.sweep.yaml", task=task)
        drawn.append(sweep._sample(study.ask(), space))  # none told: each a trial still running, as at a start
    assert drawn[0] == own, "the first trial asked is the experiment itself"
    assert drawn[1] != drawn[2], drawn
    again = sweep.open_study(base, study_dir / "configs" / "a.sweep.yaml", task=2)
    assert sweep._sample(again[0].ask(), again[1]) == drawn[2], "a task's draws are its index's, rerun alike"
