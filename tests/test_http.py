"""The daemon's HTTP side (onlinel1/server/http.py, metrics.py), against a
fake ``StatusSource`` whose readings the tests set.

* ``/metrics`` parses with prometheus-client's own parser, its numbers are
  the source's stats numbers, reading by reading, and the histograms
  count what ``RequestMetrics`` observed; docs/metrics.md lists exactly
  the metrics exported.
* ``/healthz`` and ``/readyz`` answer with the right code and body when
  all is well, with no model, with a failing snapshot and when the
  daemon's loop does not answer in time.
* Unknown paths are 404, other methods 405, malformed requests 400.
* A silent client, a 10 MB header and a flood of connections do not stop
  other scrapes; the bounded pool refuses what it cannot queue.
* ``/status.json`` keeps the sampled history, answers increments, and
  records snapshots written and failed.
* ``close()`` joins every thread and frees the port.

Every server binds 127.0.0.1 on a free port; every wait has a deadline.
"""
from __future__ import annotations

import copy
import http.client
import json
import pathlib
import re
import socket
import sys
import threading

import pytest

from conftest import wait_for
from onlinel1 import Batch, Learner
from onlinel1.server.http import (MISSING_CLIENT, HttpServer, MissingDependency,
                                  parse_http_endpoint)
from onlinel1.server.metrics import LATENCY_BUCKETS, RequestMetrics
from onlinel1.server.config import DaemonConfig
from onlinel1.server.trainer import Trainer

pytest.importorskip("prometheus_client", reason="pip install 'onlinel1[http]' (the test extra "
                                                "has it)")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
WAIT = 10.0          # seconds: the bound of every wait for something expected
VERSION = "onlinel1 0.1.0"


# ------------------------------------------------------------- the fake

def real_report(loss: str = "log", update: str = "fobos", name: str = "m") -> dict:
    """The report of a real model after a few examples, as the daemon's
    status gives it (``Trainer.report``: the ``stats`` report and the keys
    the HTTP side reads)."""
    trainer = Trainer(name, Learner(loss=loss, update=update, l1=1e-4),
                      DaemonConfig(window_examples=2))
    rows = [{1: 1.0, 2: 0.5}, {2: 1.0, 3: 1.0}, {1: 1.0, 4: 2.0}]
    trainer.stats.learned(trainer.learner.learn(Batch.from_rows(rows, [1, -1, 1])))
    trainer.stats.batches += 1
    report = trainer.report()
    assert {"update", "snapshot_failing"} <= set(report)
    return report


def ctr_report() -> dict:
    """A classification model with requests, errors, producers and a snapshot."""
    r = real_report("log", "fobos", "ctr")
    r.update(examples=123_456, batches=124, t=123_456, nnz=4321, store_features=5000,
             store_bytes=163_840, learning_rate=0.05, uptime_s=3600.5, snapshots_failed=2,
             reloads=0)
    r["progressive"].update(loss=0.4567, accuracy=0.8123)
    r["progressive"]["window"].update(examples=10_000, loss=0.4012, accuracy=0.8302)
    r["requests"] = {"predict": 1500, "stats": 12, "learn": 3}
    r["errors"] = {"bad_batch": 4, "unknown_op": 1}
    r["rejected"] = {"too_large": 2}
    r["producers"] = {"loader-1": 41, "loader-2": 7}
    r["last_snapshot"] = {"seq": 17, "file": "snapshot-000000000017.ol1",
                          "unix_time": 1_764_600_000.25, "size": 2_000_000, "duration_s": 0.25,
                          "pause_s": 0.0012, "reason": "periodic", "examples": 120_000}
    return r


def price_report() -> dict:
    """A regression model (no accuracy), with no snapshot yet."""
    r = real_report("squared", "cumulative", "price")
    r.update(examples=999, batches=3, nnz=12, snapshots_failed=0, reloads=5)
    r["requests"] = {"predict": 2}
    return r


