"""tracking=[mlflow]: each experiment an MLflow run, each fold a child run, each submission among its artifacts.

    MLFLOW_TRACKING_URI=http://mlflow.team:5000 python -m kit run --exp demo tracking=[mlflow] data=...
    python -m kit run --exp demo tracking=[mlflow]     # no MLFLOW_TRACKING_URI: a local store in the work_dir,
    mlflow ui --backend-store-uri sqlite:///folds/demo/mlflow.db          # which this shows

In MLflow's terms the data set is the experiment (MLFLOW_EXPERIMENT_NAME, else kit/<the data folder's name>):
  - a parent run per kit experiment (run name = its name): the config as params; once every fold is done its
    CV (cv_score, cv_top1, cv_top5, fold_std, cv_last) and cv.json, plan.json and the error analysis as
    artifacts; each submission and its manifest under submissions/; and, when `make leaderboard` learns them,
    the tag kaggle_ref and the metrics public and private (of the newest scored submission; each file's as
    kaggle_ref/<file>, public/<file> and private/<file>);
  - a child run per fold (run name "<exp> fold<k>"): every number of history.csv at each epoch (step = the
    epoch), then best_score, best_epoch and best_stage, history.csv and curves.png, and the status FINISHED.
Which run is which is kept beside the outputs, {tracking URI: run id} in <exp>/mlflow.json and
fold<k>/mlflow.json: a resumed fold, another trainer and a later predict go on in the same runs (a run
deleted on the server is made again). A server that does not answer or refuses costs one warning and
turns MLflow off for the process, never the run; so does a missing mlflow package. The server is checked
through MLflow's own client, with whatever credentials MLflow takes (https://user:token@host,
MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_TOKEN); a credential is never printed nor written:
messages and mlflow.json name the URI without it.
"""
from __future__ import annotations

import json
import logging
import os
import time
from urllib.parse import urlsplit, urlunsplit
from pathlib import Path

import pandas as pd

from kit.claim import claim
from kit.config import Config, to_dict
from kit.io import atomic_write_text

log = logging.getLogger(__name__)
RUNS = "mlflow.json"
ARTIFACTS = ("cv.json", "plan.json", "per_class.csv", "confused_pairs.csv", "confusion_matrix.png", "mistakes.png",
             "lr_find.png")
CV_METRICS = {"score": "cv_score", "top1": "cv_top1", "top5": "cv_top5", "fold_std": "fold_std",
              "last_epoch_score": "cv_last"}
PARAM_MAX = 6000  # characters of a param's value that MLflow keeps
_OFF: dict[str, str] = {}  # tracking URI -> why it is off in this process (said once)
_CLIENTS: dict[str, object] = {}
_CHECKED: set[str] = set()  # run ids found alive on the server in this process


def tracking_uri(cfg: Config) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(cfg.work_dir).absolute() / 'mlflow.db'}"


def shown(uri: str) -> str:
    """The URI as it may be printed and kept on disk: without a user or password (https://user:token@host)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _scrub(text: str, uri: str) -> str:
    """`text` without the URI's user:password nor a credential MLflow reads from the environment."""
    netloc = urlsplit(uri).netloc
    secrets = [netloc.rsplit("@", 1)[0]] if "@" in netloc else []
    secrets += [os.environ.get(k, "") for k in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")]
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _off(uri: str, why: str) -> None:
    if uri not in _OFF:
        _OFF[uri] = why = _scrub(why, uri)
        log.warning("tracking=mlflow: %s; the run goes on without MLflow", why)


CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def _unanswered(client, uri: str) -> str:
    """'' if MLflow's own client gets an answer from the server at `uri` (a few seconds at most), else why not."""
    saved = {k: os.environ.get(k) for k in CHECK_ENV}
    os.environ.update(CHECK_ENV)  # one try, a short wait: MLflow reads these at each request
    try:
        client.search_experiments(max_results=1)
        return ""
    except Exception as e:  # noqa: BLE001 (MLflow's or requests' errors alike)
        what = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        if "Connection" in what or "Max retries" in what or "timed out" in what:
            return f"{shown(uri)} does not answer ({what}): is the server up, and MLFLOW_TRACKING_URI right?"
        return (f"the first call to {shown(uri)} failed ({what}): are the credentials right (in the URI, "
                "MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN)?")
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _client(cfg: Config):
    uri = tracking_uri(cfg)
    if uri in _OFF:
        return None
    if uri not in _CLIENTS:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            return _off(uri, "the mlflow package is not installed (pip install mlflow)")
        for key, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}.items():
            os.environ.setdefault(key, value)  # a server that stops answering costs seconds, not MLflow's minutes
        client = MlflowClient(uri)
        if uri.startswith(("http://", "https://")) and (why := _unanswered(client, uri)):
            return _off(uri, why)
        _CLIENTS[uri] = client
    return _CLIENTS[uri]


