"""Long downloads and their unpacking, as a 100 GB competition meets them: no wall-clock limit, a stall limit,
nothing fetched thrown away, one budget for nested archives, a full disk said as such.

The real `kaggle` CLI downloads from the loopback server (tests/kaggle_server.py), which streams the file slowly,
cuts it, or stalls it mid-way.  pytest tests/test_transfers.py -q
"""
from __future__ import annotations

import errno
import io
import tarfile
import zipfile

import numpy as np
import pytest

from kit.board import kaggle
from kit.data import unpack

SLUG = "big-comp"


def _zip(files: dict[str, bytes], stored: bool = True) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def big(kaggle_env, tmp_path, monkeypatch):
    """A download of 3 MiB of images' bytes (random: what a JPEG folder zips to), and the data root. The CLI writes
    1 MiB at a time: a break at 2.5 MiB leaves 2 MiB on disk."""
    blob = np.random.default_rng(0).bytes(3 * 2**20)
    kaggle_env.data_zip = _zip({"train.csv": b"id,label\na,0\n", "train/blob.bin": blob})
    monkeypatch.setenv("KIT_KAGGLE_STALL_S", "3")
    return kaggle_env, tmp_path / "data", blob


def _gets(state) -> int:
    return sum(r.startswith("GET /files/") or r.startswith("GET http") for r in state.requests)


def test_a_slow_download_outlasts_the_metadata_timeout_and_shows_bytes_and_eta(big, monkeypatch, capsys):
    state, root, blob = big
    state.chunk_delay_s = 0.05  # 48 pieces of 64 KiB: about 2.5 s, five times the limit a listing gets
    monkeypatch.setenv("KIT_KAGGLE_TIMEOUT_S", "0.5")
    out = kaggle.download(SLUG, root)
    assert (out / "train" / "blob.bin").read_bytes() == blob, "every byte, unpacked"
    err = capsys.readouterr().err
    assert "B/s" in err and "<" in err, f"the CLI's progress bar (bytes, rate, ETA) is shown: {err[-500:]!r}"
    assert not (root / f".{SLUG}.partial").exists(), "the partial folder became data/<slug>"


def test_a_download_cut_in_the_middle_resumes_from_the_bytes_it_has(big):
    state, root, blob = big
    state.break_at = 5 * 2**19  # the connection closes at 2.5 MiB, once
    out = kaggle.download(SLUG, root)
    assert (out / "train" / "blob.bin").read_bytes() == blob
    assert state.ranges == [2 * 2**20], f"resumed from the 2 MiB on disk with a Range request: {state.ranges}"


def test_a_stalled_download_is_stopped_keeps_its_bytes_and_the_rerun_resumes(big, monkeypatch):
    state, root, blob = big
    state.break_at, state.break_how = 5 * 2**19, "stall"
    monkeypatch.setenv("KIT_KAGGLE_STALL_S", "1.5")
    with pytest.raises(ValueError, match=r"no byte moved for 1.5 s.*kept in .*\.big-comp\.partial.*again to resume"):
        kaggle.download(SLUG, root)
    state.release.set()
    part = root / f".{SLUG}.partial" / f"{SLUG}.zip"
    kept = part.stat().st_size
    assert kept == 2 * 2**20, f"the bytes that came are kept ({kept})"
    out = kaggle.download(SLUG, root)
    assert (out / "train" / "blob.bin").read_bytes() == blob
    assert state.ranges == [kept], f"the rerun asked only for the missing bytes: {state.ranges}, kept {kept}"


def test_an_archive_over_the_cap_is_kept_and_the_rerun_unpacks_it_without_fetching_again(big, monkeypatch):
    state, root, _ = big
    monkeypatch.setenv("KIT_UNPACK_MAX_GB", str(1 / 2**10))  # 1 MiB
    with pytest.raises(ValueError, match=r"KIT_UNPACK_MAX_GB.*kept in .*make download COMP=big-comp"):
        kaggle.download(SLUG, root)
    assert (root / f".{SLUG}.partial" / f"{SLUG}.zip").is_file(), "the archive is kept"
    gets = _gets(state)
    monkeypatch.setenv("KIT_UNPACK_MAX_GB", "1")
    out = kaggle.download(SLUG, root)
    assert (out / "train" / "blob.bin").is_file() and _gets(state) == gets, "unpacked from what was kept"


