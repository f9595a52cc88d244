"""The code-competition notebook's prediction speed beside `kit predict --bundle` on the same images.

    make && python -m bench.notebook        # the demo's two experiments (trained by make), its 360 test images

Writes the notebook (`kit notebook`, wheels from .whl/notebook), runs it in a Jupyter kernel (nbclient) with
its input root on a stand-in of /kaggle/input holding the demo data and the dataset, and times the whole
run and the notebook's own figure (it prints images per second); then times `python -m kit predict --bundle`
on the same folder as a command. Both on this machine's CPU, one after the other.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(size: str = "cpu") -> list[dict]:
    import nbclient
    import nbformat
    data = REPO / "data" / "demo"
    if not (REPO / "folds" / "demo" / "demo").is_dir():
        raise SystemExit("train the demo first: make")
    with tempfile.TemporaryDirectory(prefix="kit-nb-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "kit", "notebook", "--exp", "demo", "demo_baseline", "--comp", "demo",
                        "--user", "bench", "--wheels", str(REPO / ".whl" / "notebook"), "--out", str(tmp / "nb"),
                        f"data={data}", f"submissions_dir={tmp / 'subs'}"], check=True, cwd=REPO)
        root = tmp / "input"
        root.mkdir()
        (root / "demo").symlink_to(data.resolve())
        slug = json.loads((tmp / "nb" / "demo" / "dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
        shutil.copytree(tmp / "nb" / "demo" / "dataset", root / slug)
        (tmp / "working").mkdir()
        os.environ.update({"KIT_KAGGLE_INPUT": str(root), "KIT_KAGGLE_WORKING": str(tmp / "working"),
                           "PYTHONPATH": str(REPO)})
        nb = nbformat.read(str(tmp / "nb" / "demo" / "kernel" / "notebook.ipynb"), as_version=4)
        t0 = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp)}}).execute()
        t_nb = time.perf_counter() - t0
        printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
        rate = re.search(r"(\d+) test images in (\d+) s: ([\d.]+) images/s", printed)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kit", "predict", "--bundle", str(root / slug / "bundle"),
                        f"data={data}", f"submissions_dir={tmp / 'home'}"], check=True, cwd=REPO,
                       capture_output=True)
        t_cli = time.perf_counter() - t0
        same = (tmp / "working" / "submission.csv").read_bytes() == (tmp / "home" / "submission.csv").read_bytes()
    n = int(rate.group(1)) if rate else 0
    return [{"how": "the notebook, in a Jupyter kernel (start-up and all cells)", "images": n,
             "seconds": round(t_nb, 1), "images/s": round(n / t_nb, 1) if n else None},
            {"how": "the notebook's own figure (its predict cell)", "images": n,
             "seconds": int(rate.group(2)) if rate else None, "images/s": float(rate.group(3)) if rate else None},
            {"how": "python -m kit predict --bundle", "images": n, "seconds": round(t_cli, 1),
             "images/s": round(n / t_cli, 1) if n else None, "same bytes": same}]


if __name__ == "__main__":
    for row in run():
        print(row)
