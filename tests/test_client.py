"""The Python client (onlinel1/client.py) and the commands that talk to a
daemon (onlinel1/cli/remote.py).

Most tests run against ``FakeDaemon``: a ROUTER and a PULL socket served by
a thread on free loopback ports, answering as docs/protocol.md says and
recording what it receives.  The tests at the end run the real daemon
(``onlinel1 serve``) in a subprocess.

Every wait is bounded (queue timeouts, poll timeouts, deadlines); every
thread, socket and process is cleaned up in a ``finally``.
"""
from __future__ import annotations

import json
import queue
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from onlinel1 import Batch, Learner
from onlinel1.client import (Client, ClientError, ConnectTimeout, DaemonError, DaemonTimeout,
                             Producer, ProducerTimeout, encode_csr, encode_rows, rows_to_batch)
from onlinel1.io import feature_key, read_batches

from conftest import SAMPLES, load_svmlight, record_parsing_threads, wait_for

A9A = SAMPLES / "a9a_head2000.svm"
VW = SAMPLES / "vw0002_head60.vw"
WAIT = 10.0          # seconds: the bound of every wait for something expected


# ------------------------------------------------------------ fake daemon

def result(msg, value):
    return {"v": 1, "id": msg.get("id"), "ok": True, "result": value}


def error(msg, code, message):
    return {"v": 1, "id": msg.get("id"), "ok": False,
            "error": {"code": code, "message": message}}


def decode_csr(csr):
    values_dtype = "<f4" if csr.get("values_dtype") == "float32" else "<f8"
    return Batch(np.frombuffer(csr["indptr"], "<i8"), np.frombuffer(csr["keys"], "<u8"),
                 np.frombuffer(csr["values"], values_dtype),
                 None if "labels" not in csr else np.frombuffer(csr["labels"], "<f8"),
                 None if "weights" not in csr else np.frombuffer(csr["weights"], "<f8"))


def examples_of(msg):
    """The examples of a message as a Batch (rows hashed as the daemon would)."""
    if "csr" in msg:
        return decode_csr(msg["csr"])
    return rows_to_batch(msg["rows"], labels_required=False)


def row_sums(batch):
    """The fake's "prediction": the sum of each row's values, in float64."""
    values = batch.values.astype(np.float64)
    return np.array([values[a:b].sum() for a, b in zip(batch.indptr[:-1], batch.indptr[1:])],
                    dtype=np.float64)


STATS = {"uptime_s": 12.5, "examples": 100002, "batches": 101, "t": 100002,
         "progressive": {"loss": 0.45, "accuracy": 0.79,
                         "window": {"examples": 10000, "loss": 0.44, "accuracy": 0.8}},
         "nnz": 4012, "learning_rate": 0.1, "requests": {"predict": 10, "stats": 1},
         "errors": {}, "rejected": {"bad_batch": 2}, "producers": {"loader-3": 1234}}


class FakeDaemon:
    """A stand-in for ``onlinel1 serve``: ROUTER (requests) and PULL
    (training) bound on free loopback ports, served by one thread.

    ``handlers[op](msg)`` returns the list of reply maps to send (empty: no
    reply at all; several: e.g. a stale one first).  Received requests go to
    ``requests``, training messages to ``trained``.
    """

    def __init__(self, pull_hwm=1000):
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.pull = self.context.socket(zmq.PULL)
        for s in (self.router, self.pull):
            s.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, pull_hwm)
        self.router.bind("tcp://127.0.0.1:*")
        self.pull.bind("tcp://127.0.0.1:*")
        self.request_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.train_endpoint = self.pull.getsockopt_string(zmq.LAST_ENDPOINT)
        self.requests: queue.Queue = queue.Queue()
        self.trained: queue.Queue = queue.Queue()
        self.handlers = {
            "health": lambda m: [result(m, {"status": "ok", "mode": "training",
                                            "uptime_s": 1.5, "examples": 2000})],
            "stats": lambda m: [result(m, STATS)],
            "config": lambda m: [result(m, {"protocol": 1, "version": "fake"})],
            "predict": lambda m: [result(m, {"predictions": row_sums(examples_of(m)).tolist()})],
            "learn": lambda m: [result(m, {"examples": examples_of(m).n_rows, "loss": 0.5,
                                           "t": 7})],
        }
        self.failure = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fake-daemon", daemon=True)
        self.thread.start()

    def _run(self):
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(20):
                    if sock is self.pull:
                        self.trained.put(msgpack.unpackb(sock.recv(), raw=False,
                                                         strict_map_key=False))
                        continue
                    identity, *_, body = sock.recv_multipart()
                    msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
                    self.requests.put(msg)
                    handler = self.handlers.get(
                        msg.get("op"), lambda m: [error(m, "unknown_op", f"no op {m.get('op')!r}")])
                    for reply in handler(msg):
                        frame = reply if isinstance(reply, bytes) else msgpack.packb(reply)
                        sock.send_multipart([identity, frame])
        except Exception as exc:   # reported by close(), so a test cannot miss it
            self.failure = exc

    def trained_messages(self, n):
        """The next ``n`` training messages (fails after WAIT seconds)."""
        out = []
        for _ in range(n):
            try:
                out.append(self.trained.get(timeout=WAIT))
            except queue.Empty:
                pytest.fail(f"the fake daemon got {len(out)} training messages, expected {n}")
        return out

    def close(self):
        self._stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the fake daemon's thread did not stop"
        self.router.close(linger=0)
        self.pull.close(linger=0)
        self.context.term()
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def fake():
    daemon = FakeDaemon()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def client(fake):
    c = Client(fake.request_endpoint, timeout=WAIT)
    try:
        yield c
    finally:
        c.close()


