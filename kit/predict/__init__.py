"""The predict floor: each fold's best weights -> TTA logits -> the fold ensemble -> a submission.

    predict.run(cfgs)        the `predict` command: every fold's TTA logits (cached), the ensemble, the file
    predict.predict_experiment, ensemble.choose
                             where tta=auto is chosen (on the out-of-fold images, nested per fold)
    inference                logits of a checkpoint through its TTA (no training code)
    ensemble                 fold and experiment ensembles, and their CV
    blend.run, bundle.export, bundle.predict_bundle
                             weighted blends; the offline bundle that predicts alone

May import the core (kit/experiment.py: the experiment folder), kit.data and kit.board; never kit.train
(inference stands on kit/engine.py, never on training) nor kit.jobs. Stacking (image and tabular models)
will be a module here, beside blend.
"""
