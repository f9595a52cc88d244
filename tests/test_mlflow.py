"""tracking=[mlflow] against a real `mlflow server` this module starts on localhost (SQLite store, artifacts
served by it), read back through MlflowClient: a parent run per experiment with the config and the CV, a child
run per fold with every epoch's numbers, the submission, its manifest and cv.json among the artifacts, Kaggle's
ref and scores once the leaderboard learns them; a rerun or a resumed fold goes on in the same runs. A server
that does not answer or refuses, and a missing package, cost one warning and never the run."""
from __future__ import annotations

import builtins
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, tiny_cfg, train_interrupted, write_folder_data
from kit.board import leaderboard
from kit.data import folds
from kit.jobs.cli import main
from kit.tracking import mlflow_runs
from kit.train import loop

pytestmark = pytest.mark.slow  # a server start and two small experiments trained
EXPERIMENTS = ("demo", "demo_baseline")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root, port = tmp_path_factory.mktemp("mlflow"), _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "NO_PROXY": "*"})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(30)


@pytest.fixture(autouse=True)
def direct(monkeypatch):
    """The MLflow server on 127.0.0.1 is reached directly, whatever proxy the machine sets."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def fresh(monkeypatch):
    """No client, URI switched off or run checked in this process yet: each test meets MLflow anew."""
    for name in ("_OFF", "_CLIENTS"):
        monkeypatch.setattr(mlflow_runs, name, {})
    monkeypatch.setattr(mlflow_runs, "_CHECKED", set())
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def run(server, tmp_path_factory):
    """Both demo experiments through folds, train and predict, tracked at the server."""
    tmp = tmp_path_factory.mktemp("tracked")
    data = write_folder_data(tmp / "data", n_per_class=8, n_test=6)
    keys = [f"{k}={v}" for k, v in {**TINY, "stage1_epochs": 2, "stage2_epochs": 1, "batch_size": 8}.items()
            if k != "name"]
    keys += [f"data={data}", f"work_dir={tmp / 'folds'}", f"submissions_dir={tmp / 'subs'}", "tracking=[mlflow]"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server)
        mp.setenv("NO_PROXY", "127.0.0.1")
        for command in ("folds", "train", "predict"):
            assert main([command, "--exp", *EXPERIMENTS, *keys]) == 0
    from mlflow.tracking import MlflowClient
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name(f"kit/{data.name}")
    return tmp, keys, client, experiment.experiment_id


def _parents(client, experiment_id) -> dict:
    runs = client.search_runs([experiment_id], "tags.`kit.experiment` != ''", max_results=1000)
    return {r.info.run_name: r for r in runs if "mlflow.parentRunId" not in r.data.tags}


def _children(client, experiment_id, parent) -> list:
    return client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def test_a_parent_run_per_experiment_with_the_config_and_the_cv(run):
    tmp, _, client, eid = run
    parents = _parents(client, eid)
    assert sorted(parents) == sorted(EXPERIMENTS), "one parent run per experiment"
    for name, parent in parents.items():
        cv = pd.read_json(tmp / "folds" / name / "cv.json", typ="series")
        assert parent.data.params["backbone"] == "test_resnet" and parent.data.params["name"] == name
        assert parent.data.metrics["cv_score"] == pytest.approx(cv["score"])
        assert parent.data.metrics["fold_std"] == pytest.approx(cv["fold_std"])
        assert parent.info.status == "FINISHED"


def test_a_child_run_per_fold_with_every_epochs_numbers(run):
    tmp, _, client, eid = run
    for name, parent in _parents(client, eid).items():
        children = {r.data.tags["kit.fold"]: r for r in _children(client, eid, parent)}
        assert sorted(children) == ["0", "1"], "a child run per fold"
        for k, child in children.items():
            history = pd.read_csv(tmp / "folds" / name / f"fold{k}" / "history.csv")
            loss = client.get_metric_history(child.info.run_id, "val_loss")
            assert sorted(m.step for m in loss) == list(history["epoch"]), "every epoch, once"
            assert [m.value for m in sorted(loss, key=lambda m: m.step)] == pytest.approx(list(history["val_loss"]))
            assert len(client.get_metric_history(child.info.run_id, "lr")) == len(history)
            assert child.info.status == "FINISHED" and "best_score" in child.data.metrics
            assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"history.csv", "curves.png"}


def test_the_submission_its_manifest_and_cv_json_are_artifacts(run):
    tmp, _, client, eid = run
    board = pd.read_csv(tmp / "subs" / "leaderboard.csv", dtype=str, keep_default_na=False)
    for name, parent in _parents(client, eid).items():
        files = {a.path for a in client.list_artifacts(parent.info.run_id, "submissions")}
        mine = board.loc[board["experiments"] == name, "file"]
        assert len(mine) and {f"submissions/{f}" for f in mine} | {
            f"submissions/{Path(f).with_suffix('.json').name}" for f in mine} == files
        root = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert "cv.json" in root and "confusion_matrix.png" in root
        got = client.download_artifacts(parent.info.run_id, f"submissions/{mine.iloc[0]}", str(tmp / "down" / name))
        assert Path(got).read_bytes() == (tmp / "subs" / mine.iloc[0]).read_bytes(), "the submission's bytes"


def test_a_rerun_goes_on_in_the_same_runs(run, server, fresh, monkeypatch):
    tmp, keys, client, eid = run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    before = {n: r.info.run_id for n, r in _parents(client, eid).items()}
    assert main(["run", "--exp", *EXPERIMENTS, *keys]) == 0  # every stage skips; predict logs again
    assert {n: r.info.run_id for n, r in _parents(client, eid).items()} == before, "no second parent run"


def test_a_resumed_fold_goes_on_in_its_child_run(server, fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "kit/resumed")
    data = write_folder_data(tmp_path / "data", n_per_class=8, n_test=3)
    cfg = tiny_cfg(tmp_path, data, stage1_epochs=3, stage2_epochs=0, tracking=["mlflow"])
    folds.make_folds(cfg)
    train_interrupted(cfg, 2)
    monkeypatch.setattr(mlflow_runs, "_CLIENTS", {})  # as a new process would
    loop.run([cfg], only=[0])
    from mlflow.tracking import MlflowClient
    client = MlflowClient(server)
    eid = client.get_experiment_by_name("kit/resumed").experiment_id
    runs = client.search_runs([eid], "tags.`kit.fold` = '0'")
    assert len(runs) == 1, "the resumed fold's epochs in the run it started"
    steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "val_loss"))
    assert steps == [1, 2, 3] and runs[0].info.status == "FINISHED"


def test_the_leaderboard_adds_kaggle_ref_and_scores_to_the_run(run, server, fresh, monkeypatch, kaggle_env):
    tmp, keys, client, eid = run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the kaggle CLI's proxy (the loopback Kaggle) is for localhost alone
    board = pd.read_csv(tmp / "subs" / "leaderboard.csv", dtype=str, keep_default_na=False)
    row = board[board["experiments"] == "demo"].iloc[0]
    sub = pd.read_csv(tmp / "subs" / row["file"], dtype=str)
    kaggle_env.solution = sub.set_axis(["id", "label"], axis=1).assign(Usage=["Public", "Private"] * (len(sub) // 2))
    assert main(["submit", "--exp", "demo", *keys, "--comp", "digits", "--file", str(tmp / "subs" / row["file"])]) == 0
    assert main(["leaderboard", "--exp", "demo", *keys, "--comp", "digits"]) == 0
    parent = client.get_run(_parents(client, eid)["demo"].info.run_id)
    scored = pd.read_csv(tmp / "subs" / "leaderboard.csv", dtype=str, keep_default_na=False).set_index("file")
    assert parent.data.tags["kaggle_ref"] == scored.loc[row["file"], "kaggle_ref"] != ""
    assert parent.data.metrics["public"] == parent.data.metrics[f"public/{row['file']}"] == 1.0
    assert parent.data.metrics["private"] == 1.0
    assert "kaggle_ref" not in client.get_run(_parents(client, eid)["demo_baseline"].info.run_id).data.tags


def _train_one_epoch(tmp_path, tracking=("mlflow",)) -> Path:
    data = write_folder_data(tmp_path / "data", n_per_class=8, n_test=3)
    cfg = tiny_cfg(tmp_path, data, stage1_epochs=1, stage2_epochs=0, tracking=list(tracking))
    folds.make_folds(cfg)
    loop.run([cfg])
    return tmp_path / "folds" / "tiny"


def _said(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_a_server_that_does_not_answer_costs_one_warning(tmp_path, fresh, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    with caplog.at_level(logging.WARNING):
        exp = _train_one_epoch(tmp_path)
    assert len(_said(caplog, "does not answer")) == 1, caplog.text
    assert (exp / "fold1" / "best.pt").is_file() and (exp / "cv.json").is_file(), "every fold trained"
    assert not (exp / "mlflow.json").exists()


class Refusing(BaseHTTPRequestHandler):
    """Healthy, but every API call answers 403 (a server that wants credentials)."""

    def do_GET(self):
        code = 200 if self.path == "/health" else 403
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK" if code == 200 else b'{"error_code": "PERMISSION_DENIED", "message": "no"}')

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_refusing_server_costs_one_warning(tmp_path, fresh, monkeypatch, caplog):
    httpd = HTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{httpd.server_port}")
    try:
        with caplog.at_level(logging.WARNING):
            exp = _train_one_epoch(tmp_path)
    finally:
        httpd.shutdown()
    said = _said(caplog, "tracking=mlflow")
    assert len(said) == 1 and "failed" in said[0], said
    assert (exp / "fold1" / "best.pt").is_file()


def test_without_the_package_one_warning(tmp_path, fresh, monkeypatch, caplog):
    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.split(".")[0] == "mlflow":
            raise ImportError("No module named 'mlflow'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with caplog.at_level(logging.WARNING):
        exp = _train_one_epoch(tmp_path)
    assert len(_said(caplog, "pip install mlflow")) == 1
    assert (exp / "fold1" / "best.pt").is_file()


def test_both_trackers_at_once_and_without_a_tracking_uri_a_local_store_in_the_work_dir(tmp_path, fresh):
    exp = _train_one_epoch(tmp_path, ("tensorboard", "mlflow"))
    assert list((exp / "fold0" / "tensorboard").glob("events.out.tfevents.*")), "TensorBoard's events too"
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{tmp_path / 'folds' / 'mlflow.db'}")
    eid = client.get_experiment_by_name("kit/data").experiment_id
    runs = client.search_runs([eid])
    assert sorted(r.info.run_name for r in runs) == ["tiny", "tiny fold0", "tiny fold1"]
    assert (tmp_path / "folds" / "mlartifacts").is_dir() and (exp / "mlflow.json").is_file()


def test_a_run_deleted_on_the_server_is_made_again(server, fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "kit/deleted")
    exp = _train_one_epoch(tmp_path)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(server)
    first = mlflow_runs._read(exp / "mlflow.json")[server]
    client.delete_run(first)
    monkeypatch.setattr(mlflow_runs, "_CHECKED", set())  # as a later command would
    cfg = tiny_cfg(tmp_path, tmp_path / "data", tracking=["mlflow"])
    from kit import tracking
    tracking.experiment_done(cfg, exp)
    again = mlflow_runs._read(exp / "mlflow.json")[server]
    assert again != first and client.get_run(again).info.lifecycle_stage == "active"
    assert "cv_score" in client.get_run(again).data.metrics


def test_an_error_without_a_message_still_costs_one_warning(tmp_path, fresh, monkeypatch, caplog):
    class Silent:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise RuntimeError()
            return fail
    monkeypatch.setattr(mlflow_runs, "_client", lambda cfg: Silent())
    with caplog.at_level(logging.WARNING):
        exp = _train_one_epoch(tmp_path)
    said = _said(caplog, "tracking=mlflow")
    assert len(said) == 1 and "RuntimeError" in said[0], said
    assert (exp / "fold1" / "best.pt").is_file()


USER, PASSWORD, TOKEN = "kit", "s3cret-basic-pw", "tok-3f9a2c71b8"


@pytest.fixture
def guarded(server):
    """The real server behind a proxy that wants basic auth (kit:PASSWORD) or a bearer token (TOKEN), as a team
    puts MLflow behind nginx; yields the proxy's port."""
    import base64
    import http.client
    upstream = server.rsplit(":", 1)[1]
    good = {"Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), f"Bearer {TOKEN}"}

    class Proxy(BaseHTTPRequestHandler):
        def _forward(self):
            if self.headers.get("Authorization") not in good:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conn = http.client.HTTPConnection("127.0.0.1", int(upstream), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
            conn.request(self.command, self.path, body or None, headers)
            reply = conn.getresponse()
            data = reply.read()
            self.send_response(reply.status)
            for k, v in reply.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *args):
            pass

    from http.server import ThreadingHTTPServer
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_port
    httpd.shutdown()


def _nowhere_on_disk(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("how", ["in the URI", "MLFLOW_TRACKING_TOKEN"])
def test_a_server_behind_auth_is_tracked_and_the_credential_never_shown_or_stored(guarded, how, tmp_path, fresh,
                                                                                 monkeypatch, caplog):
    plain = f"http://127.0.0.1:{guarded}"
    if how == "in the URI":
        uri, secret = f"http://{USER}:{PASSWORD}@127.0.0.1:{guarded}", PASSWORD
    else:
        uri, secret = plain, TOKEN
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"kit/auth-{how.split()[-1]}")
    with caplog.at_level(logging.WARNING):
        exp = _train_one_epoch(tmp_path)
    assert not _said(caplog, "tracking=mlflow"), caplog.text
    runs = mlflow_runs._read(exp / "mlflow.json")
    assert list(runs) == [plain], f"keyed by the URI without its credential: {runs}"
    from mlflow.tracking import MlflowClient
    assert MlflowClient(uri).get_run(runs[plain]).data.params["name"] == "tiny", "the run is on the server"
    assert not _nowhere_on_disk(tmp_path, secret), "the credential is written nowhere"


def test_a_wrong_password_is_one_warning_that_does_not_show_it(guarded, tmp_path, fresh, monkeypatch, caplog):
    wrong = "wr0ng-password-x"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{USER}:{wrong}@127.0.0.1:{guarded}")
    with caplog.at_level(logging.WARNING):
        exp = _train_one_epoch(tmp_path)
    said = _said(caplog, "tracking=mlflow")
    assert len(said) == 1 and "credentials" in said[0] and f"http://127.0.0.1:{guarded}" in said[0], said
    assert wrong not in caplog.text and not _nowhere_on_disk(tmp_path, wrong)
    assert (exp / "fold1" / "best.pt").is_file(), "the run goes on"
