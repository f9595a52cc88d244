"""Kaggle features through the real `kaggle` CLI against a local server (tests/kaggle_server.py).

    pytest tests/test_kaggle.py -q

No network: the CLI runs with KAGGLE_API_ENVIRONMENT=LOCALHOST and an HTTP proxy on 127.0.0.1.
"""
import io
import json
import logging
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import kaggle_server
from conftest import tiny_cfg
from kit.board import kaggle, leaderboard, upload
from kit.data import unpack
from kit.jobs.cli import main

pytestmark = pytest.mark.slow  # each CLI call starts a Python process (~2 s)
IDS = [f"t{i:02d}" for i in range(10)]


@pytest.fixture
def server():
    solution = pd.DataFrame({"id": IDS, "label": ["a", "b"] * 5, "Usage": ["Public"] * 4 + ["Private"] * 6})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("train/a/x.png", b"fake")
        z.writestr("sample_submission.csv", "id,label\n")
    state = kaggle_server.FakeKaggle(solution, archive.getvalue())
    httpd, port = kaggle_server.start(state)
    yield state, port
    httpd.shutdown()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    state, port = server
    creds = kaggle_server.point_cli(tmp_path / "home", port, monkeypatch)
    cfg = tiny_cfg(tmp_path, tmp_path / "data")
    subs = Path(cfg.submissions_dir)
    subs.mkdir()
    path = subs / "tiny-0123abcd.csv"
    path.write_text("id,label\n" + "".join(f"{i},{'a' if n % 2 == 0 else 'a'}\n" for n, i in enumerate(IDS)))
    board = leaderboard.upsert(leaderboard.load(subs / "leaderboard.csv"), {
        "file": path.name, "experiments": "tiny", "metric": "accuracy", "cv": "0.91000", "folds": "5", "tta": "hflip",
        "sha256": "0123abcd" + "0" * 56})
    leaderboard.save(board, subs / "leaderboard.csv")
    return state, cfg, path, creds


def _board(cfg):
    return leaderboard.load(Path(cfg.submissions_dir) / "leaderboard.csv")


def test_submit_then_leaderboard_fills_both_scores(env):
    state, cfg, path, _ = env
    ref = upload.submit([cfg], "digits")
    assert ref == "50000", ref
    assert state.submissions[0]["description"] == "tiny cv=0.91000 metric=accuracy folds=5 tta=hflip sha=0123abcd"
    leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
    row = _board(cfg).iloc[0]
    want = state.score(path.read_bytes())
    assert (row["kaggle_ref"], row["kaggle_status"], row["public"], row["private"]) == ("50000", "complete", *want), row
    assert float(want[0]) == 0.5 and float(want[1]) == 0.5, "the server scored the upload"


def test_pending_submission_has_no_scores_yet(env):
    state, cfg, _, _ = env
    state.pending = True
    upload.submit([cfg], "digits")
    leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
    row = _board(cfg).iloc[0]
    assert (row["kaggle_status"], row["public"], row["private"]) == ("pending", "", ""), row


def test_failed_upload_is_a_clear_error_and_loses_nothing(env):
    state, cfg, _, _ = env
    state.fail_upload = True
    before = _board(cfg)
    with pytest.raises(ValueError, match="kaggle submit failed"):
        upload.submit([cfg], "digits")
    pd.testing.assert_frame_equal(_board(cfg), before)
    assert not state.submissions


def test_bad_credentials_are_a_clear_error(env, capsys):
    state, cfg, _, creds = env
    creds.write_text(json.dumps({"username": kaggle_server.USER, "key": "wrong-key-0000"}))
    before = _board(cfg)
    rc = main(["leaderboard", "--exp", "demo", f"submissions_dir={cfg.submissions_dir}", "--comp", "digits"])
    err = capsys.readouterr().err
    assert rc == 2 and "credentials rejected (401)" in err and "Traceback" not in err, err
    pd.testing.assert_frame_equal(_board(cfg), before)


