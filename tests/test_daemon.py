"""The daemon end to end, over raw ZeroMQ + msgpack (docs/protocol.md is the
only contract these tests use): results, every kind of bad input, shutdown."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from onlinel1 import Batch, Learner, model_file

from conftest import SAMPLES, load_svmlight, wait_for, with_overflowing_row

FLAGS = ("--update", "fobos", "--l1", "1e-4", "--eta0", "0.2")
OPTIONS = dict(update="fobos", l1=1e-4, eta0=0.2)


def csr(batch: Batch, labels=True) -> dict:
    out = {"indptr": batch.indptr.astype("<i8").tobytes(),
           "keys": batch.keys.astype("<u8").tobytes(),
           "values": batch.values.astype("<f8").tobytes()}
    if labels and batch.labels is not None:
        out["labels"] = batch.labels.astype("<f8").tobytes()
    return out


def rows(batch: Batch, labels=True) -> list:
    out = []
    for i in range(batch.n_rows):
        lo, hi = batch.indptr[i], batch.indptr[i + 1]
        row = {"features": dict(zip(batch.keys[lo:hi].tolist(), batch.values[lo:hi].tolist()))}
        if labels:
            row["label"] = float(batch.labels[i])
        out.append(row)
    return out


class Pusher:
    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 5000)
        self.sock.connect(endpoint)

    def send(self, message) -> None:
        self.sock.send(message if isinstance(message, bytes) else msgpack.packb(message),
                       copy=False)

    def close(self) -> None:
        self.sock.close()


def ok(reply: dict) -> dict:
    assert reply["ok"], reply
    return reply["result"]


def learn_in_messages(daemon, batch: Batch, stop: int, size: int = 137) -> None:
    """Rows 0:stop of ``batch`` as acknowledged ``learn`` requests of
    ``size`` rows each (a cut no mini-batch or slice lines up with)."""
    for start in range(0, stop, size):
        ok(daemon.request_once({"v": 1, "op": "learn", "id": start,
                                "csr": csr(batch.slice(start, min(start + size, stop)))}))


def predictions_of(daemon, batch: Batch) -> list:
    return ok(daemon.request_once({"v": 1, "op": "predict",
                                   "csr": csr(batch, labels=False)}))["predictions"]


@pytest.fixture(scope="module")
def a9a():
    X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
    return Batch.from_csr(X, y), X, y


def offline_predictions(a9a, n_train=1500):
    batch, X, y = a9a
    learner = Learner(**OPTIONS)
    learner.learn(batch.slice(0, n_train))
    return learner.predict(batch.slice(n_train, batch.n_rows))


def test_streamed_columnar_batches_give_the_offline_model_exactly(start_daemon, a9a):
    batch, _, _ = a9a
    daemon = start_daemon(*FLAGS)
    push = Pusher(daemon.train)
    try:
        for seq, start in enumerate(range(0, 1500, 137)):
            push.send({"v": 1, "op": "train", "producer": "test", "seq": seq,
                       "csr": csr(batch.slice(start, min(start + 137, 1500)))})
    finally:
        push.close()
    stats = daemon.wait_stats(lambda s: s["examples"] >= 1500)
    assert stats["examples"] == 1500 and stats["rejected"] == {}
    assert stats["producers"] == {"test": 10}
    test = batch.slice(1500, batch.n_rows)
    got = ok(daemon.request_once({"v": 1, "op": "predict", "csr": csr(test, labels=False)}))
    np.testing.assert_array_equal(got["predictions"], offline_predictions(a9a))


def test_row_wise_and_columnar_learn_give_the_same_model(start_daemon, a9a):
    batch, _, _ = a9a
    a, b = start_daemon(*FLAGS), start_daemon(*FLAGS)
    for start in range(0, 1500, 500):
        part = batch.slice(start, start + 500)
        ra = ok(a.request_once({"v": 1, "op": "learn", "id": start, "rows": rows(part)}))
        rb = ok(b.request_once({"v": 1, "op": "learn", "id": start, "csr": csr(part)}))
        assert ra == rb and ra["examples"] == 500
    test = batch.slice(1500, batch.n_rows)
    pa = ok(a.request_once({"v": 1, "op": "predict", "rows": rows(test, labels=False)}))
    pb = ok(b.request_once({"v": 1, "op": "predict", "csr": csr(test, labels=False)}))
    assert pa["predictions"] == pb["predictions"]
    np.testing.assert_array_equal(pa["predictions"], offline_predictions(a9a))


def test_learn_reports_the_progressive_loss(start_daemon, a9a):
    batch, _, _ = a9a
    daemon = start_daemon(*FLAGS)
    reply = daemon.request_once({"v": 1, "op": "learn", "id": "x", "csr": csr(batch.slice(0, 800))})
    assert reply["id"] == "x"
    learner = Learner(**OPTIONS)
    expected = learner.learn(batch.slice(0, 800)).loss
    assert ok(reply) == {"examples": 800, "loss": pytest.approx(expected, rel=1e-12), "t": 800}


def test_predict_options(start_daemon, a9a):
    batch, _, _ = a9a
    daemon = start_daemon(*FLAGS)
    ok(daemon.request_once({"v": 1, "op": "learn", "csr": csr(batch.slice(0, 1500))}))
    test = batch.slice(1500, 1510)
    prob = ok(daemon.request_once({"v": 1, "op": "predict", "csr": csr(test)}))["predictions"]
    margin = ok(daemon.request_once({"v": 1, "op": "predict", "csr": csr(test),
                                     "output": "margin", "top_k": 3}))
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-np.array(margin["predictions"]))), rtol=1e-14)
    for i, contributions in enumerate(margin["contributions"]):
        assert 0 < len(contributions) <= 3
        sizes = [abs(c) for _, c in contributions]
        assert sizes == sorted(sizes, reverse=True)
        lo, hi = test.indptr[i], test.indptr[i + 1]
        assert {k for k, _ in contributions} <= set(test.keys[lo:hi].tolist())


def test_stats_health_config(start_daemon, a9a):
    batch, _, _ = a9a
    daemon = start_daemon(*FLAGS, "--log-level", "debug")
    ok(daemon.request_once({"v": 1, "op": "learn", "csr": csr(batch.slice(0, 1000))}))
    stats = ok(daemon.request_once({"v": 1, "op": "stats"}))
    assert stats["examples"] == 1000 and stats["t"] == 1000 and stats["batches"] == 1
    assert 0 < stats["nnz"] <= stats["store_features"]
    assert stats["store_bytes"] > 0 and stats["learning_rate"] == 0.2
    assert 0.7 < stats["progressive"]["accuracy"] < 0.95
    assert stats["progressive"]["window"]["examples"] == 1000
    assert stats["requests"] == {"health": stats["requests"]["health"], "learn": 1, "stats": 1}
    health = ok(daemon.request_once({"v": 1, "op": "health"}))
    assert health["status"] == "ok" and health["mode"] == "training" and health["examples"] == 1000
    config = ok(daemon.request_once({"v": 1, "op": "config"}))
    assert config["learner"]["update"] == "fobos" and config["learner"]["l1"] == 1e-4
    assert config["daemon"]["request_endpoint"] == daemon.request
    assert config["daemon"]["log_level"] == "debug" and config["protocol"] == 1


def test_config_file_and_flags(start_daemon, tmp_path):
    config = tmp_path / "onlinel1.toml"
    config.write_text('[daemon]\nhigh_water_mark = 7\n\n[learner]\nupdate = "cumulative"\n'
                      'l1 = 0.001\neta0 = 0.3\n')
    daemon = start_daemon("--config", str(config), "--eta0", "0.05")
    got = ok(daemon.request_once({"v": 1, "op": "config"}))
    assert got["learner"]["update"] == "cumulative" and got["learner"]["l1"] == 0.001
    assert got["learner"]["eta0"] == 0.05          # the flag wins over the file
    assert got["daemon"]["high_water_mark"] == 7


# ------------------------------------------------------------- bad input

def packed(**fields):
    return msgpack.packb({"v": 1, **fields})


BAD_REQUESTS = [
    ("not msgpack", b"\xc1\xc1", "malformed"),
    ("truncated msgpack", msgpack.packb({"v": 1, "op": "stats"})[:-3], "malformed"),
    ("not a map", msgpack.packb([1, 2, 3]), "malformed"),
    ("no version", msgpack.packb({"op": "stats"}), "unsupported_version"),
    ("future version", msgpack.packb({"v": 2, "op": "stats"}), "unsupported_version"),
    ("unknown op", packed(op="train_harder"), "unknown_op"),
    ("op not a string", packed(op=7), "unknown_op"),
    ("no examples", packed(op="predict"), "bad_request"),
    ("both encodings", packed(op="predict", rows=[], csr={}), "bad_request"),
    ("rows not a list", packed(op="predict", rows={"a": 1}), "bad_request"),
    ("row not a map", packed(op="predict", rows=[[1, 2]]), "bad_request"),
    ("feature value not a number", packed(op="predict", rows=[{"features": {"a": "x"}}]), "bad_request"),
    ("negative integer feature", packed(op="predict", rows=[{"features": {-4: 1.0}}]), "bad_request"),
    ("unknown row field", packed(op="predict", rows=[{"feature": {"a": 1}}]), "bad_request"),
    ("learn without label", packed(op="learn", rows=[{"features": {"a": 1}}]), "bad_batch"),
    ("label out of range", packed(op="learn", rows=[{"label": 3, "features": {"a": 1}}]), "bad_batch"),
    ("non-finite value", packed(op="learn", rows=[{"label": 1, "features": {"a": float("nan")}}]), "bad_batch"),
    ("non-finite label", packed(op="learn", rows=[{"label": float("inf"), "features": {"a": 1}}]), "bad_batch"),
    ("negative importance", packed(op="learn", rows=[{"label": 1, "importance": -1, "features": {"a": 1}}]), "bad_batch"),
    ("csr field not binary", packed(op="predict", csr={"indptr": [0, 1], "keys": [1], "values": [1.0]}), "bad_request"),
    ("csr missing keys", packed(op="predict", csr={"indptr": np.array([0, 1], "<i8").tobytes()}), "bad_request"),
    ("csr ragged bytes", packed(op="predict", csr={"indptr": b"\x00" * 15, "keys": b"", "values": b""}), "bad_batch"),
    ("csr mismatched lengths", packed(op="predict", csr={
        "indptr": np.array([0, 2], "<i8").tobytes(), "keys": np.array([1, 2], "<u8").tobytes(),
        "values": np.array([1.0], "<f8").tobytes()}), "bad_batch"),
    ("csr indptr decreasing", packed(op="predict", csr={
        "indptr": np.array([0, 2, 1], "<i8").tobytes(), "keys": np.array([1], "<u8").tobytes(),
        "values": np.array([1.0], "<f8").tobytes()}), "bad_batch"),
    ("csr non-finite", packed(op="learn", csr={
        "indptr": np.array([0, 1], "<i8").tobytes(), "keys": np.array([1], "<u8").tobytes(),
        "values": np.array([np.inf], "<f8").tobytes(), "labels": np.array([1.0]).tobytes()}), "bad_batch"),
    ("bad values dtype", packed(op="predict", csr={
        "indptr": np.array([0, 1], "<i8").tobytes(), "keys": np.array([1], "<u8").tobytes(),
        "values": np.array([1.0], "<f8").tobytes(), "values_dtype": "float16"}), "bad_request"),
    ("bad output", packed(op="predict", rows=[{"features": {"a": 1}}], output="odds"), "bad_request"),
    ("bad top_k", packed(op="predict", rows=[{"features": {"a": 1}}], top_k=-1), "bad_request"),
    ("deep nesting", b"\x83" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("op")
     + msgpack.packb("stats") + msgpack.packb("id") + b"\x91" * 3000 + b"\x01", "malformed"),
]


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    from conftest import DaemonProcess
    daemon = DaemonProcess(*FLAGS, "--max-message-bytes", "4096",
                           log_path=tmp_path_factory.mktemp("d") / "daemon.log")
    try:
        daemon.wait_ready()
        X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
        batch = Batch.from_csr(X[:12], y[:12])
        ok(daemon.request_once({"v": 1, "op": "learn", "csr": csr(batch)}))
        yield daemon
    finally:
        daemon.stop()


def model_fingerprint(daemon) -> tuple:
    probe = {"v": 1, "op": "predict", "output": "margin",
             "rows": [{"features": {k: 1.0 for k in range(0, 124, 3)}},
                      {"features": {k: 1.0 for k in range(1, 124, 3)}}]}
    stats = ok(daemon.request_once({"v": 1, "op": "stats"}))
    return tuple(ok(daemon.request_once(probe))["predictions"]), stats["t"], stats["nnz"]


#: The exact replies to the batches a BatchError refuses, as the daemon gave
#: them before the exceptions had fields: the text on the wire is unchanged.
BAD_BATCH_MESSAGES = {
    "label out of range": "labels: must be -1/+1 (or 0/1) for a classification loss, got 3.0 in row 0",
    "non-finite value": "values: non-finite value nan in row 0",
    "non-finite label": "labels: non-finite label inf in row 0",
    "negative importance": "weights: importance must be finite and >= 0, got -1.0 in row 0",
    "csr mismatched lengths": "csr: values: 1 values for 2 keys",
    "csr indptr decreasing": "csr: indptr: decreases at row 1",
    "csr non-finite": "values: non-finite value inf in row 0",
}


@pytest.mark.parametrize("what,message,code", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_an_error_reply_and_changes_nothing(shared_daemon, what, message, code):
    before = model_fingerprint(shared_daemon)
    reply = shared_daemon.request_once(message)
    assert reply["ok"] is False and reply["v"] == 1
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    if what in BAD_BATCH_MESSAGES:
        assert reply["error"] == {"code": code, "message": BAD_BATCH_MESSAGES[what]}
    assert model_fingerprint(shared_daemon) == before


@pytest.mark.parametrize("name,row,value", [("values", 5, np.nan), ("labels", 7, -np.inf),
                                            ("labels", 2, 0.5), ("weights", 10, -2.0)])
def test_the_field_and_row_of_a_bad_batch_reach_the_reply(shared_daemon, a9a, name, row, value):
    from onlinel1 import BatchError
    batch, _, _ = a9a
    part = batch.slice(0, 12)     # within the daemon's max_message_bytes
    arrays = {"values": part.values.copy(), "labels": part.labels.copy(),
              "weights": np.ones(part.n_rows)}
    arrays[name][part.indptr[row] if name == "values" else row] = value
    bad = Batch(part.indptr, part.keys, arrays["values"], arrays["labels"], arrays["weights"])
    with pytest.raises(BatchError) as info:
        Learner(**OPTIONS).check(bad)
    exc = info.value
    assert (exc.field, exc.row) == (name, row)
    message = {**csr(bad), "weights": arrays["weights"].astype("<f8").tobytes()}
    before = model_fingerprint(shared_daemon)
    reply = shared_daemon.request_once({"v": 1, "op": "learn", "csr": message})
    # The protocol carries the field and the row in the message text: the
    # BatchError's own message, unchanged.
    assert reply["error"] == {"code": "bad_batch", "message": str(exc)}
    assert reply["error"]["message"].startswith(f"{exc.field}: ")
    assert reply["error"]["message"].endswith(f" in row {exc.row}")
    assert model_fingerprint(shared_daemon) == before


def test_an_overflow_past_the_first_slice_undoes_the_whole_batch(start_daemon, a9a, tmp_path):
    """Issue 15, finding 4: a batch rejected as ``numeric`` was applied in
    part (the slices before the failing row stayed learned).  Now the reply
    names the row, and the model, its counts and its names are as before."""
    from onlinel1 import NumericError
    from onlinel1._kernels.csr import slice_end
    from onlinel1.server.daemon import MAX_SLICES_PER_CALL
    batch, _, _ = a9a
    bad = with_overflowing_row(batch.slice(0, 400), 300)
    local = Learner(**OPTIONS)
    with pytest.raises(NumericError) as info:
        local.learn(bad)
    exc = info.value
    assert (exc.row, exc.reason, exc.result.rows) == (300, "update", 0)
    assert local.examples_seen == 0 and local.store_size == 0
    slice_nnz = 100
    assert slice_end(bad.indptr, 0, MAX_SLICES_PER_CALL * slice_nnz) < 300   # a later call
    config = tmp_path / "slices.toml"
    # importance 1e308 is beyond max_importance: lift it to reach the kernel's overflow.
    config.write_text(f"[daemon]\nslice_nnz = {slice_nnz}\nmax_importance = inf\n")
    daemon = start_daemon(*FLAGS, "--config", str(config))
    good = batch.slice(400, 600)
    ok(daemon.request_once({"v": 1, "op": "learn", "id": 4, "csr": csr(good)}))
    before = model_fingerprint(daemon)
    message = {**csr(bad), "weights": bad.weights.astype("<f8").tobytes()}
    reply = daemon.request_once({"v": 1, "op": "learn", "id": 5, "csr": message})
    assert reply == {"v": 1, "id": 5, "ok": False, "error": {
        "code": "numeric",
        "message": "example 300 of the batch: the weight update is not finite (feature values "
                   "or importance too large?); the batch was not learned (the model is as it "
                   "was before it)"}}
    assert reply["error"]["message"] == str(exc)       # what the learner says of the whole batch
    assert model_fingerprint(daemon) == before
    stats = ok(daemon.request_once({"v": 1, "op": "stats"}))
    assert stats["examples"] == 200 and stats["errors"] == {"numeric": 1}
    reference = Learner(**OPTIONS)
    reference.learn(good)
    assert stats["progressive"]["loss"] == pytest.approx(reference.progress["loss"], rel=1e-12)


def test_a_numeric_batch_on_the_training_socket_leaves_no_seq_and_no_names(start_daemon, a9a,
                                                                          tmp_path):
    """Finding 4 on the fire-and-forget channel: the rejected batch's
    ``seq`` is not recorded (a snapshot's seq means "learned"), its new
    feature names do not join the name table, and the batches after it
    are learned as if it had never come."""
    batch, _, _ = a9a
    bad = with_overflowing_row(batch.slice(0, 300), 250)
    config = tmp_path / "slices.toml"
    config.write_text("[daemon]\nslice_nnz = 100\nmax_importance = inf\n")
    daemon = start_daemon(*FLAGS, "--config", str(config), "--snapshot-dir",
                          str(tmp_path / "snapshots"))
    named = {"v": 1, "op": "train", "producer": "p", "seq": 1, "rows": [
        {"label": 1, "features": {"other": 1.0}},
        {"label": 1, "features": {"fresh": 100.0}, "importance": 1e308}]}
    push = Pusher(daemon.train)
    try:
        push.send({"v": 1, "op": "train", "producer": "p", "seq": 0,
                   "csr": csr(batch.slice(300, 500))})
        push.send(named)
        push.send({"v": 1, "op": "train", "producer": "p", "seq": 2,
                   "csr": {**csr(bad), "weights": bad.weights.astype("<f8").tobytes()}})
        push.send({"v": 1, "op": "train", "producer": "p", "seq": 3,
                   "csr": csr(batch.slice(500, 700))})
    finally:
        push.close()
    stats = daemon.wait_stats(lambda s: s["examples"] >= 400)
    assert stats["examples"] == 400 and stats["rejected"] == {"numeric": 2}
    assert stats["producers"] == {"p": 3}
    reference = Learner(**OPTIONS)
    reference.learn(batch.slice(300, 500))
    reference.learn(batch.slice(500, 700))
    test = batch.slice(1500, batch.n_rows)
    got = ok(daemon.request_once({"v": 1, "op": "predict", "csr": csr(test, labels=False)}))
    np.testing.assert_array_equal(got["predictions"], reference.predict(test))
    ok(daemon.request_once({"v": 1, "op": "snapshot"}))
    path = max((tmp_path / "snapshots").rglob("snapshot-*.ol1"))
    learner, names, extra = model_file.load(path)
    assert "fresh" not in names.values() and "other" not in names.values()
    assert extra["snapshot"]["producers"] == {"p": 3}


def test_oversized_request_gets_too_large(shared_daemon):
    before = model_fingerprint(shared_daemon)
    reply = shared_daemon.request_once(packed(op="predict", rows=[{"features": {"x" * 5000: 1}}]))
    assert reply["error"]["code"] == "too_large"
    assert model_fingerprint(shared_daemon) == before


def test_request_ids_are_echoed_on_errors_too(shared_daemon):
    reply = shared_daemon.request_once(packed(op="nope", id={"trace": 42}))
    assert reply["id"] == {"trace": 42} and reply["error"]["code"] == "unknown_op"


def test_req_socket_envelope_is_accepted(shared_daemon):
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(shared_daemon.request)
        sock.send(packed(op="health"))
        assert sock.poll(5000)
        assert msgpack.unpackb(sock.recv())["result"]["status"] == "ok"
    finally:
        sock.close()


def test_bad_training_batches_are_rejected_whole_counted_and_logged(shared_daemon):
    before = model_fingerprint(shared_daemon)
    stats0 = ok(shared_daemon.request_once({"v": 1, "op": "stats"}))
    push = Pusher(shared_daemon.train)
    bad = [b"\xc1", msgpack.packb({"v": 9}), packed(op="predict", rows=[]),
           packed(rows=[{"features": {"a": 1}}]),                                 # no label
           packed(rows=[{"label": 1, "features": {"a": 1}},
                        {"label": 1, "features": {"a": float("nan")}}]),           # 2nd row bad
           packed(rows=[{"label": 1, "features": {"a": 1}}], seq="one"),
           packed(rows=[{"label": 1, "features": {"y" * 5000: 1}}])]               # too large
    try:
        for message in bad:
            push.send(message)
    finally:
        push.close()
    expected = {"malformed": 1, "unsupported_version": 1, "unknown_op": 1, "bad_batch": 2,
                "bad_request": 1, "too_large": 1}

    def counted(stats):
        return all(stats["rejected"].get(code, 0) - stats0["rejected"].get(code, 0) == n
                   for code, n in expected.items())
    shared_daemon.wait_stats(counted)
    assert model_fingerprint(shared_daemon) == before
    log = shared_daemon.log()
    assert "training batch rejected (bad_batch): rows[0] has no label" in log
    # Rate limited: the second bad_batch within a second is counted, not logged.
    assert log.count("training batch rejected (bad_batch)") == 1


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(start_daemon, a9a):
    batch, _, _ = a9a
    # A batch large enough to take a while: the sample tiled 100 times.
    n = batch.n_rows
    big = Batch(np.concatenate([batch.indptr[:-1] + i * batch.nnz for i in range(100)]
                               + [[100 * batch.nnz]]),
                np.tile(batch.keys, 100), np.tile(batch.values, 100), np.tile(batch.labels, 100))
    daemon = start_daemon(*FLAGS)
    push = Pusher(daemon.train)
    try:
        push.send({"v": 1, "csr": csr(big)})
        push.send({"v": 1, "csr": csr(batch)})   # queued behind it: not taken
    finally:
        push.close()
    daemon.wait_stats(lambda s: s["t"] > 0)   # the batch is in hand
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    log = daemon.log()
    assert "SIGTERM: finishing the batch in hand" in log
    assert f"stopped after {100 * n} examples" in log


def test_requests_are_answered_in_the_middle_of_a_batch(start_daemon, a9a):
    batch, _, _ = a9a
    copies, messages = 20, 20
    big = Batch(np.concatenate([batch.indptr[:-1] + i * batch.nnz for i in range(copies)]
                               + [[copies * batch.nnz]]),
                np.tile(batch.keys, copies), np.tile(batch.values, copies),
                np.tile(batch.labels, copies))
    rows_per_message = big.n_rows
    daemon = start_daemon(*FLAGS)
    push = Pusher(daemon.train)
    try:
        for _ in range(messages):
            push.send({"v": 1, "csr": csr(big)})
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            examples = ok(daemon.request_once({"v": 1, "op": "stats"}))["examples"]
            seen.append(examples)
            if examples % rows_per_message or examples == messages * rows_per_message:
                break
    finally:
        push.close()
    # A stats request answered between two messages would see a multiple of
    # the message's rows: this one came in the middle of one.
    assert seen[-1] % rows_per_message, seen
    done = daemon.wait_stats(lambda s: s["examples"] == messages * rows_per_message)
    assert done["batches"] == messages and done["rejected"] == {}


def test_bind_failure_is_one_clear_line(start_daemon):
    first = start_daemon(*FLAGS)
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--train-endpoint",
                           first.train, "--request-endpoint", "tcp://127.0.0.1:1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "cannot bind" in proc.stderr and "Traceback" not in proc.stderr


def test_check_validates_without_serving(tmp_path):
    import subprocess
    import sys
    from conftest import free_port
    ok_run = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check",
                             "--train-endpoint", f"tcp://127.0.0.1:{free_port()}",
                             "--request-endpoint", f"ipc://{tmp_path}/requests.sock"],
                            capture_output=True, text=True, timeout=30)
    assert ok_run.returncode == 0 and "configuration ok" in ok_run.stderr
    bad = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check",
                          "--train-endpoint", "http://example"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 1 and "train_endpoint must be a ZeroMQ endpoint" in bad.stderr


# ------------------------------------------------------ thread priorities

def threads_of(pid: int) -> list[tuple[int, str, int]]:
    """(thread id, name, nice value) of every thread of a process."""
    out = []
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            out.append((tid, f.read().strip(), os.getpriority(os.PRIO_PROCESS, tid)))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values")
@pytest.mark.parametrize("flags, nice", [((), 10), (("--training-io-nice", "19"), 19),
                                         (("--training-io-nice", "0"), 0)])
def test_the_training_stream_is_read_at_a_lower_cpu_priority(start_daemon, a9a, flags, nice):
    batch, _, _ = a9a
    daemon = start_daemon(*FLAGS, *flags)
    pusher = Pusher(daemon.train)
    try:
        pusher.send({"v": 1, "op": "train", "csr": csr(batch.slice(0, 500))})
        daemon.wait_stats(lambda s: s["examples"] == 500)     # both I/O threads at work
    finally:
        pusher.close()
    threads = threads_of(daemon.proc.pid)
    base = dict((tid, n) for tid, _, n in threads)[daemon.proc.pid]   # the main thread
    io = sorted(n for _, name, n in threads if name.startswith("ZMQbg/IO"))
    # One I/O thread per socket: requests at the daemon's priority, training lowered.
    assert io == sorted([base, max(base, nice)])
    assert all(n == base for tid, name, n in threads if not name.startswith("ZMQbg/")), threads
    got = ok(daemon.request_once({"v": 1, "op": "config"}))
    assert got["daemon"]["training_io_nice"] == nice


@pytest.mark.parametrize("value", [-1, 20, True, "19", 1.5])
def test_training_io_nice_must_be_a_nice_value(value):
    from onlinel1.server import ConfigError, DaemonConfig
    with pytest.raises(ConfigError, match="training_io_nice must be an integer from 0 to 19"):
        DaemonConfig(training_io_nice=value)


def test_lowering_a_priority_never_raises_one_and_never_fails():
    from onlinel1.server import threads
    me = threading.get_native_id()
    mine = os.getpriority(os.PRIO_PROCESS, me)
    result = {}

    def worker():       # a thread of its own: a lowered priority cannot be raised back
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        result["same"] = threads.lower_priority({tid}, before)          # not lower: untouched
        result["lowered"] = threads.lower_priority({tid}, min(before + 3, 19))
        result["after"] = os.getpriority(os.PRIO_PROCESS, tid)
        result["back"] = threads.lower_priority({tid}, before)          # never raised
        result["final"] = os.getpriority(os.PRIO_PROCESS, tid)
        result["gone"] = threads.lower_priority({2**22 + 12345}, 19)    # no such thread
        result["before"], result["tid"] = before, tid

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert not t.is_alive()
    before, tid = result["before"], result["tid"]
    assert result["same"] == [] and result["back"] == [] and result["gone"] == []
    if before < 19:
        assert result["lowered"] == [tid] and result["after"] == min(before + 3, 19)
    assert result["final"] == result["after"]
    assert os.getpriority(os.PRIO_PROCESS, me) == mine       # other threads keep theirs


def test_started_by_names_the_threads_a_zeromq_context_starts():
    from onlinel1.server import threads
    ctx = zmq.Context(io_threads=1)
    try:
        sock, started = threads.started_by(lambda: ctx.socket(zmq.PULL))
        def name(tid: int) -> str:
            with open(f"/proc/self/task/{tid}/comm") as f:
                return f.read().strip()
        # libzmq names its threads from inside them: wait for it.
        names = {wait_for(lambda: name(tid), lambda n: n.startswith("ZMQbg/"), 5,
                          f"the name of thread {tid}", interval=0.001) for tid in started}
        sock.close()
    finally:
        ctx.term()
    assert names == {"ZMQbg/IO/0", "ZMQbg/Reaper"}
