"""Latency histograms the daemon's loop feeds, read by the HTTP side.

The loop calls ``RequestMetrics.observe`` after each request and
``observe_batch`` after each training batch; the ``/metrics`` endpoint
(``server/http.py``) reads them from its own threads.  Plain Python with a
lock and fixed buckets (no dependency): a daemon without
``--http-endpoint`` can keep one at the cost of a bisect and two additions
per observation.

Buckets are cumulative only when read, as Prometheus' ``le`` buckets
(docs/metrics.md): an observation of ``s`` seconds falls in the first
bucket whose upper bound is ``>= s``.
"""
from __future__ import annotations

import bisect
import threading
from typing import NamedTuple

#: Upper bounds, in seconds, of the latency buckets: a loopback prediction
#: takes 50 µs-1 ms, a large training batch or a request waiting behind
#: one up to seconds; ``+Inf`` is implied.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Upper bounds of the batch-size buckets, in examples.
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
#: Label sets kept per histogram family; observations for further ones are
#: counted in ``dropped`` instead (a bound on memory should a caller pass
#: unbounded label values).
MAX_SERIES = 4096


class HistogramSnapshot(NamedTuple):
    """One series, as read: cumulative counts per upper bound (the last one
    is +Inf and equals ``count``) and the sum of the observations."""

    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum: float


class _Series:
    __slots__ = ("counts", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)      # the last one: above every bound
        self.sum = 0.0


class _Family:
    """Histograms of one name, one per label set."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[tuple[str, ...], _Series] = {}

    def add(self, labels: tuple[str, ...], value: float) -> bool:
        series = self.series.get(labels)
        if series is None:
            if len(self.series) >= MAX_SERIES:
                return False
            series = self.series[labels] = _Series(len(self.bounds))
        series.counts[bisect.bisect_left(self.bounds, value)] += 1
        series.sum += value
        return True

    def read(self) -> list[HistogramSnapshot]:
        out = []
        for labels, series in sorted(self.series.items()):
            running, cumulative = 0, []
            for count in series.counts:
                running += count
                cumulative.append(running)
            out.append(HistogramSnapshot(labels, self.bounds, tuple(cumulative), running,
                                         series.sum))
        return out


class RequestMetrics:
    """Request latency per model and operation, and learning time and size
    of training batches per model.  Thread-safe: the daemon's loop writes,
    the HTTP threads read.

    >>> m = RequestMetrics()
    >>> m.observe("ctr", "predict", 0.0003)
    >>> m.observe("ctr", "predict", 0.002)
    >>> (h,) = m.requests()
    >>> h.labels, h.count, h.cumulative[h.bounds.index(0.0005)]
    (('ctr', 'predict'), 2, 1)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = _Family(LATENCY_BUCKETS)
        self._batches = _Family(LATENCY_BUCKETS)
        self._batch_sizes = _Family(BATCH_SIZE_BUCKETS)
        #: Observations not recorded because a family had MAX_SERIES label sets.
        self.dropped = 0

    def observe(self, model: str, op: str, seconds: float) -> None:
        """A request ``op`` (``predict``, ``learn``, ...) to ``model`` took
        ``seconds``, from its arrival in the loop to its reply.  ``op``
        should come from the daemon's fixed set of operations (an unknown
        one as a single placeholder such as ``"?"``), so that the number of
        series stays bounded."""
        with self._lock:
            if not self._requests.add((model, op), seconds):
                self.dropped += 1

    def observe_batch(self, model: str, examples: int, seconds: float) -> None:
        """``model`` learned a training batch of ``examples`` rows in
        ``seconds`` (its learning time, not the requests answered in
        between)."""
        with self._lock:
            ok = self._batches.add((model,), seconds)
            ok = self._batch_sizes.add((model,), float(examples)) and ok
            if not ok:
                self.dropped += 1

    def forget(self, model: str) -> None:
        """Drop the series of ``model`` (when it is unloaded)."""
        with self._lock:
            for family in (self._requests, self._batches, self._batch_sizes):
                for labels in [k for k in family.series if k[0] == model]:
                    del family.series[labels]

    def requests(self) -> list[HistogramSnapshot]:
        """The request-latency series, labels ``(model, op)``."""
        with self._lock:
            return self._requests.read()

    def batches(self) -> list[HistogramSnapshot]:
        """The batch learning-time series, labels ``(model,)``."""
        with self._lock:
            return self._batches.read()

    def batch_sizes(self) -> list[HistogramSnapshot]:
        """The batch-size series (examples per batch), labels ``(model,)``."""
        with self._lock:
            return self._batch_sizes.read()
