"""The C client (clients/c): built with its Makefile, run against a real
daemon (``onlinel1 serve`` on free loopback ports, the ``start_daemon``
fixture) and against a scripted fake one.

* The C predictor's predictions equal the Python client's, exactly.
* The C producer's columnar batches give bit-identical weights to
  ``onlinel1 send`` of the same file.
* Error paths return the right codes: daemon down, timeout (and recovery),
  error replies, stale and malformed replies, bad arguments.
* Under valgrind (when present) the examples leak nothing, error paths
  included.

The library itself is called through ctypes (the shared library the
Makefile builds). The build needs make, a C compiler, libzmq and msgpack-c
headers; without them these tests skip with the reason, except in CI
(``CI`` set), where .ci/run installs them and a missing one is a failure.

Every wait is bounded; every daemon, thread and socket is cleaned up.
"""
from __future__ import annotations

import ctypes
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

import onlinel1
from onlinel1 import Batch
from onlinel1.client import Client
from onlinel1.io import read_batches

from conftest import SAMPLES, free_port, wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
CDIR = ROOT / "clients" / "c"
A9A = SAMPLES / "a9a_head2000.svm"
N_A9A = 2000
WAIT = 20.0      # seconds: the bound of every wait for something expected


# ------------------------------------------------------------------ build

def _missing_tools() -> str | None:
    """Why the C client cannot be built here, or None."""
    if not shutil.which("make"):
        return "make is not installed"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler (cc/gcc) is installed"
    flags = []
    if shutil.which("pkg-config"):
        for pc in ("libzmq", "msgpack-c", "msgpack"):
            out = subprocess.run(["pkg-config", "--cflags", pc], capture_output=True, text=True)
            if out.returncode == 0:
                flags += out.stdout.split()
    probe = subprocess.run([cc, "-x", "c", "-E", "-", *flags], capture_output=True, text=True,
                           input="#include <zmq.h>\n#include <msgpack.h>\n")
    if probe.returncode != 0:
        return ("the libzmq and msgpack-c headers are missing (Debian: apt-get install "
                "libzmq3-dev libmsgpack-dev pkg-config)")
    return None


