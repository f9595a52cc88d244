"""Unpack every archive in a download, safely, until none is left: zip (zip in zip, `train_v2.csv.zip`), tar
(`.tar`, `.tar.gz`, `.tgz`) and 7z (`.7z`, Planet's `train-jpg.tar.7z`), all with Python libraries.

    unpack_all(Path("data/planet-understanding-the-amazon-from-space"))

Where an archive's members go: beside the archive (the download's own zip, `train.zip` of `train/...`,
`train_v2.csv.zip`), except an archive of bare images, which gets a folder named after it (`test.zip` of
`1.jpg ...` -> `test/`). Each archive is unpacked into a hidden folder beside it, moved
into place, then deleted: a rerun finds only the archives not yet unpacked, and a killed run leaves no
half-unpacked folder. Refused, before anything is written: a member outside the folder (absolute, `..`),
a link, more than `max_bytes` in all (KIT_UNPACK_MAX_GB, default 500; counted over the whole download, nested
archives included) against archive bombs, and more than the disk has free. A refused archive stays; a damaged one
raises `Damaged` (the caller fetches it again). Hidden folders a killed run left are removed by the next.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kit.io import is_image_file

log = logging.getLogger(__name__)

SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".7z")  # longest first: "x.tar.gz" is a tar.gz, not a gz
JUNK = ("__MACOSX/",)  # macOS resource forks that some zips carry


class Damaged(ValueError):
    """An archive that cannot be read to its end: only a fresh download mends it."""

    def __init__(self, path: Path, message: str):
        super().__init__(message)
        self.path = path


def is_image_name(name: str) -> bool:
    return is_image_file(Path(name))


def max_bytes() -> int:
    return int(float(os.environ.get("KIT_UNPACK_MAX_GB", "500")) * 2**30)


@dataclass(frozen=True)
class Member:
    name: str  # posix path inside the archive
    size: int  # uncompressed bytes, as the archive declares them (and the readers enforce)
    is_dir: bool
    is_link: bool


def archive_suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s) and len(name) > len(s)), "")


def _members(path: Path, suffix: str) -> list[Member]:
    if suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            return [Member(i.filename, i.file_size, i.is_dir(), (i.external_attr >> 16) & 0o170000 == 0o120000)
                    for i in z.infolist()]
    if suffix == ".7z":
        py7zr = _py7zr()
        with py7zr.SevenZipFile(path) as z:
            return [Member(i.filename, i.uncompressed or 0, i.is_directory, i.is_symlink) for i in z.list()]
    with tarfile.open(path) as t:
        return [Member(m.name, m.size, m.isdir(), m.issym() or m.islnk() or not (m.isfile() or m.isdir()))
                for m in t.getmembers()]


def _py7zr():
    try:
        import py7zr
    except ImportError:
        raise ValueError("a .7z archive needs py7zr: pip install 'kit[kaggle]' (in a checkout of the kit, "
                         "make install)") from None
    return py7zr


def _check(path: Path, members: list[Member], limit: int) -> int:
    """The bytes the archive unpacks to, once it is found safe."""
    for m in members:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise ValueError(f"{path}: member {m.name!r} would land outside {path.parent}; not unpacked")
        if m.is_link:
            raise ValueError(f"{path}: member {m.name!r} is a link (it could point outside {path.parent}); "
                             "not unpacked")
    total = sum(m.size for m in members)
    if total > limit:
        raise ValueError(f"{path}: unpacks to {_gb(total)}, more than the {_gb(limit)} still allowed (an archive "
                         "bomb?); if it is right, raise KIT_UNPACK_MAX_GB")
    return total


def _extract(path: Path, suffix: str, into: Path) -> None:
    if suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            z.extractall(into, [i for i in z.infolist() if not i.filename.startswith(JUNK)])
    elif suffix == ".7z":
        with _py7zr().SevenZipFile(path) as z:
            z.extractall(into)
    else:
        with tarfile.open(path) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(into, filter="data")  # refuses what the checks above refuse, a second time
            else:
                _extract_tar_plain(t, into)


def _extract_tar_plain(t: tarfile.TarFile, into: Path) -> None:
    """A Python without tarfile's extraction filters (3.10.0-3.10.11, 3.11.0-3.11.3): each member written as plain
    bytes, no owner, mode or link of the archive's; _check has refused links and paths outside already."""
    for m in t.getmembers():
        dest = into / m.name
        if m.isdir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with t.extractfile(m) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)


