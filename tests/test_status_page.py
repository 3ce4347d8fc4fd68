"""The status page (onlinel1/server/status_page.html) in a real headless
Chromium, against an HttpServer over the fake source of test_http.py.

``chromium --headless --dump-dom --virtual-time-budget=MS`` loads the
page, lets it run for MS of virtual time (its one-second polls included;
virtual time waits for the fetches) and prints the DOM. Every
``/status.json`` poll after the page's first request takes one more
sample, from source numbers that change each time, so one page load sees
the data move. The checks:

* every chart series has as many points as the samples served up to the
  one the page last drew, and its newest value; the path has as many
  vertices;
* the page polled and redrew (its sample number moved on);
* a second load, after models changed and a snapshot failed, shows the
  new state;
* while the loop does not answer, the page says so and keeps the history.

There is no sleep: the browser's run is bounded by its virtual-time
budget and a timeout, and its whole process group is killed at the end.
Without a chromium binary the test is skipped, except in CI (``CI`` set),
where .ci/run installs the Debian package and a missing one fails.
"""
from __future__ import annotations

import html.parser
import json
import math
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import wait_for
from onlinel1.server.http import HttpServer
from onlinel1.server.metrics import RequestMetrics
from test_http import FakeSource, real_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The page's charts: chart id -> the history columns it draws.
CHARTS = {"loss": ["loss", "window_loss"], "accuracy": ["accuracy", "window_accuracy"],
          "nnz": ["nnz"], "rate": ["rate"]}
WAIT = 10.0


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("CI must load the status page in a real browser, but no chromium binary "
                    f"({', '.join(BROWSERS)}) is on PATH (.ci/run installs the Debian package "
                    "chromium)")
    pytest.skip("no chromium binary to load the status page in (Debian: apt-get install chromium)")


def dump_dom(url: str, profile, budget_ms: int) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time."""
    command = [browser(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions", "--disable-sync",
               "--disable-background-networking", "--disable-component-update",
               "--disable-breakpad", "--disable-crash-reporter", "--disable-dev-shm-usage",
               "--mute-audio", f"--user-data-dir={profile}",
               f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish within 120 s: {err[-2000:]}")
    finally:
        try:        # its helpers, if any outlived it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, err[-3000:]
    assert "<main" in out, (out[:2000], err[-2000:])
    return out


class Page(html.parser.HTMLParser):
    """What a test reads from the dumped DOM: the root's data attributes,
    and per model section its chart series, stats and snapshot rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.app: dict = {}
        self.conn = ""
        self.models: dict[str, dict] = {}
        self._model: str | None = None
        self._depth = 0
        self._text_of: list | None = None
        self._svg: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "main" and a.get("id") == "app":
            self.app = a
        if tag == "span" and a.get("id") == "conn":
            self._text_of = ["conn"]
        if tag == "section" and "data-model" in a:
            self._model, self._depth = a["data-model"], 0
            self.models[self._model] = {"attrs": a, "series": {}, "charts": {}, "stats": {},
                                        "rows": []}
        if self._model is None:
            return
        if tag == "section":
            self._depth += 1
        m = self.models[self._model]
        if tag == "svg" and "data-chart" in a:
            self._svg = m["charts"][a["data-chart"]] = dict(a)
        if tag == "path" and "data-series" in a:
            m["series"][(self._svg["data-chart"], a["data-series"])] = a
        if tag == "dd" and "data-stat" in a:
            self._text_of = ["stat", a["data-stat"]]
        if tag == "tr" and "data-kind" in a:
            m["rows"].append(a)

    def handle_data(self, data):
        if self._text_of and self._text_of[0] == "conn":
            self.conn += data
        elif self._text_of:
            stats = self.models[self._model]["stats"]
            stats[self._text_of[1]] = stats.get(self._text_of[1], "") + data

    def handle_endtag(self, tag):
        if tag in ("span", "dd"):
            self._text_of = None
        if tag == "section" and self._model is not None:
            self._depth -= 1
            if self._depth == 0:
                self._model = None


def vertices(d: str) -> int:
    return len(re.findall(r"[ML]", d)) if d != "M0 0" else 0


def check_drawn(page: Page, payload: dict) -> int:
    """The charts of ``page`` against the history in ``payload`` (the
    server's whole history) up to the sample the page says it drew."""
    drawn = int(page.app["data-seq"])
    assert set(page.models) == set(payload["models"])
    for name, model in payload["models"].items():
        history = model["history"]
        upto = [i for i, seq in enumerate(history["seq"]) if seq <= drawn]
        assert upto, name
        shown = page.models[name]
        for chart, columns in CHARTS.items():
            assert int(shown["charts"][chart]["data-samples"]) == len(upto), (name, chart)
            for column in columns:
                served = [history[column][i] for i in upto
                          if history[column][i] is not None and math.isfinite(history[column][i])]
                path = shown["series"][(chart, column)]
                assert int(path["data-points"]) == len(served), (name, column)
                assert vertices(path["d"]) == len(served), (name, column)
                if served:
                    assert float(path["data-last"]) == served[-1], (name, column)
                else:
                    assert path["data-last"] == "", (name, column)
        events = [e for e in model["snapshots"] if e["sample"] <= drawn]
        assert [r["data-kind"] for r in shown["rows"]] == [e["kind"] for e in reversed(events)]
        nnz = history["nnz"][upto[-1]]
        assert shown["stats"]["nnz"] == (str(nnz) if nnz < 10_000 else shown["stats"]["nnz"])
    return drawn


