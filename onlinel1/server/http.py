"""Metrics, probes and a live status page over HTTP (docs/metrics.md).

``HttpServer`` serves, on one ``HOST:PORT`` (``--http-endpoint``):

* ``/metrics``: the Prometheus text format, from a collector that reads the
  daemon's status once per scrape, plus the latency histograms of
  ``RequestMetrics`` (``server/metrics.py``);
* ``/healthz``: 200 while this server and the daemon's loop answer, 503
  when the loop does not answer within ``read_timeout``;
* ``/readyz``: 200 when a model is loaded and no model's last snapshot
  failed, 503 with a JSON body naming the reasons otherwise;
* ``/`` and ``/status``: the status page (``status_page.html``, one
  self-contained file), which polls ``/status.json``: the history a
  sampler thread keeps (one reading per ``sample_interval``, the last
  ``history`` of them per model) and the latest reading.

It never touches the model: everything comes from ``source.read(timeout)``,
which the daemon answers inside its loop (so the numbers of one reading
agree with each other) and which raises ``TimeoutError`` when the loop
cannot answer in time.  The loop never waits on HTTP.

A slow or hostile client costs one coroutine, not a thread: one asyncio
loop reads every request head, with a deadline (``header_timeout``) and a
size limit (``MAX_HEAD_BYTES``), and at most ``max_connections`` at once.
The work that reads the daemon or encodes a reply runs in a small pool of
``workers`` threads with a bounded queue (503 when it is full).  The
server's threads run at a lower CPU priority (``nice``) than the loop.
Only the fixed paths above exist: no files are served, nothing is listed.
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import hashlib
import http
import importlib.resources
import ipaddress
import json
import logging
import math
import os
import queue
import re
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterator, Protocol

from onlinel1.server import threads
from onlinel1.server.metrics import HistogramSnapshot, RequestMetrics

log = logging.getLogger("onlinel1.http")

#: Host of an endpoint given as ``PORT`` or ``:PORT``: loopback unless the
#: operator names another.
DEFAULT_HOST = "127.0.0.1"
#: Largest request head (request line and headers) read, in bytes.
MAX_HEAD_BYTES = 16 * 1024
MISSING_CLIENT = "--http-endpoint needs prometheus-client: pip install 'onlinel1[http]'"

_TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError, asyncio.TimeoutError)
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")


class StatusSource(Protocol):
    """What the daemon gives the HTTP side."""

    def read(self, timeout: float) -> dict:
        """``{"daemon": {"mode", "uptime_s", "version"}, "models": {name:
        the stats report of that model plus "update" and
        "snapshot_failing"}}``, computed in the daemon's loop.
        Thread-safe (called from several threads at once); raises
        ``TimeoutError`` if the loop cannot answer within ``timeout``."""


class MissingDependency(ImportError):
    """prometheus-client is not installed; the message says how to get it."""


def require_prometheus_client():
    """The ``prometheus_client`` module, or ``MissingDependency``."""
    try:
        import prometheus_client
        import prometheus_client.core  # noqa: F401
    except ImportError:
        raise MissingDependency(MISSING_CLIENT) from None
    return prometheus_client


# ---------------------------------------------------------------- endpoint

def parse_http_endpoint(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` or
    ``PORT``; a missing host is 127.0.0.1 and port 0 is any free port.

    >>> parse_http_endpoint("9100"), parse_http_endpoint(":9100")
    (('127.0.0.1', 9100), ('127.0.0.1', 9100))
    >>> parse_http_endpoint("0.0.0.0:9100"), parse_http_endpoint("[::1]:0")
    (('0.0.0.0', 9100), ('::1', 0))
    """
    def bad(why: str) -> ValueError:
        return ValueError(f"bad HTTP endpoint {text!r}: {why}; give HOST:PORT, :PORT or PORT "
                          f"(for example 127.0.0.1:9100, or 0.0.0.0:9100 for every interface)")

    if not isinstance(text, str) or not text:
        raise bad("it is empty")
    if text != text.strip():
        raise bad("it has spaces around it")
    if "://" in text or "/" in text:
        raise bad("it is HOST:PORT, not a URL")
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            raise bad("an IPv6 address goes in brackets followed by the port, as [::1]:9100")
        host, port_text = text[1:close], text[close + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
        if ":" in host:
            raise bad("an IPv6 address goes in brackets, as [::1]:9100")
        if host and not _is_host(host):
            raise bad(f"{host!r} is not an IPv4 address or a host name")
    else:
        host, port_text = "", text
    if not port_text.isascii() or not port_text.isdigit():
        raise bad(f"the port {port_text!r} is not a number from 0 to 65535 (0: any free port)")
    port = int(port_text)
    if port > 65535:
        raise bad(f"the port {port} is not a number from 0 to 65535 (0: any free port)")
    return host or DEFAULT_HOST, port


def _is_host(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        # Dotted digits that are no IPv4 address (999.1.1.1) are no host name either.
        return bool(_HOSTNAME.match(host)) and not re.fullmatch(r"[\d.]+", host)


def _listen(endpoint: str, host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"cannot listen on the HTTP endpoint {endpoint}: "
                                 f"{host!r} does not resolve ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on the HTTP endpoint {endpoint}: "
                                 f"{exc.strerror or exc}") from None
    return sock


# ------------------------------------------------------------- readiness

def not_ready_reasons(status: dict) -> list[str]:
    """Why a daemon with this status should not take traffic (empty: ready)."""
    models = status.get("models") or {}
    if not models:
        return ["no model is loaded"]
    return [f"model {name!r}: its last snapshot attempt failed "
            f"({report.get('snapshots_failed', 0)} failed so far)"
            for name, report in sorted(models.items()) if report.get("snapshot_failing")]


# ------------------------------------------------------------------ metrics

def _get(report: dict, path: tuple[str, ...]) -> float | None:
    value: Any = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


#: The metrics read from each model's stats report: (name, type, help,
#: key path in the report).  Counters get ``_total`` appended.  A value
#: that is absent or null (no loss before the first example, no accuracy
#: for the squared loss, no snapshot yet) leaves its sample out.
MODEL_METRICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("onlinel1_examples", "counter", "Examples learned.", ("examples",)),
    ("onlinel1_batches", "counter", "Training batches learned (streamed and acknowledged).",
     ("batches",)),
    ("onlinel1_snapshots_failed", "counter", "Snapshot attempts that failed.",
     ("snapshots_failed",)),
    ("onlinel1_reloads", "counter", "Models reloaded from a newer snapshot (replicas).",
     ("reloads",)),
    ("onlinel1_evicted", "counter", "Features evicted by the memory budget (--max-features).",
     ("evicted",)),
    ("onlinel1_expired", "counter",
     "Features dropped unseen for --expire-after-examples examples.", ("expired",)),
    ("onlinel1_seq_repeats", "counter",
     "Training batches whose seq was not above their producer's last one.", ("seq_repeats",)),
    ("onlinel1_learner_clock", "gauge",
     "The learner's clock t: examples seen over the model's whole life, resumed ones included.",
     ("t",)),
    ("onlinel1_nonzero_weights", "gauge", "Non-zero weights (the intercept not counted).",
     ("nnz",)),
    ("onlinel1_store_features", "gauge", "Features held in the weight store (>= non-zero weights).",
     ("store_features",)),
    ("onlinel1_store_bytes", "gauge", "Bytes allocated by the weight store.", ("store_bytes",)),
    ("onlinel1_learning_rate", "gauge", "The step size of the next example.",
     ("learning_rate",)),
    ("onlinel1_progressive_loss", "gauge",
     "Progressive validation loss since the start (each example's loss before learning it).",
     ("progressive", "loss")),
    ("onlinel1_progressive_accuracy", "gauge",
     "Progressive validation accuracy since the start (classification losses).",
     ("progressive", "accuracy")),
    ("onlinel1_progressive_window_loss", "gauge",
     "Progressive validation loss over the recent window of examples.",
     ("progressive", "window", "loss")),
    ("onlinel1_progressive_window_accuracy", "gauge",
     "Progressive validation accuracy over the recent window of examples.",
     ("progressive", "window", "accuracy")),
    ("onlinel1_progressive_window_examples", "gauge",
     "Examples in the recent progressive-validation window.",
     ("progressive", "window", "examples")),
    ("onlinel1_model_uptime_seconds", "gauge", "Seconds since the model was loaded or created.",
     ("uptime_s",)),
    ("onlinel1_snapshot_failing", "gauge", "1 when the model's last snapshot attempt failed.",
     ("snapshot_failing",)),
    ("onlinel1_last_snapshot_timestamp_seconds", "gauge",
     "Unix time at which the last snapshot was written.", ("last_snapshot", "unix_time")),
    ("onlinel1_last_snapshot_seq", "gauge", "Sequence number of the last snapshot written.",
     ("last_snapshot", "seq")),
    ("onlinel1_last_snapshot_size_bytes", "gauge", "Size of the last snapshot file.",
     ("last_snapshot", "size")),
    ("onlinel1_last_snapshot_duration_seconds", "gauge",
     "Time taken to write the last snapshot (in the background).",
     ("last_snapshot", "duration_s")),
    ("onlinel1_last_snapshot_pause_seconds", "gauge",
     "Time learning paused for the last snapshot (the fork).", ("last_snapshot", "pause_s")),
    ("onlinel1_last_snapshot_examples", "gauge", "Examples the last snapshot holds.",
     ("last_snapshot", "examples")),
)
#: Counters by one more label, from a ``{value: n}`` table of the report.
MODEL_TABLES: tuple[tuple[str, str, str, str, str], ...] = (
    ("onlinel1_requests", "counter", "Requests answered, by operation.", "requests", "op"),
    ("onlinel1_errors", "counter", "Error replies to requests, by error code.", "errors", "code"),
    ("onlinel1_rejected", "counter", "Training batches rejected, by error code.", "rejected",
     "code"),
    ("onlinel1_producer_last_seq", "gauge",
     "Sequence number of the last batch learned from each named producer.", "producers",
     "producer"),
)


#: Counters of the daemon itself (requests that name no loaded model:
#: model management, an unknown model), from ``{value: n}`` tables of the
#: status's ``daemon`` part.
DAEMON_TABLES: tuple[tuple[str, str, str, str], ...] = (
    ("onlinel1_daemon_requests", "Requests naming no loaded model, by operation.", "requests",
     "op"),
    ("onlinel1_daemon_errors", "Error replies to requests naming no loaded model, by error code.",
     "errors", "code"),
    ("onlinel1_daemon_rejected", "Training batches naming no loaded model, rejected, by error "
                                 "code.", "rejected", "code"),
    ("onlinel1_replies_dropped", "Replies not delivered as built, by reason (full: the client's "
                                 "queue is at its high-water mark; gone; too_large).",
     "replies_dropped", "reason"),
)
#: The daemon's admission counters (server/admission.py): (metric, help, key).
DAEMON_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("onlinel1_connections_refused", "Handshakes refused: the socket held max_connections.",
     "connections_refused"),
    ("onlinel1_oversized_disconnects", "Connections ZeroMQ dropped for a frame over the cap.",
     "oversized_disconnects"),
)


