"""A small Kaggle API server on 127.0.0.1 for the real `kaggle` CLI (kagglesdk) to talk to in tests.

The CLI, run with KAGGLE_API_ENVIRONMENT=LOCALHOST and HTTP_PROXY=http://127.0.0.1:PORT, sends
`POST http://localhost/api/v1/competitions.CompetitionApiService/<Method>` (JSON) through this
"proxy". Implemented: StartSubmissionUpload, the blob PUT, CreateSubmission (scored against a
solution with a Public/Private split), ListSubmissions (paged), GetSubmissionLimits,
DownloadDataFiles (a 302 redirect to the zip), ListCompetitions (the competition and its metric), and for
code competitions StartBlobUpload, GetDatasetStatus, CreateDataset(Version), SaveKernel,
GetKernelSessionStatus and CreateCodeSubmission.
"""
from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pandas as pd

USER, KEY = "kituser", "s3cret-kaggle-key-0123456789"
SERVICE = "/api/v1/competitions.CompetitionApiService/"


class FakeKaggle:
    def __init__(self, solution: pd.DataFrame, data_zip: bytes = b""):
        self.solution = solution  # id, label, Usage
        self.data_zip = data_zip
        self.uploads: dict[str, dict] = {}
        self.submissions: list[dict] = []
        self.fail_upload = False  # the blob PUT answers 500
        self.pending = False  # new submissions stay PENDING
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.metric = "Categorization Accuracy"  # the evaluation metric ListCompetitions names
        self.blobs: dict[str, dict] = {}  # dataset file uploads
        self.datasets: dict[str, list[list[str]]] = {}  # ref -> each version's file names
        self.kernels: dict[str, list[dict]] = {}  # slug -> each pushed version's SaveKernel request
        self.code_submissions: list[dict] = []
        # the data file's stream, as a long download meets it: a pause after each 64 KiB, a cut (the connection
        # closed, once) or a stall (no byte until `release` is set) at byte `break_at`; the Range starts asked for
        self.chunk_delay_s = 0.0
        self.break_at: int | None = None
        self.break_how = "cut"  # or "stall"
        self.release = threading.Event()
        self.ranges: list[int] = []
        self.kernel_log = ""  # what ListKernelSessionOutput answers as the kernel's log (Kaggle's JSON list)
        self.pending_versions = 0  # GetDatasetStatus answers "pending" this many times after each new version
        self.pending_status: dict[str, int] = {}  # ref -> "pending" answers left

    def score(self, csv: bytes) -> tuple[str, str]:
        sub = pd.read_csv(io.BytesIO(csv), dtype=str)
        merged = self.solution.merge(sub.iloc[:, :2].set_axis(["id", "pred"], axis=1), on="id", how="left")
        out = []
        for usage in ("Public", "Private"):
            part = merged[merged["Usage"] == usage]
            out.append(f"{(part['label'] == part['pred']).mean():.5f}")
        return out[0], out[1]

    def add(self, file_name: str, description: str, csv: bytes | None, status: str = "COMPLETE") -> int:
        with self.lock:
            ref = 50000 + len(self.submissions)
            public, private = self.score(csv) if csv is not None and status == "COMPLETE" else (None, None)
            date = datetime(2026, 11, 25, 12, 0, 0) + timedelta(minutes=len(self.submissions))
            self.submissions.append({"ref": ref, "fileName": file_name, "description": description, "status": status,
                                     "date": date.isoformat(timespec="milliseconds") + "Z",
                                     "publicScore": public, "privateScore": private})
            return ref


def _authorized(headers) -> bool:
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):
        return base64.b64decode(auth[6:]).decode() == f"{USER}:{KEY}"
    return auth == f"Bearer {KEY}"


