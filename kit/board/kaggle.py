"""Kaggle through its own CLI: download data, submit a file, read the scores of submissions.

    python -m kit download --comp SLUG      # kaggle competitions download SLUG -p data/SLUG, every archive unpacked
    python -m kit submit --comp SLUG        # kaggle competitions submit SLUG -f FILE -m "<exp> cv=... metric=... folds=... sha=..."
    python -m kit leaderboard --comp SLUG   # kaggle competitions submissions SLUG --csv --page-size 200

Credentials are the CLI's own (~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY, KAGGLE_API_TOKEN,
~/.kaggle/access_token). The kit never prints, logs or writes them: everything the CLI says is
scrubbed of them before it is shown. This module only talks to the CLI and returns what it says;
leaderboard.py decides what to submit and owns every write to leaderboard.csv.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from kit.board import transfer as transfer_
from kit.data import unpack

log = logging.getLogger(__name__)
PAGE_SIZE = 200  # the CLI's maximum; it does not expose later pages (Kaggle/kaggle-cli#166)


def _config_dir() -> Path:
    return Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")


def _secrets() -> list[str]:
    """Every credential value the CLI could use, to scrub from anything shown."""
    # read only to know what to hide; never returned to callers that print
    values = [os.environ.get(k, "") for k in ("KAGGLE_KEY", "KAGGLE_API_TOKEN")]
    for name in ("kaggle.json", "access_token"):
        path = _config_dir() / name
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if name == "kaggle.json":
            try:
                values.append(str(json.loads(text).get("key", "")))
            except (ValueError, AttributeError):
                pass
        else:
            values.append(text)
    return [v for v in values if len(v) >= 4]  # a 1-3 character "secret" would scrub ordinary text


def scrub(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def check_credentials() -> None:
    """Fail in one line when the CLI has no credentials; warn when kaggle.json is readable by others."""
    env = os.environ
    has_env = env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"))
    files = [_config_dir() / n for n in ("kaggle.json", "access_token", "credentials.json")]
    present = [p for p in files if p.is_file()]
    if not has_env and not present:
        raise ValueError(f"no Kaggle credentials: put your API token in {_config_dir() / 'access_token'} or "
                         f"kaggle.json there (chmod 600), or set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY)")
    for p in present:
        if p.stat().st_mode & 0o077:
            log.warning("%s can be read by other users; fix it with: chmod 600 %s", p, p)


def _cli() -> list[str]:
    beside = Path(sys.executable).parent / "kaggle"  # the venv's CLI, even when .venv/bin is not on PATH
    return [str(beside)] if beside.is_file() else [shutil.which("kaggle") or "kaggle"]


def _reason(out: str) -> str:
    if re.search(r"\b401\b|Unauthorized|Unauthenticated|Authentication required", out):
        return "credentials rejected (401): check your Kaggle API token"
    if re.search(r"\b403\b|Forbidden", out):
        return "forbidden (403): accept the competition's rules on its Kaggle page first"
    if re.search(r"\b404\b|Could not find competition", out):
        return "competition not found (404): check the slug"
    if re.search(r"Max retries exceeded|ConnectionError|Failed to establish|Name or service not known|timed out", out):
        return "no network: could not reach Kaggle"
    lines = [line.strip() for line in out.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def metadata_timeout_s() -> float:
    """A call that moves no data (a listing, a status, a submit's answer) is answered in seconds or not at all."""
    return float(os.environ.get("KIT_KAGGLE_TIMEOUT_S", "120"))


def stall_s() -> float:
    """A download or an upload has no time limit; one that moves no byte for this long is stopped."""
    return float(os.environ.get("KIT_KAGGLE_STALL_S", "600"))


def run_cli(args: list[str], what: str, program: list[str] | None = None, transfer: bool = False,
            watch: Path | None = None) -> str:
    """Run `kaggle <args>` (or `program` <args>); return its stdout, or raise ValueError with one scrubbed line.

    A `transfer` (a download into `watch`, an upload) runs as long as bytes move, its progress bar shown
    (kit/board/transfer.py); any other call is stopped after metadata_timeout_s()."""
    check_credentials()
    cmd, env = (program or _cli()) + args, {**os.environ, "PYTHONIOENCODING": "utf-8"}
    try:
        if transfer:
            proc = transfer_.run(cmd, env, stall_s(), watch, show=scrub)
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=metadata_timeout_s(), env=env)
    except FileNotFoundError:
        raise ValueError("the kaggle CLI is not installed: pip install 'kit[kaggle]' (in a checkout of the kit, "
                         "make install)") from None
    except subprocess.TimeoutExpired:
        raise ValueError(f"kaggle {what}: no answer in {metadata_timeout_s():g} s (network?)") from None
    except transfer_.Stalled as e:
        kept = f"; what came is kept in {watch}: run it again to resume" if watch is not None else ""
        raise ValueError(f"kaggle {what}: {e} (network? KIT_KAGGLE_STALL_S sets the limit){kept}") from None
    stdout = scrub(proc.stdout)
    out = stdout + "\n" + scrub(proc.stderr)
    # older CLIs print an upload failure and still exit 0
    if proc.returncode != 0 or "Upload unsuccessful" in out or "Could not submit" in out:
        raise ValueError(f"kaggle {what} failed: {_reason(out)}")
    return stdout


