"""`python -m kit ...`: see kit/cli.py."""
import sys

from kit.cli import console

sys.exit(console())
