"""Shared fixtures: real data sets, from ../shared/datasets when present and
from the samples in tests/data otherwise."""
from __future__ import annotations

import pathlib
import time

import numpy as np
import pytest

TESTS = pathlib.Path(__file__).resolve().parent
SAMPLES = TESTS / "data"
SHARED = TESTS.parent.parent / "shared" / "datasets"


def wait_for(probe, done=bool, timeout: float = 30.0, what: str = "the condition",
             interval: float = 0.01):
    """Call ``probe()`` until ``done(value)`` holds; return that value.
    Raise TimeoutError, naming ``what`` and the last value, after
    ``timeout`` seconds: every wait in the tests has a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s; last: {value!r}")
        time.sleep(interval)   # polling interval of a bounded wait


def shared_path(relative: str) -> pathlib.Path:
    """Path of a file under ../shared/datasets; skip the test if absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"../shared/datasets/{relative} is not present (the shared data sets "
                    f"live beside the checkout); the tests/data samples cover the core checks")
    return path


def load_svmlight(path: pathlib.Path, n_rows: int | None = None):
    """(X as scipy CSR with int32 indices, y) read by scikit-learn's reader,
    the independent oracle for our own parsers."""
    from sklearn.datasets import load_svmlight_file
    X, y = load_svmlight_file(str(path), zero_based=True)
    X = X.tocsr()
    if n_rows is not None:
        X, y = X[:n_rows], y[:n_rows]
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
    return X, y


@pytest.fixture(scope="session")
def a9a_sample():
    """2,000 real rows of a9a (shipped in tests/data)."""
    return load_svmlight(SAMPLES / "a9a_head2000.svm")


@pytest.fixture(scope="session")
def rcv1_sample():
    """300 real rows of RCV1 with tf-idf values (shipped in tests/data)."""
    return load_svmlight(SAMPLES / "rcv1_small_head300.svm")


@pytest.fixture(scope="session")
def a9a_full():
    """All 32,561 rows of a9a from ../shared (skipped when absent)."""
    return load_svmlight(shared_path("a9a/a9a.train.svm"))


@pytest.fixture(scope="session")
def rcv1_full():
    """The 1,000-row RCV1 subset from ../shared (skipped when absent)."""
    return load_svmlight(shared_path("vw_rcv1/rcv1_small.train.svm"))


# ------------------------------------------------------------------ daemons


def record_parsing_threads(monkeypatch) -> list[str]:
    """Spy on ``onlinel1.io.read_batches``: the returned list gets the name
    of the thread that parsed each batch (read-ahead's, or the caller's)."""
    import threading
    import onlinel1.io
    real, threads = onlinel1.io.read_batches, []

    def spy(*args, **kwargs):
        batches = real(*args, **kwargs)

        def recorded():
            for batch in batches:
                threads.append(threading.current_thread().name)
                yield batch
        return recorded()

    monkeypatch.setattr(onlinel1.io, "read_batches", spy)
    return threads


def dense_weights(learner, n_features: int) -> np.ndarray:
    """The learner's weights as a dense vector over keys 0..n_features-1."""
    keys, w = learner.weights()
    out = np.zeros(n_features)
    out[keys.astype(np.int64)] = w
    return out


def assert_same_model(mine: np.ndarray, ref: np.ndarray, rtol: float = 1e-12,
                      zero_tol: float = 1e-12) -> None:
    """Dense weights ``mine`` equal the reference's ``ref``: the same
    non-zero pattern (where |ref| >= zero_tol) and a max difference of at
    most ``rtol`` of the largest |ref| (a non-empty reference)."""
    scale = np.abs(ref).max()
    assert scale > 0, "the reference model is empty: the comparison would be vacuous"
    bad = ((mine != 0) != (ref != 0)) & (np.abs(ref) >= zero_tol)
    assert not bad.any(), f"{int(bad.sum())} non-zero pattern mismatches"
    err = float(np.abs(mine - ref).max() / scale)
    assert err <= rtol, f"max |diff| / max |ref| = {err:.3g} > {rtol:g}"