def parse_submissions(text: str) -> pd.DataFrame:
    """`kaggle competitions submissions --csv` output -> ref, fileName, date, description, status, scores.

    Quirks handled: warning lines before the header, status printed as `SubmissionStatus.X`,
    dates with a space, missing scores printed as `None` (or empty), "No submissions found".
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ref,")), None)  # skip warnings above it
    columns = ["ref", "fileName", "date", "description", "status", "publicScore", "privateScore"]
    if start is None:
        return pd.DataFrame(columns=columns)
    table = pd.read_csv(io.StringIO("\n".join(lines[start:])), dtype=str, keep_default_na=False)
    table["status"] = table["status"].str.replace("SubmissionStatus.", "", regex=False).str.lower()
    for col in ("publicScore", "privateScore"):
        table[col] = table[col].where(~table[col].isin(["None", "nan", "null"]), "")
    return table


def scores(comp: str) -> pd.DataFrame:
    """Kaggle's table of this competition's submissions (see parse_submissions); the leaderboard merges it."""
    out = run_cli(["competitions", "submissions", comp, "--csv", "--page-size", str(PAGE_SIZE)], "submissions")
    return parse_submissions(out)


def submit(comp: str, path: Path, message: str) -> str:
    """Upload one CSV; return the submission ref the CLI prints ("" if it prints none)."""
    if not comp:
        raise ValueError("no competition: pass COMP=slug (make) or --comp slug")
    if not path.is_file():
        raise ValueError(f"submission file {path} not found")
    out = run_cli(["competitions", "submit", comp, "-f", str(path), "-m", message], "submit", transfer=True)
    found = re.search(r"Submission ref:\s*(\d+)", out)
    return found.group(1) if found else ""  # "" still matches the row by file name at the next sync


# The CLI prints a fixed set of a competition's fields, and its evaluation metric is not one of them: the
# kaggle package's own API reads it, in a process of its own like the CLI (same credentials, same scrubbing).
METRIC_OF = """import json, sys
from kaggle.api.kaggle_api_extended import KaggleApi
api = KaggleApi()
api.authenticate()
found = api.competitions_list(search=sys.argv[1]).competitions or []
print(json.dumps([[c.ref, c.evaluation_metric] for c in found]))
"""


def evaluation_metric(comp: str) -> str:
    """The evaluation metric Kaggle names for competition `comp` ('' when it names none)."""
    out = run_cli([comp], "competitions list", [sys.executable, "-c", METRIC_OF])
    rows = json.loads(out.strip().splitlines()[-1]) if out.strip() else []
    return next((metric or "" for ref, metric in rows if ref.rstrip("/").rsplit("/", 1)[-1] == comp), "")


def _record_metric(comp: str, folder: Path) -> None:
    """competition.json beside the data: the metric Kaggle ranks by, and the kit's name for it (metric=auto uses it)."""
    from kit.metrics import from_kaggle
    try:
        named = evaluation_metric(comp)
    except ValueError as e:  # the data is what was asked for; the metric is a help
        log.warning("could not read %s's evaluation metric (%s); set metric= yourself", comp, e)
        return
    ours = from_kaggle(named)
    (folder / "competition.json").write_text(json.dumps({"competition": comp, "evaluation_metric": named,
                                                         "metric": ours}, indent=2) + "\n")
    log.info("%s ranks by %s%s", comp, named or "(not named)", f": metric {ours}" if ours else
             ", which the kit does not know: set metric= to the nearest (kit --help-config)")