class _Collector:
    """One reading of the daemon per scrape, turned into metric families."""

    def __init__(self, server: "HttpServer") -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily, InfoMetricFamily)
        status, error = self.server.read_status()
        up = GaugeMetricFamily("onlinel1_up", "1 when the daemon's loop answered this scrape "
                                              "within the read timeout.")
        up.add_metric([], 1.0 if status is not None else 0.0)
        yield up
        ready = GaugeMetricFamily("onlinel1_ready", "1 when /readyz answers 200 (a model is "
                                                    "loaded, no snapshot failing).")
        ready.add_metric([], 1.0 if status is not None and not not_ready_reasons(status) else 0.0)
        yield ready
        if status is not None:
            daemon = status.get("daemon") or {}
            info = InfoMetricFamily("onlinel1_daemon", "The daemon's version and mode.")
            info.add_metric([], {"version": str(daemon.get("version", "")),
                                 "mode": str(daemon.get("mode", ""))})
            yield info
            uptime = GaugeMetricFamily("onlinel1_uptime_seconds",
                                       "Seconds since the daemon started.")
            if _get(daemon, ("uptime_s",)) is not None:
                uptime.add_metric([], _get(daemon, ("uptime_s",)))
            yield uptime
            for metric, help_text, key, label in DAEMON_TABLES:
                family = CounterMetricFamily(metric, help_text, labels=[label])
                table = daemon.get(key) if isinstance(daemon.get(key), dict) else {}
                for value_name in sorted(table):
                    value = _get(table, (value_name,))
                    if value is not None:
                        family.add_metric([str(value_name)], value)
                yield family
            refused = CounterMetricFamily("onlinel1_auth_refused",
                                          "CURVE handshakes refused (a client key not in "
                                          "--curve-allow, or not CURVE).")
            if _get(daemon, ("auth_refused",)) is not None:
                refused.add_metric([], _get(daemon, ("auth_refused",)))
            yield refused
            for metric, help_text, key in DAEMON_COUNTERS:
                family = CounterMetricFamily(metric, help_text)
                if _get(daemon, (key,)) is not None:
                    family.add_metric([], _get(daemon, (key,)))
                yield family
            connections = GaugeMetricFamily("onlinel1_connections", "Connections each socket "
                                            "holds (counted high while handshakes are in "
                                            "flight).", labels=["socket"])
            for name, gate in sorted((daemon.get("connections") or {}).items()):
                if _get(gate, ("open",)) is not None:
                    connections.add_metric([name], _get(gate, ("open",)))
            yield connections
            models = sorted((status.get("models") or {}).items())
            loaded = GaugeMetricFamily("onlinel1_models", "Models loaded.")
            loaded.add_metric([], float(len(models)))
            yield loaded
            model_info = InfoMetricFamily("onlinel1_model", "Each model's update rule.",
                                          labels=["model"])
            for name, report in models:
                model_info.add_metric([name], {"update": str(report.get("update", ""))})
            yield model_info
            kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
            for metric, kind, help_text, path in MODEL_METRICS:
                family = kinds[kind](metric, help_text, labels=["model"])
                for name, report in models:
                    value = _get(report, path)
                    if value is not None:
                        family.add_metric([name], value)
                yield family
            for metric, kind, help_text, key, label in MODEL_TABLES:
                family = kinds[kind](metric, help_text, labels=["model", label])
                for name, report in models:
                    table = report.get(key) or {}
                    for value_name in sorted(table):
                        value = _get(table, (value_name,))
                        if value is not None:
                            family.add_metric([name, str(value_name)], value)
                yield family
        metrics = self.server.metrics
        for name, help_text, labels, series in (
                ("onlinel1_request_duration_seconds",
                 "Time from a request's arrival in the loop to its reply.", ["model", "op"],
                 metrics.requests()),
                ("onlinel1_batch_duration_seconds",
                 "Time spent learning one training batch (requests answered in between "
                 "not counted).", ["model"], metrics.batches()),
                ("onlinel1_batch_size_examples", "Examples per training batch learned.",
                 ["model"], metrics.batch_sizes())):
            family = HistogramMetricFamily(name, help_text, labels=labels)
            for s in series:
                family.add_metric(list(s.labels), _buckets(s), s.sum)
            yield family


