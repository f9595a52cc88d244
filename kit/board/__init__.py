"""The board floor: a result -> the submission file, its manifest and its leaderboard row; Kaggle.

    submission.write(result)      the submission CSV (formats.table: the competition's shape) and manifest
    leaderboard                   owns submissions/<data>/leaderboard.csv (record, show, sync, submit)
    kaggle                        the kaggle CLI: download, submit, scores (hands the leaderboard a table)
    calibrate                     thresholds and temperature: what turns probabilities into the file's values
    result.Result                 what the predict floor hands over: test, out-of-fold and holdout scores

May import the core, kit.data and kit.train (the experiment folder); never kit.predict or kit.jobs:
the predict floor writes through this one.
"""