def state_bits(value):
    """``value`` (a learner's ``state``) with every float array and number
    as its bits, to compare states exactly (nan == nan, -0.0 != 0.0)."""
    if isinstance(value, dict):
        return {k: state_bits(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [state_bits(v) for v in value]
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.tobytes())
    if isinstance(value, float):
        return np.float64(value).tobytes()
    return value


def csr_fields(batch) -> dict:
    """The ``csr`` map of a training message holding ``batch``
    (docs/protocol.md: little-endian binary arrays)."""
    return {"indptr": batch.indptr.astype("<i8").tobytes(), "keys": batch.keys.tobytes(),
            "values": batch.values.astype("<f8").tobytes(),
            "labels": batch.labels.astype("<f8").tobytes()}


def split_model_file(data: bytes) -> tuple[dict, bytes]:
    """A model file's header (a dict) and its arrays' bytes
    (docs/model-format.md), the digest dropped."""
    import struct

    import msgpack
    (length,) = struct.unpack_from("<I", data, 12)
    return msgpack.unpackb(data[16:16 + length], raw=False), data[16 + length:-32]


def join_model_file(header: dict, arrays: bytes) -> bytes:
    """The model file of ``header`` and ``arrays``, digested again: what a
    writer that knows the format, not the rules, would write."""
    import hashlib
    import struct

    import msgpack
    head = msgpack.packb(header, use_bin_type=True)
    body = struct.pack("<8sII", b"OL1MODEL", 1, len(head)) + head + arrays
    return body + hashlib.blake2b(body, digest_size=32).digest()


def with_overflowing_row(batch, row: int):
    """``batch`` with ``row`` made to overflow: its features become ones
    never seen (its margin is the intercept's), at value 100 and with
    importance 1e308, so its weight update is infinite."""
    from onlinel1 import Batch
    keys, values = batch.keys.copy(), batch.values.copy()
    lo, hi = batch.indptr[row], batch.indptr[row + 1]
    keys[lo:hi] += 1000
    values[lo:hi] = 100.0
    weights = np.ones(batch.n_rows)
    weights[row] = 1e308
    return Batch(batch.indptr, keys, values, batch.labels, weights)

import contextlib
import os
import signal
import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (two calls of ``free_port`` may give the
    same one: the kernel reuses a port released a moment ago)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class DaemonProcess:
    """An ``onlinel1 serve`` subprocess on free loopback ports."""

    def __init__(self, *flags: str, log_path=None, command: tuple[str, ...] = ("serve",)) -> None:
        train, request = free_ports(2)
        self.train = f"tcp://127.0.0.1:{train}"
        self.request = f"tcp://127.0.0.1:{request}"
        self.log_path = log_path
        self._log = open(log_path, "w+") if log_path else subprocess.DEVNULL
        # A session of its own: ``stop`` reaps whatever it started (a
        # cluster's local Ray) with it.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onlinel1", *command, "--train-endpoint", self.train,
             "--request-endpoint", self.request, *flags],
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)

    def request_once(self, message: dict, timeout: float = 5.0) -> dict:
        """Send one request on a fresh DEALER; the reply map, or TimeoutError."""
        import msgpack
        import zmq
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.request)
            sock.send(message if isinstance(message, bytes) else msgpack.packb(message))
            if not sock.poll(int(timeout * 1000)):
                raise TimeoutError(f"no reply from {self.request} within {timeout} s")
            return msgpack.unpackb(sock.recv(), raw=False, strict_map_key=False)
        finally:
            sock.close()

    def wait_stats(self, predicate, timeout: float = 30.0) -> dict:
        """Poll ``stats`` until ``predicate(stats)`` holds; return them, or
        raise TimeoutError."""
        def stats() -> dict:
            reply = self.request_once({"v": 1, "op": "stats"})
            assert reply["ok"], reply
            return reply["result"]
        return wait_for(stats, predicate, timeout, "the daemon's stats")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log()}")
            try:
                reply = self.request_once({"v": 1, "op": "health"}, timeout=0.5)
                if reply.get("ok"):
                    return
            except TimeoutError:
                pass
        raise TimeoutError(f"daemon not healthy within {timeout} s: {self.log()}")

    def log(self) -> str:
        if not self.log_path:
            return ""
        with open(self.log_path) as f:
            return f.read()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)     # anything it left behind
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_daemon(tmp_path):
    """``start_daemon(*flags)`` -> a ready DaemonProcess; all are stopped
    and reaped at the end of the test."""
    started: list[DaemonProcess] = []

    def start(*flags: str, ready: bool = True) -> DaemonProcess:
        daemon = DaemonProcess(*flags, log_path=tmp_path / f"daemon{len(started)}.log")
        started.append(daemon)
        if ready:
            daemon.wait_ready()
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            with contextlib.suppress(Exception):
                daemon.stop()
