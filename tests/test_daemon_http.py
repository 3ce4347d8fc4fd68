"""The daemon's HTTP endpoint (``serve --http-endpoint``) against a real
daemon: /metrics parses with prometheus_client's own parser and its
counters equal ``stats`` for every model; the probes follow the snapshots'
health; the status page in headless Chromium draws the daemon's live
numbers and moves on while it learns."""
from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import msgpack
import pytest
import zmq

from onlinel1 import Batch

from conftest import SAMPLES, free_port, load_svmlight, wait_for
from conftest import csr_fields as csr

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

BATCH = 100


@pytest.fixture(scope="module")
def batches():
    X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
    whole = Batch.from_csr(X, y)
    return [whole.slice(i, i + BATCH) for i in range(0, whole.n_rows, BATCH)]


def push(endpoint: str, batches, model: str | None = None) -> None:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10000)
    sock.connect(endpoint)
    try:
        for b in batches:
            sock.send(msgpack.packb({"v": 1, "csr": csr(b),
                                     **({"model": model} if model else {})}))
    finally:
        sock.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def stats(daemon, model: str | None = None) -> dict:
    reply = daemon.request_once({"v": 1, "op": "stats", **({"model": model} if model else {})})
    assert reply["ok"], reply
    return reply["result"]


@pytest.fixture
def http_daemon(start_daemon, tmp_path):
    port = free_port()
    daemon = start_daemon("--http-endpoint", f"127.0.0.1:{port}", "--snapshot-dir",
                          str(tmp_path / "snaps"))
    daemon.http = f"http://127.0.0.1:{port}"
    return daemon


def test_metrics_counters_equal_stats_for_every_model(http_daemon, batches):
    d = http_daemon
    assert d.request_once({"v": 1, "op": "create", "model": "b",
                           "learner": {"update": "fobos"}})["ok"]
    push(d.train, batches[:6])
    push(d.train, batches[6:10], model="b")
    push(d.train, batches[:1], model="missing")                 # counted on the daemon
    wait_for(lambda: (stats(d)["examples"], stats(d, "b")["examples"]),
             lambda n: n == (600, 400), 30.0, "both models learned")
    for _ in range(3):
        assert d.request_once({"v": 1, "op": "predict", "model": "b",
                               "csr": csr(batches[0])})["ok"]
    assert not d.request_once({"v": 1, "op": "nope"})["ok"]      # an error on default
    wait_for(lambda: stats(d)["daemon"]["rejected"], bool, 30.0, "the unknown model counted")
    reports = {"default": stats(d), "b": stats(d, "b")}
    status, text = get(d.http + "/metrics")
    assert status == 200
    m = samples(text)
    for name, r in reports.items():
        label = (("model", name),)
        assert m[("onlinel1_examples_total", label)] == r["examples"]
        assert m[("onlinel1_batches_total", label)] == r["batches"]
        assert m[("onlinel1_nonzero_weights", label)] == r["nnz"]
        assert m[("onlinel1_store_features", label)] == r["store_features"]
        for op, n in r["requests"].items():
            assert m[("onlinel1_requests_total", (("model", name), ("op", op)))] == n
        for code, n in r["errors"].items():
            assert m[("onlinel1_errors_total", (("code", code), ("model", name)))] == n
    assert reports["default"]["errors"] == {"unknown_op": 1}
    assert m[("onlinel1_daemon_rejected_total", (("code", "unknown_model"),))] == 1
    # The latency histograms counted each request the daemon answered.
    assert m[("onlinel1_request_duration_seconds_count", (("model", "b"), ("op", "predict")))] == 3
    assert m[("onlinel1_batch_duration_seconds_count", (("model", "b"),))] == 4


