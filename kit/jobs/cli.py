"""The one entry point: `python -m kit <command> [--exp NAME ... | --config FILE ...] [key=value ...]`.

    python -m kit demo-data                          # data/demo from scikit-learn's digits
    python -m kit folds   --exp demo                 # folds/<data>/folds.csv
    python -m kit train   --exp demo demo_baseline   # folds/<data>/<exp>/fold<k>/...
    python -m kit predict --exp demo demo_baseline   # submissions/<exp>-<hash>.csv + leaderboard
    python -m kit run     --exp demo demo_baseline   # folds, train, predict in one process (what `make` runs)
    python -m kit blend   --exp demo demo_baseline   # weights fitted on OOF, nested CV
    python -m kit pseudo  --from demo --name demo_pl # + test images demo's folds label confidently
    python -m kit export  --exp demo --out bundle    # bundle/ + bundle.zip: weights and settings for inference
    python -m kit jobs    --exp A B                  # every (experiment, fold) as a SLURM or local job, then predict
    python -m kit jobs    --exp A --sweep            # kit sweep's trials of A as the jobs, then its preset
    python -m kit predict --bundle bundle data=DIR   # ... from the bundle alone: + submissions/submission.csv
    python -m kit --help-config                      # every config key

A user mistake ends in one line on stderr and exit status 2, never a traceback
(set KIT_DEBUG=1 to see one).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kit.jobs import commands
from kit.logs import logging_setup


@dataclass(frozen=True)
class Command:
    """One `kit` command: what it does, and the call that does it (modules are imported only when it runs)."""

    help: str
    call: Callable  # (args) -> anything; args.cfgs holds the resolved configs
    outputs: tuple[str, ...] = ()  # config keys of the folders it writes: checked before any work starts
    configs: bool = True  # takes --exp/--config and key=value overrides


BOTH = ("work_dir", "submissions_dir")
COMMANDS = {
    "demo-data": Command("write the embedded demo data set (scikit-learn digits as PNGs) to data/demo; --clean "
                         "removes it and the demo's outputs", commands.demo_data, configs=False),
    "folds": Command("assign every training image to one of n_folds stratified folds -> folds/<data>/folds.csv",
                     commands.folds, ("work_dir",)),
    "cache": Command("resize every image once to what the transforms need (the fast data path; then cache=true)",
                     commands.cache, ("cache_dir",)),
    "train": Command("train every fold (or --fold K) of each experiment: two stages, best and last checkpoints, OOF "
                     "logits; --fold auto: the (experiment, fold) of this job-array task (kit/jobs/cluster.py)",
                     commands.train, ("work_dir",)),
    "jobs": Command("folds here, then every (experiment, fold) as one task of a job array through submitit "
                    "(SLURM, or local processes: one per GPU at a time), wait, predict; --sweep: kit sweep's trials "
                    "as the tasks, then the best as configs/<exp>_best.yaml",
                    commands.jobs, BOTH),
    "predict": Command("TTA on the test images with each fold's best weights, fold ensemble, submission CSV, "
                       "leaderboard",
                       commands.predict, BOTH),
    "run": Command("folds, train and predict in one process: the same files as the three commands, one start-up "
                   "(what `make` runs on the demo)",
                   commands.run, BOTH),
    "blend": Command("weights for several experiments fitted on their OOF predictions (greedy selection), nested "
                     "CV, submission and leaderboard row", commands.blend, BOTH),
    "stack": Command("a second level (gradient-boosted trees) on the experiments' OOF predictions and the "
                     "competition's tabular columns, nested CV, submission and leaderboard row", commands.stack, BOTH),
    "sweep": Command("a hyperparameter search on Optuna over a YAML space (--space, default configs/<exp>.sweep.yaml): "
                     "each trial an experiment <exp>-t<n> trained and predicted on the same folds; the best trial's "
                     "config as configs/<exp>_best.yaml", commands.sweep, BOTH),
    "pseudo": Command("a new experiment (--name) whose folds also train on the test images the source's (--from) "
                      "fold models label with probability >= --threshold; trained, predicted, its gain on the "
                      "leaderboard", commands.pseudo, BOTH),
    "export": Command("write an inference bundle (--out DIR, and DIR.zip): each fold's best weights, the resolved "
                      "configs, classes, TTA and merge; `predict --bundle DIR` writes the submission from it alone",
                      commands.export, BOTH),
    "leaderboard": Command("print submissions/<data>/leaderboard.csv; with --comp, first merge Kaggle's public/private "
                           "scores", commands.leaderboard, ("submissions_dir",)),
    "submit": Command("upload --file F, or the best-CV submission of --exp, with the kaggle CLI (--comp SLUG); "
                      "record its ref", commands.submit, ("submissions_dir",)),
    "report": Command("one self-contained page, <submissions_dir>/report.html: the leaderboard, CV against public "
                      "and private, each experiment's curves and mistakes", commands.report, BOTH),
    "notebook": Command("a code competition's Kaggle dataset (the bundle, the wheels Kaggle lacks) and kernel (a "
                        "notebook that predicts offline) under notebook/<slug>/ (--comp SLUG)", commands.notebook, BOTH),
    "notebook-push": Command("kaggle datasets create (or version) and kernels push of notebook/<slug>/ (--comp SLUG)",
                             commands.notebook_push, configs=False),
    "notebook-status": Command("the pushed kernel's run status (--comp SLUG)", commands.notebook_status, configs=False),
    "download": Command("download and safely unzip a competition's data into data/<slug>/ (--comp SLUG)",
                        commands.download, configs=False),
}
EPILOG = "config keys: python -m kit --help-config; make targets wrap these commands (docs/REFERENCE.md)."


def _parser() -> argparse.ArgumentParser:
    prog = "kit" if Path(sys.argv[0]).name == "kit" else "python -m kit"  # the console script, or -m
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--help-config", action="store_true", help="list every config key with its type and default")
    sub = p.add_subparsers(dest="command", metavar="command")
    from kit.config import help_text
    keys = "config keys (set in a preset YAML or as key=value):\n" + help_text()
    for name, command in COMMANDS.items():
        s = sub.add_parser(name, help=command.help, description=command.help, epilog=keys if command.configs else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if command.configs:
            s.add_argument("--exp", nargs="+", default=[], metavar="NAME", help="experiment(s): a preset name "
                           "(kit/configs/NAME.yaml, or configs/NAME.yaml here) or a YAML path")
            s.add_argument("--config", nargs="+", default=[], metavar="FILE", help="config file(s) (YAML)")
            s.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, applied to every experiment")
        _options(name, s)
    return p


def _options(name: str, s: argparse.ArgumentParser) -> None:
    """The options of one command beyond its configs."""
    if name == "demo-data":
        s.add_argument("--out", default="data/demo", help="where to write the demo data (default data/demo)")
        s.add_argument("--clean", action="store_true", help="remove the demo data, its folds, experiments, submissions "
                       "and leaderboard rows; nothing else (make clean)")
    if name in ("train", "run"):
        s.add_argument("--fold", type=_fold, action="append",
                       help="train only this fold (repeatable)" + ("; auto: this job-array task's (experiment, fold), "
                                                                  "from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX"
                                                                  if name == "train" else ""))
        s.add_argument("--shard", default="", metavar="I/N",
                       help="train only folds k with k %% N == I (without it, parallel processes share the folds "
                            "through lock files: make train GPUS=...)")
    if name == "jobs":
        s.add_argument("--cluster", default="auto", choices=["auto", "slurm", "local", "debug"],
                       help="auto: SLURM where sbatch is found, else local processes")
        s.add_argument("--parallel", type=int, default=0, help="at most this many tasks at once (default: SLURM, "
                       "all; locally, one per GPU, or one at a time on a CPU)")
        s.add_argument("--timeout-min", type=int, default=24 * 60, help="each task's time limit; a task that reaches "
                       "it is requeued and resumes from last.pt")
        s.add_argument("--gpus", type=int, default=-1, help="GPUs per task (default: one on SLURM; locally one where "
                       "the machine has GPUs, else none); 0: CPU tasks")
        s.add_argument("--cpus", type=int, default=8, help="SLURM: CPU cores per task (data loading; default 8)")
        s.add_argument("--mem-gb", type=int, default=32, help="SLURM: memory per task in GB (default 32)")
        s.add_argument("--partition", default="", help="SLURM partition")
    if name in ("predict", "run"):
        s.add_argument("--ensemble", action="store_true", help="also ensemble all the named experiments into one submission")
    if name == "predict":
        s.add_argument("--bundle", default="", metavar="DIR",
                       help="predict from a bundle (kit export) instead of --exp: no folds, training images or "
                            "OOF files needed; also writes <submissions_dir>/submission.csv")
    if name == "blend":
        s.add_argument("--steps", type=int, default=50, help="greedy selection steps (weights in 1/steps)")
    if name == "jobs":
        s.add_argument("--sweep", action="store_true", help="kit sweep's trials of --exp as the array, a task each "
                       "(--trials, --space, --storage, --screen as kit sweep takes them), then its preset")
    if name in ("sweep", "jobs"):
        s.add_argument("--trials", type=int, default=None, help="trials this process runs (default 20)" if name ==
                       "sweep" else "with --sweep: trials, one task each (default 20)")
        s.add_argument("--space", default="", metavar="FILE",
                       help="the search space (default configs/<exp>.sweep.yaml)")
        s.add_argument("--storage", default="", metavar="URL", help="an Optuna storage URL shared by several machines "
                       "(default: a journal file, <work_dir>/<exp>.sweep.journal)")
        s.add_argument("--screen", action="store_true", help="rank the trials on their first fold alone, then train "
                       "the best of them and the experiment itself on every fold (about n_folds times cheaper a trial)")
    if name == "pseudo":
        s.add_argument("--from", dest="source", required=True, metavar="EXP", help="source experiment (name or YAML)")
        s.add_argument("--threshold", type=float, default=0.9, help="keep labels with at least this probability")
        s.add_argument("--name", required=True, help="the new experiment's name")
    if name == "notebook":
        s.add_argument("--user", default="", help="the Kaggle user owning the dataset and kernel (default: the "
                       "credentials' user)")
        s.add_argument("--gpu", action="store_true", help="the kernel runs on a GPU (enable_gpu)")
        s.add_argument("--wheels", default="", metavar="DIR", help="take the wheels Kaggle lacks from DIR (offline) "
                       "instead of pip download")
        s.add_argument("--out", default="notebook", metavar="DIR", help="where notebook/<slug>/ goes")
    if name == "export":
        s.add_argument("--out", default="bundle", metavar="DIR", help="bundle folder (default bundle; the zip beside it)")
        how = s.add_mutually_exclusive_group()
        how.add_argument("--stack", action="store_true", help="carry `kit stack` of the experiments (its learner and "
                         "the test file's columns it reads) instead of their average")
        how.add_argument("--blend", action="store_true", help="carry `kit blend`'s weights of the experiments (fitted "
                         "on their out-of-fold rows) instead of their average")
        s.add_argument("--steps", type=int, default=None, help="with --blend: greedy selection steps (default: those "
                       "of the experiments' newest kit blend, else 50)")
    if name in ("notebook-push", "notebook-status"):
        s.add_argument("--out", default="notebook", metavar="DIR", help="where kit notebook wrote notebook/<slug>/")
    if name in ("leaderboard", "submit", "download", "notebook-push", "notebook-status"):
        s.add_argument("--comp", default=os.environ.get("COMP", ""), help="Kaggle competition slug")
    elif name not in ("demo-data",):
        s.add_argument("--comp", default=os.environ.get("COMP", ""), help="Kaggle competition slug: data= defaults to "
                       "its download, data/<slug>")
    if name == "submit":
        s.add_argument("--notebook", default="notebook", metavar="DIR", help="where kit notebook wrote <slug>/: a "
                       "pushed kernel (pushed.json) is submitted as its version, a code competition's submission")
        s.add_argument("--file", default="", help="submission CSV (default: the best-CV row of --exp in leaderboard.csv)")


def _configs(args, parser) -> list:
    from kit.config import PRESETS, default, find_preset, load_config, output_dir, parse_overrides
    from kit.experiment import Experiment

    # --exp/--config take several names, so they also swallow the key=value items after them (argparse's
    # parse_intermixed_args does not stop a nargs="+" option at them either)
    swallowed = [a for a in args.config + args.exp if "=" in a]
    overrides = parse_overrides(swallowed + args.overrides)
    comp = getattr(args, "comp", "")
    if comp and "data" not in overrides:  # COMP carries the whole flow: its download is data/<slug>
        overrides["data"] = f"data/{comp}"
    work_dir = overrides.get("work_dir") or default("work_dir")
    if work_dir == "auto":
        work_dir = output_dir("folds", overrides.get("data") or default("data"))
    find = lambda name: find_preset(name, Experiment.at(work_dir, name).config)  # noqa: E731
    paths = [Path(c) for c in args.config if "=" not in c]
    paths += [find(e) for e in args.exp if "=" not in e]
    if getattr(args, "source", ""):  # pseudo --from EXP
        paths.append(find(args.source))
    if not paths:
        paths = [PRESETS / f"{name}.yaml" for name in default_experiments(overrides.get("data") or default("data"))]
    cfgs = [load_config(p, overrides) for p in paths]
    names = [c.name for c in cfgs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two experiments named {', '.join(twice)} in one command (--exp {' '.join(args.exp)}"
                         f"{' with name=' + str(overrides['name']) if 'name' in overrides else ''}); each needs "
                         "its own name: name= applies to every --exp, so give one at a time")
    return cfgs


DEMO_PAIR, OWN_DATA = ("demo", "demo_baseline"), ("quick",)


def default_experiments(data: str) -> tuple[str, ...]:
    """What every entry point (`make`, `kit <command>`) runs without --exp, said in one line: the demo's two
    experiments on the demo data, the quick preset on any other."""
    from kit.config import default
    if Path(data).resolve() == Path(default("data")).resolve():
        logging.getLogger("kit").info("no --exp: the demo's experiments (%s) on the demo data", " ".join(DEMO_PAIR))
        return DEMO_PAIR
    logging.getLogger("kit").info(
        "no --exp: the quick preset on data=%s (kit/configs/quick.yaml: a small model at 64 px, the whole run in at "
        "most 30 minutes on a CPU); --exp NAME chooses another (docs/TRAINING.md)", data)
    return OWN_DATA


def _fold(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a fold number, or auto") from None


def _shard(text: str, parser) -> tuple[int, int] | None:
    if not text:
        return None
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        parser.error(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(i), int(n)


def _run(args, parser) -> None:
    """Check the arguments, resolve the configs, check the output folders, then run the command."""
    from kit.config import parse_overrides
    from kit.io import check_writable
    command = COMMANDS[args.command]
    if getattr(args, "bundle", ""):
        if args.exp or args.config:
            parser.error("--bundle predicts what the bundle holds; drop --exp/--config")
        args.overrides = parse_overrides(args.overrides)  # checked against the bundle's keys there
    if args.command in ("train", "run"):
        args.shard = _shard(args.shard, parser)
        if "auto" in (args.fold or []) and (args.fold != ["auto"] or args.shard or args.command == "run"):
            parser.error("--fold auto takes the one fold of a job-array task: give it alone, to train")
    if args.command == "export" and args.steps is not None and not args.blend:
        parser.error("--steps goes with --blend (the steps of a blend's weights)")
    if args.command in ("blend", "export") and args.steps is not None and args.steps < 1:
        parser.error(f"--steps {args.steps}: must be >= 1")
    if args.command == "jobs" and not args.sweep:
        given = [o for o, v in (("--trials", args.trials is not None), ("--space", args.space),
                                ("--storage", args.storage), ("--screen", args.screen)) if v]
        if given:
            parser.error(f"{' '.join(given)}: only with --sweep (kit jobs --sweep: a sweep's trials as the array)")
    if args.command in ("sweep", "jobs") and args.trials is not None and args.trials < 1:
        parser.error(f"--trials {args.trials}: must be >= 1")
    if args.command == "sweep" or getattr(args, "sweep", False):
        args.trials = 20 if args.trials is None else args.trials
    args.cfgs = _configs(args, parser) if command.configs and not getattr(args, "bundle", "") else []
    for cfg in args.cfgs:
        for key in command.outputs:
            check_writable(getattr(cfg, key), key)
    command.call(args)


def console() -> int:
    """The `kit` command and `python -m kit`: restart once under the chosen allocator (kit/allocator.py), then run.
    From Python (a notebook) call `main([...])`, which never replaces the calling process."""
    from kit.allocator import restart_under_allocator
    try:
        restart_under_allocator()
    except ValueError as e:
        print(f"kit: error: {e}", file=sys.stderr)
        return 2
    return main()


def main(argv: list[str] | None = None) -> int:
    """Run one command; argv defaults to sys.argv[1:]. Returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on bad arguments (and --help): a caller in Python gets the status
        return e.code if isinstance(e.code, int) else 2
    if args.help_config:
        from kit.config import help_text
        print("config keys (set in a preset YAML or as key=value):\n" + help_text())
        return 0
    if not args.command:
        parser.print_help()
        return 2
    logging_setup()
    try:
        _run(args, parser)
    except SystemExit as e:  # parser.error on arguments that do not go together: the same status as argparse's own
        return e.code if isinstance(e.code, int) else 2
    except ValueError as e:
        if os.environ.get("KIT_DEBUG"):
            raise
        print(f"kit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kit {args.command}: interrupted; run it again to resume", file=sys.stderr)
        return 130
    return 0