def test_nested_archives_share_one_budget(tmp_path):
    inner = _zip({"x.bin": b"\0" * 600_000}, stored=False)
    (tmp_path / "outer.zip").write_bytes(_zip({"a.zip": inner, "b.zip": inner}))
    with pytest.raises(ValueError, match="KIT_UNPACK_MAX_GB"):  # each alone is under 1 MB; together over
        unpack.unpack_all(tmp_path, limit=1_000_000)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.zip").write_bytes(inner)
    assert unpack.unpack_all(tmp_path / "one", limit=1_000_000) == ["a.zip"], "one alone fits the same budget"


def test_not_enough_free_space_names_the_bytes_needed_and_free(tmp_path, monkeypatch):
    (tmp_path / "d.zip").write_bytes(_zip({"x.bin": b"\0" * 300_000}, stored=False))
    monkeypatch.setattr(unpack.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(ValueError, match=r"needs 0\.0 GiB and .* has 0\.0 GiB free") as e:
        unpack.unpack_all(tmp_path)
    assert not isinstance(e.value, unpack.Damaged) and (tmp_path / "d.zip").is_file(), "kept, not called damaged"


def test_a_full_disk_says_the_disk_is_full_not_damaged(tmp_path, monkeypatch):
    (tmp_path / "d.zip").write_bytes(_zip({"x.bin": b"x" * 1000}))

    def full(path, suffix, into):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(unpack, "_extract", full)
    with pytest.raises(ValueError, match="disk is full") as e:
        unpack.unpack_all(tmp_path)
    assert "damaged" not in str(e.value) and (tmp_path / "d.zip").is_file()


def test_a_killed_runs_leftovers_are_removed_or_reused(big):
    state, root, blob = big
    stray = root / f".{SLUG}.k3x_9q2a"  # what an earlier kit's mkdtemp left
    (stray / "train").mkdir(parents=True)
    half = root / f".{SLUG}.partial" / "train" / ".unpack-abc123"  # a kill during unpacking
    half.mkdir(parents=True)
    (half / "blob.bin").write_bytes(b"half")
    out = kaggle.download(SLUG, root)
    assert not stray.exists() and not list(out.rglob(".unpack-*")), "removed"
    assert (out / "train" / "blob.bin").read_bytes() == blob


def test_a_damaged_download_is_removed_so_the_rerun_fetches_it(big):
    state, root, blob = big
    good = state.data_zip
    state.data_zip = good[: len(good) // 2]  # a server that served half a zip as whole
    with pytest.raises(ValueError, match=r"not a readable archive.*removed: run `make download COMP=big-comp`"):
        kaggle.download(SLUG, root)
    state.data_zip = good
    assert (kaggle.download(SLUG, root) / "train" / "blob.bin").read_bytes() == blob


def test_tar_unpacks_on_a_python_without_extraction_filters(tmp_path, monkeypatch):
    """3.10.0-3.10.11 and 3.11.0-3.11.3 (Debian 12's 3.11.2) have no filter=: the plain extraction runs."""
    with tarfile.open(tmp_path / "t.tar.gz", "w:gz") as t:
        for name, data in (("train/a.jpg", b"jpeg"), ("labels.csv", b"id,label\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o4777  # a setuid bit the plain extraction must not keep
            t.addfile(info, io.BytesIO(data))
    monkeypatch.delattr(tarfile, "data_filter")

    def old_extractall(self, path=".", members=None, *, numeric_owner=False):  # 3.11.2's signature
        raise AssertionError("extractall without filter= would keep the archive's modes and owners")
    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    unpack.unpack_all(tmp_path)
    assert (tmp_path / "train" / "a.jpg").read_bytes() == b"jpeg" and (tmp_path / "labels.csv").is_file()
    assert not (tmp_path / "train" / "a.jpg").stat().st_mode & 0o4000, "no setuid bit from the archive"
