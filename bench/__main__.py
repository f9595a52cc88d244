"""Run the benchmarks and record them: python -m bench [--size cpu|gpu] [--only NAME ...]

Each prints a table and merges its rows into bench/results/<machine>-<date>.json.
CPU size finishes in minutes on 2 cores; GPU size is the recipe's 448 px.
"""
import argparse
import importlib
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from bench.common import record, table  # noqa: E402

NAMES = ["model_ceiling", "data_pipeline", "train_e2e", "inference", "robustness"]


def main() -> None:
    import torch
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=["cpu", "gpu"], default="gpu" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", nargs="+", choices=NAMES, default=NAMES[:4],
                   help="default: the speed benchmarks; robustness (minutes per data set) runs when named")
    args = p.parse_args()
    preload = os.environ.get("LD_PRELOAD", "")
    print(f"allocator: {'tcmalloc' if 'tcmalloc' in preload else 'glibc'}; torch threads {torch.get_num_threads()}")
    for name in args.only:
        rows = importlib.import_module(f"bench.{name}").run(args.size)
        print(table(f"\n== {name} ({args.size} size)", rows))
        print(f"-> {record(name, rows)}")


main()
