"""A hyperparameter search on Optuna: each trial an experiment of its own name, trained and predicted through the
same folds, claims and files as any other, ranked by its honest CV.

    python -m kit sweep --exp quick --trials 20 data=...       # make sweep EXP=quick TRIALS=20
    python -m kit sweep --exp quick --space my_space.yaml ...   # default: configs/<exp>.sweep.yaml here

The search space is YAML, a key each, over any config key that shapes the weights or what follows them:

    stage1_lr: {low: 0.0001, high: 0.1, log: true}     # a range (floats; ints where both ends are ints)
    weight_decay: {low: 0.00001, high: 0.01, log: true}
    mixup_alpha: {low: 0.0, high: 1.0}
    img_size: [48, 64]                                  # a choice
    backbone: [resnest14d, resnet18d]

Trial n of experiment A is the experiment `A-t<nnn>` (its folds, checkpoints, submission and leaderboard row
like any other). The study lives in a journal file beside the experiments (<work_dir>/<A>.sweep.journal) or in
any Optuna storage (`--storage URL`), so that several processes, on one machine or as the tasks of a job array
on a cluster (cluster/sweep.sbatch), each take the next trial of one study. When a process's trials are done the best
trial's config is written as a preset, configs/<A>_best.yaml, which `--exp <A>_best` names.

    python -m kit jobs --sweep --exp quick --trials 20 --parallel 4 data=...   # the trials as a job array

`kit jobs --sweep` submits the trials through submitit (kit/jobs/cluster.py): one task a trial (SweepTask), at
most --parallel at once (locally one per GPU), then writes the preset once every task is done; screened, the
finalists' folds are a second array.

The study's first trial is the experiment you start from (the space's keys at A's own values, where each lies in
its range or among its choices): it keeps A's name, so a trained A is not trained again; it is never pruned, and
the sweep's best is never below A on CV. Once A's plan has decided hflip=auto's flip from the images, the other
trials take it rather than probe again (unless the space searches hflip).

`--screen` ranks the trials on their first fold alone (its best validation score), the sweep's cheap mode: each
trial trains one fold of n_folds; then the best screened trial and A are trained on every fold, predicted, and
the better CV is the preset. Without it every trial trains every fold and is ranked by its honest CV.

The leaderboard's `sweep` column names each trial's row (`A t3: stage1_lr=0.003 ...`) and the best (`A best t3:
...`); the report shows it.

A trial is pruned on its first fold's curve: each epoch of its fold 0 reports the validation score (step = the
epoch), and Optuna's median pruner stops the trial where its best so far is worse than the median of the earlier
trials at that epoch (after PRUNE_AFTER trials, from epoch PRUNE_FROM + 1 on). A pruned trial stops where it is,
its other folds never trained; the study records it as PRUNED (its folder stays, half-trained, for a look).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import yaml

from kit import tracking
from kit.board import leaderboard
from kit.config import Config, load_config, shapes, to_dict
from kit.data import folds as folds_command
from kit.experiment import Experiment
from kit.io import atomic_write_text

log = logging.getLogger(__name__)
PRUNE_AFTER = 3  # trials that run whole before any is pruned (the median needs some to compare with)
PRUNE_FROM = 2  # the first epochs of fold 0 (a warm-up's noise) are never judged


def space_of(path: Path) -> dict:
    """The search space in `path`: {key: ("range", low, high, log) or ("choice", [values])}; one line per mistake."""
    if not path.is_file():
        raise ValueError(f"sweep: no search space at {path}; write one (a key per line: `stage1_lr: {{low: 0.0001, "
                         "high: 0.1, log: true}` or `img_size: [48, 64]`), or give --space FILE")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected config keys, each with a range or a list of choices")
    keys = {f.name for f in dataclasses.fields(Config)}
    space = {}
    for key, spec in raw.items():
        if key not in keys:
            raise ValueError(f"{path}: {key!r} is not a config key (`python -m kit --help-config` lists them)")
        if shapes(key) == "split":
            raise ValueError(f"{path}: {key} changes the folds; every trial trains on the same folds (set it in "
                             "the experiment)")
        if key == "name":
            raise ValueError(f"{path}: name is the trial's own (<experiment>-t<n>)")
        if isinstance(spec, list) and spec:
            space[key] = ("choice", spec)
        elif isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
            low, high, use_log = spec["low"], spec["high"], bool(spec.get("log", False))
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
                raise ValueError(f"{path}: {key}: low and high must be numbers, low < high (got {low!r}, {high!r})")
            if use_log and low <= 0:
                raise ValueError(f"{path}: {key}: a log range needs low > 0 (got {low!r})")
            space[key] = ("range", low, high, use_log)
        else:
            raise ValueError(f"{path}: {key}: give a list of choices or {{low: .., high: .., log: true}} "
                             f"(got {spec!r})")
    return space


def _sample(trial, space: dict) -> dict:
    values = {}
    for key, spec in space.items():
        if spec[0] == "choice":
            values[key] = trial.suggest_categorical(key, spec[1])
        elif isinstance(spec[1], int) and isinstance(spec[2], int):
            values[key] = trial.suggest_int(key, spec[1], spec[2], log=spec[3])
        else:
            values[key] = trial.suggest_float(key, float(spec[1]), float(spec[2]), log=spec[3])
    return values


def _storage(cfg: Config, url: str):
    if url:
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    path = Path(cfg.work_dir) / f"{cfg.name}.sweep.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def base_values(base: Config, space: dict) -> dict | None:
    """The base experiment's own values of the space's keys, where each lies in its range or among its choices
    (the study's first trial); None where one does not."""
    values = {}
    for key, spec in space.items():
        value = getattr(base, key)
        if spec[0] == "choice":
            inside = value in spec[1]
        else:
            whole = isinstance(spec[1], int) and isinstance(spec[2], int)
            inside = (isinstance(value, (int, float)) and not isinstance(value, bool) and spec[1] <= value <= spec[2]
                      and (not whole or float(value).is_integer()))
        if not inside:
            return None
        values[key] = value
    return values


def trial_name(base: Config, values: dict, number: int) -> str:
    """`<base>-t<nnn>`, or the base's own name where the values are the base's (the same experiment)."""
    return base.name if all(getattr(base, k) == v for k, v in values.items()) else f"{base.name}-t{number:03d}"


def trial_config(base: Config, values: dict, number: int, shared: dict | None = None) -> Config:
    """The base experiment with a trial's values, under the trial's own name (the base's own where the values are
    the base's: the same experiment, as it is); a value the config refuses is the space's mistake, said with the
    values. `shared`: what the base decided from the data (see shared_decisions), a trial's unless the space has it."""
    name = trial_name(base, values, number)
    shared = {} if name == base.name else shared
    try:
        return load_config(None, {**to_dict(base), **(shared or {}), **values, "name": name})
    except ValueError as e:
        raise ValueError(f"sweep trial {number} ({values}): {e}") from None


def shared_decisions(base: Config, space: dict, fingerprint: str) -> dict:
    """What the base's plan decided about the data, once it has (kit/train/plan.py), for the trials to take rather
    than probe again: hflip=auto's flip (whether a flip keeps the class is the images', not the trial's keys')."""
    from kit.train import plan
    if base.hflip != "auto" or "hflip" in space:
        return {}
    hflip = Experiment.of(base).decided(plan.key(base, fingerprint)).get("hflip")
    return {} if hflip is None else {"hflip": hflip}


def first_fold_score(cfg: Config) -> float:
    """Fold 0's best validation score (seed 0's), as its best.pt records it."""
    import torch
    return float(torch.load(Experiment.of(cfg).fold(0).best, map_location="cpu", weights_only=True)["score"])


def cv_score(cfg: Config) -> float:
    return float(json.loads(Experiment.of(cfg).cv_file.read_text())["score"])


def _pruner(trial, name: str, metric: str, prune: bool = True):
    """The epoch watcher (kit/tracking) that reports trial `name`'s fold 0 to Optuna and stops it when pruned
    (never where `prune` is False: the experiment the sweep starts from is its yardstick, trained whole)."""
    import optuna

    def watch(cfg: Config, folder: Path, row: dict) -> None:
        score = row["val_score"]
        if cfg.name != name or folder.name != "fold0" or not math.isfinite(score):
            return
        trial.report(score, row["epoch"])
        if prune and trial.should_prune():
            raise optuna.TrialPruned(f"fold 0 at epoch {row['epoch']}, {metric} {score:.4f}: worse than the median "
                                     "of the earlier trials at that epoch")
    return watch


def _pick(base: Config, study, own: dict | None, metric, train):
    """A screened study's pick: its best trial on fold 0 and the experiment itself, each trained on every fold
    (`train`) and predicted, the better CV; (its trial, its config, its CV)."""
    from kit.predict import predict
    best = study.best_trial
    pairs = [(best, trial_config(base, best.params, best.number, best.user_attrs.get("shared")))]
    itself = next((t for t in study.trials if own is not None and t.params == own), None)
    if itself is not None:
        pairs.append((itself, base))
    finalists = {c.name: (t, c) for t, c in pairs}  # one where the best is the experiment itself
    cfgs = [c for _, c in finalists.values()]
    train(cfgs)
    predict.run(cfgs)
    cvs = {name: cv_score(c) for name, c in zip(finalists, cfgs)}
    log.info("sweep %s: every fold of %s", base.name, ", ".join(f"{n} CV {v:.4f}" for n, v in cvs.items()))
    name = max(cvs, key=lambda n: cvs[n] if metric.higher_is_better else -cvs[n])
    return finalists[name][0], finalists[name][1], cvs[name]


def open_study(base: Config, space_path: Path, storage: str = "", task: int = 0):
    """The study of `base`, created or joined where another process (or task) already runs it, with the experiment's
    own values enqueued as its first trial; the folds made first, as every trial trains on them. Returns (study,
    space, the folds, the experiment's own values or None).

    `task`: this process's index among those sharing the study (a job array's), added to the sampler's seed: each
    process samples with a sampler of its own, and seeded alike, the processes of an array starting together would
    each draw the same values."""
    try:
        import optuna
    except ImportError:
        raise ValueError("kit sweep needs Optuna: pip install 'kit[sweep]' (in a checkout of the kit, make install)") \
            from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the kit's own lines say each trial, whatever the storage
    space = space_of(space_path)
    folds_command.make_folds(base)  # every trial trains on these folds (kept as they are when up to date)
    made = folds_command.load(base)
    # the pruner judges from step n_warmup_steps on (its steps here: fold 0's epochs, from 1)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER, n_warmup_steps=PRUNE_FROM + 1)
    direction = "maximize" if made.metric.higher_is_better else "minimize"
    study = optuna.create_study(study_name=f"{base.name}-sweep", storage=_storage(base, storage), load_if_exists=True,
                                direction=direction, sampler=optuna.samplers.TPESampler(seed=base.seed + task),
                                pruner=pruner)
    own = base_values(base, space)
    if own is None:
        log.info("sweep %s: its own values are outside the space, so it is not a trial", base.name)
    else:
        study.enqueue_trial(own, skip_if_exists=True)  # trial 0: the experiment itself (another process's: kept)
    return study, space, made, own


def run_trials(base: Config, study, space: dict, made, trials: int, screen: bool = False) -> None:
    """Ask the study for `trials` trials, one after another, and train (and, unscreened, predict) each."""
    import optuna

    from kit.predict import predict
    from kit.train import loop
    for _ in range(trials):
        trial = study.ask()
        try:
            shared = shared_decisions(base, space, made.fingerprint)
            trial.set_user_attr("shared", shared)  # the trial's config is these and its values, whenever it is read
            cfg = trial_config(base, _sample(trial, space), trial.number, shared)
            log.info("sweep trial %d: %s%s", trial.number, cfg.name, " (fold 0)" if screen else "")
            with tracking.watching(_pruner(trial, cfg.name, made.metric.name, prune=cfg.name != base.name)):
                loop.run([cfg], only=[0] if screen else None)
            if not screen:
                predict.run([cfg])
        except optuna.TrialPruned as e:
            log.info("sweep trial %d pruned: %s", trial.number, e)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except BaseException:  # a refused value, a failed run, Ctrl-C: the trial is not left running in the study
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        score = first_fold_score(cfg) if screen else cv_score(cfg)
        study.tell(trial, score if math.isfinite(score) else None,
                   state=None if math.isfinite(score) else optuna.trial.TrialState.FAIL)


def finish(base: Config, study, own: dict | None, metric, screen: bool = False, train=None) -> Path:
    """The study's best as configs/<name>_best.yaml and the leaderboard's sweep marks. Screened, the best trial and the
    experiment are first trained on every fold by `train(cfgs)` (default: here, one after another)."""
    import optuna

    from kit.train import loop
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ValueError(f"sweep {base.name}: no trial of {len(study.trials)} finished (each pruned or failed); "
                         "widen the space or run more --trials")
    best, cfg, cv = _pick(base, study, own, metric, train or loop.run) if screen else \
        (study.best_trial, trial_config(base, study.best_trial.params, study.best_trial.number,
                                        study.best_trial.user_attrs.get("shared")), study.best_value)
    out = Path("configs") / f"{base.name}_best.yaml"
    where = {"name", "data", "work_dir", "submissions_dir", "cache_dir", "solution"}  # given with each run
    chosen = {k: v for k, v in {**to_dict(base), **best.params}.items() if k not in where}
    out.parent.mkdir(exist_ok=True)
    atomic_write_text(out, f"# kit sweep of {base.name}: trial {best.number} of {len(study.trials)}, CV {metric.name} "
                           f"{cv:.4f}\n" + yaml.safe_dump(chosen, sort_keys=False))
    leaderboard.mark_sweep(leaderboard.path_of(base), base.name,
                           {trial_name(base, t.params, t.number): (t.number, t.params) for t in done},
                           cfg.name)
    log.info("sweep %s: best trial %d of %d, CV %s %.4f (%s); its config: %s (--exp %s_best)", base.name, best.number,
             len(study.trials), metric.name, cv, best.params, out, base.name)
    return out


def run(base: Config, trials: int, space_path: Path, storage: str = "", screen: bool = False, task: int = 0) -> Path:
    """Run `trials` trials of the study of `base` (joining it where other processes already run it); the best
    trial's config as configs/<name>_best.yaml. screen: trials ranked on fold 0, the best then trained whole.
    task: this process's index in a job array (open_study)."""
    study, space, made, own = open_study(base, space_path, storage, task)
    run_trials(base, study, space, made, trials, screen)
    return finish(base, study, own, made.metric, screen)


class SweepTask:
    """One task of `kit jobs --sweep`'s array (picklable for submitit): the next trial of the study. Preempted, it is
    requeued and asks for a new trial; the one it left stays RUNNING in the study, never ranked."""

    def __init__(self, base: Config, space_path: Path, storage: str, screen: bool):
        self.base, self.space_path, self.storage, self.screen = base, space_path, storage, screen

    def __call__(self, index: int) -> int:
        from kit.logs import logging_setup
        logging_setup()
        study, space, made, _ = open_study(self.base, self.space_path, self.storage, task=index)
        run_trials(self.base, study, space, made, 1, self.screen)
        return index

    def checkpoint(self, index: int):
        import submitit
        return submitit.helpers.DelayedSubmission(self, index)