def _buckets(s: HistogramSnapshot) -> list[tuple[str, float]]:
    bounds = [repr(float(b)) for b in s.bounds] + ["+Inf"]
    return list(zip(bounds, (float(c) for c in s.cumulative)))


# ------------------------------------------------------------------ history

#: The columns of a model's history, one value per sample.
HISTORY_COLUMNS = ("time", "examples", "rate", "loss", "accuracy", "window_loss",
                   "window_accuracy", "nnz", "store_features", "store_bytes", "learning_rate",
                   "snapshots_failed")


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _ModelHistory:
    def __init__(self, samples: int, events: int) -> None:
        self.seq: collections.deque[int] = collections.deque(maxlen=samples)
        self.columns = {c: collections.deque(maxlen=samples) for c in HISTORY_COLUMNS}
        #: (seq, event) of snapshots written and failures seen.
        self.events: collections.deque[tuple[int, dict]] = collections.deque(maxlen=events)
        self.latest: dict = {}
        self._previous: tuple[float, float] | None = None     # (monotonic, examples)
        self._last_written: tuple | None = None
        self._failed: int | None = None

    def add(self, seq: int, unix_time: float, mono: float, report: dict) -> None:
        examples = _get(report, ("examples",))
        rate = None
        if self._previous is not None and examples is not None:
            dt, dn = mono - self._previous[0], examples - self._previous[1]
            if dt > 0 and dn >= 0:
                rate = round(dn / dt, 3)
        if examples is not None:
            self._previous = (mono, examples)
        row = {"time": round(unix_time, 3), "examples": examples, "rate": rate,
               "loss": _get(report, ("progressive", "loss")),
               "accuracy": _get(report, ("progressive", "accuracy")),
               "window_loss": _get(report, ("progressive", "window", "loss")),
               "window_accuracy": _get(report, ("progressive", "window", "accuracy")),
               "nnz": _get(report, ("nnz",)), "store_features": _get(report, ("store_features",)),
               "store_bytes": _get(report, ("store_bytes",)),
               "learning_rate": _get(report, ("learning_rate",)),
               "snapshots_failed": _get(report, ("snapshots_failed",))}
        self.seq.append(seq)
        for column in HISTORY_COLUMNS:
            value = row[column]
            # Counts as integers in the JSON.
            if value is not None and column in ("examples", "nnz", "store_features",
                                                "store_bytes", "snapshots_failed"):
                value = int(value)
            self.columns[column].append(value)
        last = report.get("last_snapshot")
        if isinstance(last, dict):
            key = (last.get("seq"), last.get("file"))
            if key != self._last_written:
                self._last_written = key
                self.events.append((seq, {"kind": "written", **_finite(last)}))
        failed = report.get("snapshots_failed")
        if isinstance(failed, int) and failed > (self._failed or 0):
            # Seen at this sample; "before" when they came before the first one.
            self.events.append((seq, {"kind": "failed", "unix_time": round(unix_time, 3),
                                      "failures": failed, "new": failed - (self._failed or 0),
                                      "before": self._failed is None}))
        if isinstance(failed, int):
            self._failed = failed
        self.latest = _finite(report)

    def payload(self, after: int | None) -> dict:
        seqs = list(self.seq)
        start = 0 if after is None else bisect.bisect_right(seqs, after)
        history = {"seq": seqs[start:]}
        for column in HISTORY_COLUMNS:
            history[column] = list(self.columns[column])[start:]
        events = [dict(event, sample=seq) for seq, event in self.events
                  if after is None or seq > after]
        return {"update": self.latest.get("update"), "latest": self.latest,
                "history": history, "snapshots": events}


