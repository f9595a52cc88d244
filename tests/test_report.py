"""The report page (kit report): one self-contained file of the data set's leaderboard and experiments.

Checked by parsing the page: a row for every submission of leaderboard.csv, best CV first with the picks
marked, each manifest one click away, every image inlined, no element pointing to the network; and what
is missing said on the page, never a stop. Then opened in a real headless browser (Debian's chromium,
driven by playwright): no script error, every row rendered, sorting by a column works, nothing requested
but the file itself and its inlined images, and a screenshot that is not blank."""
from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import TINY, write_folder_data
from kit.jobs.cli import main


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.rows, self.picks, self._in_body, self._row = [], [], [], False, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._in_body:
            self._row = []
            if "pick" in (attrs.get("class") or ""):
                self.picks.append(len(self.rows))
        if tag == "td" and self._row is not None:
            self._row.append("")

    def handle_data(self, data):
        if self._row is not None and self._row:
            self._row[-1] += data

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "tbody":
            self._in_body = False


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    data = write_folder_data(tmp / "data", n_per_class=8, n_test=6)
    keys = [f"{k}={v}" for k, v in {**TINY, "stage1_epochs": 1, "stage2_epochs": 0, "batch_size": 4}.items()
            if k != "name"]
    keys += [f"data={data}", f"work_dir={tmp / 'folds'}", f"submissions_dir={tmp / 'subs'}"]
    for command in ("folds", "train", "predict"):
        assert main([command, "--exp", "demo", "demo_baseline", *keys]) == 0
    return tmp, keys


def page_columns() -> list[str]:
    from kit.board import report
    return report.COLUMNS


def _page(tmp) -> Page:
    page = Page()
    page.feed((tmp / "subs" / "report.html").read_text())
    return page


def test_predict_writes_a_page_with_every_submission_best_first_and_nothing_from_the_network(run):
    tmp, _ = run
    page = _page(tmp)  # make predict wrote it
    board = pd.read_csv(tmp / "subs" / "leaderboard.csv", dtype=str, keep_default_na=False)
    files = [r[0] for r in page.rows[:len(board)]]
    assert sorted(files) == sorted(board["file"]), "a row for every submission"
    spread = {r[0]: r[page_columns().index("fold_std")] for r in page.rows[:len(board)]}
    assert spread == dict(zip(board["file"], board["fold_std"])) and all(spread.values()), "the fold spread shown"
    cvs = [float(board.set_index("file").loc[f, "cv"]) for f in files]
    assert cvs == sorted(cvs, reverse=True) and page.picks == [0], "best CV first (accuracy), the pick marked"
    manifests = [link for link in page.links if link.endswith(".json")]
    assert sorted(manifests) == sorted(Path(f).with_suffix(".json").name for f in board["file"])
    assert all((tmp / "subs" / m).is_file() for m in manifests), "each manifest one click away, beside the page"
    images = [link for link in page.links if not link.endswith(".json")]
    assert images and all(link.startswith("data:image/png;base64,") for link in images), "every image inlined"
    assert not [link for link in page.links if "://" in link or link.startswith("//")], "nothing from the network"
    assert len(images) >= 2 * 2 + 1, "both experiments' fold curves, and the plot"


def test_what_is_missing_is_a_line_on_the_page(run, capsys):
    tmp, keys = run
    board = pd.read_csv(tmp / "subs" / "leaderboard.csv", dtype=str, keep_default_na=False)
    gone = tmp / "subs" / board["file"].iloc[0]
    gone.rename(gone.with_suffix(".kept"))
    curves = tmp / "folds" / "demo" / "fold0" / "curves.png"
    curves.rename(curves.with_suffix(".kept"))
    try:
        assert main(["report", "--exp", "demo", "demo_baseline", *keys]) == 0
        html = (tmp / "subs" / "report.html").read_text()
        assert f"{gone.name}: the submission file is gone" in html and "fold0: no curves.png" in html
    finally:
        gone.with_suffix(".kept").rename(gone)
        curves.with_suffix(".kept").rename(curves)
    assert not list((tmp / "subs").glob(".*report*")), "written beside, then renamed"


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]  # a closed network: no update or sync calls at start


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("KIT_BROWSER_REQUIRED"):
            pytest.fail("KIT_BROWSER_REQUIRED is set and there is no chromium (make test installs it as root)")
        pytest.skip("no chromium: as root, make test installs Debian's (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def test_the_page_renders_in_a_real_browser_with_every_row_and_no_network(run, browser):
    tmp, _ = run
    page_file = tmp / "subs" / "report.html"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    board = pd.read_csv(tmp / "subs" / "leaderboard.csv", dtype=str, keep_default_na=False)
    rows = page.locator("#board tbody tr")
    assert rows.count() == len(board), "a row for every submission of leaderboard.csv"
    assert sorted(rows.locator("td:first-child").all_inner_texts()) == sorted(board["file"])
    header = page.locator("#board thead th").nth(0)  # file: distinct values, so one of the two orders is new
    header.click()
    up = rows.locator("td:first-child").all_inner_texts()
    header.click()
    down = rows.locator("td:first-child").all_inner_texts()
    assert up == sorted(board["file"]) and down == up[::-1], "a click on a column sorts by it, again the other way"
    images = page.locator("img")
    assert images.count() >= 5 and all(page.evaluate("i => i.complete && i.naturalWidth > 0", images.nth(i).element_handle())
                                       for i in range(images.count())), "every figure decoded"
    shot = tmp / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert not errors, errors
    assert {u.split(":", 1)[0] for u in requests} <= {"file", "data"}, [u for u in requests if not u.startswith(("file:", "data:"))]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] > 900 and pixels.std() > 10, "a screenshot with something on it"


def test_a_multilabel_experiment_shows_its_worst_tags_and_its_plan(tmp_path):
    from kit.board import report
    folder = tmp_path / "tags"
    folder.mkdir()
    (folder / "per_class.csv").write_text("tag,images,precision,recall,f1,auc\nsea,4,0.5,0.25,0.333333,0.7\n")
    (folder / "plan.json").write_text('{"key": "k", "lr": {"lr": 0.0123456, "lrs": [0.1, 1.0], "seconds": 3.2}}')
    shown = report._experiment(folder)
    assert shown["per_class_title"].startswith("Worst tags") and shown["per_class"][0]["auc"] == "0.7000"
    assert not [m for m in shown["missing"] if "confusion" in m], "no confusion matrix is due for tags"
    assert [m for m in shown["missing"] if "mistakes.png" in m], "the mistakes are"
    assert shown["plan"] == [{"step": "lr", "decided": "lr 0.01235", "seconds": 3.2}], "scalars only, lists left out"


def test_the_correlation_of_cv_with_public_and_private():
    from kit.board import leaderboard, report
    from kit.metrics import get
    board = pd.DataFrame({"file": list("abcd"), "cv": ["0.95", "0.92", "0.90", ""],
                          "public": ["0.94", "0.93", "0.89", "0.99"], "private": ["0.93", "", "0.88", ""]})
    public, private = report.correlations(leaderboard.summary(board, get("accuracy")))
    r = np.corrcoef([0.95, 0.92, 0.90], [0.94, 0.93, 0.89])[0, 1]
    assert public == f"correlation of CV with public: {r:+.3f} over 3 submissions", "rows without a CV left out"
    assert private.startswith("no correlation of CV with private yet: it needs 3"), "2 with both scores"