@pytest.fixture
def page_server():
    servers = []

    def start(source):
        server = HttpServer("127.0.0.1:0", source, RequestMetrics(), read_timeout=2.0,
                            sample_interval=3600.0)     # samples: by the test and the polls
        servers.append(server)
        server.start()
        wait_for(lambda: server.history.payload()["seq"], lambda s: s >= 1, WAIT,
                 "the first sample")
        return server

    yield start
    for server in servers:
        server.close()


def advance(models: dict, step: int) -> None:
    """The daemon learns on: more examples, another loss, more weights."""
    ctr = models["ctr"]
    ctr["examples"] += 1000 + 10 * step
    ctr["batches"] += 1
    ctr["nnz"] += 3
    ctr["progressive"]["loss"] = round(0.45 - 0.001 * step, 6)
    ctr["progressive"]["window"]["loss"] = round(0.40 + 0.002 * (step % 5), 6)
    ctr["progressive"]["accuracy"] = round(0.80 + 0.001 * step, 6)
    if step % 3 == 2:
        ctr["last_snapshot"] = dict(ctr["last_snapshot"], seq=ctr["last_snapshot"]["seq"] + 1)
    if "price" in models:
        models["price"]["examples"] += 7


def test_status_page_draws_the_served_history_and_updates(page_server, tmp_path):
    source = FakeSource()
    server = page_server(source)
    for step in range(4):
        source.change(lambda models: advance(models, step))
        server.sample()
    first_seq = server.history.payload()["seq"]
    polls = []
    original = server.status_payload

    def advancing(after=None):
        if after is not None:       # each poll after the page's first load: new numbers
            source.change(lambda models: advance(models, 10 + len(polls)))
            server.sample()
        polls.append(after)
        return original(after)
    server.status_payload = advancing
    url = f"http://127.0.0.1:{server.address[1]}/"

    page = Page(dump_dom(url, tmp_path / "profile", 5000))
    assert page.app["data-state"] == "live", page.conn
    assert page.conn.startswith("live")
    assert polls[0] is None and len(polls) >= 3, polls
    assert int(page.app["data-polls"]) >= 3
    drawn = check_drawn(page, server.history.payload())
    # It drew more than the history it first loaded: it polled and redrew.
    assert drawn > first_seq
    assert page.app["data-models"] == "2"
    ctr = page.models["ctr"]
    assert ctr["attrs"]["data-snapshot-failing"] == "false"
    assert any(r["data-kind"] == "written" for r in ctr["rows"])
    # The regression model has no accuracy: nothing drawn there.
    price = page.models["price"]
    assert price["series"][("accuracy", "accuracy")]["data-points"] == "0"

    # A second load, later: ctr's snapshots fail, price is gone, a new model appears.
    def later(models):
        models["ctr"].update(snapshot_failing=True,
                             snapshots_failed=models["ctr"]["snapshots_failed"] + 1)
        models.pop("price")
        models["fresh"] = real_report("hinge", "ftrl")
    source.change(later)
    server.sample()
    polls.clear()
    page = Page(dump_dom(url, tmp_path / "profile2", 3000))
    assert set(page.models) == {"ctr", "fresh"} and len(polls) >= 2
    check_drawn(page, server.history.payload())
    ctr = page.models["ctr"]
    assert ctr["attrs"]["data-snapshot-failing"] == "true"
    assert ctr["rows"][-1]["data-kind"] in ("written", "failed")
    assert any(r["data-kind"] == "failed" for r in ctr["rows"])


def test_status_page_when_the_loop_does_not_answer(page_server, tmp_path):
    source = FakeSource()
    server = page_server(source)
    for step in range(3):
        source.change(lambda models: advance(models, step))
        server.sample()
    source.stick()
    assert server.sample() is None           # the sampler's reading timed out
    page = Page(dump_dom(f"http://127.0.0.1:{server.address[1]}/status", tmp_path / "p", 2500))
    assert page.app["data-state"] == "stale"
    assert "the daemon is not answering: the daemon loop did not answer within 2 s" in page.conn
    # The history is still drawn.
    payload = server.history.payload()
    assert check_drawn(page, payload) == payload["seq"] == 4


def test_status_page_without_a_model(page_server, tmp_path):
    server = page_server(FakeSource({}))
    text = dump_dom(f"http://127.0.0.1:{server.address[1]}/", tmp_path / "p", 1500)
    page = Page(text)
    assert page.app["data-models"] == "0" and page.app["data-state"] == "live"
    assert "No model is loaded." in text
    assert json.loads(server.status_payload())["models"] == {}