class History:
    """The readings of the sampler: per model a ring buffer of ``samples``
    samples and the last ``events`` snapshot events.  Thread-safe."""

    def __init__(self, samples: int = 3600, events: int = 200, interval: float = 1.0) -> None:
        self.samples, self.events, self.interval = samples, events, interval
        self.instance = os.urandom(6).hex()
        self._lock = threading.Lock()
        self._models: dict[str, _ModelHistory] = {}
        self._seq = 0
        self._daemon: dict = {}
        self._loop = {"ok": None, "error": None, "unix_time": None}
        self._version = 0
        self._full: tuple[int, bytes] | None = None

    def add(self, status: dict, unix_time: float | None = None,
            mono: float | None = None) -> int:
        """Record one reading; return its sample number."""
        unix_time = time.time() if unix_time is None else unix_time
        mono = time.monotonic() if mono is None else mono
        models = status.get("models") or {}
        with self._lock:
            self._seq += 1
            self._version += 1
            for gone in set(self._models) - set(models):
                del self._models[gone]
            for name, report in models.items():
                if name not in self._models:
                    self._models[name] = _ModelHistory(self.samples, self.events)
                self._models[name].add(self._seq, unix_time, mono, report)
            self._daemon = _finite(status.get("daemon") or {})
            self._loop = {"ok": True, "error": None, "unix_time": round(unix_time, 3)}
            return self._seq

    def failed(self, error: str, unix_time: float | None = None) -> None:
        """Record a reading that did not come (the history keeps its last samples)."""
        with self._lock:
            self._version += 1
            self._loop = {"ok": False, "error": error,
                          "unix_time": round(time.time() if unix_time is None else unix_time, 3)}

    def payload(self, after: int | None = None) -> dict:
        """The ``/status.json`` document: every model's samples after
        sample number ``after`` (all when None) and its latest report."""
        with self._lock:
            return self._payload(after)

    def _payload(self, after: int | None) -> dict:
        return {"instance": self.instance, "seq": self._seq, "after": after,
                "interval_s": self.interval, "max_samples": self.samples,
                "loop": dict(self._loop), "daemon": dict(self._daemon),
                "models": {name: h.payload(after) for name, h in sorted(self._models.items())}}

    def encoded(self, after: int | None = None) -> bytes:
        """``payload(after)`` as JSON; the full history is encoded once per
        reading, however many pages ask for it."""
        with self._lock:
            if after is None and self._full is not None and self._full[0] == self._version:
                return self._full[1]
            body = json.dumps(self._payload(after), separators=(",", ":"),
                              allow_nan=False).encode()
            if after is None:
                self._full = (self._version, body)
            return body