def unused_endpoint(tmp_path):
    """An endpoint nothing listens on (an ipc path in the test's directory)."""
    return f"ipc://{tmp_path}/nobody.ipc"


def random_batch(rng, n_rows=50, float32=False, weights=True):
    lengths = rng.integers(0, 12, n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nnz = int(indptr[-1])
    keys = rng.integers(0, 2**64 - 1, nnz, dtype=np.uint64, endpoint=True)
    values = rng.standard_normal(nnz).astype(np.float32 if float32 else np.float64)
    return Batch(indptr, keys, values, rng.choice([-1.0, 1.0], n_rows),
                 rng.uniform(0, 3, n_rows) if weights else None)


# ---------------------------------------------------------------- encoding

@pytest.mark.parametrize("float32", [False, True], ids=["float64", "float32"])
def test_encode_csr_is_bit_exact_after_msgpack(float32):
    batch = random_batch(np.random.default_rng(1), float32=float32)
    batch.values[:3] = [np.nan, -0.0, np.inf]             # the encoding keeps any bits
    csr = encode_csr(batch)
    # No copy of arrays already of the wire dtype.
    assert np.shares_memory(np.frombuffer(csr["keys"], "<u8"), batch.keys)
    assert np.shares_memory(np.frombuffer(csr["values"], batch.values.dtype), batch.values)
    wire = msgpack.unpackb(msgpack.packb({"csr": csr}), raw=False)["csr"]
    assert wire.get("values_dtype") == ("float32" if float32 else None)
    decoded = decode_csr(wire)
    for name in ("indptr", "keys", "values", "labels", "weights"):
        sent, got = getattr(batch, name), getattr(decoded, name)
        assert got.dtype == sent.dtype
        assert got.tobytes() == sent.tobytes(), name


def test_encode_csr_converts_and_omits():
    batch = Batch(np.array([0, 1, 1], np.int64), [5], [2.0])     # no labels, no weights
    batch.indptr = batch.indptr.astype(">i8")                   # a big-endian array
    csr = encode_csr(batch)
    assert sorted(csr) == ["indptr", "keys", "values"]
    assert np.frombuffer(csr["indptr"], "<i8").tolist() == [0, 1, 1]
    empty = encode_csr(Batch([0], [], []))
    assert [bytes(empty[k]) for k in ("indptr", "keys", "values")] == \
        [np.zeros(1, "<i8").tobytes(), b"", b""]
    with pytest.raises(TypeError, match="Batch"):
        encode_csr({"indptr": [0]})


def test_encode_rows_plain_values_and_validation():
    rows = encode_rows([{"features": {"price": np.float32(0.5), np.uint64(2**64 - 1): 1},
                         "namespaces": {"user": {"age=30": np.int8(1), 7: 2.5}},
                         "label": np.float64(-1), "importance": 2}])
    assert rows == [{"features": {"price": 0.5, 2**64 - 1: 1},
                     "namespaces": {"user": {"age=30": 1, 7: 2.5}},
                     "label": -1.0, "importance": 2}]
    assert type(next(iter(rows[0]["features"]))) is str
    assert msgpack.unpackb(msgpack.packb(rows), strict_map_key=False) == rows
    bad = [([{"features": {True: 1}}], TypeError, "feature True"),
           ([{"features": {-1: 1}}], ValueError, r"\[0, 2\*\*64\)"),
           ([{"features": {2**64: 1}}], ValueError, r"\[0, 2\*\*64\)"),
           ([{"features": {"a": "1"}}], TypeError, "must be a number"),
           ([{"features": {7: True}}], TypeError, "must be a number"),
           ([{"features": {7: 1.0, -7: 1.0}}], ValueError, r"\[0, 2\*\*64\)"),
           ([{"features": {"a": 1}, "lable": 1}], ValueError, "unknown fields"),
           ([{"features": [1, 2]}], TypeError, "map of feature"),
           ([{"namespaces": {1: {}}}], TypeError, "namespace names"),
           ([{"features": {"a": 1}}, 3], TypeError, "row 1"),
           ({"features": {}}, TypeError, "list of row maps")]
    for data, exc, message in bad:
        with pytest.raises(exc, match=message):
            encode_rows(data)
    with pytest.raises(ValueError, match="row 0: a label is required"):
        encode_rows([{"features": {}}], labels_required=True)


def test_rows_to_batch_hashes_like_the_readers():
    # The same example in VW text, read by the compiled reader, gives the same keys.
    import io
    text = b"1 2 |user age=30 country=fr:2 |f 17:0.5 price:1.5\n"
    expected = next(read_batches(io.BytesIO(text), "vw"))
    batch = rows_to_batch([{"label": 1, "importance": 2,
                            "namespaces": {"user": {"age=30": 1, "country=fr": 2},
                                           "f": {"17": 0.5, "price": 1.5}}}])
    for name in ("indptr", "keys", "values", "labels", "weights"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(expected, name), name)
    plain = rows_to_batch([{"features": {"17": 1, 17: 2, "x": 3}, "label": 0}])
    assert plain.keys.tolist() == [17, 17, feature_key("x")]
    assert plain.weights is None


# ------------------------------------------------------------------ Client

def test_requests_carry_version_and_unique_ids(fake, client):
    assert client.health()["status"] == "ok"
    assert client.stats() == STATS
    assert client.config()["protocol"] == 1
    with pytest.raises(DaemonError):
        client.snapshot()
    with pytest.raises(DaemonError):
        client.request("frobnicate", x=1)
    sent = [fake.requests.get(timeout=WAIT) for _ in range(5)]
    assert [m["op"] for m in sent] == ["health", "stats", "config", "snapshot", "frobnicate"]
    assert all(m["v"] == 1 for m in sent)
    assert len({m["id"] for m in sent}) == 5
    assert sent[-1]["x"] == 1
    with pytest.raises(ValueError, match="id: set by the client"):
        client.request("stats", id=3)


def test_predict_batch_is_columnar_rows_are_rowwise(fake, client):
    batch = random_batch(np.random.default_rng(2), n_rows=30)
    got = client.predict(batch, output="margin", top_k=2)
    msg = fake.requests.get(timeout=WAIT)
    assert msg["output"] == "margin" and msg["top_k"] == 2
    assert sorted(msg["csr"]) == ["indptr", "keys", "values"]   # labels play no part
    assert got["predictions"] == row_sums(batch).tolist()

    rows = [{"features": {"price": 0.5, 17: 1.0}, "namespaces": {"u": {"a": 2.0}},
             "label": 1},
            {"features": {}}]
    got = client.predict(rows)
    msg = fake.requests.get(timeout=WAIT)
    assert msg["output"] == "auto" and "top_k" not in msg
    assert msg["rows"] == [{"features": {"price": 0.5, 17: 1.0}, "namespaces": {"u": {"a": 2.0}}},
                           {"features": {}}]
    assert got["predictions"] == [3.5, 0.0]

    # scipy.sparse: column j is key j.
    X, _ = load_svmlight(A9A, 20)
    assert client.predict(X)["predictions"] == row_sums(Batch.from_csr(X)).tolist()
    with pytest.raises(TypeError, match="examples must be"):
        client.predict("1 17:1")


def test_learn_needs_labels(fake, client):
    assert client.learn([{"features": {"a": 1}, "label": 1}])["examples"] == 1
    assert fake.requests.get(timeout=WAIT)["rows"][0]["label"] == 1
    batch = random_batch(np.random.default_rng(3), n_rows=4)
    assert client.learn(batch)["examples"] == 4
    assert "labels" in fake.requests.get(timeout=WAIT)["csr"]
    with pytest.raises(ValueError, match="label"):
        client.learn([{"features": {"a": 1}}])
    with pytest.raises(ValueError, match="no labels"):
        client.learn(Batch([0, 1], [1], [1.0]))


def test_stale_replies_are_discarded(fake, client):
    def stale_first(m):
        return [result({"id": m["id"] - 1}, {"status": "stale"}),
                result({"id": "someone else"}, {"status": "stale"}),
                result(m, {"status": "ok"})]
    fake.handlers["health"] = stale_first
    assert client.health() == {"status": "ok"}
    assert client.health() == {"status": "ok"}


def test_error_replies_raise_daemon_error(fake, client):
    fake.handlers["predict"] = lambda m: [error(m, "bad_batch", "labels: 2 entries for 3 rows")]
    with pytest.raises(DaemonError) as info:
        client.predict([{"features": {}}])
    assert (info.value.code, info.value.message) == ("bad_batch", "labels: 2 entries for 3 rows")
    # A reply with a null id (the daemon could not read the request) is ours too.
    fake.handlers["stats"] = lambda m: [error({"id": None}, "malformed", "not a map")]
    with pytest.raises(DaemonError, match="malformed: not a map"):
        client.stats()
    # Replies that are not protocol maps are errors, not hangs.
    fake.handlers["stats"] = lambda m: [b"\xc1"]
    with pytest.raises(ClientError, match="not msgpack"):
        client.stats()
    fake.handlers["stats"] = lambda m: [{"v": 1, "id": m["id"], "ok": "maybe"}]
    with pytest.raises(ClientError, match="neither a result nor an error"):
        client.stats()
    assert client.health()["status"] == "ok"


def test_timeout_raises_and_the_client_recovers(fake):
    held = []

    def silent_once(m):
        if not held:
            held.append(m)
            return []                    # no answer at all
        return [result(held[0], {"status": "late"}), result(m, {"status": "ok"})]
    fake.handlers["health"] = silent_once
    with Client(fake.request_endpoint, timeout=WAIT) as c:
        c.config()               # connected: the time-out below is the daemon's silence
        c.timeout = 0.3
        start = time.monotonic()
        with pytest.raises(DaemonTimeout) as info:
            c.health()
        elapsed = time.monotonic() - start
        assert 0.3 <= elapsed < 0.3 + 2.0
        assert str(info.value) == f"no answer from {fake.request_endpoint} within 0.3 s"
        assert isinstance(info.value, TimeoutError)
        c.timeout = WAIT                           # (a new connection, on a loaded machine)
        assert c.health() == {"status": "ok"}      # same Client, next call works
        assert c.health() == {"status": "ok"}
    assert c.closed
    with pytest.raises(ClientError, match="closed"):
        c.health()


def test_timeout_with_nobody_listening(tmp_path):
    endpoint = unused_endpoint(tmp_path)
    with Client(endpoint, timeout=0.2) as c:
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(ConnectTimeout) as info:
                c.stats()
            assert time.monotonic() - start < 2.0
            assert isinstance(info.value, DaemonTimeout) and info.value.reason == "nothing"
            assert str(info.value) == (f"no daemon answered at {endpoint} within 0.2 s: "
                                       f"nothing accepted the connection")


def test_client_arguments():
    with pytest.raises(ValueError, match="timeout"):
        Client("tcp://127.0.0.1:1", timeout=0)
    with pytest.raises(ValueError, match="cannot connect to 'nonsense'"):
        Client("nonsense")


# ---------------------------------------------------------------- Producer

def test_producer_batches_rows_with_increasing_seq(fake):
    with Producer(fake.train_endpoint, batch_size=10, producer="loader-1") as p:
        for i in range(25):
            p.add({"x": 1.0, i: 2.0}, label=1 if i % 2 else -1,
                  importance=0.5 if i == 3 else 1.0, namespaces={"u": {"id": i}})
        assert p.seq == 2 and p.pending == 5
    assert p.closed and p.seq == 3 and p.examples_sent == 25
    messages = fake.trained_messages(3)
    assert [m["seq"] for m in messages] == [1, 2, 3]
    assert all(m["v"] == 1 and m["op"] == "train" and m["producer"] == "loader-1"
               for m in messages)
    batches = [decode_csr(m["csr"]) for m in messages]
    assert [b.n_rows for b in batches] == [10, 10, 5]
    first = batches[0]
    assert first.keys[:3].tolist() == [feature_key("x"), 0, feature_key("id", "u")]
    assert first.values[:3].tolist() == [1.0, 2.0, 0.0]
    assert first.labels[:4].tolist() == [-1, 1, -1, 1]
    assert first.weights[3] == 0.5 and batches[1].weights is None
    assert fake.trained.empty()


def test_producer_send_batch_splits_and_keeps_order(fake):
    X, y = load_svmlight(A9A, 250)
    with Producer(fake.train_endpoint, batch_size=100) as p:
        p.add({1: 1.0}, 1)                        # buffered rows go before the batch
        p.send_csr(X, y)
        p.send_batch(Batch.from_csr(X[:3], y[:3]))
    messages = fake.trained_messages(5)
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5]
    assert "producer" not in messages[0]
    sizes = [decode_csr(m["csr"]).n_rows for m in messages]
    assert sizes == [1, 100, 100, 50, 3]
    sent = Batch.from_csr(X, y)
    got = [decode_csr(m["csr"]) for m in messages[1:4]]
    np.testing.assert_array_equal(np.concatenate([b.keys for b in got]), sent.keys)
    np.testing.assert_array_equal(np.concatenate([b.values for b in got]), sent.values)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in got]), sent.labels)