def make_handler(state: FakeKaggle):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: bytes = b"", ctype: str = "application/json", headers: dict | None = None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, code=200):
            self._send(code, json.dumps(obj).encode())

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

        def do_PUT(self):
            path = urlsplit(self.path).path
            body = self._body()
            state.requests.append(f"PUT {path}")
            token = path.rsplit("/", 1)[-1]
            if token in state.blobs:  # a dataset file (StartBlobUpload)
                state.blobs[token]["data"] = body
                return self._json({})
            if state.fail_upload or token not in state.uploads:
                return self._send(500, b"upload failed", "text/plain")
            state.uploads[token]["data"] = body
            self._json({})

        def do_GET(self):
            path = urlsplit(self.path).path
            state.requests.append(f"GET {path}")
            if path.startswith("/files/"):
                return self._stream(state.data_zip)
            self._send(404, b"")

        def _stream(self, data: bytes):
            """The file as a CDN serves it: ETag, Last-Modified, byte ranges (what the CLI resumes with)."""
            etag, start = '"v1-%d"' % len(data), 0
            found = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
            if found and self.headers.get("If-Range", etag) == etag:
                start = int(found.group(1))
                state.ranges.append(start)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            for k, v in {"Content-Type": "application/zip", "Content-Length": str(len(data) - start), "ETag": etag,
                         "Accept-Ranges": "bytes", "Last-Modified": "Wed, 25 Nov 2026 12:00:00 GMT"}.items():
                self.send_header(k, v)
            self.end_headers()
            for at in range(start, len(data), 65536):
                if state.break_at is not None and at >= state.break_at:
                    if state.break_how == "stall":
                        state.release.wait(30)
                    state.break_at = None  # once
                    self.close_connection = True
                    return
                self.wfile.write(data[at:at + 65536])
                self.wfile.flush()
                time.sleep(state.chunk_delay_s)

        def do_POST(self):
            path = urlsplit(self.path).path
            req = json.loads(self._body() or b"{}")
            method = path.rsplit("/", 1)[-1] if path.startswith("/api/v1/") else path  # <service>/<Method>
            state.requests.append(f"POST {method}")
            if not _authorized(self.headers):
                return self._json({"code": 401, "message": "Unauthenticated"}, 401)
            handler = getattr(self, f"_{method}", None)
            if handler is None:
                return self._json({"code": 404, "message": f"no method {method}"}, 404)
            handler(req)

        def _StartSubmissionUpload(self, req):
            token = f"tok{len(state.uploads)}"
            state.uploads[token] = {"name": req.get("fileName", ""), "data": None}
            self._json({"token": token, "createUrl": f"http://localhost/upload/{token}"})

        def _CreateSubmission(self, req):
            upload = state.uploads.get(req.get("blobFileTokens", ""))
            if upload is None or upload["data"] is None:
                return self._json({"code": 400, "message": "no uploaded file"}, 400)
            status = "PENDING" if state.pending else "COMPLETE"
            ref = state.add(upload["name"], req.get("submissionDescription", ""), upload["data"], status)
            self._json({"message": "Successfully submitted", "ref": ref})

        def _ListSubmissions(self, req):
            subs = sorted(state.submissions, key=lambda s: s["ref"], reverse=True)
            size = int(req.get("pageSize") or 20)
            start = int(req.get("pageToken") or 0)
            page = subs[start:start + size]
            rest = str(start + size) if start + size < len(subs) else ""
            self._json({"submissions": [{k: v for k, v in s.items() if v is not None} for s in page],
                        "nextPageToken": rest})

        def _GetSubmissionLimits(self, req):
            self._json({"numToday": len(state.submissions), "numTotal": len(state.submissions), "numAllowedNow": 5})

        def _ListCompetitions(self, req):
            found = [{"ref": f"https://www.kaggle.com/competitions/{req.get('search', '')}",
                      "evaluationMetric": state.metric}]
            self._json({"competitions": found})

        def _StartBlobUpload(self, req):
            token = f"blob{len(state.blobs)}"
            state.blobs[token] = {"name": req.get("name", ""), "data": None}
            self._json({"token": token, "createUrl": f"http://localhost/upload/{token}"})

        def _GetDatasetStatus(self, req):
            ref = f"{req.get('ownerSlug')}/{req.get('datasetSlug')}"
            if ref not in state.datasets:
                return self._json({"code": 404, "message": "not found"}, 404)
            with state.lock:
                waiting = state.pending_status.get(ref, 0)
                if waiting:
                    state.pending_status[ref] = waiting - 1
            self._json({"status": "blobs_received" if waiting else "ready"})  # DatabundleVersionStatus, by name

        def _dataset(self, req, ref):
            files = [state.blobs[f["token"]]["name"] for f in req.get("files", []) if f.get("token") in state.blobs]
            state.datasets.setdefault(ref, []).append(files)
            state.pending_status[ref] = state.pending_versions  # Kaggle builds a version before it is attached
            self._json({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"})

        def _CreateDataset(self, req):
            self._dataset(req, f"{req.get('ownerSlug')}/{req.get('slug')}")

        def _CreateDatasetVersion(self, req):
            self._dataset(req, f"{req.get('ownerSlug')}/{req.get('datasetSlug')}")

        def _SaveKernel(self, req):
            slug = req.get("slug", "")
            state.kernels.setdefault(slug, []).append(req)
            self._json({"ref": f"/code/{slug}", "url": f"https://www.kaggle.com/code/{slug}",
                        "versionNumber": len(state.kernels[slug])})

        def _GetKernelSessionStatus(self, req):
            self._json({"status": "COMPLETE" if state.kernels else "QUEUED"})

        def _ListKernelSessionOutput(self, req):
            self._json({"files": [], "log": state.kernel_log})

        def _CreateCodeSubmission(self, req):
            ref = state.add(req.get("fileName", "submission.csv"), req.get("submissionDescription", ""), None,
                            "PENDING")
            state.code_submissions.append(req)
            self._json({"message": "Successfully submitted", "ref": ref})

        def _DownloadDataFiles(self, req):
            self._send(302, b"", headers={"Location": f"http://localhost/files/{req.get('competitionName')}.zip"})

    return Handler


def start(state: FakeKaggle) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def point_cli(home, port: int, monkeypatch):
    """The real kaggle CLI of this process and its children, aimed at the server on `port`, with a home of its
    own holding credentials (kaggle.json, chmod 600); returns that file."""
    import json
    (home / ".kaggle").mkdir(parents=True)
    creds = home / ".kaggle" / "kaggle.json"
    creds.write_text(json.dumps({"username": USER, "key": KEY}))
    creds.chmod(0o600)
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    proxy = f"http://127.0.0.1:{port}"
    for k, v in {"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle"), "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
                 "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}.items():
        monkeypatch.setenv(k, v)
    return creds
