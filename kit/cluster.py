"""Beyond one machine: every (experiment, fold) pair as one task of a scheduler's job array.

    python -m kit folds --exp A B data=...                       # once, before the array
    sbatch --array=0-9 cluster/slurm.sbatch                       # 2 experiments x 5 folds: one task each
    python -m kit train --exp A B --fold auto data=...           # what each task runs: its pair from its index
    python -m kit submit-jobs --exp A B data=... --cluster slurm # the same array through submitit, then predict

A task's index comes from its scheduler (INDEX_VARS: SLURM_ARRAY_TASK_ID counted from
SLURM_ARRAY_TASK_MIN, Kubernetes Indexed Jobs' JOB_COMPLETION_INDEX, AWS Batch's
AWS_BATCH_JOB_ARRAY_INDEX, or KIT_TASK_INDEX set by hand). Index i is pair i in this order: every
fold of the first --exp, then every fold of the next, i = experiment * n_folds + fold; an array of
len(exps) x n_folds tasks trains each fold once, and the fold locks stay as a guard. A task that is
preempted or requeued resumes its fold from last.pt; a fold trained on another node is the same files
as a local one (its manifest row records the host), so predict needs only the shared work_dir.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from kit.config import Config

log = logging.getLogger(__name__)

INDEX_VARS = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "KIT_TASK_INDEX")


def task_index(env=os.environ) -> tuple[int, str]:
    """(this task's index from 0, the variable it came from); a one-line error outside an array."""
    for var in INDEX_VARS:
        if env.get(var, "") != "":
            value = env[var]
            first = env.get("SLURM_ARRAY_TASK_MIN", "0") if var == "SLURM_ARRAY_TASK_ID" else "0"
            if not (value.isdigit() and first.isdigit()):
                raise ValueError(f"--fold auto: {var}={value!r} is not a task index")
            return int(value) - int(first), var
    raise ValueError(f"--fold auto takes the fold from a job array's index, and none of {', '.join(INDEX_VARS)} is "
                     "set; give --fold K, or set KIT_TASK_INDEX")


def pairs(cfgs: list[Config], n_folds: int) -> list[tuple[Config, int]]:
    """Every (experiment, fold) pair in array order."""
    return [(cfg, k) for cfg in cfgs for k in range(n_folds)]


def pick(cfgs: list[Config], n_folds: int, index: int, source: str = "index") -> tuple[Config, int]:
    """Pair `index` of the array, or a one-line error naming the array it should have been."""
    every = pairs(cfgs, n_folds)
    if not 0 <= index < len(every):
        raise ValueError(f"{source} gives task {index}, but {len(cfgs)} experiment(s) x {n_folds} folds make "
                         f"{len(every)} tasks: submit the array as 0-{len(every) - 1} (e.g. sbatch --array=0-"
                         f"{len(every) - 1})")
    return every[index]


def train_task(cfgs: list[Config], index: int | None = None) -> Path:
    """`kit train --fold auto`: train the pair of this task's index (from the environment unless given)."""
    from kit import folds, train
    source = "the index"
    if index is None:
        index, source = task_index()
    n_folds = folds.load(cfgs[0]).n_folds
    cfg, fold = pick(cfgs, n_folds, index, source)
    log.info("task %d (%s) on %s: %s fold %d", index, source, socket.gethostname(), cfg.name, fold)
    return train.run([cfg], only=[fold])[0]


class TrainTask:
    """One array task for submitit (picklable). Preempted or timed out, submitit requeues it through
    `checkpoint`, and the fold resumes from last.pt."""

    def __init__(self, cfgs: list[Config]):
        self.cfgs = cfgs

    def __call__(self, index: int) -> int:
        from kit.cli import logging_setup
        logging_setup()
        train_task(self.cfgs, index)
        return index

    def checkpoint(self, index: int):
        import submitit
        return submitit.helpers.DelayedSubmission(self, index)


def submit_jobs(cfgs: list[Config], cluster: str, parallel: int, timeout_min: int, gpus: int,
                partition: str) -> list[Path]:
    """`kit submit-jobs`: folds here, an array of every (experiment, fold) through submitit, wait, then predict."""
    import submitit

    from kit import folds, predict
    folds.run(cfgs)
    n_folds = folds.load(cfgs[0]).n_folds
    tasks = len(pairs(cfgs, n_folds))
    logs = Path(cfgs[0].work_dir) / ".jobs"
    executor = submitit.AutoExecutor(folder=logs / "%j", cluster=None if cluster == "auto" else cluster)
    executor.update_parameters(timeout_min=timeout_min, name="kit-train", slurm_array_parallelism=parallel or tasks,
                               **({"gpus_per_node": gpus} if gpus else {}),
                               **({"slurm_partition": partition} if partition and executor.cluster == "slurm" else {}))
    jobs = executor.map_array(TrainTask(cfgs), list(range(tasks)))
    log.info("submit-jobs: %d task(s) on %s (%s), logs in %s", tasks, executor.cluster,
             " ".join(j.job_id for j in jobs[:3]) + (" ..." if tasks > 3 else ""), logs)
    failed = []
    for i, job in enumerate(jobs):
        try:
            job.result()
        except Exception as e:  # noqa: BLE001 - submitit re-raises the task's error, whatever it was
            first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            failed.append(f"task {i} ({job.job_id}: {first[:160]})")
    if failed:
        raise ValueError(f"submit-jobs: {len(failed)} of {tasks} task(s) failed: {'; '.join(failed[:3])}; logs in "
                         f"{logs}; submit again and finished folds are skipped, the others resume")
    return predict.run(cfgs)
