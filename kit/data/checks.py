"""Every image of a list decoded once to learn which cannot be used: `make folds` (training and test images) and
`predict` (test images) refuse or skip them by it.

    bad = find_bad_images(Path("data/comp"), ["train/a.jpg", "test-image.hdf5/ISIC_0015657"], max_pixels)
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit import hdf5
from kit.data.shapes import summarize
from kit.io import check_image


def find_bad_images(root: Path, paths: list[str], max_pixels: int, workers: int = 8) -> dict[str, str]:
    """Decode every image (threads: PIL releases the GIL) and return {path: why it can't be used} for each failure.
    A dict, not 'path (reason)' strings: PIL's reasons hold parentheses of their own ("image file is truncated
    (5 bytes not processed)"), so such a string cannot be split back into its path. Images inside HDF5 files are
    read in this thread (the HDF5 library takes one reader at a time) and decoded in the others."""
    def read(p: str) -> io.BytesIO | str:
        try:
            return io.BytesIO(hdf5.read(root / p))
        except (OSError, ValueError, TypeError) as e:
            return str(e).splitlines()[0] if str(e) else type(e).__name__

    def check(source) -> str | None:
        return source if isinstance(source, str) else check_image(source, max_pixels)

    reasons = {}
    with ThreadPoolExecutor(workers) as pool:
        for i in range(0, len(paths), 1024):  # 1024 images' bytes in memory at a time, not a whole HDF5 file's
            part = paths[i:i + 1024]
            sources = [read(p) if hdf5.member(root / p) is not None else root / p for p in part]
            reasons.update(zip(part, pool.map(check, sources)))
    return {p: reasons[p] for p in paths if reasons[p] is not None}


def describe_bad(bad: dict[str, str]) -> str:
    """'path (reason); ...' for a one-line message."""
    return summarize([f"{p} ({r})" for p, r in bad.items()])
