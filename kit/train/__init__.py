"""The training floor: folds.csv -> each fold's checkpoints and out-of-fold logits -> cv.json.

    loop.run(cfgs, only, shard)  the `train` command: every fold in two stages (FoldRun), a fold a claim
    lr_find, flip, budget        the decisions made once before the first fold (stage1_lr=auto, hflip=auto,
                                 min_fold_steps and time_budget), each probing fold 0
    stopping, alarm              early stopping, and the warning when nothing is being learnt
    pseudo                       the test images a pseudo-label experiment also trains on

The experiment folder's owner is the core's kit/experiment.py, which inference reads too.
May import the core and kit.data; never kit.board, kit.predict or kit.jobs.
"""
