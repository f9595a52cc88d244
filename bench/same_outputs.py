"""Does a change keep the demo's results? `make` in clean clones of two commits, outputs compared byte for byte.

    python -m bench.same_outputs                    # HEAD~1 against HEAD
    python -m bench.same_outputs --base 8f7e8b5     # any two commits: --base REV --head REV

Each commit is cloned into a temporary folder (the clones share this checkout's .venv, which must
be built) and runs `make` there, as a new user would. Compared: every submission CSV (names and
bytes), folds.csv, each experiment's cv.json, per_class.csv and confused_pairs.csv, and
leaderboard.csv without its created_at column (the clock). Exit status 1 on any difference.
For refactors, which must change nothing a user sees; on the CPU the demo is bit-reproducible.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def make_demo(rev: str, where: Path) -> Path:
    """A clone of `rev` in `where`, with `make` run in it; returns the clone."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(where)], check=True)
    subprocess.run(["git", "-C", str(where), "checkout", "-q", rev], check=True)
    (where / ".venv").symlink_to(REPO / ".venv")
    # -o: the shared venv counts as built, whatever the clone's file times say
    subprocess.run(["make", "-o", ".venv/.installed"], cwd=where, check=True, stdout=subprocess.DEVNULL)
    return where


def outputs(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every compared output."""
    # the demo's outputs: folds/ and submissions/ before each data set had its own folder, folds/demo/ and
    # submissions/demo/ since; compared under one name, so that a commit of either kind compares with the other
    subs = root / "submissions" / "demo" if (root / "submissions" / "demo").is_dir() else root / "submissions"
    work = root / "folds" / "demo" if (root / "folds" / "demo" / "folds.csv").is_file() else root / "folds"
    files = [(f, f"submissions/{f.name}") for f in sorted(subs.glob("*.csv")) if f.name != "leaderboard.csv"]
    files += [(work / "folds.csv", "folds/folds.csv")]
    for name in ("cv.json", "per_class.csv", "confused_pairs.csv"):
        files += [(f, f"folds/{f.parent.name}/{name}") for f in sorted(work.glob(f"*/{name}"))]
    out = {label: f.read_bytes() for f, label in files}
    board = pd.read_csv(subs / "leaderboard.csv", dtype=str, keep_default_na=False)
    out["submissions/leaderboard.csv (without created_at)"] = board.drop(columns="created_at").to_csv(index=False).encode()
    return out


def compare(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return ([f"only in base: {k}" for k in sorted(set(a) - set(b))] + [f"only in head: {k}" for k in sorted(set(b) - set(a))]
            + [f"differs: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="HEAD~1")
    p.add_argument("--head", default="HEAD")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kit-same-") as tmp:
        base = outputs(make_demo(args.base, Path(tmp) / "base"))
        head = outputs(make_demo(args.head, Path(tmp) / "head"))
    problems = compare(base, head)
    for line in problems:
        print(line)
    print(f"{len(base)} outputs compared: {'the same' if not problems else f'{len(problems)} differ'} "
          f"({args.base} -> {args.head})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