def test_no_credentials_says_how(env, capsys):
    _, cfg, _, creds = env
    creds.unlink()
    rc = main(["submit", "--exp", "demo", "name=tiny", f"submissions_dir={cfg.submissions_dir}", "--comp", "digits"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no Kaggle credentials" in err and "KAGGLE_API_TOKEN" in err and len(err.splitlines()) == 1, err


def test_a_missing_kaggle_cli_names_the_extra_that_installs_it(env):
    with pytest.raises(ValueError, match=r"pip install 'kit\[kaggle\]'"):
        kaggle.run_cli(["competitions", "list"], "list", program=["/nonexistent/kaggle"])


def test_readable_kaggle_json_gets_the_fix(env, caplog):
    _, cfg, _, creds = env
    creds.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        kaggle.check_credentials()
    assert f"chmod 600 {creds}" in caplog.text


def test_no_lock_file_is_left_in_the_submissions_folder(env):
    """submissions/ is the folder users open and upload from: its locks live elsewhere."""
    _, cfg, _, _ = env
    upload.submit([cfg], "digits")
    leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
    left = sorted(p.name for p in Path(cfg.submissions_dir).rglob("*") if ".lock" in p.name)
    assert not left, left


def _add_row(cfg, name: str, cv: str, experiments: str = "tiny", answer: str = "b") -> Path:
    path = Path(cfg.submissions_dir) / name
    path.write_text("id,label\n" + "".join(f"{i},{answer}\n" for i in IDS))
    board = leaderboard.upsert(_board(cfg), {"file": name, "experiments": experiments, "metric": "accuracy", "cv": cv,
                                             "sha256": "f" * 64})
    leaderboard.save(board, Path(cfg.submissions_dir) / "leaderboard.csv")
    return path


def test_submit_without_file_uploads_the_best_cv_row_not_the_newest(env):
    state, cfg, path, _ = env
    best = _add_row(cfg, "tiny-best.csv", "0.95000")
    os.utime(best, (1, 1))  # the oldest file: mtime must not matter
    _add_row(cfg, "tiny-newer.csv", "0.93000")
    _add_row(cfg, "other-top.csv", "0.99000", experiments="other")  # not one of the current experiments
    upload.submit([cfg], "digits")
    assert [s["fileName"] for s in state.submissions] == ["tiny-best.csv"], state.submissions
    assert state.submissions[0]["publicScore"] == state.score(best.read_bytes())[0], "the best row's bytes went up"


def test_submit_without_file_refuses_a_tie(env):
    state, cfg, _, _ = env
    _add_row(cfg, "tiny-a.csv", "0.97000")
    _add_row(cfg, "tiny-b.csv", "0.97000")
    with pytest.raises(ValueError, match=r"share the best CV 0\.97000.*FILE="):
        upload.submit([cfg], "digits")
    assert not state.submissions, "nothing may be uploaded when the choice is ambiguous"


def test_sync_with_empty_kaggle_scores_keeps_local_scores(env):
    state, cfg, path, _ = env
    board = leaderboard.upsert(_board(cfg), {"file": path.name, "public": "0.81000", "private": "0.79000"})
    leaderboard.save(board, Path(cfg.submissions_dir) / "leaderboard.csv")
    state.pending = True  # Kaggle answers with empty scores
    upload.submit([cfg], "digits")
    leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
    row = _board(cfg).iloc[0]
    assert (row["kaggle_status"], row["public"], row["private"]) == ("pending", "0.81000", "0.79000"), row


def test_kaggle_module_imports_nothing_from_the_leaderboard():
    import ast
    tree = ast.parse(Path(kaggle.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {n for n in names if "leaderboard" in n}, "kaggle.py hands tables to leaderboard.py, never imports it"


def test_outside_submissions_join_the_data_set_of_the_competitions_rows(env):
    state, cfg, path, _ = env
    board = leaderboard.upsert(_board(cfg), {"file": path.name, "data": "abcdef012345"})
    leaderboard.save(board, Path(cfg.submissions_dir) / "leaderboard.csv")
    upload.submit([cfg], "digits", str(path))
    state.add("by_hand.csv", "made elsewhere", path.read_bytes())
    leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
    rows = _board(cfg).set_index("file")
    assert rows.loc["by_hand.csv", "data"] == "abcdef012345", "scored on the same test set as the kit's rows"


def test_outside_submissions_and_more_than_a_page(env):
    state, cfg, _, _ = env
    for i in range(25):  # more than the CLI's default page of 20
        state.add(f"manual{i}.csv", "by hand", b"id,label\n" + b"".join(f"{x},b\n".encode() for x in IDS))
    leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
    board = _board(cfg)
    manual = board[board["experiments"] == "(kaggle)"]
    assert len(manual) == 25 and set(manual["file"]) == {f"manual{i}.csv" for i in range(25)}
    assert (manual["public"] == "0.50000").all() and len(board) == 26


def test_secrets_never_reach_output_or_files(env, capsys, caplog, tmp_path):
    state, cfg, _, creds = env
    with caplog.at_level(logging.DEBUG):
        upload.submit([cfg], "digits")
        leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
        creds.write_text(json.dumps({"username": kaggle_server.USER, "key": kaggle_server.KEY + "x"}))
        with pytest.raises(ValueError) as e:
            upload.submit([cfg], "digits")
    out, err = capsys.readouterr()  # one read: a second would find both empty
    seen = out + err + caplog.text + str(e.value)
    assert "failed" in str(e.value) and (out or err or caplog.text), "something was said, and checked"
    assert kaggle_server.KEY not in seen
    for p in (tmp_path / "submissions").rglob("*"):
        assert kaggle_server.KEY.encode() not in p.read_bytes(), f"key written to {p}"


def test_download_unzips_safely(env, tmp_path):
    out = kaggle.download("digits", tmp_path / "data_root")
    assert (out / "train" / "a" / "x.png").read_bytes() == b"fake" and not list(out.glob("*.zip"))


def test_download_records_the_metric_kaggle_ranks_by(env, tmp_path):
    state = env[0]
    state.metric = "Multi Class Log Loss"
    out = kaggle.download("digits", tmp_path / "data_root")
    record = json.loads((out / "competition.json").read_text())
    assert record == {"competition": "digits", "evaluation_metric": "Multi Class Log Loss", "metric": "log_loss"}
    from kit.metrics import resolve
    assert resolve("auto", "single", "label", 0, record["metric"]).name == "log_loss", "metric=auto takes it"


def test_zip_slip_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr("../../escaped.txt", "bad")
    with pytest.raises(ValueError, match="outside"):
        unpack.unpack(evil)
    assert not (tmp_path / "escaped.txt").exists() and not os.path.exists(tmp_path.parent / "escaped.txt")


def test_parse_submissions_quirks():
    text = ("Warning: Looks like you're using an outdated API Version\n"
            "ref,fileName,date,description,status,publicScore,privateScore\n"
            "7,a.csv,2026-11-25 12:00:00.123000,x cv=0.9,SubmissionStatus.COMPLETE,0.9,0.8\n"
            "8,b.csv,2026-11-25 13:00:00,,SubmissionStatus.PENDING,None,None\n")
    table = kaggle.parse_submissions(text)
    assert list(table["status"]) == ["complete", "pending"] and list(table["publicScore"]) == ["0.9", ""]
    assert table.loc[0, "date"] == "2026-11-25 12:00:00.123000"


def test_no_network_says_so(env, monkeypatch):
    _, cfg, _, _ = env
    for var in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: nothing listens
    before = _board(cfg)
    with pytest.raises(ValueError, match="no network"):
        leaderboard.sync(Path(cfg.submissions_dir) / "leaderboard.csv", "digits")
    pd.testing.assert_frame_equal(_board(cfg), before)