def _guarded(cfg: Config, what: str, action):
    """action(client), or None with one warning (and MLflow off) if the tracker fails: a tracker never stops a run."""
    client = _client(cfg)
    if client is None:
        return None
    try:
        return action(client)
    except Exception as e:  # noqa: BLE001 (MLflow's, requests' or the store's errors alike)
        first = (str(e).splitlines() or [""])[0][:200]  # an error may have no message
        _off(tracking_uri(cfg), f"{what} failed at {shown(tracking_uri(cfg))} ({type(e).__name__}: {first})")
        return None


def _read(path: Path) -> dict:
    """{URI without credentials: run id} (an earlier kit keyed it by the URI as given, credentials and all)."""
    try:
        runs = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}
    return {shown(uri): run for uri, run in runs.items()}


def tracked(cfg: Config, folder: Path) -> bool:
    """Whether the experiment in `folder` has a run at this tracking URI (it was tracked, whatever cfg says now)."""
    return shown(tracking_uri(cfg)) in _read(folder / RUNS)


def _experiment_id(client, cfg: Config) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"kit/{Path(cfg.data).name}"
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    local = not tracking_uri(cfg).startswith(("http://", "https://", "databricks"))
    where = (Path(cfg.work_dir).absolute() / "mlartifacts").as_uri() if local else None
    try:
        return client.create_experiment(name, artifact_location=where)
    except Exception:  # noqa: BLE001 (another trainer made it meanwhile)
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _alive(client, run_id: str) -> bool:
    if run_id in _CHECKED:
        return True
    try:
        alive = client.get_run(run_id).info.lifecycle_stage == "active"
    except Exception as e:  # noqa: BLE001
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(e, "error_code", "")) + str(e):
            raise
        alive = False
    if alive:
        _CHECKED.add(run_id)
    return alive


def _run(client, cfg: Config, path: Path, name: str, tags: dict, params: dict) -> str:
    """The run recorded in `path` for this URI, or a new one (recorded there; the caller holds the claim)."""
    uri, runs = shown(tracking_uri(cfg)), _read(path)
    if uri in runs and _alive(client, runs[uri]):
        return runs[uri]
    from mlflow.entities import Param
    run = client.create_run(_experiment_id(client, cfg), run_name=name, tags=tags)
    items = [Param(k, str(v)[:PARAM_MAX]) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow takes 100 params a call
        client.log_batch(run.info.run_id, params=items[i:i + 100])
    _CHECKED.add(run.info.run_id)
    atomic_write_text(path, json.dumps(runs | {uri: run.info.run_id}, indent=2) + "\n")
    return run.info.run_id


def _parent(client, cfg: Config, folder: Path) -> str:
    """The experiment's run: made once, under a claim, whichever trainer or command comes first."""
    known = _read(folder / RUNS).get(shown(tracking_uri(cfg)))
    if known and _alive(client, known):
        return known
    with claim(folder / ".mlflow.lock", wait=True):
        return _run(client, cfg, folder / RUNS, cfg.name, {"kit.experiment": cfg.name, "kit.data": str(cfg.data)},
                    to_dict(cfg))


def _child(client, cfg: Config, fold: Path) -> str:
    """The fold's run, under its experiment's (the fold's trainer holds the fold's claim)."""
    parent = _parent(client, cfg, fold.parent)
    return _run(client, cfg, fold / RUNS, f"{cfg.name} {fold.name}",
                {"mlflow.parentRunId": parent, "kit.experiment": cfg.name,
                 "kit.fold": fold.name.removeprefix("fold")}, {"fold": fold.name.removeprefix("fold")})


def _metrics(values: dict, step: int = 0) -> list:
    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]