# -------------------------------------------------------------- the page

def _load_page() -> tuple[bytes, str]:
    """The status page and its Content-Security-Policy, which lets run only
    the page's own inline script (by its hash) and fetch only this server."""
    try:
        page = importlib.resources.files("onlinel1.server").joinpath(
            "status_page.html").read_bytes()
    except OSError as exc:
        raise RuntimeError(f"the status page is missing from the onlinel1 package: {exc}") from None
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    hashes = " ".join("'sha256-%s'" % _b64(hashlib.sha256(s).digest()) for s in scripts)
    policy = (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
              f"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
              f"frame-ancestors 'none'")
    return page, policy


def _b64(data: bytes) -> str:
    import base64
    return base64.b64encode(data).decode()


# --------------------------------------------------------------- workers

class _Pool:
    """``workers`` daemon threads running the blocking part of replies;
    at most ``limit`` jobs queued or running (``submit`` raises
    ``queue.Full`` beyond)."""

    def __init__(self, workers: int, limit: int, nice: int) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(limit)
        self._nice = nice
        self.threads = [threading.Thread(target=self._work, name=f"onlinel1-http-worker-{i}",
                                         daemon=True) for i in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        if not self._slots.acquire(blocking=False):
            raise queue.Full
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, fn))
        return future

    def _work(self) -> None:
        threads.lower_priority({threading.get_native_id()}, self._nice)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn = job
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:   # handed to the awaiting request
                        future.set_exception(exc)
            finally:
                self._slots.release()

    def close(self, timeout: float) -> None:
        for _ in self.threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------ server

