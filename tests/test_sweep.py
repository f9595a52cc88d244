"""`kit sweep`: Optuna over a YAML search space, each trial an experiment of its own name on the same folds, a study
shared by several processes through its journal file, the best trial's config written as a preset."""
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
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
        cv = json.loads((study_dir / "folds" / f"a-t{t.number:03d}" / "cv.json").read_text())
        assert cv["score"] == t.value and set(t.params) == set(SPACE)
    board = leaderboard.load(study_dir / "subs" / "leaderboard.csv")
    assert sorted(board["experiments"]) == ["a-t000", "a-t001"], "each trial a leaderboard row"
    best = _study(study_dir).best_trial
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
    assert {p.name for p in (study_dir / "folds").iterdir() if p.name.startswith("a-t")} == {"a-t000", "a-t001"}


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
    (study_dir / "configs" / "a.yaml").write_text(yaml.safe_dump({**base, "stage1_epochs": PRUNE_FROM + 3}))
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
