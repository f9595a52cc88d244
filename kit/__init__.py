"""kit: stratified folds -> per-fold training -> TTA + fold ensemble -> submission CSV + leaderboard."""
import os
import warnings

__version__ = "0.1.0"
# albumentations asks PyPI for a newer version when imported; offline (a Kaggle notebook) that is a long wait.
# Set here, the one place every kit module passes through before albumentations loads.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# scikit-learn guesses "regression?" when a validation set has more distinct classes than half its images (100
# classes, 150 images); the kit always scores class labels, so on such data the warning is noise on every epoch.
warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%", category=UserWarning)
