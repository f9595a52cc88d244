"""kit: stratified folds -> per-fold training -> TTA + fold ensemble -> submission CSV + leaderboard.

The API users script, stable across the package's layout (tests/test_package.py holds it):

    from kit import main, load_config, find_preset, make_folds, train_folds, write_submissions
    main(["run", "--exp", "demo", "data=data/demo"])        # any `kit` command line; returns its exit status
    cfg = load_config(find_preset("quick"), {"data": "data/my-comp"})
    make_folds([cfg]); train_folds([cfg]); write_submissions([cfg])   # the stages, each skipping what is done

Each name loads its module on first use, so `import kit` stays light (every module of the kit passes
through here). The names are not those of the floors (kit.train, kit.predict are packages).
"""
import importlib
import os
import warnings

__version__ = "0.1.0"
# albumentations asks PyPI for a newer version when imported; offline (a Kaggle notebook) that is a long wait.
# Set here, the one place every kit module passes through before albumentations loads.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# scikit-learn guesses "regression?" when a validation set has more distinct classes than half its images (100
# classes, 150 images); the kit always scores class labels, so on such data the warning is noise on every epoch.
warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%", category=UserWarning)

API = {  # name -> (module, attribute): the one list of what `from kit import ...` offers
    "main": ("kit.jobs.cli", "main"),  # the command line, as a function
    "load_config": ("kit.config", "load_config"),  # (preset path or None, {key: value}) -> Config
    "find_preset": ("kit.config", "find_preset"),  # a preset's name ("quick", "resnest50d_spinalnet") -> its path
    "scan": ("kit.data.layout", "scan"),  # a data folder -> what the kit finds in it (Layout)
    "download": ("kit.board.kaggle", "download"),  # a competition's files into data/<slug>/
    "make_folds": ("kit.data.folds", "run"),  # [cfg] -> folds.csv
    "train_folds": ("kit.train.loop", "run"),  # [cfg] -> every fold trained
    "write_submissions": ("kit.predict.predict", "run"),  # [cfg] -> each experiment's submission file
    "run": ("kit.jobs.pipeline", "run"),  # [cfg] -> folds, train and predict in one call
}
__all__ = sorted(API)


def __getattr__(name: str):
    if name not in API:
        raise AttributeError(f"module 'kit' has no attribute {name!r}")
    module, attr = API[name]
    return getattr(importlib.import_module(module), attr)