@pytest.fixture(scope="session")
def cbuild(tmp_path_factory) -> pathlib.Path:
    """The build directory of ``make -C clients/c`` (warnings are errors)."""
    reason = _missing_tools()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the C client, but {reason} (.ci/run installs them)")
        pytest.skip(f"the C client cannot be built: {reason}")
    build = tmp_path_factory.mktemp("cbuild")
    out = subprocess.run(["make", "-C", str(CDIR), f"BUILD={build}", "EXTRA_CFLAGS=-Werror"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"make failed:\n{out.stdout}\n{out.stderr}"
    for name in ("libonlinel1.a", "libonlinel1.so", "producer", "predictor"):
        assert (build / name).exists(), name
    return build


# --------------------------------------------------------- ctypes binding

def _status_codes() -> dict[str, int]:
    """OL1_OK, OL1_E_* as the header defines them."""
    text = (CDIR / "onlinel1.h").read_text()
    codes = {m[0]: int(m[1]) for m in re.findall(r"\b(OL1_(?:OK|E_\w+)) = (-?\d+)", text)}
    assert codes["OL1_OK"] == 0 and len(codes) == 18, codes
    return codes


S = _status_codes()


class CBatch(ctypes.Structure):
    _fields_ = [("n_rows", ctypes.c_size_t),
                ("indptr", ctypes.POINTER(ctypes.c_int64)),
                ("keys", ctypes.POINTER(ctypes.c_uint64)),
                ("values", ctypes.POINTER(ctypes.c_double)),
                ("values_f32", ctypes.POINTER(ctypes.c_float)),
                ("labels", ctypes.POINTER(ctypes.c_double)),
                ("weights", ctypes.POINTER(ctypes.c_double))]


class LearnResult(ctypes.Structure):
    _fields_ = [("examples", ctypes.c_int64), ("loss", ctypes.c_double), ("t", ctypes.c_int64)]


class HealthInfo(ctypes.Structure):
    _fields_ = [("status", ctypes.c_char * 32), ("mode", ctypes.c_char * 32),
                ("uptime_s", ctypes.c_double), ("examples", ctypes.c_int64)]


def _ptr(arr, ctype):
    return None if arr is None else arr.ctypes.data_as(ctypes.POINTER(ctype))


def cbatch(batch: Batch, with_labels: bool = True, float32: bool = False):
    """A CBatch viewing ``batch``'s arrays, and the arrays (keep them alive)."""
    arrays = [np.ascontiguousarray(batch.indptr, np.int64),
              np.ascontiguousarray(batch.keys, np.uint64),
              np.ascontiguousarray(batch.values, np.float32 if float32 else np.float64),
              None if not with_labels or batch.labels is None
              else np.ascontiguousarray(batch.labels, np.float64),
              None if not with_labels or batch.weights is None
              else np.ascontiguousarray(batch.weights, np.float64)]
    c = CBatch(batch.n_rows, _ptr(arrays[0], ctypes.c_int64), _ptr(arrays[1], ctypes.c_uint64),
               None if float32 else _ptr(arrays[2], ctypes.c_double),
               _ptr(arrays[2], ctypes.c_float) if float32 else None,
               _ptr(arrays[3], ctypes.c_double), _ptr(arrays[4], ctypes.c_double))
    return c, arrays


class Lib:
    """The shared library, its functions typed."""

    def __init__(self, path: pathlib.Path) -> None:
        lib = self.lib = ctypes.CDLL(str(path))
        P = ctypes.c_void_p
        sig = {
            "ol1_connect": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                           ctypes.POINTER(P)]),
            "ol1_set_send_hwm": (ctypes.c_int, [P, ctypes.c_int]),
            "ol1_predict": (ctypes.c_int, [P, ctypes.POINTER(CBatch), ctypes.c_int,
                                           ctypes.POINTER(ctypes.c_double)]),
            "ol1_learn": (ctypes.c_int, [P, ctypes.POINTER(CBatch), ctypes.POINTER(LearnResult)]),
            "ol1_send_batch": (ctypes.c_int, [P, ctypes.POINTER(CBatch), ctypes.c_char_p,
                                              ctypes.c_int64]),
            "ol1_request_json": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.POINTER(P)]),
            "ol1_stats": (ctypes.c_int, [P, ctypes.POINTER(P)]),
            "ol1_health": (ctypes.c_int, [P, ctypes.POINTER(HealthInfo)]),
            "ol1_close": (ctypes.c_int, [P]),
            "ol1_last_error": (ctypes.c_char_p, [P]),
            "ol1_strerror": (ctypes.c_char_p, [ctypes.c_int]),
            "ol1_status_name": (ctypes.c_char_p, [ctypes.c_int]),
            "ol1_free": (None, [P]),
        }
        for name, (restype, argtypes) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
            if name != "ol1_connect":     # wrapped by connect() below
                setattr(self, name[4:], fn)

    def connect(self, request: str | None, train: str | None = None, timeout_ms: int = 5000):
        handle = ctypes.c_void_p()
        rc = self.connect_raw(request, train, timeout_ms, handle)
        assert rc == S["OL1_OK"], self.strerror(rc)
        return CClient(self, handle)

    def connect_raw(self, request, train, timeout_ms, handle) -> int:
        return self.lib.ol1_connect(request and request.encode(), train and train.encode(),
                                    timeout_ms, ctypes.byref(handle))