def _target(path: Path, suffix: str, members: list[Member]) -> Path:
    """Beside the archive; a folder named after it for an archive of bare images (no folder of its own)."""
    files = [m.name for m in members if not m.is_dir and not m.name.startswith(JUNK)]
    bare = files and all(len(PurePosixPath(n).parts) == 1 for n in files)
    if bare and sum(is_image_name(n) for n in files) > len(files) / 2:
        stem = path.name[: -len(suffix)]
        return path.parent / (stem[:-4] if stem.endswith(".tar") else stem)
    return path.parent


def _merge(src: Path, dest: Path) -> None:
    """Move src's tree into dest, folder by folder (dest may hold some of it already: train/ beside train.zip)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = dest / item.name
        if item.is_dir() and target.is_dir():
            _merge(item, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)


def unpack(path: Path, limit: int | None = None) -> Path:
    """Unpack one archive (checked first) where its members belong, then delete it; returns where they went."""
    return _unpack(path, max_bytes() if limit is None else limit)[0]


def _unpack(path: Path, limit: int) -> tuple[Path, int]:
    """unpack(): (where the members went, how many bytes they hold)."""
    suffix = archive_suffix(path)
    try:
        members = _members(path, suffix)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise Damaged(path, f"{path}: not a readable archive ({e}); download it again") from None
    except Exception as e:  # py7zr's own errors (Bad7zFile, ...) share no base class with the above
        raise Damaged(path, f"{path}: not a readable archive ({type(e).__name__}: {e}); download it again") from None
    size = _check(path, members, limit)
    target = _target(path, suffix, members)
    free = shutil.disk_usage(path.parent).free
    if size > free:
        raise ValueError(f"{path}: unpacking needs {_gb(size)} and {path.parent} has {_gb(free)} free; free "
                         f"{_gb(size - free)} or more (or move the data folder to a larger disk) and run it again")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".unpack-") as tmp:
        try:
            _extract(path, suffix, Path(tmp))
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise ValueError(f"{path}: the disk is full ({_gb(size)} to unpack, {_gb(free)} was free); free "
                                 "space and run it again") from None
            raise Damaged(path, f"{path}: unpacking failed ({e}); the archive is damaged or truncated: download it "
                          "again") from None
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
            raise Damaged(path, f"{path}: unpacking failed ({e}); the archive is damaged or truncated: download it "
                          "again") from None
        except Exception as e:
            if isinstance(e, ValueError):
                raise
            raise Damaged(path, f"{path}: unpacking failed ({type(e).__name__}: {e}); download it again") from None
        _merge(Path(tmp), target)
    path.unlink()
    return target, size


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def unpack_all(folder: Path, limit: int | None = None) -> list[str]:
    """Unpack every archive under folder, archives inside archives too, `limit` bytes in all (KIT_UNPACK_MAX_GB);
    returns the names unpacked."""
    for stale in sorted(folder.rglob(".unpack-*"), reverse=True):  # a killed run's half-unpacked folder
        if stale.is_dir():
            shutil.rmtree(stale)
    done, left = [], max_bytes() if limit is None else limit
    while True:
        found = sorted(p for p in folder.rglob("*") if p.is_file() and archive_suffix(p)
                       and not any(part.startswith(".unpack-") for part in p.relative_to(folder).parts))
        if not found:
            return done
        for path in found:
            where, size = _unpack(path, left)
            left -= size  # one budget for the whole download: an archive's archives share it
            log.info("unpacked %s into %s", path.relative_to(folder), where.relative_to(folder.parent))
            done.append(path.relative_to(folder).as_posix())
