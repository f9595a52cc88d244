"""Atomic file writes and image decoding shared by every stage.

Every output is written to a temporary file beside its destination and renamed over it, so a
kill at any moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from kit import hdf5

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 100_000_000  # the largest image decoded (config key max_pixels): a guard against decompression bombs
# one image kept as a greyscale file a channel (Human Protein Atlas: x_red.png, x_green.png, ...), named by one path
# that lists them in braces, train/x_{red,green,blue,yellow}.png: folds.csv and the caches hold it as any path
STACKED = re.compile(r"^(?P<head>[^{}]*)\{(?P<names>[^{}/]+)\}(?P<tail>[^{}/]*)$")


@functools.cache
def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: once per process
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # same folder: os.replace is atomic only within one file system; the dot hides it from globs
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def locked(path: str | Path):
    """Hold an exclusive lock for `path`: serialises read-modify-write of a shared file between processes
    (kit/claim.py: flock, and an owner file where the filesystem has no flock)."""
    from kit.claim import claim
    with claim(lock_file(path), wait=True):
        yield


def lock_file(path: str | Path) -> Path:
    """The lock file of `path`: in the machine's temporary folder, named by the file's absolute path, so that none
    is left in the folders users open and upload from (submissions/). The files it guards (leaderboard.csv, a
    submission's manifest) are written by the commands of one machine: a lock there serialises all of them."""
    path = Path(path).absolute()
    folder = Path(tempfile.gettempdir()) / f"kit-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{hashlib.sha256(str(path).encode()).hexdigest()[:16]}-{path.name}.lock"


def check_writable(folder: str | Path, key: str) -> None:
    """Raise ValueError naming `key` unless `folder` can be created and written (e.g. /kaggle/input is read-only)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kit-write-test."):
            pass
    except OSError as e:
        raise ValueError(f"{key}={folder} is not writable ({e.strerror}); set {key}= to a writable folder "
                         f"(in a Kaggle notebook: /kaggle/working/...)") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_npz(path: str | Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def load_npz(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:  # no pickles: an npz from elsewhere can't run code
        return {k: z[k] for k in z.files}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime): predict hashes each checkpoint once."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime are the cache key: a rewrite misses
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels become white; 16-bit and float scale to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F":
            top = max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P" and "transparency" in img.info or img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        img = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # white: how viewers show transparency
        img.alpha_composite(rgba)
    return img.convert("RGB")


def stacked(path: str | Path) -> list[Path] | None:
    """The single-channel files a stacked image's path names, in its order (train/x_{red,green}.png: x_red.png,
    x_green.png); None for any other path."""
    found = STACKED.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    if found is None:
        return None
    return [Path(f"{found['head']}{name}{found['tail']}") for name in found["names"].split(",")]


def channels_of(path: str | Path) -> int:
    """How many channels the image at `path` gives the model: 3 (RGB), or one a file of a stacked image."""
    files = stacked(path)
    return 3 if files is None else max(3, len(files))


def image_stat(path: str | Path) -> tuple[int, int]:
    """(bytes, modification time in ns) of an image file, of an image inside an HDF5 file (kit/hdf5.py), or of a
    stacked image's files together (their bytes summed, the latest time)."""
    files = stacked(path)
    if files is not None:
        stats = [image_stat(f) for f in files]
        return sum(s[0] for s in stats), max(s[1] for s in stats)
    if hdf5.member(path) is not None:
        return hdf5.stat(path)
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def open_image(path: str | Path, max_pixels: int) -> Image.Image:
    """Open lazily and refuse images over max_pixels before decoding them. `path` may name an image inside an
    HDF5 file (<file>.hdf5/<key>: kit/hdf5.py)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
            found = hdf5.member(path)
            img = Image.open(io.BytesIO(hdf5.read(path, found)) if found is not None else path)
    except Image.DecompressionBombError:  # PIL's hard limit, far above any photo
        raise ValueError(f"over max_pixels={max_pixels} (a decompression bomb?)") from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise ValueError(f"{w}x{h} pixels is over max_pixels={max_pixels} (raise it if the image is genuine)")
    return img


def load_rgb(path: str | Path, max_pixels: int = MAX_PIXELS, draft: int = 0) -> np.ndarray:
    """Decode an image as an (H, W, 3) uint8 RGB array with its EXIF orientation applied.

    draft=S: a JPEG at least 2S on both sides is decoded at 1/2, 1/4 or 1/8 scale (DCT scaling,
    several times faster), never below S on a side. Close to, not bit-equal with, a full decode.

    A stacked image (`stacked`) is (H, W, C): each file's grey levels a channel, in the path's order, and a
    channel of zeros where it has fewer than three files.
    """
    files = stacked(path)
    if files is not None:
        return _load_stack(files, max_pixels)
    with open_image(path, max_pixels) as img:
        if draft and img.format == "JPEG":
            img.draft("RGB", (draft, draft))  # PIL keeps the result >= the requested size
        img = ImageOps.exif_transpose(img)
        return np.array(_to_rgb(img))  # a writable copy: torch warns on tensors over read-only arrays


def _load_stack(files: list[Path], max_pixels: int) -> np.ndarray:
    planes = []
    for f in files:
        with open_image(f, max_pixels) as img:
            planes.append(np.asarray(_to_rgb(ImageOps.exif_transpose(img)).convert("L")))
    sizes = {p.shape for p in planes}
    if len(sizes) > 1:
        raise ValueError(f"{files[0].parent}: the channel files of one image differ in size ({sorted(sizes)})")
    planes += [np.zeros_like(planes[0])] * (3 - len(planes))
    return np.stack(planes, axis=-1)


def check_image(path: str | Path, max_pixels: int) -> str | None:
    """Return why the image can't be used, or None. Decodes fully (JPEG at reduced scale)."""
    try:
        files = stacked(path)
        if files is not None:
            _load_stack(files, max_pixels)
            return None
        with open_image(path, max_pixels) as img:
            if img.format == "JPEG":
                img.draft("RGB", (img.size[0] // 8 + 1, img.size[1] // 8 + 1))  # DCT-scaled: fast, still reads every byte
            img.load()
        return None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return "not a readable image" if "cannot identify image file" in reason else reason