class CClient:
    def __init__(self, lib: Lib, handle: ctypes.c_void_p) -> None:
        self.lib, self.h = lib, handle

    def close(self) -> int:
        rc, self.h = (self.lib.close(self.h) if self.h else 0), None
        return rc

    def __enter__(self) -> "CClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def error(self) -> str:
        return self.lib.last_error(self.h).decode()

    def predict(self, batch: Batch, output: int = 0, float32: bool = False):
        c, keep = cbatch(batch, with_labels=False, float32=float32)
        out = np.full(batch.n_rows, np.nan)
        rc = self.lib.predict(self.h, ctypes.byref(c), output,
                              out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        return rc, out

    def learn(self, batch: Batch):
        c, keep = cbatch(batch)
        res = LearnResult()
        rc = self.lib.learn(self.h, ctypes.byref(c), ctypes.byref(res))
        return rc, res

    def send(self, batch: Batch, producer: str | None = None, seq: int = -1) -> int:
        c, keep = cbatch(batch)
        return self.lib.send_batch(self.h, ctypes.byref(c), producer and producer.encode(), seq)

    def request_json(self, op: str):
        out = ctypes.c_void_p()
        rc = self.lib.request_json(self.h, op.encode(), ctypes.byref(out))
        text = None
        if out.value:
            text = ctypes.string_at(out.value).decode()
            self.lib.free(out)
        return rc, text

    def stats(self):
        out = ctypes.c_void_p()
        rc = self.lib.stats(self.h, ctypes.byref(out))
        text = None
        if out.value:
            text = ctypes.string_at(out.value).decode()
            self.lib.free(out)
        return rc, text

    def health(self):
        info = HealthInfo()
        return self.lib.health(self.h, ctypes.byref(info)), info


@pytest.fixture(scope="session")
def lib(cbuild) -> Lib:
    return Lib(cbuild / "libonlinel1.so")


# ---------------------------------------------------------------- helpers

def a9a_batches(batch_size: int = 500) -> list[Batch]:
    return list(read_batches(str(A9A), "svmlight", batch_size=batch_size))


def a9a_whole() -> Batch:
    (whole,) = read_batches(str(A9A), "svmlight", batch_size=N_A9A)
    return whole


def wait_examples(daemon, n: int, timeout: float = WAIT) -> dict:
    """The daemon's stats once it has learned ``n`` examples (never more)."""
    stats = daemon.wait_stats(lambda s: s["examples"] >= n, timeout)
    assert stats["examples"] == n, stats
    return stats


def run(cmd, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


def python_send(daemon, path, *flags) -> None:
    out = run([sys.executable, "-m", "onlinel1", "send", path, "--connect", daemon.train,
               "--timeout", "30", *flags], cwd=ROOT)
    assert out.returncode == 0, out.stderr


def c_produce(cbuild, daemon, path, *flags) -> subprocess.CompletedProcess:
    out = run([cbuild / "producer", "-t", "30000", *flags, daemon.train, path])
    assert out.returncode == 0, out.stderr
    return out


def floats(text: str) -> list[float]:
    return [float(line) for line in text.splitlines()]


def strip_labels(path: pathlib.Path) -> str:
    return "".join(line.split(None, 1)[1] if " " in line.strip() else "\n"
                   for line in path.read_text().splitlines(keepends=True))


# ------------------------------------------------------------ equivalence

def test_c_predictor_equals_the_python_client(cbuild, start_daemon):
    daemon = start_daemon()
    python_send(daemon, A9A)
    wait_examples(daemon, N_A9A)
    whole = a9a_whole()
    with Client(daemon.request, timeout=WAIT) as client:
        expected = client.predict(whole)["predictions"]
        margins = client.predict(whole, output="margin")["predictions"]
    assert len(expected) == N_A9A and len(set(expected)) > 100
    # Lines with their labels, in several request sizes.
    for batch_rows in ("1000", "7"):
        out = run([cbuild / "predictor", "-b", batch_rows, daemon.request],
                  stdin=open(A9A))
        assert out.returncode == 0, out.stderr
        assert floats(out.stdout) == expected        # exact: printed with %.17g
    # Lines without labels, asking for margins.
    out = run([cbuild / "predictor", "-o", "margin", daemon.request], input=strip_labels(A9A))
    assert out.returncode == 0, out.stderr
    assert floats(out.stdout) == margins


def test_library_predict_equals_the_python_client(lib, start_daemon):
    daemon = start_daemon()
    python_send(daemon, A9A)
    wait_examples(daemon, N_A9A)
    whole = a9a_whole()
    with Client(daemon.request, timeout=WAIT) as client, lib.connect(daemon.request) as c:
        for output, name in ((0, "auto"), (1, "probability"), (2, "margin")):
            rc, got = c.predict(whole, output)
            assert rc == S["OL1_OK"], c.error
            assert got.tolist() == client.predict(whole, output=name)["predictions"]
        # float32 values (values_dtype) give the same as float64 for a9a's 1.0s.
        rc, got32 = c.predict(whole, 2, float32=True)
        assert rc == S["OL1_OK"] and got32.tolist() == client.predict(whole, output="margin")[
            "predictions"]
        # An empty batch is a valid request with no predictions.
        rc, none = c.predict(Batch(np.zeros(1, np.int64), np.zeros(0, np.uint64),
                                   np.zeros(0)), 0)
        assert rc == S["OL1_OK"] and none.size == 0


def test_c_producer_gives_bit_identical_weights_to_onlinel1_send(cbuild, start_daemon, tmp_path):
    a = start_daemon("--snapshot-dir", str(tmp_path / "a"))
    b = start_daemon("--snapshot-dir", str(tmp_path / "b"))
    out = c_produce(cbuild, a, A9A, "-p", "c-loader", "-b", "333")
    assert re.search(r"sent 2000 examples in 7 batches", out.stderr), out.stderr
    python_send(b, A9A)
    stats_a, stats_b = wait_examples(a, N_A9A), wait_examples(b, N_A9A)
    assert stats_a["producers"] == {"c-loader": 7}
    # (The progressive loss is summed per batch: its last bits depend on the cut.)
    assert stats_a["progressive"]["accuracy"] == stats_b["progressive"]["accuracy"]
    assert stats_a["nnz"] == stats_b["nnz"] and not stats_a.get("rejected")
    # Every row's prediction, exactly.
    whole = a9a_whole()
    with Client(a.request, timeout=WAIT) as ca, Client(b.request, timeout=WAIT) as cb:
        assert ca.predict(whole)["predictions"] == cb.predict(whole)["predictions"]
        snap_a, snap_b = ca.snapshot(), cb.snapshot()
    # The weights themselves, from snapshots.
    model_a = onlinel1.load(tmp_path / "a" / "default" / snap_a["file"])
    model_b = onlinel1.load(tmp_path / "b" / "default" / snap_b["file"])
    keys_a, w_a = model_a.weights()
    keys_b, w_b = model_b.weights()
    assert keys_a.size > 50
    np.testing.assert_array_equal(keys_a, keys_b)
    assert w_a.tobytes() == w_b.tobytes()
    assert model_a.intercept == model_b.intercept


def test_library_send_learn_stats_health(lib, start_daemon):
    a, b = start_daemon(), start_daemon()
    batches = a9a_batches(250)
    weighted = Batch(batches[1].indptr, batches[1].keys, batches[1].values, batches[1].labels,
                     np.linspace(0.5, 2.0, batches[1].n_rows))
    with lib.connect(a.request, a.train) as c, Client(b.request, timeout=WAIT) as py:
        # Acknowledged training: the same reply as the Python client's.
        rc, res = c.learn(batches[0])
        assert rc == S["OL1_OK"], c.error
        expected = py.learn(batches[0])
        assert (res.examples, res.loss, res.t) == (expected["examples"], expected["loss"],
                                                   expected["t"])
        rc, res = c.learn(weighted)
        expected = py.learn(weighted)
        assert rc == S["OL1_OK"] and (res.examples, res.loss, res.t) == (
            expected["examples"], expected["loss"], expected["t"])
        # Fire and forget, with a producer name and sequence numbers.
        for seq, batch in enumerate(batches[2:], 1):
            assert c.send(batch, "ctypes", seq) == S["OL1_OK"], c.error
        stats = wait_examples(a, N_A9A)
        assert stats["producers"] == {"ctypes": len(batches) - 2}
        rc, text = c.stats()
        assert rc == S["OL1_OK"]
        got = json.loads(text)
        assert got["examples"] == N_A9A and got["producers"] == {"ctypes": 6}
        assert isinstance(got["progressive"]["loss"], float)
        rc, info = c.health()
        assert rc == S["OL1_OK"] and info.status == b"ok" and info.mode == b"training"
        assert info.examples == N_A9A and info.uptime_s > 0
        rc, text = c.request_json("config")
        assert rc == S["OL1_OK"] and json.loads(text)["protocol"] == 1
        assert c.error == ""
    assert c.close() == S["OL1_OK"]


# ------------------------------------------------------------ error paths

def test_daemon_down_is_a_timeout_within_the_bound(lib, cbuild):
    nobody = f"tcp://127.0.0.1:{free_port()}"
    with lib.connect(nobody, timeout_ms=300) as c:
        for call in (lambda: c.health()[0], lambda: c.stats()[0],
                     lambda: c.predict(a9a_batches()[0])[0]):
            start = time.monotonic()
            assert call() == S["OL1_E_TIMEOUT"]
            elapsed = time.monotonic() - start
            assert 0.28 <= elapsed < 1.5, elapsed
            assert "no answer" in c.error
        start = time.monotonic()
    assert time.monotonic() - start < 1.0        # closing does not wait either
    # The predictor example says so and exits 1, within its timeout.
    start = time.monotonic()
    out = run([cbuild / "predictor", "-t", "300", nobody], input="3:1\n")
    assert out.returncode == 1 and "(timeout)" in out.stderr
    assert time.monotonic() - start < 5


def test_training_socket_full_is_a_timeout_and_close_reports_the_drop(lib):
    nobody = f"tcp://127.0.0.1:{free_port()}"
    batch = a9a_batches(10)[0]
    handle = ctypes.c_void_p()
    assert lib.connect_raw(None, nobody, 200, handle) == S["OL1_OK"]
    c = CClient(lib, handle)
    assert lib.set_send_hwm(c.h, 1) == S["OL1_OK"]
    sent = 0
    start = time.monotonic()
    while sent < 1000:
        rc = c.send(batch)
        if rc != S["OL1_OK"]:
            break
        sent += 1
    assert rc == S["OL1_E_TIMEOUT"] and 1 <= sent < 10, (rc, sent, c.error)
    assert time.monotonic() - start < 2.0
    assert "not sent" in c.error
    assert lib.set_send_hwm(c.h, 5) == S["OL1_E_INVALID"]    # too late: batches were sent
    start = time.monotonic()
    assert c.close() == S["OL1_E_TIMEOUT"]                    # queued batches dropped
    assert 0.15 <= time.monotonic() - start < 1.5


def test_error_replies_map_to_their_codes(lib, start_daemon):
    daemon = start_daemon()
    whole = a9a_whole()
    bad = Batch(whole.indptr[:3], whole.keys[:whole.indptr[2]],
                whole.values[:whole.indptr[2]].copy(), whole.labels[:2])
    bad.values[3] = np.nan
    with lib.connect(daemon.request, daemon.train) as c:
        rc, _ = c.predict(bad)
        assert rc == S["OL1_E_BAD_BATCH"] and c.error.startswith("bad_batch: "), c.error
        rc, _ = c.learn(bad)
        assert rc == S["OL1_E_BAD_BATCH"]
        out_of_range = Batch(whole.indptr[:2], whole.keys[:whole.indptr[1]],
                             whole.values[:whole.indptr[1]], np.array([5.0]))
        assert c.learn(out_of_range)[0] == S["OL1_E_BAD_BATCH"]
        rc, text = c.request_json("no-such-op")
        assert rc == S["OL1_E_UNKNOWN_OP"] and text is None and "unknown_op" in c.error
        assert c.request_json("train")[0] == S["OL1_E_UNKNOWN_OP"]   # not on this socket
        # Client-side checks: nothing is sent.
        broken = CBatch(2, (ctypes.c_int64 * 3)(1, 2, 3), None, None, None, None, None)
        assert lib.predict(c.h, ctypes.byref(broken), 0, (ctypes.c_double * 2)()) == \
            S["OL1_E_INVALID"] and "indptr[0]" in c.error
        decreasing = CBatch(2, (ctypes.c_int64 * 3)(0, 2, 1), (ctypes.c_uint64 * 2)(1, 2),
                            (ctypes.c_double * 2)(1, 1), None, None, None)
        assert lib.predict(c.h, ctypes.byref(decreasing), 0, (ctypes.c_double * 2)()) == \
            S["OL1_E_INVALID"]
        assert c.send(Batch(whole.indptr[:3], whole.keys[:whole.indptr[2]],
                            whole.values[:whole.indptr[2]])) == S["OL1_E_INVALID"]  # no labels
        assert c.predict(whole, output=7)[0] == S["OL1_E_INVALID"]
        # The model is unchanged and the client still works.
        rc, info = c.health()
        assert rc == S["OL1_OK"] and info.examples == 0
    stats = daemon.request_once({"v": 1, "op": "stats"})["result"]
    assert stats["errors"] == {"bad_batch": 3, "unknown_op": 2}
    # A client without a request endpoint cannot ask; without a training one, cannot send.
    with lib.connect(None, daemon.train) as c:
        assert c.health()[0] == S["OL1_E_INVALID"]
    with lib.connect(daemon.request, None) as c:
        assert c.send(whole) == S["OL1_E_INVALID"]
    handle = ctypes.c_void_p()
    assert lib.connect_raw("nosuch://x", None, 100, handle) == S["OL1_E_CONNECT"]
    assert handle.value is None
    assert lib.connect_raw(None, None, 100, handle) == S["OL1_E_INVALID"]
    assert lib.connect_raw(daemon.request, None, 0, handle) == S["OL1_E_INVALID"]


def test_too_large_probability_and_read_only(lib, start_daemon, tmp_path):
    whole = a9a_whole()
    small = start_daemon("--max-message-bytes", "6000", "--loss", "squared")
    forty = next(iter(read_batches(str(A9A), "svmlight", batch_size=40)))
    with lib.connect(small.request, timeout_ms=500) as c:
        assert c.predict(forty)[0] == S["OL1_E_TOO_LARGE"]     # ~9 kB: refused
        # Beyond 2x the limit ZeroMQ drops the frame (docs/protocol.md): no reply.
        assert c.predict(whole)[0] == S["OL1_E_TIMEOUT"]
        assert c.predict(a9a_batches(3)[0], output=1)[0] == S["OL1_E_BAD_REQUEST"]
        rc, got = c.predict(a9a_batches(3)[0], output=0)        # auto: margins
        assert rc == S["OL1_OK"] and got.tolist() == [0.0, 0.0, 0.0]
    model = tmp_path / "m.model"
    out = run([sys.executable, "-m", "onlinel1", "train", A9A, "--save", model], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    replica = start_daemon("--model", str(model), "--predict-only")
    with lib.connect(replica.request) as c:
        assert c.learn(a9a_batches(3)[0])[0] == S["OL1_E_READ_ONLY"]
        rc, info = c.health()
        assert rc == S["OL1_OK"] and info.mode == b"predict-only"
        rc, got = c.predict(whole)
        assert rc == S["OL1_OK"] and got.tolist() == onlinel1.load(model).predict(whole).tolist()


def test_a_stopped_daemon_times_out_and_the_next_call_works(lib, start_daemon):
    daemon = start_daemon()
    batch = a9a_batches(100)[0]
    with lib.connect(daemon.request, timeout_ms=1000) as c:
        assert c.health()[0] == S["OL1_OK"]
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            assert c.learn(batch)[0] == S["OL1_E_TIMEOUT"]
            assert 0.98 <= time.monotonic() - start < 3.0
        finally:
            os.kill(daemon.proc.pid, signal.SIGCONT)
        # The daemon answers the abandoned learn to the old socket; the new
        # socket's request gets its own reply.
        rc, info = c.health()
        assert rc == S["OL1_OK"] and info.status == b"ok", c.error
        rc, res = c.learn(batch)
        assert rc == S["OL1_OK"] and res.examples == 100


class FakeDaemon:
    """A ROUTER on a free port whose replies a test scripts: ``script`` maps
    the n-th request (0-based) and the decoded message to a list of raw
    reply frames to send (or None for no reply)."""

    def __init__(self, script) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.script = script
        self.seen: list[dict] = []
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(self.endpoint)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart()
            msg = msgpack.unpackb(frames[-1], raw=False)
            n = len(self.seen)
            self.seen.append(msg)
            for reply in self.script(n, msg) or []:
                self.sock.send_multipart([frames[0], reply])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        self.ctx.term()


def pack(msg) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def test_stale_unknown_and_malformed_replies(lib):
    health = {"status": "ok", "mode": "training", "uptime_s": 1.5, "examples": 7}

    def script(n, msg):
        rid = msg["id"]
        if n == 0:     # a stale reply first: discarded, then the real one
            return [pack({"v": 1, "id": rid + 1000, "ok": True, "result": {"status": "stale"}}),
                    pack({"v": 1, "id": rid, "ok": True, "result": health})]
        if n == 1:     # not msgpack
            return [b"\xc1garbage"]
        if n == 2:     # a map that is neither a result nor an error
            return [pack({"v": 1, "id": rid})]
        if n == 3:     # an error code this client does not know
            return [pack({"v": 1, "id": rid, "ok": False,
                          "error": {"code": "shiny_new", "message": "later"}})]
        if n == 4:     # no reply at all: a timeout
            return None
        if n == 5:     # a reply without an id is the answer (only one in flight)
            return [pack({"v": 1, "ok": True, "result": {"predictions": [0.25, 0.5]}})]
        if n == 6:     # the wrong number of predictions
            return [pack({"v": 1, "id": rid, "ok": True, "result": {"predictions": [1]}})]
        return [pack({"v": 1, "id": rid, "ok": True, "result": health})]

    fake = FakeDaemon(script)
    two = a9a_batches(2)[0]
    try:
        with lib.connect(fake.endpoint, timeout_ms=300) as c:
            rc, info = c.health()
            assert rc == S["OL1_OK"] and info.status == b"ok" and info.examples == 7
            assert info.uptime_s == 1.5
            assert c.health()[0] == S["OL1_E_BAD_REPLY"]
            assert c.health()[0] == S["OL1_E_BAD_REPLY"]
            assert c.health()[0] == S["OL1_E_DAEMON"] and c.error == "shiny_new: later"
            assert c.health()[0] == S["OL1_E_TIMEOUT"]
            rc, got = c.predict(two)
            assert rc == S["OL1_OK"] and got.tolist() == [0.25, 0.5]
            assert c.predict(two)[0] == S["OL1_E_BAD_REPLY"]
            assert c.health()[0] == S["OL1_OK"]
    finally:
        fake.close()
    # Every request carried v=1, its op and a fresh id.
    assert [m["v"] for m in fake.seen] == [1] * 8
    assert [m["op"] for m in fake.seen] == ["health"] * 5 + ["predict"] * 2 + ["health"]
    assert len({m["id"] for m in fake.seen}) == 8
    # predict sends the columnar encoding without labels, and the output.
    csr = fake.seen[5]["csr"]
    assert sorted(csr) == ["indptr", "keys", "values"] and fake.seen[5]["output"] == "auto"
    assert np.frombuffer(csr["indptr"], "<i8").tolist() == two.indptr.tolist()
    assert np.frombuffer(csr["keys"], "<u8").tolist() == two.keys.tolist()


def test_status_names_and_sentences(lib):
    for name, code in S.items():
        text = lib.strerror(code).decode()
        assert text and text != "unknown status code"
    assert lib.status_name(S["OL1_E_BAD_BATCH"]) == b"bad_batch"
    assert lib.status_name(S["OL1_E_TIMEOUT"]) == b"timeout"
    assert lib.strerror(12345) == b"unknown status code"
    assert lib.last_error(None) == b""


def test_producer_reports_a_malformed_line_after_sending_the_rows_before(cbuild, start_daemon,
                                                                         tmp_path):
    daemon = start_daemon()
    lines = A9A.read_text().splitlines(keepends=True)
    data = tmp_path / "bad.svm"
    data.write_text("".join(lines[:25]) + "1 3:1 x:2\n" + "".join(lines[25:50]))
    out = run([cbuild / "producer", "-b", "10", daemon.train, data])
    assert out.returncode == 1 and f"{data}:26: bad feature 'x:2'" in out.stderr, out.stderr
    wait_examples(daemon, 25)
    out = run([cbuild / "producer", daemon.train, tmp_path / "missing.svm"])
    assert out.returncode == 1 and "missing.svm" in out.stderr
    assert run([cbuild / "producer", daemon.train]).returncode == 2


# ---------------------------------------------------------------- valgrind

VALGRIND = ["valgrind", "--leak-check=full", "--error-exitcode=99", "--errors-for-leak-kinds=all",
            "--show-leak-kinds=all"]


def valgrind(cmd, **kw) -> subprocess.CompletedProcess:
    out = run([*VALGRIND, *cmd], timeout=180, **kw)
    assert out.returncode != 99, out.stderr
    assert "ERROR SUMMARY: 0 errors" in out.stderr, out.stderr
    assert "All heap blocks were freed" in out.stderr or \
        re.search(r"definitely lost: 0 bytes", out.stderr), out.stderr
    return out


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_examples_leak_nothing_under_valgrind(cbuild, start_daemon):
    daemon = start_daemon()
    out = valgrind([cbuild / "producer", "-b", "300", "-p", "vg", daemon.train, A9A])
    assert out.returncode == 0
    wait_examples(daemon, N_A9A)
    head = "".join(A9A.read_text().splitlines(keepends=True)[:400])
    out = valgrind([cbuild / "predictor", "-b", "128", daemon.request], input=head)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 400
    with Client(daemon.request, timeout=WAIT) as client:
        batch = next(iter(read_batches(str(A9A), "svmlight", batch_size=400)))
        expected = client.predict(batch)
    assert floats(out.stdout) == expected["predictions"]
    # Error paths: an error reply, a malformed line, a daemon that is down.
    out = valgrind([cbuild / "predictor", daemon.request], input="3:1\n5:nan\n")
    assert out.returncode == 1 and "(bad_batch)" in out.stderr
    out = valgrind([cbuild / "predictor", daemon.request], input="3:1\n5:x\n")
    assert out.returncode == 1 and len(out.stdout.splitlines()) == 1
    nobody = f"tcp://127.0.0.1:{free_port()}"
    out = valgrind([cbuild / "predictor", "-t", "300", nobody], input="3:1\n")
    assert out.returncode == 1 and "(timeout)" in out.stderr
    out = valgrind([cbuild / "producer", "-t", "300", nobody, A9A])
    assert out.returncode == 1       # the batches could not be delivered


# ------------------------------------------------------------ named models

def test_named_models_end_to_end_from_the_c_python_and_cli_clients(cbuild, start_daemon,
                                                                   tmp_path):
    """The same rows sent to a named model by the C producer, by the Python
    Producer and by ``onlinel1 send --model`` give the same weights; the C
    predictor and the CLI ask that model; ``models`` manages them."""
    from onlinel1.client import Producer
    from onlinel1.cli import main
    daemon = start_daemon()
    with Client(daemon.request, timeout=WAIT) as client:
        for name in ("via-c", "via-python", "via-cli"):
            client.create(name, update="fobos", l1=1e-4)
        c_produce(cbuild, daemon, A9A, "-m", "via-c", "-b", "500")
        with Producer(daemon.train, batch_size=500, model="via-python") as producer:
            for batch in a9a_batches():
                producer.send_batch(batch)
        python_send(daemon, A9A, "--model", "via-cli", "--batch-size", "500")
        for name in ("via-c", "via-python", "via-cli"):
            wait_for(lambda: client.stats(model=name)["examples"], lambda n: n == N_A9A, WAIT,
                     f"model {name}")
        assert client.stats()["examples"] == 0            # default learned nothing
        whole = a9a_whole()
        margins = {name: client.predict(whole, output="margin", model=name)["predictions"]
                   for name in ("via-c", "via-python", "via-cli")}
        assert margins["via-c"] == margins["via-python"] == margins["via-cli"]
        assert margins["via-c"] != client.predict(whole, output="margin")["predictions"]
        out = run([cbuild / "predictor", "-o", "margin", "-m", "via-c", daemon.request],
                  stdin=open(A9A))
        assert out.returncode == 0, out.stderr
        assert floats(out.stdout) == margins["via-c"]
        # The models command against the real daemon.
        assert main(["models", "--connect", daemon.request, "drop", "via-cli"]) == 0
        assert [m["model"] for m in client.list_models()] == ["default", "via-c", "via-python"]
        saved = tmp_path / "c.ol1"
        import onlinel1
        from onlinel1 import model_file
        model_file.save(saved, onlinel1.Learner(update="fobos", l1=1e-4))
        assert main(["models", "--connect", daemon.request, "swap", "via-c", str(saved)]) == 0
        assert client.stats(model="via-c")["nnz"] == 0
        assert main(["models", "--connect", daemon.request, "drop", "nope"]) == 1