class _Reply:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes | str,
                 content_type: str = "text/plain; charset=utf-8",
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = headers or {}


def _json(status: int, document: dict) -> _Reply:
    return _Reply(status, json.dumps(document, indent=1, allow_nan=False) + "\n",
                  "application/json")


class HttpServer:
    """The HTTP side of the daemon: ``/metrics``, ``/healthz``,
    ``/readyz``, the status page and ``/status.json``.

    ``start()`` binds ``endpoint`` (see ``parse_http_endpoint``; a
    ``ValueError`` or ``OSError`` names it) and serves from daemon threads;
    ``address`` is then the bound ``(host, port)``.  ``close()`` stops and
    joins the threads and frees the port; it is idempotent.
    """

    def __init__(self, endpoint: str, source: StatusSource, metrics: RequestMetrics, *,
                 read_timeout: float = 2.0, sample_interval: float = 1.0, history: int = 3600,
                 snapshot_events: int = 200, workers: int = 2, queue_limit: int = 32,
                 max_connections: int = 64, header_timeout: float = 10.0,
                 write_timeout: float = 10.0, nice: int = 10) -> None:
        self._prometheus = require_prometheus_client()
        self.endpoint = endpoint
        self.host, self.port = parse_http_endpoint(endpoint)
        self.source, self.metrics = source, metrics
        self.read_timeout, self.sample_interval = read_timeout, sample_interval
        self.workers, self.queue_limit, self.nice = workers, queue_limit, nice
        self.max_connections = max_connections
        self.header_timeout, self.write_timeout = header_timeout, write_timeout
        self.history = History(history, snapshot_events, sample_interval)
        self.address: tuple[str, int] | None = None
        self._page, self._page_policy = _load_page()
        from prometheus_client import CollectorRegistry
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._content_type = getattr(self._prometheus.exposition, "CONTENT_TYPE_PLAIN_0_0_4",
                                     self._prometheus.CONTENT_TYPE_LATEST)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sampler: threading.Thread | None = None
        self._pool: _Pool | None = None
        self._stop = threading.Event()
        self._closed = False
        self._connections = 0
        self._sockets: set[socket.socket] = set()
        self._tasks: set[asyncio.Task] = set()
        self._routes: dict[str, Callable[[str], _Reply]] = {
            "/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz,
            "/status.json": self._status_json,
        }

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None or self._closed:
            raise RuntimeError("an HttpServer starts once")
        sock = _listen(self.endpoint, self.host, self.port)
        self.address = tuple(sock.getsockname()[:2])
        self._pool = _Pool(self.workers, self.queue_limit, self.nice)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="onlinel1-http",
                                        daemon=True)
        self._thread.start()
        self._sampler = threading.Thread(target=self._sample_loop, name="onlinel1-http-sampler",
                                         daemon=True)
        self._sampler.start()
        log.info("HTTP on http://%s:%d/ (metrics, healthz, readyz, status page)",
                 *self._url_address())

    def _url_address(self) -> tuple[str, int]:
        host, port = self.address
        return (f"[{host}]" if ":" in host else host), port

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        timeout = self.read_timeout + 5.0
        if self._loop is not None and self._thread is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(timeout)
        if self._sampler is not None:
            self._sampler.join(timeout)
        if self._pool is not None:
            self._pool.close(timeout)

    def __enter__(self) -> "HttpServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- reading

    def read_status(self) -> tuple[dict | None, str | None]:
        """``(status, None)`` read from the source, or ``(None, why not)``."""
        try:
            status = self.source.read(self.read_timeout)
        except _TIMEOUTS:
            return None, f"the daemon loop did not answer within {self.read_timeout:g} s"
        except Exception as exc:
            log.warning("reading the daemon's status failed: %s: %s", type(exc).__name__, exc)
            return None, f"reading the daemon's status failed: {type(exc).__name__}: {exc}"
        if not isinstance(status, dict):
            return None, f"the daemon's status is not a table: {type(status).__name__}"
        return status, None

    def sample(self) -> int | None:
        """Take one reading into the history now; its sample number, or None
        if the daemon did not answer.  The sampler thread calls this every
        ``sample_interval`` seconds."""
        status, error = self.read_status()
        if status is None:
            self.history.failed(error)
            return None
        return self.history.add(status)

    def _sample_loop(self) -> None:
        threads.lower_priority({threading.get_native_id()}, self.nice)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except Exception:     # a bug: keep sampling, say so
                log.exception("the status sampler failed")
            self._stop.wait(max(0.0, self.sample_interval - (time.monotonic() - started)))

    def status_payload(self, after: int | None = None) -> bytes:
        """The JSON of ``/status.json?after=N``."""
        return self.history.encoded(after)

    # ---------------------------------------------------------------- routes

    def _metrics(self, query: str) -> _Reply:
        return _Reply(200, self._prometheus.generate_latest(self.registry), self._content_type)

    def _healthz(self, query: str) -> _Reply:
        status, error = self.read_status()
        if status is None:
            return _Reply(503, error + "\n")
        return _Reply(200, "ok\n")

    def _readyz(self, query: str) -> _Reply:
        status, error = self.read_status()
        reasons = [error] if status is None else not_ready_reasons(status)
        models = sorted((status or {}).get("models") or {})
        return _json(503 if reasons else 200,
                     {"ready": not reasons, "reasons": reasons, "models": models})

    def _status_json(self, query: str) -> _Reply:
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        after = None
        if "after" in params:
            text = params["after"][-1]
            if not text.isascii() or not text.isdigit() or len(text) > 18:
                return _Reply(400, f"after must be a sample number, got {text!r}\n")
            after = int(text)
        return _Reply(200, self.status_payload(after), "application/json")

    # ----------------------------------------------------------------- HTTP

    def _serve(self, sock: socket.socket) -> None:
        threads.lower_priority({threading.get_native_id()}, self.nice)
        loop = self._loop
        asyncio.set_event_loop(loop)
        accepting = loop.create_task(self._accept_forever(sock))
        try:
            loop.run_forever()
        finally:
            # No more connections; every open one is closed, its handler
            # cancelled, and a last turn runs the transports' closing
            # callbacks.  (Connections are accepted here, not by
            # asyncio.start_server, whose server once closed leaves a
            # connection accepted in the same turn open.)
            accepting.cancel()
            loop.run_until_complete(asyncio.gather(accepting, return_exceptions=True))
            sock.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(0))
            for conn in list(self._sockets):
                conn.close()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _shutdown(self) -> None:
        self._loop.stop()

    async def _accept_forever(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:       # out of descriptors, say: wait, then go on
                log.warning("HTTP: cannot accept a connection: %s", exc)
                await asyncio.sleep(0.1)
                continue
            # Registered at once (not in the handler, which a shutdown may
            # cancel before it starts), so that close() closes it.
            self._sockets.add(conn)
            task = loop.create_task(self._connection(conn))
            self._tasks.add(task)            # the loop keeps only a weak reference
            task.add_done_callback(self._tasks.discard)

    async def _connection(self, conn: socket.socket) -> None:
        writer = None
        self._connections += 1
        refused = self._connections > self.max_connections     # decided on arrival
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD_BYTES)
            # drain() returns once everything is handed to the kernel.
            writer.transport.set_write_buffer_limits(high=0)
            if refused:
                reply, head = _Reply(503, "too many connections\n"), False
            else:
                reply, head = await self._answer(reader)
            if reply is not None:
                await self._send(writer, reply, head)
        except (OSError, asyncio.CancelledError):    # the client went away; shutting down
            pass
        except Exception:      # a bug: log it, keep serving the others
            log.exception("HTTP request failed")
        finally:
            self._connections -= 1
            if writer is not None:
                writer.transport.abort()      # closes conn, in a callback
            else:
                conn.close()
            self._sockets.discard(conn)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[_Reply | None, bool]:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.header_timeout)
        except _TIMEOUTS:
            return _Reply(408, "request head not received in time\n"), False
        except asyncio.LimitOverrunError:
            return _Reply(431, f"request head larger than {MAX_HEAD_BYTES} bytes\n"), False
        except (asyncio.IncompleteReadError, ValueError):
            return None, False           # closed before a whole head
        line = raw.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _Reply(400, "malformed request line\n"), False
        method, target = parts[0].decode("latin-1"), parts[1].decode("latin-1")
        if method not in ("GET", "HEAD"):
            return _Reply(405, f"method {method} not allowed: GET or HEAD\n",
                          headers={"Allow": "GET, HEAD"}), False
        head = method == "HEAD"
        if not target.startswith("/"):
            return _Reply(400, "the request target must be a path\n"), head
        path, _, query = target.partition("?")
        if path in ("/", "/status"):
            return _Reply(200, self._page, "text/html; charset=utf-8",
                          {"Content-Security-Policy": self._page_policy,
                           "Referrer-Policy": "no-referrer"}), head
        route = self._routes.get(path)
        if route is None:
            return _Reply(404, f"not found: {path}; this server has /, /status, /status.json, "
                               f"/metrics, /healthz and /readyz\n"), head
        try:
            future = self._pool.submit(lambda: route(query))
        except queue.Full:
            return _Reply(503, "busy: too many requests in progress\n",
                          headers={"Retry-After": "1"}), head
        try:
            return await asyncio.wrap_future(future), head
        except Exception as exc:    # a bug: say so, keep serving
            log.exception("HTTP %s %s failed", method, path)
            return _Reply(500, f"internal error: {type(exc).__name__}: {exc}\n"), head

    async def _send(self, writer: asyncio.StreamWriter, reply: _Reply, head: bool) -> None:
        phrase = http.HTTPStatus(reply.status).phrase
        headers = {"Content-Type": reply.content_type, "Content-Length": str(len(reply.body)),
                   "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                   "Connection": "close", **reply.headers}
        lines = [f"HTTP/1.1 {reply.status} {phrase}"] + [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head:
            writer.write(reply.body)
        try:
            await asyncio.wait_for(writer.drain(), self.write_timeout)
        except _TIMEOUTS:
            log.debug("an HTTP client did not read its reply within %g s", self.write_timeout)
            return
        # Everything is in the kernel: a FIN after it (the abort that
        # follows would otherwise be a reset that may overtake the reply).
        try:
            writer.write_eof()
        except OSError:           # the client has gone already
            pass
