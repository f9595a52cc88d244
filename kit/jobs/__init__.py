"""The jobs floor: how commands are started: the command line, pipelines, job arrays, the demo's clean-up.

    cli.main(argv)           `kit <command>` and `python -m kit`; commands: one door per command
    pipeline.run             folds, train and predict in one process (`kit run`, what `make` runs)
    cluster                  job arrays: a task's (experiment, fold) from its index; `kit jobs` via submitit
    clean.demo               `make clean`: what the demo made, nothing else
    notebook                 `make notebook`: a code competition's dataset and kernel
    (a sweep, Optuna's, will be a module here beside cluster)

May import every floor; none imports it.
"""