def epoch(cfg: Config, fold: Path, row: dict) -> None:
    def log_epoch(client):
        client.log_batch(_child(client, cfg, fold), metrics=_metrics(
            {k: v for k, v in row.items() if k != "epoch"}, row["epoch"]))
    _guarded(cfg, "logging an epoch", log_epoch)


def fold_done(cfg: Config, fold: Path, best: dict) -> None:
    def finish(client):
        run = _child(client, cfg, fold)
        client.log_batch(run, metrics=_metrics({"best_score": best["score"], "best_epoch": best["epoch"],
                                                "best_stage": best["stage"]}))
        for name in ("history.csv", "curves.png"):
            if (fold / name).is_file():
                client.log_artifact(run, str(fold / name))
        client.set_terminated(run, "FINISHED")
    _guarded(cfg, "ending a fold's run", finish)


def experiment_done(cfg: Config, folder: Path) -> None:
    cv = _read(folder / "cv.json")

    def log_cv(client):
        run = _parent(client, cfg, folder)
        client.log_batch(run, metrics=_metrics({CV_METRICS[k]: v for k, v in cv.items() if k in CV_METRICS}))
        for name in ARTIFACTS:
            if (folder / name).is_file():
                client.log_artifact(run, str(folder / name))
        client.set_terminated(run, "FINISHED")
    _guarded(cfg, "logging the CV", log_cv)


def submission(cfg: Config, folder: Path, csv: Path, manifest: Path) -> None:
    def log_files(client):
        run = _parent(client, cfg, folder)
        for path in (csv, manifest, folder / "cv.json"):  # cv.json: predict adds tta=auto's choice to it
            if path.is_file():
                client.log_artifact(run, str(path), None if path.name == "cv.json" else "submissions")
    _guarded(cfg, "logging the submission", log_files)


def scores(cfg: Config, board: pd.DataFrame) -> None:
    """Each scored row's ref and scores to the runs of its experiments (those tracked at this URI)."""
    work, uri = Path(cfg.work_dir), shown(tracking_uri(cfg))
    scored = board[(board["kaggle_ref"] != "") & (board["experiments"] != "(kaggle)")].sort_values("created_at")
    for name in sorted({n for names in scored["experiments"] for n in names.split()}):
        run = _read(work / name / RUNS).get(uri)
        if run is None:
            continue
        rows = scored[scored["experiments"].str.split().apply(lambda names, n=name: n in names)]

        def log_scores(client, rows=rows, run=run):
            tags, values = {}, {}
            for r in rows.to_dict("records"):
                numbers = {k: float(r[k]) for k in ("public", "private") if _number(r[k])}
                tags[f"kaggle_ref/{r['file']}"] = str(r["kaggle_ref"])
                values |= {f"{k}/{r['file']}": v for k, v in numbers.items()}
                if numbers:  # the newest scored submission's, as the run's own
                    tags["kaggle_ref"], values = str(r["kaggle_ref"]), values | numbers
            known = client.get_run(run).data.metrics
            for key, value in tags.items():
                client.set_tag(run, key, value)
            client.log_batch(run, metrics=_metrics({k: v for k, v in values.items() if known.get(k) != v}))
        _guarded(cfg, "logging Kaggle's scores", log_scores)


def _number(text) -> bool:
    try:
        float(text)
        return str(text).strip() != ""
    except (TypeError, ValueError):
        return False
