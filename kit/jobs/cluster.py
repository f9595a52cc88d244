"""Beyond one machine: every (experiment, fold) pair as one task of a scheduler's job array.

    python -m kit folds --exp A B data=...                       # once, before the array
    sbatch --array=0-9 cluster/slurm.sbatch                       # 2 experiments x 5 folds: one task each
    python -m kit train --exp A B --fold auto data=...           # what each task runs: its pair from its index
    python -m kit jobs --exp A B data=... --cluster slurm        # the same array through submitit, then predict
    python -m kit jobs --exp A --sweep --trials 20 data=...      # kit sweep's trials as the array (Array, SweepTask)

A task's index comes from its scheduler (INDEX_VARS: SLURM_ARRAY_TASK_ID as it is, so that resubmitting
the failed tasks alone, `sbatch --array=3,7`, trains pairs 3 and 7; Kubernetes Indexed Jobs' JOB_COMPLETION_INDEX, AWS Batch's
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
import time
from pathlib import Path

from kit.config import Config

log = logging.getLogger(__name__)

INDEX_VARS = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "KIT_TASK_INDEX")


def task_index(env=os.environ) -> tuple[int, str]:
    """(this task's index from 0, the variable it came from); a one-line error outside an array."""
    for var in INDEX_VARS:
        if env.get(var, "") != "":
            value = env[var]
            if not value.isdigit():
                raise ValueError(f"--fold auto: {var}={value!r} is not a task index")
            return int(value), var  # the index itself: `sbatch --array=3,7` trains pairs 3 and 7, whatever the subset
    raise ValueError(f"--fold auto takes the fold from a job array's index, and none of {', '.join(INDEX_VARS)} is "
                     "set; give --fold K, or set KIT_TASK_INDEX")


def array_index(env=os.environ) -> int | None:
    """This task's index where a scheduler's array (or KIT_TASK_INDEX) gives one, else None."""
    try:
        return task_index(env)[0]
    except ValueError:
        return None


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
    from kit.data import folds
    from kit.train import loop as train
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
        from kit.logs import logging_setup
        logging_setup()
        train_task(self.cfgs, index)
        return index

    def checkpoint(self, index: int):
        import submitit
        return submitit.helpers.DelayedSubmission(self, index)


def _submitit():
    try:
        import submitit
    except ModuleNotFoundError:
        raise ValueError("kit jobs needs submitit: pip install 'kit[cluster]' (in a checkout of the kit, make "
                         "install)") from None
    return submitit


def local_gpus() -> list[int]:
    """The GPUs this machine's tasks can use: those CUDA sees (under CUDA_VISIBLE_DEVICES, their indices there)."""
    import torch
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _slots(cluster: str, gpus: int, parallel: int) -> tuple[int, list[int | None]]:
    """(GPUs each task asks for, the local run's slots: a GPU each, or None for a CPU task).

    gpus=-1 (auto): on SLURM one GPU a task (a fold each); locally one a task where this machine has GPUs, else
    none. Locally the slots are what runs at once: one task per GPU (or per asked group of GPUs), or on a CPU
    one task at a time (a training run uses every core), --parallel capping either.
    """
    if cluster != "local":
        return (1 if gpus < 0 else gpus), []
    visible = local_gpus()
    each = (1 if visible else 0) if gpus < 0 else gpus
    if each > len(visible):
        raise ValueError(f"--gpus {each}: this machine has {len(visible)} GPU(s) CUDA can use; give --gpus "
                         f"{len(visible) or 0} (or leave it out)")
    slots = [visible[i:i + each] for i in range(0, len(visible) - each + 1, each)] if each else [None]
    if not each and parallel > 1:
        slots = [None] * parallel
    return each, slots[:parallel] if parallel else slots


def _run_local(executor, task, indices: list[int], slots: list, poll_s: float = 0.5) -> list:
    """Local jobs, at most one per slot at a time, each seeing its slot's GPUs alone (CUDA_VISIBLE_DEVICES): submitit's
    local executor would start them all at once, on the same GPUs. Returns the jobs in index order."""
    pending, running, jobs = list(indices), {}, {}
    while pending or running:
        for slot in [s for s in range(len(slots)) if s not in running]:
            if not pending:
                break
            i, gpus = pending.pop(0), slots[slot]
            executor.update_parameters(gpus_per_node=len(gpus or ()), visible_gpus=tuple(gpus or ()))
            jobs[i] = running[slot] = executor.submit(task, i)
        for slot, job in list(running.items()):
            if job.done():
                del running[slot]
        time.sleep(poll_s if running else 0)
    return [jobs[i] for i in indices]


class Array:
    """The job arrays of one `kit jobs` run through submitit: on SLURM each task asks for `gpus` GPUs, `cpus` cores
    and `mem_gb` GB (cluster/slurm.sbatch's figures, not the partition's defaults, which are often one core); locally
    one task per free slot (_slots). Logs in <work_dir>/.jobs."""

    def __init__(self, work_dir: str, cluster: str, parallel: int, timeout_min: int, gpus: int, partition: str,
                 cpus: int = 8, mem_gb: int = 32):
        submitit = _submitit()
        self.parallel = parallel
        self.logs = Path(work_dir) / ".jobs"
        self.executor = submitit.AutoExecutor(folder=self.logs / "%j", cluster=None if cluster == "auto" else cluster)
        self.cluster = self.executor.cluster
        self.each, self.slots = _slots(self.cluster, gpus, parallel)
        if self.cluster == "local":
            self.executor = submitit.LocalExecutor(folder=self.logs / "%j")  # AutoExecutor does not pass visible_gpus
            self.executor.update_parameters(timeout_min=timeout_min)
            self.where = f"local, {len(self.slots)} at a time" + (f", {self.each} GPU(s) each" if self.each
                                                                  else " on the CPU")
        else:
            self.executor.update_parameters(timeout_min=timeout_min, gpus_per_node=self.each, cpus_per_task=cpus,
                                            mem_gb=mem_gb,
                                            **({"slurm_partition": partition}
                                               if partition and self.cluster == "slurm" else {}))
            self.where = f"{self.cluster}, {self.each} GPU(s), {cpus} CPUs and {mem_gb} GB each"

    def run(self, task, tasks: int, name: str) -> None:
        """Tasks 0..tasks-1 of `task`, waited for; a failed task is one line naming it and its logs."""
        if self.cluster == "local":
            jobs = _run_local(self.executor, task, list(range(tasks)), self.slots)
        else:
            self.executor.update_parameters(name=name, slurm_array_parallelism=self.parallel or tasks)
            jobs = self.executor.map_array(task, list(range(tasks)))
        log.info("jobs: %d %s task(s) (%s), logs in %s", tasks, name, self.where, self.logs)
        failed = []
        for i, job in enumerate(jobs):
            try:
                job.result()
            except Exception as e:  # noqa: BLE001 - submitit re-raises the task's error, whatever it was
                first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                failed.append(f"task {i} ({job.job_id}: {first[:160]})")
        if failed:
            raise ValueError(f"jobs: {len(failed)} of {tasks} {name} task(s) failed: {'; '.join(failed[:3])}; logs in "
                             f"{self.logs}; run it again and finished work is skipped, the rest resumes")

    def train(self, cfgs: list[Config]) -> None:
        """Every (experiment, fold) pair of `cfgs` as one task."""
        from kit.data import folds
        self.run(TrainTask(cfgs), len(pairs(cfgs, folds.load(cfgs[0]).n_folds)), "kit-train")


def submit_jobs(cfgs: list[Config], cluster: str, parallel: int, timeout_min: int, gpus: int,
                partition: str, cpus: int = 8, mem_gb: int = 32) -> list[Path]:
    """`kit jobs`: folds here, a task for every (experiment, fold) through submitit, wait, then predict."""
    from kit.data import folds
    from kit.predict import predict
    array = Array(cfgs[0].work_dir, cluster, parallel, timeout_min, gpus, partition, cpus, mem_gb)
    folds.run(cfgs)
    array.train(cfgs)
    return predict.run(cfgs)


def submit_sweep(base: Config, trials: int, space_path: Path, storage: str, screen: bool, cluster: str,
                 parallel: int, timeout_min: int, gpus: int, partition: str, cpus: int = 8, mem_gb: int = 32) -> Path:
    """`kit jobs --sweep`: the study opened here (its folds, the experiment itself queued as trial 0), a task per
    trial through submitit, wait, then the best as configs/<name>_best.yaml; screened, the best trial and the
    experiment then train every fold as a second array. The study's storage must be one every task reaches (the
    default journal file in work_dir, on the cluster's shared disk, or --storage URL)."""
    from kit.jobs import sweep
    array = Array(base.work_dir, cluster, parallel, timeout_min, gpus, partition, cpus, mem_gb)
    study, _, made, own = sweep.open_study(base, space_path, storage)
    array.run(sweep.SweepTask(base, space_path, storage, screen), trials, "kit-sweep")
    return sweep.finish(base, study, own, made.metric, screen, train=array.train)
