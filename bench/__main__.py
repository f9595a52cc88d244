"""Run the benchmarks and record them: python -m bench [--size cpu|gpu] [--only NAME ...]

Each prints a table and merges its rows into bench/results/<machine>-<date>.json.
CPU size finishes in minutes on 2 cores; GPU size is the recipe's 448 px.
"""
import argparse
import importlib

from bench.common import record, table

NAMES = ["model_ceiling", "data_pipeline", "train_e2e", "inference", "robustness", "accuracy", "formats", "defaults",
         "discovery", "report", "members", "stack", "sweep"]


def main() -> None:
    from kit.allocator import restart_under_allocator
    restart_under_allocator()  # the benchmarks run under the kit's own allocator
    import torch
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=["cpu", "gpu"], default="gpu" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", nargs="+", choices=NAMES, default=NAMES[:4],
                   help="default: the speed benchmarks; robustness, accuracy, formats and defaults (minutes each) run when named")
    args = p.parse_args()
    from kit.allocator import current
    print(f"allocator: {current()}; torch threads {torch.get_num_threads()}")
    for name in args.only:
        rows = importlib.import_module(f"bench.{name}").run(args.size)
        print(table(f"\n== {name} ({args.size} size)", rows))
        print(f"-> {record(name, rows)}")


main()
