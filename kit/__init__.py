"""kit: stratified folds -> per-fold training -> TTA + fold ensemble -> submission CSV + leaderboard."""
__version__ = "0.1.0"
