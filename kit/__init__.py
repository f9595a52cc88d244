"""kit: stratified folds -> per-fold training -> TTA + fold ensemble -> submission CSV + leaderboard."""
import os

__version__ = "0.1.0"
# albumentations asks PyPI for a newer version when imported; offline (a Kaggle notebook) that is a long wait.
# Set here, the one place every kit module passes through before albumentations loads.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