def test_probes_follow_the_daemon_and_its_snapshots(http_daemon, tmp_path, batches):
    d = http_daemon
    assert get(d.http + "/healthz")[0] == 200
    assert get(d.http + "/readyz")[0] == 200
    push(d.train, batches[:2])
    wait_for(lambda: stats(d)["examples"], lambda n: n == 200, 30.0, "learned")
    # The model's folder becomes a file: the snapshot fails, readiness drops.
    folder = tmp_path / "snaps" / "default"
    shutil.rmtree(folder)
    folder.write_text("not a directory")
    reply = d.request_once({"v": 1, "op": "snapshot"}, timeout=30)
    assert not reply["ok"] and reply["error"]["code"] == "internal"
    status, body = get(d.http + "/readyz")
    assert status == 503 and "default" in body
    assert get(d.http + "/healthz")[0] == 200                    # alive all the same
    assert stats(d)["snapshot_failing"] is True
    # Once the folder can be made again, the next snapshot recreates it.
    folder.unlink()
    reply = d.request_once({"v": 1, "op": "snapshot"}, timeout=30)
    assert reply["ok"] and (folder / reply["result"]["file"]).is_file()
    assert get(d.http + "/readyz")[0] == 200 and stats(d)["snapshot_failing"] is False


def test_http_endpoint_errors_are_one_clear_line(tmp_path):
    busy = free_port()
    import socket
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        for value, message in ((f"127.0.0.1:{busy}", "--http-endpoint"),
                               ("127.0.0.1:99999", "http_endpoint"), ("nohost:", "http_endpoint")):
            out = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check",
                                  "--train-endpoint", f"tcp://127.0.0.1:{free_port()}",
                                  "--request-endpoint", f"tcp://127.0.0.1:{free_port()}",
                                  "--http-endpoint", value], capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 1, (value, out.stderr)
            assert message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_status_page_shows_the_live_daemon_and_moves_on_while_it_learns(http_daemon, batches,
                                                                        tmp_path):
    from test_status_page import Page, dump_dom
    d = http_daemon
    push(d.train, batches[:5])
    wait_for(lambda: stats(d)["examples"], lambda n: n == 500, 30.0, "learned")

    def history() -> dict:
        import json
        return json.loads(get(d.http + "/status.json")[1])["models"]["default"]["history"]
    wait_for(lambda: history()["examples"], lambda e: e and e[-1] == 500, 30.0,
             "a sample of 500 examples")
    first = Page(dump_dom(d.http + "/", tmp_path / "p1", 3000))
    assert first.app["data-state"] == "live" and set(first.models) == {"default"}
    drawn_first = int(first.models["default"]["charts"]["nnz"]["data-samples"])
    assert drawn_first >= 1
    # The daemon learns on; the page, loaded again, shows the new numbers.
    push(d.train, batches[5:])
    wait_for(lambda: history()["examples"], lambda e: e and e[-1] == 2000, 30.0,
             "a sample of 2000 examples")
    second = Page(dump_dom(d.http + "/", tmp_path / "p2", 3000))
    drawn = second.models["default"]
    assert int(drawn["charts"]["nnz"]["data-samples"]) > drawn_first
    assert float(drawn["series"][("nnz", "nnz")]["data-last"]) == stats(d)["nnz"]


def test_a_daemon_model_stays_within_its_memory_budget(start_daemon, tmp_path):
    """serve --max-features N over a stream of keys that never repeat: the
    store never holds more than N features, the evictions are counted in
    stats and /metrics, and a model created with its own budget keeps it."""
    import numpy as np
    port = free_port()
    d = start_daemon("--max-features", "5000", "--origin", "first-seen",
                     "--http-endpoint", f"127.0.0.1:{port}")
    assert d.request_once({"v": 1, "op": "create", "model": "small",
                           "learner": {"max_features": 1000, "origin": "first-seen"}})["ok"]
    rng = np.random.default_rng(7)
    fresh = iter(range(1, 10**9))
    for model, n_batches in ((None, 30), ("small", 30)):
        batches = []
        for _ in range(n_batches):
            rows = 50
            keys = np.array([next(fresh) for _ in range(rows * 10)], dtype=np.uint64)
            batches.append(Batch(np.arange(0, rows * 10 + 1, 10), keys, np.ones(rows * 10),
                                 rng.choice([-1.0, 1.0], rows)))
        push(d.train, batches, model=model)
    for model, cap in ((None, 5000), ("small", 1000)):
        s = wait_for(lambda: stats(d, model), lambda s: s["examples"] == 1500, 30.0, "learned")
        assert s["store_features"] <= cap and s["max_features"] == cap
        assert s["evicted"] >= 15000 - cap
    m = samples(get(f"http://127.0.0.1:{port}/metrics")[1])
    assert m[("onlinel1_evicted_total", (("model", "small"),))] == stats(d, "small")["evicted"]
