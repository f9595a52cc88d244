"""The report page (kit report): one self-contained file of the data set's leaderboard and experiments.

Checked by parsing the page: a row for every submission of leaderboard.csv, best CV first with the picks
marked, each manifest one click away, every image inlined, no element pointing to the network; and what
is missing said on the page, never a stop. (A real headless browser's rendering is not checked here.)"""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

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
