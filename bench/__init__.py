"""Benchmarks: `python -m bench [--size cpu|gpu] [--only NAME ...]` (make bench). See docs/BENCHMARKS.md."""
import kit  # noqa: F401 - its __init__ keeps albumentations from asking PyPI, before any benchmark imports it