class FakeSource:
    """A thread-safe StatusSource; ``change(fn)`` edits the models it
    reports, ``stick()`` makes its reads time out (the loop not
    answering) until ``unstick()``."""

    def __init__(self, models: dict | None = None, mode: str = "training") -> None:
        self._lock = threading.Lock()
        self._models = copy.deepcopy(models if models is not None else
                                     {"ctr": ctr_report(), "price": price_report()})
        self.mode = mode
        #: The daemon's own counters: requests naming no loaded model.
        self.daemon = {"models": len(self._models), "requests": {"list": 3, "create": 1},
                       "errors": {"unknown_model": 2}, "rejected": {"unknown_model": 5}}
        self.reads = 0
        self._stuck = False
        self._release = threading.Event()

    def read(self, timeout: float) -> dict:
        with self._lock:
            self.reads += 1
            stuck = self._stuck
            doc = {"daemon": {"mode": self.mode, "uptime_s": 7200.25, "version": VERSION,
                              **copy.deepcopy(self.daemon)},
                   "models": copy.deepcopy(self._models)}
        if stuck:
            # A loop busy for the whole timeout (or until unstick()).
            self._release.wait(timeout)
            raise TimeoutError(f"the loop did not answer within {timeout} s")
        return doc

    def change(self, fn) -> None:
        with self._lock:
            fn(self._models)

    @property
    def models(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._models)

    def stick(self) -> None:
        with self._lock:
            self._stuck = True
            self._release.clear()

    def unstick(self) -> None:
        with self._lock:
            self._stuck = False
            self._release.set()


