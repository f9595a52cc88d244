"""Images kept as encoded bytes in an HDF5 file, one dataset an image (ISIC 2024's `test-image.hdf5`: isic_id ->
JPEG bytes), read by key where they lie: never unpacked to thousands of files.

    member(Path("data/isic/test-image.hdf5/ISIC_0015657"))    # (the file, the key), or None for a plain path
    read(Path("data/isic/test-image.hdf5/ISIC_0015657"))      # the JPEG's bytes

An image in an HDF5 file is named like a file in a folder, <file>.hdf5/<key>, so that folds.csv, the
layout and every key of a cache hold it as any other image's path. Files are opened once a process
(the loader's workers each open their own: an HDF5 handle does not survive a fork) and read lazily.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

SUFFIXES = (".hdf5", ".h5")


def member(path: str | Path) -> tuple[Path, str] | None:
    """(the HDF5 file, the key) where `path` names a dataset inside an HDF5 file; None for any other path (or an
    open file object)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    parent, _, key = os.fspath(path).rpartition("/")
    if parent.lower().endswith(SUFFIXES) and _is_file(parent):
        return Path(parent), key
    return None


@lru_cache(maxsize=64)
def _is_file(path: str) -> bool:
    return os.path.isfile(path)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ValueError("images in an HDF5 file need h5py: pip install 'kit[hdf5]' (in a checkout of the kit, make "
                         "install)") from None
    return h5py


@lru_cache(maxsize=16)
def _open(path: str, pid: int):
    """One read-only handle a file and a process (`pid` in the key: a forked worker opens its own)."""
    return _h5py().File(path, "r")


def handle(path: Path):
    return _open(str(path), os.getpid())


def keys(path: Path) -> list[str]:
    """The names of the images an HDF5 file holds (its top-level entries: a group among them fails to read as an
    image, naming itself, like any unreadable file)."""
    return list(handle(path).keys())


def read(path: str | Path, found: tuple[Path, str] | None = None) -> bytes:
    """The bytes of the image `path` names (<file>.hdf5/<key>; `found`: its member(), when known); FileNotFoundError
    naming both where it is not."""
    found = found or member(path)
    if found is None:
        raise FileNotFoundError(f"{path}: not an image inside an HDF5 file")
    file, key = found
    h5py = _h5py()
    try:  # the low-level calls: a third of the time of f[key][()], which builds a Dataset object each call
        dataset = h5py.h5d.open(handle(file).id, key.encode())
    except KeyError:
        raise FileNotFoundError(f"{file} holds no image {key!r}") from None
    out = np.empty(dataset.shape, dtype=dataset.dtype)
    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out.tobytes()


def stat(path: str | Path) -> tuple[int, int]:
    """(bytes, modification time in ns) of an image in an HDF5 file: its file's, so that any change to the file
    changes every fingerprint and cache key of its images (and a stat costs no read)."""
    st = member(path)[0].stat()
    return st.st_size, st.st_mtime_ns