def test_close_delivers_everything(fake):
    batch = random_batch(np.random.default_rng(4), n_rows=200, weights=False)
    p = Producer(fake.train_endpoint, batch_size=200, high_water_mark=4)
    try:
        for _ in range(300):
            p.send_batch(batch)
    finally:
        p.close()
    messages = fake.trained_messages(300)
    assert [m["seq"] for m in messages] == list(range(1, 301))
    assert decode_csr(messages[-1]["csr"]).keys.tobytes() == batch.keys.tobytes()


def test_producer_blocks_at_the_high_water_mark_and_never_drops(tmp_path):
    endpoint = unused_endpoint(tmp_path)
    # No connect check: the daemon comes up later.
    p = Producer(endpoint, batch_size=1, high_water_mark=2, send_timeout=0.2,
                 connect_timeout=None)
    try:
        queued = 0
        with pytest.raises(ProducerTimeout, match="took no batch within 0.2 s"):
            for queued in range(100):
                start = time.monotonic()
                p.add({1: 1.0}, 1)
        assert 0.2 <= time.monotonic() - start < 2.0
        assert p.seq == queued and 1 <= queued <= 10
        assert p.pending == 1             # the batch that timed out is still buffered
        # The daemon comes up late: everything queued and buffered arrives.
        ctx = zmq.Context()
        pull = ctx.socket(zmq.PULL)
        try:
            pull.bind(endpoint)
            p.send_timeout = WAIT  # (ZeroMQ reconnects within 0.1 s, on a loaded machine later)
            p.add({2: 1.0}, 1)     # retries the buffered row first, one row a message
            p.close(linger=WAIT)
            received = []
            while len(received) < queued + 2 and pull.poll(int(WAIT * 1000)):
                received.append(msgpack.unpackb(pull.recv()))
            assert [m["seq"] for m in received] == list(range(1, queued + 3))
            assert [decode_csr(m["csr"]).keys.tolist() for m in received[-2:]] == [[1], [2]]
        finally:
            pull.close(linger=0)
            ctx.term()
    finally:
        p.close(linger=0)


