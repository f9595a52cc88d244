"""How much training is left: the end of every epoch's log line ("2 fold(s) to go, at most 3 min 10 s left").

    python -c "from kit.progress import duration; print(duration(3725))"    # 1 h 02 min
"""
from __future__ import annotations

import time


class Progress:
    """Epochs left over every fold this process trains.

    An upper bound (early stopping ends stages sooner), from this run's own seconds per epoch; it
    is a log line, so it shows under `make`, CI or `tee` as on a terminal.
    """

    def __init__(self, left: dict):
        self.left, self.done, self.t0 = dict(left), 0, time.perf_counter()  # left: (exp, fold) -> epochs

    def update(self, key: tuple, left: int, ran: bool = True) -> None:
        self.left[key] = left
        self.done += ran

    def plan(self, name: str, epochs: int) -> None:
        """Experiment `name` trains `epochs` a fold (min_fold_steps's or time_budget's, decided before its first fold):
        every fold of it still to go counts that many. Called between folds, when none of this process is midway."""
        for key, left in self.left.items():
            if key[0] == name and left:
                self.left[key] = epochs

    def __str__(self) -> str:
        if not self.done:
            return ""
        seconds = (time.perf_counter() - self.t0) / self.done * sum(self.left.values())
        folds = sum(1 for v in self.left.values() if v)
        return f"; {folds} fold(s) to go, at most {duration(seconds)} left"


def duration(seconds: float) -> str:
    """As a person would say it: 59 s, 1 min 01 s, 1 h 02 min."""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"
