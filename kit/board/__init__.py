"""The board floor: a result -> the submission file, its manifest and its leaderboard row; Kaggle.

    submission.write(result)      the submission CSV (formats.table: the competition's shape) and manifest
    leaderboard                   owns submissions/<data>/leaderboard.csv (record, show, sync, pick)
    upload.submit                 `make submit`: the picked file (or a pushed kernel) to Kaggle, its ref recorded
    report.write                  `make report`: one self-contained page of the data set (figures: kit/figures.py)
    kaggle, transfer              the kaggle CLI: download, submit, scores, notebooks; a transfer's stall limit
    calibrate                     thresholds and temperature: what turns probabilities into the file's values
    result.Result                 what the predict floor hands over: test, out-of-fold and holdout scores

May import the core (kit/experiment.py: the experiment folder) and kit.data; never kit.train,
kit.predict or kit.jobs: the predict floor writes through this one.
"""