@pytest.fixture
def serve():
    """``serve(source=None, metrics=None, **options)``: a started
    HttpServer on a free loopback port, closed at the end."""
    servers = []

    def start(source=None, metrics=None, endpoint="127.0.0.1:0", **options):
        options.setdefault("read_timeout", 0.5)
        options.setdefault("sample_interval", 3600.0)     # samples taken by the test
        server = HttpServer(endpoint, source or FakeSource(), metrics or RequestMetrics(),
                            **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


def get(address, path: str, method: str = "GET", timeout: float = WAIT):
    """(status, headers, body) of one request."""
    conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def scrape(server) -> dict:
    """``/metrics`` parsed by prometheus-client: {family name: family}."""
    status, headers, body = get(server.address, "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def values(families: dict, sample_name: str) -> dict[tuple, float]:
    """{sorted label items: value} of every sample called ``sample_name``."""
    out = {}
    for family in families.values():
        for s in family.samples:
            if s.name == sample_name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def by_model(families: dict, sample_name: str) -> dict[str, float]:
    return {dict(k)["model"]: v for k, v in values(families, sample_name).items()}


def raw(address, data: bytes, timeout: float = WAIT) -> bytes:
    """Send ``data`` on a fresh connection; everything received until the server closes."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        return recv_all(s)


def recv_all(s: socket.socket) -> bytes:
    chunks = []
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


# ------------------------------------------------------------- endpoint

@pytest.mark.parametrize("text, expected", [
    ("9100", ("127.0.0.1", 9100)), (":9100", ("127.0.0.1", 9100)), ("0", ("127.0.0.1", 0)),
    ("127.0.0.1:9100", ("127.0.0.1", 9100)), ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("10.1.2.3:65535", ("10.1.2.3", 65535)), ("localhost:9100", ("localhost", 9100)),
    ("metrics.internal:80", ("metrics.internal", 80)), ("[::1]:9100", ("::1", 9100)),
    ("[::]:0", ("::", 0)),
])
def test_parse_http_endpoint(text, expected):
    assert parse_http_endpoint(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "it is empty"), (" 9100", "spaces"), ("http://127.0.0.1:9100", "not a URL"),
    ("tcp://127.0.0.1:9100", "not a URL"), ("127.0.0.1:9100/metrics", "not a URL"),
    ("65536", "the port 65536"), ("127.0.0.1:", "the port ''"), ("x:abc", "the port 'abc'"),
    ("-1", "the port '-1'"), ("::1:9100", "IPv6 address goes in brackets"),
    ("[::1]9100", "in brackets followed by the port"), ("[not-v6]:9100", "not an IPv6 address"),
    ("999.1.1.1:9100", "not an IPv4 address or a host name"), ("bad_host:9100", "host name"),
    ("*:9100", "host name"), ("١٢:9100", "host name"), ("9100 ", "spaces"),
])
def test_parse_http_endpoint_refuses_with_a_clear_message(text, message):
    with pytest.raises(ValueError) as info:
        parse_http_endpoint(text)
    assert message in str(info.value) and repr(text) in str(info.value)
    assert "HOST:PORT" in str(info.value)


def test_bad_endpoint_is_refused_before_binding():
    with pytest.raises(ValueError, match="bad HTTP endpoint 'tcp://0.0.0.0:9100'"):
        HttpServer("tcp://0.0.0.0:9100", FakeSource(), RequestMetrics())


def test_start_names_the_endpoint_it_cannot_bind(serve):
    first = serve()
    taken = f"127.0.0.1:{first.address[1]}"
    second = HttpServer(taken, FakeSource(), RequestMetrics())
    with pytest.raises(OSError, match=re.escape(f"cannot listen on the HTTP endpoint {taken}: ")):
        second.start()
    second.close()
    # An address this machine does not have (TEST-NET-1: nothing is sent).
    third = HttpServer("192.0.2.1:0", FakeSource(), RequestMetrics())
    with pytest.raises(OSError, match="cannot listen on the HTTP endpoint 192.0.2.1:0"):
        third.start()
    third.close()


def test_missing_prometheus_client_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)    # import fails
    with pytest.raises(MissingDependency) as info:
        HttpServer("127.0.0.1:0", FakeSource(), RequestMetrics())
    assert str(info.value) == ("--http-endpoint needs prometheus-client: "
                               "pip install 'onlinel1[http]'")
    assert str(info.value) == MISSING_CLIENT and isinstance(info.value, ImportError)
    # The daemon's side does not need it.
    RequestMetrics().observe("m", "predict", 0.001)


# -------------------------------------------------------------- /metrics

def test_metrics_equal_the_sources_stats_numbers(serve):
    source = FakeSource()
    server = serve(source)
    families = scrape(server)
    ctr, price = source.models["ctr"], source.models["price"]
    assert values(families, "onlinel1_up") == {(): 1.0}
    assert values(families, "onlinel1_ready") == {(): 1.0}
    assert values(families, "onlinel1_daemon_info") == {
        (("mode", "training"), ("version", VERSION)): 1.0}
    assert values(families, "onlinel1_uptime_seconds") == {(): 7200.25}
    assert values(families, "onlinel1_models") == {(): 2.0}
    assert values(families, "onlinel1_daemon_requests_total") == {(("op", "create"),): 1,
                                                                  (("op", "list"),): 3}
    assert values(families, "onlinel1_daemon_errors_total") == {(("code", "unknown_model"),): 2}
    assert values(families, "onlinel1_daemon_rejected_total") == {(("code", "unknown_model"),): 5}
    assert values(families, "onlinel1_model_info") == {
        (("model", "ctr"), ("update", "fobos")): 1.0,
        (("model", "price"), ("update", "cumulative")): 1.0}
    for sample, key in [("onlinel1_examples_total", "examples"),
                        ("onlinel1_batches_total", "batches"),
                        ("onlinel1_snapshots_failed_total", "snapshots_failed"),
                        ("onlinel1_reloads_total", "reloads"),
                        ("onlinel1_learner_clock", "t"),
                        ("onlinel1_nonzero_weights", "nnz"),
                        ("onlinel1_store_features", "store_features"),
                        ("onlinel1_store_bytes", "store_bytes"),
                        ("onlinel1_learning_rate", "learning_rate"),
                        ("onlinel1_model_uptime_seconds", "uptime_s")]:
        assert by_model(families, sample) == {"ctr": ctr[key], "price": price[key]}, sample
    assert families["onlinel1_examples"].type == "counter"
    assert families["onlinel1_nonzero_weights"].type == "gauge"
    assert by_model(families, "onlinel1_progressive_loss") == {
        "ctr": 0.4567, "price": price["progressive"]["loss"]}
    assert by_model(families, "onlinel1_progressive_window_loss") == {
        "ctr": 0.4012, "price": price["progressive"]["window"]["loss"]}
    assert by_model(families, "onlinel1_progressive_window_examples") == {
        "ctr": 10_000, "price": price["progressive"]["window"]["examples"]}
    # The squared loss has no accuracy: no sample rather than a made-up one.
    assert by_model(families, "onlinel1_progressive_accuracy") == {"ctr": 0.8123}
    assert by_model(families, "onlinel1_progressive_window_accuracy") == {"ctr": 0.8302}
    assert by_model(families, "onlinel1_snapshot_failing") == {"ctr": 0.0, "price": 0.0}
    # Only ctr has written a snapshot.
    snapshot = ctr["last_snapshot"]
    for sample, key in [("onlinel1_last_snapshot_timestamp_seconds", "unix_time"),
                        ("onlinel1_last_snapshot_seq", "seq"),
                        ("onlinel1_last_snapshot_size_bytes", "size"),
                        ("onlinel1_last_snapshot_duration_seconds", "duration_s"),
                        ("onlinel1_last_snapshot_pause_seconds", "pause_s"),
                        ("onlinel1_last_snapshot_examples", "examples")]:
        assert by_model(families, sample) == {"ctr": snapshot[key]}, sample
    for sample, label, key in [("onlinel1_requests_total", "op", "requests"),
                               ("onlinel1_errors_total", "code", "errors"),
                               ("onlinel1_rejected_total", "code", "rejected"),
                               ("onlinel1_producer_last_seq", "producer", "producers")]:
        expected = {tuple(sorted({"model": m, label: k}.items())): v
                    for m, r in (("ctr", ctr), ("price", price)) for k, v in r[key].items()}
        assert values(families, sample) == expected, sample

    # Each scrape reads the daemon again.
    reads = source.reads

    def more(models):
        models["ctr"]["examples"] += 500
        models["ctr"]["requests"]["health"] = 9
        models["ctr"]["progressive"]["loss"] = 0.42
        del models["price"]
    source.change(more)
    families = scrape(server)
    assert source.reads == reads + 1
    assert by_model(families, "onlinel1_examples_total") == {"ctr": 123_956}
    assert by_model(families, "onlinel1_progressive_loss") == {"ctr": 0.42}
    assert values(families, "onlinel1_requests_total")[(("model", "ctr"), ("op", "health"))] == 9


def test_metrics_of_a_fresh_model_leave_unknown_values_out(serve):
    fresh = real_report()
    fresh.update(examples=0, t=0, last_snapshot=None)
    fresh["progressive"] = {"loss": None, "accuracy": None,
                            "window": {"examples": 0, "loss": None, "accuracy": None}}
    families = scrape(serve(FakeSource({"new": fresh})))
    assert by_model(families, "onlinel1_examples_total") == {"new": 0}
    for sample in ("onlinel1_progressive_loss", "onlinel1_progressive_accuracy",
                   "onlinel1_progressive_window_loss", "onlinel1_last_snapshot_timestamp_seconds"):
        assert by_model(families, sample) == {}, sample
    assert by_model(families, "onlinel1_progressive_window_examples") == {"new": 0}


def test_histograms_count_the_observations(serve):
    metrics = RequestMetrics()
    for seconds in (0.00003, 0.0003, 0.003, 20.0):    # <= 50 us, <= 0.5 ms, <= 5 ms, > 10 s
        metrics.observe("ctr", "predict", seconds)
    metrics.observe("ctr", "stats", 0.0001)
    for _ in range(3):
        metrics.observe_batch("ctr", 1000, 0.02)
    metrics.observe_batch("price", 1, 0.00004)
    families = scrape(serve(metrics=metrics))
    family = families["onlinel1_request_duration_seconds"]
    assert family.type == "histogram"
    buckets = {float(s.labels["le"]): s.value for s in family.samples
               if s.name.endswith("_bucket") and s.labels["op"] == "predict"}
    assert min(buckets) == 0.00005 and max(b for b in buckets if b != float("inf")) == 10.0
    assert sorted(buckets)[:-1] == list(LATENCY_BUCKETS)
    assert buckets[0.00005] == 1 and buckets[0.0001] == 1 and buckets[0.0005] == 2
    assert buckets[0.005] == 3 and buckets[10.0] == 3 and buckets[float("inf")] == 4
    count = values(families, "onlinel1_request_duration_seconds_count")
    assert count == {(("model", "ctr"), ("op", "predict")): 4,
                     (("model", "ctr"), ("op", "stats")): 1}
    total = values(families, "onlinel1_request_duration_seconds_sum")
    assert total[(("model", "ctr"), ("op", "predict"))] == pytest.approx(20.00333)
    assert by_model(families, "onlinel1_batch_duration_seconds_count") == {"ctr": 3, "price": 1}
    assert by_model(families, "onlinel1_batch_duration_seconds_sum")["ctr"] == pytest.approx(0.06)
    sizes = {(s.labels["model"], float(s.labels["le"])): s.value
             for s in families["onlinel1_batch_size_examples"].samples
             if s.name.endswith("_bucket")}
    assert sizes[("ctr", 100.0)] == 0 and sizes[("ctr", 1000.0)] == 3 and sizes[("price", 1.0)] == 1
    # Forgetting a model drops its series.
    metrics.forget("price")
    families = scrape(serve(metrics=metrics))
    assert set(by_model(families, "onlinel1_batch_duration_seconds_count")) == {"ctr"}


def test_request_metrics_bound_their_series(monkeypatch):
    import onlinel1.server.metrics as module
    monkeypatch.setattr(module, "MAX_SERIES", 3)
    metrics = RequestMetrics()
    for i in range(5):
        metrics.observe("m", f"op{i}", 0.001)
    assert len(metrics.requests()) == 3 and metrics.dropped == 2


def test_docs_list_every_metric_exported(serve):
    """docs/metrics.md's table names exactly the metrics /metrics exports
    (with a model of each kind, a snapshot and observed latencies)."""
    metrics = RequestMetrics()
    metrics.observe("ctr", "predict", 0.001)
    metrics.observe_batch("ctr", 10, 0.01)
    families = scrape(serve(metrics=metrics))
    exported = {name + "_total" if f.type == "counter" else name for name, f in families.items()}
    text = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(onlinel1_\w+)`", text, re.M))
    assert documented == exported, (sorted(documented - exported), sorted(exported - documented))


# ----------------------------------------------------------------- probes

def test_healthz_and_readyz_when_all_is_well(serve):
    server = serve()
    status, headers, body = get(server.address, "/healthz")
    assert (status, body) == (200, b"ok\n") and headers["content-type"].startswith("text/plain")
    status, headers, body = get(server.address, "/readyz")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"ready": True, "reasons": [], "models": ["ctr", "price"]}


def test_readyz_without_a_model(serve):
    server = serve(FakeSource({}))
    assert get(server.address, "/healthz")[:3:2] == (200, b"ok\n")
    status, _, body = get(server.address, "/readyz")
    assert status == 503
    assert json.loads(body) == {"ready": False, "reasons": ["no model is loaded"], "models": []}
    families = scrape(server)
    assert values(families, "onlinel1_up") == {(): 1.0}
    assert values(families, "onlinel1_ready") == {(): 0.0}


def test_readyz_names_the_model_whose_snapshot_fails(serve):
    source = FakeSource()
    server = serve(source)

    def failing(models):
        models["ctr"]["snapshot_failing"] = True
        models["ctr"]["snapshots_failed"] = 3
    source.change(failing)
    status, _, body = get(server.address, "/readyz")
    doc = json.loads(body)
    assert status == 503 and doc["ready"] is False and doc["models"] == ["ctr", "price"]
    assert doc["reasons"] == ["model 'ctr': its last snapshot attempt failed (3 failed so far)"]
    assert get(server.address, "/healthz")[0] == 200     # alive, just not ready
    families = scrape(server)
    assert values(families, "onlinel1_ready") == {(): 0.0}
    assert by_model(families, "onlinel1_snapshot_failing") == {"ctr": 1.0, "price": 0.0}
    # The next snapshot succeeds: ready again.
    source.change(lambda models: models["ctr"].update(snapshot_failing=False))
    assert get(server.address, "/readyz")[0] == 200


def test_probes_when_the_loop_does_not_answer(serve):
    source = FakeSource()
    metrics = RequestMetrics()
    metrics.observe("ctr", "predict", 0.001)
    server = serve(source, metrics, read_timeout=0.3)
    source.stick()
    status, _, body = get(server.address, "/healthz")
    assert status == 503 and body == b"the daemon loop did not answer within 0.3 s\n"
    status, _, body = get(server.address, "/readyz")
    assert status == 503
    assert json.loads(body) == {"ready": False, "models": [],
                                "reasons": ["the daemon loop did not answer within 0.3 s"]}
    # /metrics still answers: down, not ready, no model numbers, the histograms kept.
    families = scrape(server)
    assert values(families, "onlinel1_up") == {(): 0.0}
    assert values(families, "onlinel1_ready") == {(): 0.0}
    assert values(families, "onlinel1_examples_total") == {}
    assert values(families, "onlinel1_request_duration_seconds_count") == {
        (("model", "ctr"), ("op", "predict")): 1}
    source.unstick()
    assert get(server.address, "/healthz")[:3:2] == (200, b"ok\n")
    assert values(scrape(server), "onlinel1_up") == {(): 1.0}


def test_a_failing_source_is_reported_not_fatal(serve):
    class Broken(FakeSource):
        def read(self, timeout):
            raise RuntimeError("boom")
    server = serve(Broken())
    status, _, body = get(server.address, "/healthz")
    assert status == 503 and b"RuntimeError: boom" in body
    assert values(scrape(server), "onlinel1_up") == {(): 0.0}


def test_the_loop_never_waits_on_a_scrape(serve):
    """While a scrape waits for the loop, the loop's own calls
    (RequestMetrics.observe) go through."""
    source = FakeSource()
    metrics = RequestMetrics()
    server = serve(source, metrics, read_timeout=30.0)
    source.stick()
    result = []
    scraper = threading.Thread(target=lambda: result.append(get(server.address, "/metrics")))
    scraper.start()
    wait_for(lambda: source.reads, lambda n: n >= 2, WAIT, "the scrape reading the source")
    for _ in range(1000):
        metrics.observe("ctr", "predict", 0.001)
    assert scraper.is_alive() and not result      # the scrape is still waiting
    source.unstick()
    scraper.join(WAIT)
    assert result and result[0][0] == 200


# -------------------------------------------------------- paths, methods

@pytest.mark.parametrize("path", ["/nope", "/metrics/", "/status.html", "/status_page.html",
                                  "/../../etc/passwd", "/onlinel1/server/http.py", "/static/",
                                  "//metrics", "/favicon.ico", "/healthz/x"])
def test_unknown_paths_are_404(serve, path):
    status, _, body = get(serve().address, path)
    assert status == 404 and b"not found" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods_are_405(serve, method):
    server = serve()
    for path in ("/metrics", "/", "/nope"):
        status, headers, _ = get(server.address, path, method)
        assert status == 405 and headers["allow"] == "GET, HEAD", (method, path)


def test_head_has_the_headers_and_no_body(serve):
    server = serve()
    for path in ("/metrics", "/healthz", "/", "/status.json"):
        status, headers, body = get(server.address, path, "HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0, path
    assert get(server.address, "/nope", "HEAD")[0] == 404


def test_query_strings_and_malformed_requests(serve):
    server = serve()
    assert get(server.address, "/metrics?x=1")[0] == 200
    assert get(server.address, "/status.json?after=abc")[0] == 400
    assert get(server.address, "/status.json?after=-1")[0] == 400
    for request in (b"GARBAGE\r\n\r\n", b"GET /metrics\r\n\r\n", b"GET /metrics SPDY/3\r\n\r\n",
                    b"GET metrics HTTP/1.1\r\n\r\n"):
        assert raw(server.address, request).startswith(b"HTTP/1.1 400 "), request
    reply = raw(server.address, b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nok\n")
    assert b"Connection: close\r\n" in reply and b"Cache-Control: no-store\r\n" in reply


# ---------------------------------------------------------- hostile clients

def test_hostile_clients_do_not_block_scrapes(serve):
    server = serve(header_timeout=1.0)
    silent = socket.create_connection(server.address, timeout=WAIT)      # sends nothing
    slow = socket.create_connection(server.address, timeout=WAIT)
    slow.sendall(b"GET /metr")                                            # and never the rest
    big = socket.create_connection(server.address, timeout=WAIT)
    sent = []

    def send_big():
        try:
            big.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 10_000_000 + b"\r\n\r\n")
            sent.append("all")
        except OSError as exc:     # the server stopped reading and closed
            sent.append(type(exc).__name__)
    sender = threading.Thread(target=send_big)
    sender.start()
    try:
        for _ in range(5):
            status, _, _ = get(server.address, "/metrics", timeout=WAIT)
            assert status == 200
        assert get(server.address, "/healthz", timeout=WAIT)[0] == 200
        sender.join(WAIT)
        assert not sender.is_alive() and sent
        reply = recv_all(big)
        # Refused after MAX_HEAD_BYTES: the 431 or, if the client was still
        # sending, a reset.
        assert reply.startswith(b"HTTP/1.1 431 ") or reply == b"", reply[:100]
        # The silent and the slow ones are closed after the head deadline.
        for s in (silent, slow):
            assert recv_all(s).startswith(b"HTTP/1.1 408 ")
    finally:
        for s in (silent, slow, big):
            s.close()


def test_too_many_connections_are_refused_not_queued(serve):
    server = serve(max_connections=3, header_timeout=WAIT)
    idle = [socket.create_connection(server.address, timeout=WAIT) for _ in range(3)]
    try:
        # The server counts a connection once it has accepted it.
        status = wait_for(lambda: get(server.address, "/healthz")[0], lambda s: s == 503, WAIT,
                          "the connection limit")
        assert status == 503
        assert raw(server.address, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(
            b"HTTP/1.1 503 Service Unavailable")
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: get(server.address, "/healthz")[0], lambda s: s == 200, WAIT,
             "service once the idle connections are gone")


def test_the_pool_refuses_what_it_cannot_queue(serve):
    source = FakeSource()
    server = serve(source, read_timeout=30.0, workers=1, queue_limit=2)
    source.stick()
    replies: list = []
    lock = threading.Lock()

    def one():
        reply = get(server.address, "/healthz", timeout=60)
        with lock:
            replies.append(reply)
    clients = [threading.Thread(target=one) for _ in range(5)]
    for c in clients:
        c.start()
    # Two hold the pool's slots (reading the stuck loop); the other three are refused at once.
    wait_for(lambda: len(replies), lambda n: n >= 3, WAIT, "the refusals")
    with lock:
        busy = list(replies)
    assert [r[0] for r in busy] == [503] * 3
    assert all(r[2] == b"busy: too many requests in progress\n" for r in busy)
    assert all(r[1]["retry-after"] == "1" for r in busy)
    source.unstick()
    for c in clients:
        c.join(WAIT)
    assert len(replies) == 5
    assert get(server.address, "/healthz")[0] == 200


# ------------------------------------------------------------ status.json

def status_json(server, query: str = "") -> dict:
    status, headers, body = get(server.address, "/status.json" + query)
    assert status == 200 and headers["content-type"] == "application/json", body[:200]
    return json.loads(body)


def test_status_json_keeps_the_sampled_history(serve):
    source = FakeSource()
    server = serve(source, history=4)
    wait_for(lambda: status_json(server)["seq"], lambda s: s >= 1, WAIT, "the first sample")
    examples = [source.models["ctr"]["examples"]]
    for i in range(5):
        source.change(lambda models: models["ctr"].update(
            examples=models["ctr"]["examples"] + 1000, nnz=models["ctr"]["nnz"] + 1))
        examples.append(source.models["ctr"]["examples"])
        assert server.sample() == 2 + i
    doc = status_json(server)
    assert doc["seq"] == 6 and doc["after"] is None and doc["max_samples"] == 4
    assert doc["daemon"] == {"mode": "training", "uptime_s": 7200.25, "version": VERSION,
                             **source.daemon}
    assert doc["loop"]["ok"] is True and set(doc["models"]) == {"ctr", "price"}
    ctr = doc["models"]["ctr"]
    history = ctr["history"]
    # The ring buffer keeps the last 4 of the 6 samples.
    assert history["seq"] == [3, 4, 5, 6] and history["examples"] == examples[2:]
    assert history["nnz"] == [4323, 4324, 4325, 4326]
    assert all(rate > 0 for rate in history["rate"])
    assert history["loss"] == [0.4567] * 4 and history["accuracy"] == [0.8123] * 4
    assert doc["models"]["price"]["history"]["accuracy"] == [None] * 4
    assert ctr["latest"] == source.models["ctr"] and ctr["update"] == "fobos"
    # Increments: only the samples after the one given.
    later = status_json(server, "?after=5")
    assert later["after"] == 5 and later["models"]["ctr"]["history"]["seq"] == [6]
    assert status_json(server, "?after=6")["models"]["ctr"]["history"]["seq"] == []
    # A model unloaded leaves the history.
    source.change(lambda models: models.pop("price"))
    server.sample()
    assert set(status_json(server)["models"]) == {"ctr"}


def test_status_json_records_snapshots_written_and_failed(serve):
    source = FakeSource()
    server = serve(source)
    wait_for(lambda: status_json(server)["seq"], lambda s: s >= 1, WAIT, "the first sample")
    server.sample()     # the same snapshot again: recorded once
    events = status_json(server)["models"]["ctr"]["snapshots"]
    # ctr started with 2 failures already counted and snapshot 17 written.
    assert [e["kind"] for e in events] == ["written", "failed"]
    assert events[0]["seq"] == 17 and events[0]["size"] == 2_000_000 and events[0]["sample"] == 1
    assert events[1]["failures"] == 2 and events[1]["new"] == 2 and events[1]["before"] is True

    def written(models):
        models["ctr"]["last_snapshot"] = dict(models["ctr"]["last_snapshot"], seq=18,
                                              file="snapshot-000000000018.ol1")
    source.change(written)
    seq_written = server.sample()
    source.change(lambda models: models["ctr"].update(snapshots_failed=3, snapshot_failing=True))
    seq_failed = server.sample()
    doc = status_json(server, f"?after={seq_written - 1}")
    events = doc["models"]["ctr"]["snapshots"]
    assert [(e["kind"], e["sample"]) for e in events] == [("written", seq_written),
                                                          ("failed", seq_failed)]
    assert events[0]["seq"] == 18 and events[1]["new"] == 1 and events[1]["failures"] == 3
    assert events[1]["before"] is False
    assert doc["models"]["ctr"]["latest"]["snapshot_failing"] is True


def test_status_json_when_the_loop_stops_answering(serve):
    source = FakeSource()
    server = serve(source, read_timeout=0.2)
    wait_for(lambda: status_json(server)["seq"], lambda s: s >= 1, WAIT, "the first sample")
    source.stick()
    assert server.sample() is None
    doc = status_json(server)
    assert doc["loop"]["ok"] is False and "did not answer" in doc["loop"]["error"]
    assert doc["seq"] == 1 and doc["models"]["ctr"]["history"]["seq"] == [1]     # kept
    source.unstick()
    assert server.sample() == 2 and status_json(server)["loop"]["ok"] is True


def test_the_sampler_samples_by_itself(serve):
    server = serve(sample_interval=0.05)
    wait_for(lambda: status_json(server)["seq"], lambda s: s >= 3, WAIT, "three samples")


def test_status_page_is_served_with_a_strict_policy(serve):
    server = serve()
    for path in ("/", "/status"):
        status, headers, body = get(server.address, path)
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert body.startswith(b"<!doctype html>") and b"/status.json" in body
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", policy)
    # Self-contained: nothing is loaded from another host.
    assert not re.search(rb"(src|href)=\"(https?:)?//", body)
    assert b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b"")
    assert b"https://" not in body


# ------------------------------------------------------------------ close

def http_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("onlinel1-http") and t.is_alive()]


def test_close_joins_its_threads_and_frees_the_port():
    before = http_threads()
    source = FakeSource()
    server = HttpServer("127.0.0.1:0", source, RequestMetrics(), read_timeout=0.5,
                        sample_interval=0.05)
    server.start()
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    started = [t for t in http_threads() if t not in before]
    assert {t.name for t in started} >= {"onlinel1-http", "onlinel1-http-sampler",
                                         "onlinel1-http-worker-0", "onlinel1-http-worker-1"}
    assert all(t.daemon for t in started)
    assert get(server.address, "/healthz")[0] == 200
    idle = socket.create_connection(server.address, timeout=WAIT)    # open while closing
    source.stick()                                                   # and a read in progress
    try:
        server.close()
        assert not [t for t in started if t.is_alive()]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=WAIT).close()
        assert recv_all(idle) == b""
    finally:
        idle.close()
        source.unstick()
    server.close()                                                   # idempotent
    # The port can be bound again, by a new server.
    again = HttpServer(f"127.0.0.1:{port}", FakeSource(), RequestMetrics())
    again.start()
    try:
        assert again.address == (host, port) and get(again.address, "/healthz")[0] == 200
    finally:
        again.close()
    assert http_threads() == before