FETCHED = ".kit-fetched"  # in the partial folder: the CLI's download finished; what is left is unpacking


def download(comp: str, out_root: str | Path = "data") -> Path:
    """Download a competition's files into data/<slug>/, every archive in them unpacked (kit/data/unpack.py).

    The files arrive in data/.<slug>.partial/, renamed to data/<slug>/ once all is unpacked. Nothing fetched is
    thrown away: a download cut, stalled or killed is resumed by the next run (the CLI asks for the missing
    bytes), and an archive the unpacking refuses (a cap, a full disk) stays to be unpacked by the next run. A
    folder already there only has its archives still packed unpacked."""
    if not comp:
        raise ValueError("no competition: pass COMP=slug (make) or --comp slug")
    root = Path(out_root)
    out, part = root / comp, root / f".{comp}.partial"
    if out.is_dir() and any(out.iterdir()):
        unpack.unpack_all(out)
        log.info("%s already has the data of %s", out, comp)
        return out
    _remove_strays(root, comp)
    part.mkdir(parents=True, exist_ok=True)
    if not (part / FETCHED).exists():
        kept = transfer_.folder_bytes(part)
        if kept:
            log.info("resuming the download of %s: %.1f MB kept in %s", comp, kept / 2**20, part)
        # no --unzip: the CLI's own extraction checks neither member paths nor sizes; unpack_all does. No -q: its
        # progress bar (bytes, rate, ETA) is shown
        run_cli(["competitions", "download", comp, "-p", str(part)], "download", transfer=True, watch=part)
        _record_metric(comp, part)
        (part / FETCHED).touch()
    try:
        unpack.unpack_all(part)
    except unpack.Damaged as e:  # fetched again by the next run; the rest of the folder is kept
        e.path.unlink(missing_ok=True)
        (part / FETCHED).unlink(missing_ok=True)
        raise ValueError(f"{e}; it was removed: run `make download COMP={comp}` again to fetch it") from None
    except ValueError as e:
        raise ValueError(f"{e}; the download is kept in {part}: `make download COMP={comp}` unpacks it") from None
    (part / FETCHED).unlink()
    if out.exists():
        out.rmdir()
    part.rename(out)
    log.info("downloaded %s into %s", comp, out)
    return out


def _remove_strays(root: Path, comp: str) -> None:
    """Folders .<slug>.XXXXXXXX an earlier kit made for a download and a kill left behind."""
    for stray in root.glob(f".{comp}.*"):
        if stray.is_dir() and stray.name != f".{comp}.partial" and re.fullmatch(r"[a-z0-9_]{8}", stray.suffix[1:]):
            log.info("removing %s, left by a download that was stopped", stray)
            shutil.rmtree(stray)