def test_close_reports_undelivered_messages(tmp_path):
    endpoint = unused_endpoint(tmp_path)
    p = Producer(endpoint, connect_timeout=None)
    p.add({1: 1.0}, 1)
    start = time.monotonic()
    with pytest.raises(ProducerTimeout) as info:
        p.close(linger=0.3)
    assert str(info.value) == (f"1 of the 1 batches sent (seq 1, 1 examples) were not "
                               f"delivered to {endpoint} and were dropped: none was delivered "
                               f"for 0.3 s")
    assert time.monotonic() - start < 3.0
    assert p.closed and p.undelivered == 1
    p.close()                                  # twice is harmless
    with pytest.raises(ClientError, match="closed"):
        p.add({1: 1.0}, 1)


def test_producer_rejects_bad_examples_whole(fake):
    with Producer(fake.train_endpoint, batch_size=5) as p:
        bad = [(({"a": float("nan")}, 1), ValueError, "finite"),
               (({"a": 1}, None), TypeError, "label"),
               (({"a": 1}, float("inf")), ValueError, "label must be finite"),
               (({"a": 1}, 1, -1), ValueError, "importance"),
               (({-3: 1}, 1), ValueError, "2\\*\\*64"),
               (({"a": 1}, 1, 1.0, {"u": {"b": "x"}}), TypeError, "number")]
        for call, exc, message in bad:
            with pytest.raises(exc, match=message):
                p.add(*call[:3], namespaces=call[3] if len(call) > 3 else None)
        assert p.pending == 0
        with pytest.raises(ValueError, match="no labels"):
            p.send_batch(Batch([0, 1], [1], [1.0]))
        with pytest.raises(ValueError, match="non-finite"):
            p.send_batch(Batch([0, 1], [1], [np.inf], [1.0]))
        with pytest.raises(TypeError, match="Batch"):
            p.send_batch([{"features": {}}])
    assert p.seq == 0
    with pytest.raises(ValueError, match="batch_size"):
        Producer(fake.train_endpoint, batch_size=0)


