"""The doors: one function per `kit` command, each importing the stage that does the work.

    python -m kit folds --exp demo      # -> commands.folds(args) -> kit.data.folds.run(cfgs)

The imports sit inside the functions so that `kit --help` and a command's start-up load only what
that command needs (torch takes seconds); each names its module plainly, so the import graph and a
grep both show where a command goes. `args.cfgs` holds the resolved configs (kit/jobs/cli.py).
"""
from __future__ import annotations

from pathlib import Path


def demo_data(a):
    if a.clean:
        from kit.jobs import clean
        return clean.demo(a.out)
    from kit.data import demo
    return demo.run(a.out)


def folds(a):
    from kit.data import folds
    return folds.run(a.cfgs)


def cache(a):
    from kit.data import cache
    return cache.run(a.cfgs)


def train(a):
    if a.fold == ["auto"]:
        from kit.jobs import cluster
        return cluster.train_task(a.cfgs)
    from kit.train import loop
    return loop.run(a.cfgs, a.fold, a.shard)


def jobs(a):
    from kit.jobs import cluster
    if a.sweep:
        cfg = _one_to_sweep(a)
        return cluster.submit_sweep(cfg, a.trials, _space(a, cfg), a.storage, a.screen, a.cluster, a.parallel,
                                    a.timeout_min, a.gpus, a.partition, a.cpus, a.mem_gb)
    return cluster.submit_jobs(a.cfgs, a.cluster, a.parallel, a.timeout_min, a.gpus, a.partition, a.cpus, a.mem_gb)


def predict(a):
    if a.bundle:
        from kit.predict import bundle
        return bundle.predict_bundle(a.bundle, a.overrides)
    from kit.predict import predict
    return _and_report(a.cfgs, predict.run(a.cfgs, a.ensemble))


def run(a):
    from kit.jobs import pipeline
    return _and_report(a.cfgs, pipeline.run(a.cfgs, a.fold, a.shard, a.ensemble))


def blend(a):
    from kit.predict import blend
    return blend.run(a.cfgs, a.steps)


def stack(a):
    from kit.predict import stack
    return stack.run(a.cfgs)


def _one_to_sweep(a):
    if len(a.cfgs) != 1:
        raise ValueError("sweep: one experiment to search around (--exp A)")
    return a.cfgs[0]


def _space(a, cfg) -> Path:
    return Path(a.space or f"configs/{cfg.name}.sweep.yaml")


def sweep(a):
    from kit.jobs import cluster, sweep
    cfg = _one_to_sweep(a)
    return sweep.run(cfg, a.trials, _space(a, cfg), a.storage, a.screen, task=cluster.array_index() or 0)


def pseudo(a):
    from kit.jobs import pipeline
    return pipeline.pseudo_label(a.cfgs[0], a.threshold, a.name)


def export(a):
    from kit.predict import bundle
    return bundle.export(a.cfgs, a.out, "stack" if a.stack else "blend" if a.blend else "average", a.steps)


def leaderboard(a):
    from kit.board import leaderboard
    return _and_report(a.cfgs, leaderboard.run(a.cfgs, a.comp))


def submit(a):
    from kit.board import upload
    asked = bool(a.exp or a.config)  # EXP= named: a kernel pushed for other experiments is refused
    return _and_report(a.cfgs, upload.submit(a.cfgs, a.comp, a.file, a.notebook, asked))


def download(a):
    from kit.board import kaggle
    return kaggle.download(a.comp)


def notebook(a):
    from kit.jobs import notebook
    return notebook.write(a.cfgs, a.comp, a.user, a.gpu, a.wheels, a.out)


def notebook_push(a):
    from kit.board import kaggle
    return kaggle.push_notebook(Path(a.out) / a.comp)


def notebook_status(a):
    from kit.board import kaggle
    return kaggle.notebook_status(Path(a.out) / a.comp)


def report(a):
    from kit.board import report
    return report.write(a.cfgs[0])


def _and_report(cfgs, result):
    """predict, run, leaderboard and submit end by rewriting the report page (cheap: the figures exist); a page
    that cannot be written costs a warning, never the command's result."""
    import logging

    from kit.board import report
    try:
        report.write(cfgs[0])
    except (OSError, ValueError) as e:
        logging.getLogger(__name__).warning("report page not written (%s); make report tries again", e)
    return result