def _meta(folder: Path, name: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{path} not found: write the notebook first (make notebook COMP=slug)")
    return json.loads(path.read_text())


def push_notebook(folder: str | Path) -> dict:
    """notebook/<slug>/ (kit notebook) to Kaggle through its CLI: `datasets create` of dataset/ (`datasets version`
    once it exists; its folders zipped, which Kaggle unpacks), then `kernels push` of kernel/. Returns the refs."""
    folder = Path(folder)
    dataset, kernel = _meta(folder / "dataset", "dataset-metadata.json"), _meta(folder / "kernel", "kernel-metadata.json")
    try:
        run_cli(["datasets", "status", dataset["id"]], "datasets status")
        exists = True
    except ValueError:
        exists = False
    if exists:
        run_cli(["datasets", "version", "-p", str(folder / "dataset"), "-m", "kit notebook", "--dir-mode", "zip", "-q"],
                "datasets version", transfer=True)
    else:
        out = run_cli(["datasets", "create", "-p", str(folder / "dataset"), "--dir-mode", "zip", "-q"], "datasets create",
                      transfer=True)
        if "error" in out.lower() and "already in use" not in out:
            raise ValueError(f"kaggle datasets create failed: {_reason(out)}")
    wait_ready(dataset["id"])  # else Kaggle may attach the previous version (old weights) to the kernel
    out = run_cli(["kernels", "push", "-p", str(folder / "kernel")], "kernels push")
    if "error" in out.lower():
        raise ValueError(f"kaggle kernels push failed: {_reason(out)}")
    version = re.search(r"Kernel version (\d+)", out)
    spec = json.loads((folder / "dataset" / "bundle" / "bundle.json").read_text())
    pushed = {"dataset": dataset["id"], "kernel": kernel["id"], "version": version.group(1) if version else "",
              "file": spec["submission"]["file"]}  # the file the kernel writes, byte for byte: its leaderboard row
    (folder / "pushed.json").write_text(json.dumps(pushed, indent=2) + "\n")
    log.info("pushed dataset %s (%s) and kernel %s%s; `make submit COMP=...` submits that version", dataset["id"],
             "new version" if exists else "created", kernel["id"], f" version {pushed['version']}" if version else "")
    return pushed


def wait_ready(dataset: str) -> None:
    """Wait until Kaggle has built the dataset's newest version (status ready), KIT_DATASET_READY_S at most."""
    limit, every = (float(os.environ.get(k, d)) for k, d in (("KIT_DATASET_READY_S", "1800"), ("KIT_DATASET_POLL_S", "10")))
    deadline, said = time.monotonic() + limit, ""
    while True:
        out = run_cli(["datasets", "status", dataset], "datasets status")
        said = (out.strip().splitlines() or [""])[-1].strip().lower()
        if said.endswith("ready"):
            return
        if any(bad in said for bad in ("error", "fail", "deleted")):
            raise ValueError(f"dataset {dataset}: Kaggle says {said!r}; the kernel was not pushed. See its page, "
                             "then run make notebook-push again")
        if time.monotonic() > deadline:
            raise ValueError(f"dataset {dataset} not ready after {limit:g} s ({said or 'no status'}); the kernel was "
                             f"not pushed: run make notebook-push again once `kaggle datasets status {dataset}` says "
                             "ready (KIT_DATASET_READY_S waits longer)")
        log.info("dataset %s: %s; waiting for Kaggle to build the version before pushing the kernel", dataset, said)
        time.sleep(every)


def submit_kernel(comp: str, kernel: str, version: str, message: str) -> str:
    """A code competition's submission: the output submission.csv of a pushed kernel version; its ref."""
    if not version:
        raise ValueError(f"no version of kernel {kernel} is recorded: push it again (make notebook-push COMP={comp})")
    out = run_cli(["competitions", "submit", comp, "-k", kernel, "-v", version, "-f", "submission.csv", "-m", message],
                  "submit")
    found = re.search(r"Submission ref:\s*(\d+)", out) or re.search(r"\bref\D*(\d+)", out)
    return found.group(1) if found else ""


def notebook_status(folder: str | Path) -> str:
    """The kernel's run status as Kaggle reports it (queued, running, complete, error); once it ran, what its log
    says the kit noticed there (versions that differ from the export, unreadable test images), a line each."""
    folder = Path(folder)
    kernel = _meta(folder / "kernel", "kernel-metadata.json")
    out = run_cli(["kernels", "status", kernel["id"]], "kernels status")
    found = re.search(r"status\s+\"?([A-Za-z_.]+)", out)
    status = found.group(1).rsplit(".", 1)[-1].lower() if found else out.strip().splitlines()[-1] if out.strip() else ""
    log.info("%s: %s", kernel["id"], status)
    if status in ("complete", "error"):
        for line in kernel_notices(kernel["id"], folder / "output"):
            log.warning("%s said: %s", kernel["id"], line)
    return status


NOTICED = re.compile(r"versions differ from the bundle's export|test image\(s\) could not be read|kit predict: error")


def kernel_notices(kernel: str, out: Path) -> list[str]:
    """The lines of the kernel's log that the kit wrote for its user to see (its log only: no output file)."""
    out.mkdir(parents=True, exist_ok=True)
    try:  # a pattern no file matches: the CLI writes just the log, <slug>.log
        run_cli(["kernels", "output", kernel, "-p", str(out), "--file-pattern", "^$", "-o", "-q"], "kernels output",
                transfer=True, watch=out)
    except ValueError as e:
        log.warning("could not read the kernel's log (%s)", e)
        return []
    text = "".join(_log_text(p.read_text(errors="replace")) for p in sorted(out.glob("*.log")))
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if NOTICED.search(line)))


def _log_text(raw: str) -> str:
    """A kernel's log as text: Kaggle keeps it as a JSON list of {stream_name, time, data}; plain text as it is."""
    try:
        entries = json.loads(raw)
    except ValueError:
        return raw
    return "".join(e.get("data", "") for e in entries if isinstance(e, dict)) if isinstance(entries, list) else raw
