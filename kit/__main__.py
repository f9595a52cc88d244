"""`python -m kit ...`: see kit/jobs/cli.py."""
import sys

from kit.jobs.cli import console

sys.exit(console())
