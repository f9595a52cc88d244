"""Benchmarks: `python -m bench [--size cpu|gpu] [--only NAME ...]` (make bench). See docs/BENCHMARKS.md."""
