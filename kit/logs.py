"""Logging, configured once by what starts a process: the command line (kit/jobs/cli.py) or a job-array task
(kit/jobs/cluster.py). Every other module only asks `logging.getLogger(__name__)`.

    from kit.logs import logging_setup; logging_setup()     # 12:00:01 I what happened
"""
from __future__ import annotations

import logging
import os


def logging_setup() -> None:
    """Under torchrun, rank 0 tells the story; the other ranks speak only of problems."""
    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(message)s", datefmt="%H:%M:%S")