def test_producer_exception_in_block_does_not_hang(tmp_path):
    # The failure to deliver does not hide the block's exception, but is
    # not silent either: a warning.
    with pytest.raises(RuntimeError, match="boom"), \
            pytest.warns(RuntimeWarning, match="while an exception left the producer's block: "
                                               "1 of the 1 batches sent .* were not delivered"):
        with Producer(unused_endpoint(tmp_path), linger=0.2, connect_timeout=None) as p:
            p.add({1: 1.0}, 1)
            p.flush()
            raise RuntimeError("boom")
    assert p.closed


def test_producer_connect_check(fake, tmp_path):
    """The producer starts once the daemon's training socket took its
    connection, and says why when none did (tests/test_never_silent.py has
    the real daemon's cases)."""
    with Producer(fake.train_endpoint) as p:
        assert p.connected
        p.add({1: 1.0}, 1)
    assert p.undelivered == 0
    fake.trained_messages(1)
    endpoint = unused_endpoint(tmp_path)
    start = time.monotonic()
    with pytest.raises(ConnectTimeout) as info:
        Producer(endpoint, connect_timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 3.0
    assert str(info.value) == (f"no daemon answered at {endpoint} within 0.2 s: nothing "
                               f"accepted the connection")
    with pytest.raises(ConnectTimeout, match="it is a daemon's request endpoint, not its "
                                             "training endpoint"):
        Producer(fake.request_endpoint, connect_timeout=2.0)


# --------------------------------------------------------------------- CLI

@pytest.fixture
def cli():
    """``onlinel1.cli.main``, in process."""
    from onlinel1.cli import main
    return main


def run(cli, capsys, *argv):
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_send_streams_the_file(cli, capsys, fake):
    code, out, err = run(cli, capsys, "send", A9A, "--connect", fake.train_endpoint,
                         "--batch-size", 300, "--producer", "cli", "--progress", "--no-check")
    assert code == 0, err
    assert out == ""
    assert err.startswith("\rsent ")        # the progress line, forced
    assert err.count("\n") == 1                # rewritten in place, then the summary
    final = err.rstrip("\n").split("\r")[-1]
    assert final.startswith(f"sent 2,000 examples in 7 batches to {fake.train_endpoint} in ")
    assert final.endswith(" examples/s)")
    messages = fake.trained_messages(7)
    assert [m["seq"] for m in messages] == list(range(1, 8))
    assert {m["producer"] for m in messages} == {"cli"}
    expected = list(read_batches(str(A9A), "svmlight", batch_size=300))
    for m, b in zip(messages, expected):
        got = decode_csr(m["csr"])
        for name in ("indptr", "keys", "values", "labels"):
            assert getattr(got, name).tobytes() == getattr(b, name).tobytes()


def test_send_progress_only_on_a_terminal(cli, capsys, fake):
    code, _, err = run(cli, capsys, "send", VW, "--connect", fake.train_endpoint)
    assert code == 0
    assert "\r" not in err and err.count("\n") == 3 and "sent 60 examples in 1 batches" in err
    # No request endpoint to ask for the model's -q (common.read_as_model),
    # nor to check with: both said.
    assert err.splitlines()[0].startswith(f"onlinel1: warning: {VW} is read without the "
                                          f"model's interactions (-q)")
    assert err.splitlines()[2] == ("onlinel1: note: whether the daemon accepted the batches "
                                   "was not checked: give --request-endpoint (the daemon's "
                                   "request endpoint), or --no-check")
    fake.trained_messages(1)


def test_send_errors(cli, capsys, fake, tmp_path):
    code, _, err = run(cli, capsys, "send", tmp_path / "missing.svm",
                       "--connect", fake.train_endpoint)
    assert (code, err) == (1, f"onlinel1: error: {tmp_path / 'missing.svm'}: no such file\n")
    code, _, err = run(cli, capsys, "send", A9A, "--connect", "nonsense")
    assert code == 1 and err.startswith("onlinel1: error: cannot connect to 'nonsense'")
    for flag in ("--timeout", "--connect-timeout"):
        code, _, err = run(cli, capsys, "send", A9A, "--connect", fake.train_endpoint, flag, 0)
        assert code == 1 and f"{flag} must be > 0 seconds" in err
    # A bad line: the rows before it are delivered, then the line is reported.
    bad = tmp_path / "bad.svm"
    bad.write_text("1 1:1\n-1 2:1\n1 x:y\n")
    code, _, err = run(cli, capsys, "send", bad, "--connect", fake.train_endpoint, "--no-check")
    assert code == 1 and ":3: " in err and err.count("\n") == 1
    assert decode_csr(fake.trained_messages(1)[0]["csr"]).n_rows == 2
    # Nobody takes the batches: a clear error, not a hang.
    endpoint = unused_endpoint(tmp_path)
    code, _, err = run(cli, capsys, "send", A9A, "--connect", endpoint, "--batch-size", 1,
                       "--connect-timeout", 0.2)
    assert (code, err) == (1, f"onlinel1: error: no daemon answered at {endpoint} within "
                              f"0.2 s: nothing accepted the connection\n")
    # The training endpoint given as the request one: said so.
    code, _, err = run(cli, capsys, "send", A9A, "--connect", fake.request_endpoint,
                       "--connect-timeout", 2)
    assert code == 1 and "it is a daemon's request endpoint, not its training endpoint" in err


def read_ahead_threads():
    from onlinel1.io.readahead import THREAD_NAME
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


@pytest.mark.parametrize("extra", [[], ["--no-read-ahead"]], ids=["read-ahead", "plain"])
def test_send_sends_the_same_batches_with_or_without_read_ahead(cli, capsys, fake, extra,
                                                               monkeypatch):
    from onlinel1.io.readahead import THREAD_NAME
    threads = record_parsing_threads(monkeypatch)
    code, _, err = run(cli, capsys, "send", A9A, "--connect", fake.train_endpoint,
                       "--batch-size", 150, *extra)
    assert code == 0, err
    assert threads == [threading.current_thread().name if extra else THREAD_NAME] * 14
    assert "sent 2,000 examples in 14 batches" in err
    messages = fake.trained_messages(14)
    assert [m["seq"] for m in messages] == list(range(1, 15))
    expected = list(read_batches(str(A9A), "svmlight", batch_size=150))
    for m, b in zip(messages, expected):
        got = decode_csr(m["csr"])
        for name in ("indptr", "keys", "values", "labels"):
            assert getattr(got, name).tobytes() == getattr(b, name).tobytes()
    assert read_ahead_threads() == []


@pytest.mark.parametrize("extra", [[], ["--no-read-ahead"]], ids=["read-ahead", "plain"])
def test_send_delivers_the_rows_before_a_bad_line_with_or_without_read_ahead(
        cli, capsys, fake, tmp_path, extra):
    lines = A9A.read_text().splitlines(keepends=True)
    lines[1499] = "1 3:1 x:y\n"
    bad = tmp_path / "bad.svm"
    bad.write_text("".join(lines))
    code, _, err = run(cli, capsys, "send", bad, "--connect", fake.train_endpoint,
                       "--batch-size", 300, *extra)
    assert code == 1 and err == (f"onlinel1: error: {bad}:1500: bad feature 'x:y' "
                                 f"(expected index:value)\n")
    sizes = [decode_csr(m["csr"]).n_rows for m in fake.trained_messages(5)]
    assert sizes == [300, 300, 300, 300, 299]
    assert read_ahead_threads() == []


def test_send_help_documents_read_ahead(cli, capsys):
    with pytest.raises(SystemExit):
        cli(["send", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("--no-read-ahead parse the next block in a second thread while this one is "
            "sent (default); turn off to debug or to use one core") in out


def test_predict_connect_writes_like_the_offline_command(cli, capsys, fake, tmp_path):
    # predict --connect asks config for the model's -q first (common.read_as_model).
    fake.handlers["config"] = lambda m: [result(m, {"learner": {"interactions": [],
                                                                "namespaced_integers": False}})]
    code, out, err = run(cli, capsys, "predict", "--connect", fake.request_endpoint, A9A,
                         "--batch-size", 700)
    assert code == 0, err
    expected = np.concatenate([row_sums(b) for b in read_batches(str(A9A), "svmlight")])
    assert out == "".join(f"{v!r}\n" for v in expected.tolist())
    assert fake.requests.get(timeout=WAIT)["op"] == "config"
    sizes = [decode_csr(fake.requests.get(timeout=WAIT)["csr"]).n_rows for _ in range(3)]
    assert sizes == [700, 700, 600]
    target = tmp_path / "p.txt"
    code, _, err = run(cli, capsys, "predict", "--connect", fake.request_endpoint, VW,
                       "--output", target)
    assert code == 0, err
    assert len(target.read_text().splitlines()) == 60
    fake.handlers["predict"] = lambda m: [error(m, "bad_batch", "csr: values: 1 values for 2 keys")]
    code, _, err = run(cli, capsys, "predict", "--connect", fake.request_endpoint, VW)
    assert (code, err) == (1, "onlinel1: error: daemon replied bad_batch: "
                              "csr: values: 1 values for 2 keys\n")


def test_stats_table_and_json(cli, capsys, fake):
    code, out, err = run(cli, capsys, "stats", "--connect", fake.request_endpoint)
    assert code == 0, err
    lines = out.splitlines()
    assert "progressive.window.accuracy  0.8" in lines
    assert any(line.split() == ["producers.loader-3", "1234"] for line in lines)
    assert any(line.split() == ["errors", "-"] for line in lines)
    code, out, err = run(cli, capsys, "stats", "--connect", fake.request_endpoint, "--json")
    assert code == 0, err
    assert json.loads(out) == STATS


def test_health(cli, capsys, fake):
    code, out, err = run(cli, capsys, "health", "--connect", fake.request_endpoint)
    assert (code, err) == (0, "")
    assert out == f"ok {fake.request_endpoint} mode=training uptime_s=1.5 examples=2000\n"
    fake.handlers["health"] = lambda m: [result(m, {"status": "degraded"})]
    code, out, err = run(cli, capsys, "health", "--connect", fake.request_endpoint)
    assert (code, out) == (1, "")
    assert err == (f"onlinel1: error: the daemon at {fake.request_endpoint} reports "
                   f"status 'degraded'\n")
    fake.handlers["health"] = lambda m: []
    start = time.monotonic()
    code, out, err = run(cli, capsys, "health", "--connect", fake.request_endpoint,
                         "--timeout", 0.25)
    assert time.monotonic() - start < 3.0
    assert (code, out) == (1, "")
    assert err == (f"onlinel1: error: no answer from {fake.request_endpoint} within 0.25 s "
                   f"(if the daemon uses CURVE, give --curve-secret-key and --curve-server-key)\n")


def test_health_default_endpoint_and_timeout(cli, capsys):
    parser_args = ["health", "--help"]
    with pytest.raises(SystemExit):
        cli(parser_args)
    out = capsys.readouterr().out
    assert "tcp://127.0.0.1:5556" in out and "(default: 2.0)" in out and "example:" in out


@pytest.mark.parametrize("command", ["send", "stats", "health"])
def test_help_reads_like_a_manual_page(cli, capsys, command):
    with pytest.raises(SystemExit) as info:
        cli([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--connect ENDPOINT" in out and "--timeout SECONDS" in out
    assert f"onlinel1 {command}" in out.split("example")[-1]


# ------------------------------------------- end to end, the real daemon

def wait_for_examples(request, n, timeout=60.0):
    """Stats once ``n`` examples are learned or rejected."""
    with Client(request, timeout=5.0) as c:
        return wait_for(c.stats,
                        lambda s: s["examples"] + sum(s.get("rejected", {}).values()) >= n,
                        timeout, f"{n} examples learned or rejected", interval=0.05)


FLAGS = ["--update", "fobos", "--l1", "1e-4", "--eta0", "0.2", "--schedule", "invscaling"]


def test_send_learns_exactly_what_train_learns(cli, capsys, tmp_path, start_daemon):
    model = tmp_path / "offline.ol1"
    code, _, err = run(cli, capsys, "train", A9A, *FLAGS, "--save", model, "--quiet")
    assert code == 0, err
    daemon = start_daemon(*FLAGS)
    train, request = daemon.train, daemon.request
    code, _, err = run(cli, capsys, "send", A9A, "--connect", train, "--batch-size", 333,
                       "--producer", "e2e", "--request-endpoint", request)
    assert code == 0, err
    assert err.endswith(" examples/s); the daemon rejected none\n")
    stats = wait_for_examples(request, 2000)
    assert stats["examples"] == 2000 and not stats.get("rejected")
    assert stats["producers"] == {"e2e": 7}
    code, remote, err = run(cli, capsys, "predict", "--connect", request, A9A)
    assert code == 0, err
    code, offline, err = run(cli, capsys, "predict", "--model", model, A9A)
    assert code == 0, err
    assert remote == offline                   # every prediction, bit for bit


def test_rowwise_and_columnar_predictions_agree(start_daemon):
    X, y = load_svmlight(A9A)
    reference = Learner(update="fobos", l1=1e-4, eta0=0.2, schedule="invscaling")
    reference.learn(Batch.from_csr(X, y))
    daemon = start_daemon(*FLAGS)
    train, request = daemon.train, daemon.request
    with Producer(train, batch_size=500) as p:
        p.send_csr(X, y)
    wait_for_examples(request, 2000)
    test = Batch.from_csr(X[:200])
    rows = [{"features": {int(k): float(v) for k, v in
                          zip(test.keys[test.indptr[i]:test.indptr[i + 1]],
                              test.values[test.indptr[i]:test.indptr[i + 1]])}}
            for i in range(test.n_rows)]
    string_rows = [{"features": {str(k): v for k, v in r["features"].items()}}
                   for r in rows]
    with Client(request) as c:
        columnar = c.predict(test)["predictions"]
        assert c.predict(rows)["predictions"] == columnar
        assert c.predict(string_rows)["predictions"] == columnar
        margins = c.predict(test, output="margin")["predictions"]
        # Hashed names: the client's hashing (send_batch of rows_to_batch)
        # and the daemon's (rows) agree.
        named = [{"namespaces": {"u": {f"f{k}": v for k, v in r["features"].items()}}}
                 for r in rows[:20]]
        assert c.predict(named)["predictions"] == \
            c.predict(rows_to_batch(named, labels_required=False))["predictions"]
    assert columnar == reference.predict(test).tolist()
    assert margins == reference.decision_function(test).tolist()


def test_the_reused_packer_writes_what_packb_writes_even_after_a_failure():
    from onlinel1.client import _packer, encode_csr
    rng = np.random.default_rng(5)
    big = Batch(np.arange(0, 40_001, 40, dtype=np.int64), rng.integers(0, 2**63, 40_000,
                dtype=np.uint64), rng.normal(size=40_000), labels=np.ones(1000))
    messages = [{"v": 1, "op": "train", "seq": 1, "csr": encode_csr(big)},
                {"v": 1, "op": "stats", "id": 7},
                {"v": 1, "op": "train", "seq": 2, "csr": encode_csr(big.slice(0, 10))}]
    packer = _packer()
    for message in messages + messages[::-1]:
        assert packer.pack(message) == msgpack.packb(message, use_bin_type=True)
    with pytest.raises(TypeError):
        packer.pack({"v": 1, "op": "predict", "rows": [{"features": {1: object()}}]})
    assert packer.pack(messages[1]) == msgpack.packb(messages[1], use_bin_type=True)
