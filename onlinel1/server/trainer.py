"""One named model of the daemon: its learner, counters and snapshot schedule.

A trainer learns a checked batch in slices of about ``config.slice_nnz``
features: between slices the daemon answers the requests that arrived
(the learning kernel polls the request socket's descriptor every slice and
stops after the current example when one may be waiting), so a large batch
never holds a prediction for long, and a batch with no request in the way
is learned in few calls.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

from onlinel1._kernels.csr import slice_end
from onlinel1.batch import Batch
from onlinel1.errors import BatchError, NumericError, StoreFullError, stopped_message
from onlinel1.learner import Learner
from onlinel1.server import protocol
from onlinel1.server.config import DaemonConfig
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.snapshots import BackgroundWriter, SnapshotDir
from onlinel1.server.stats import MAX_PRODUCERS, Stats

#: A learning call covers at most this many slices (config.slice_nnz each);
#: the kernel stops sooner, after the slice in which a request arrives.
MAX_SLICES_PER_CALL = 8
#: The magnitude checks read this many entries at a time (their temporaries
#: stay small whatever the batch).
CHECK_CHUNK = 1 << 16


def first_beyond(values: np.ndarray, bound: float) -> int:
    """The index of the first entry whose |value| is above ``bound``, or
    -1 (vectorised, a chunk at a time; the entries are finite)."""
    if bound == float("inf"):
        return -1
    for lo in range(0, values.size, CHECK_CHUNK):
        beyond = np.abs(values[lo:lo + CHECK_CHUNK]) > bound
        if beyond.any():
            return lo + int(np.argmax(beyond))
    return -1


def magnitude_problem(batch: Batch, config: DaemonConfig, learning: bool) -> str | None:
    """Why ``batch`` carries a value beyond the daemon's bounds (the first
    one, naming its row, 0-based in the batch, and the bound), or None.
    A feature value, and for training an importance or a label."""
    pos = first_beyond(batch.values, config.max_abs_value)
    if pos >= 0:
        row = int(np.searchsorted(batch.indptr, pos, side="right") - 1)
        return (f"values: {float(batch.values[pos])!r} in row {row} (rows count from 0 in the "
                f"batch) is beyond max_abs_value ({config.max_abs_value:g}): scale the feature "
                f"or raise --max-abs-value")
    if not learning:
        return None
    if batch.weights is not None:
        row = first_beyond(batch.weights, config.max_importance)
        if row >= 0:
            return (f"weights: importance {float(batch.weights[row])!r} in row {row} (rows count "
                    f"from 0 in the batch) is above max_importance ({config.max_importance:g})")
    row = first_beyond(batch.labels, config.max_abs_label)
    if row >= 0:
        return (f"labels: {float(batch.labels[row])!r} in row {row} (rows count from 0 in the "
                f"batch) is beyond max_abs_label ({config.max_abs_label:g})")
    return None


class NewNames(dict):
    """The names a training batch brings that its model does not know
    yet: ``key in`` it asks the model's table too, so that a decoder
    names only new keys.  They join the table when the batch is learned,
    never when it is refused."""

    def __init__(self, known: dict[int, str]) -> None:
        super().__init__()
        self.known = known

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.known


class TrainingBatch(Batch):
    """A decoded training batch and the new feature names it carries."""

    __slots__ = ("new_names",)

    def __init__(self, batch: Batch, new_names: dict[int, str] | None) -> None:
        # The checked arrays as they are (no second validation).
        for field in Batch.__slots__:
            setattr(self, field, getattr(batch, field))
        self.new_names = new_names


@dataclasses.dataclass
class SnapshotSchedule:
    """When this model's next snapshot is due, and who waits for it."""

    directory: SnapshotDir
    writer: BackgroundWriter
    last_time: float
    last_t: int
    wanted: bool = False
    #: Repliers waiting for the next snapshot, and those of the one being written.
    waiters: list = dataclasses.field(default_factory=list)
    writing_for: list = dataclasses.field(default_factory=list)
    #: Whether the last attempt failed (readiness is degraded until one succeeds).
    failing: bool = False


class Trainer:
    """A named model: ``learner``, the names of its string features (when
    kept), its ``stats`` (producers' sequence numbers among them) and its
    snapshot schedule (None without a snapshot directory)."""

    def __init__(self, name: str, learner: Learner, config: DaemonConfig, *,
                 names: dict[int, str] | None = None,
                 producers: dict[str, int] | None = None,
                 snapshots: SnapshotDir | None = None, metrics: Any = None) -> None:
        self.name = name
        #: Gets each batch's learning time (``RequestMetrics``), if given.
        self.metrics = metrics
        #: Seconds the last batch took to learn (requests in between not counted).
        self.learning_s = 0.0
        self.learner = learner
        self.config = config
        self.stats = Stats(config.window_examples)
        for producer, seq in list((producers or {}).items())[-MAX_PRODUCERS:]:
            self.stats.producers.record(producer, seq)
        self.names: dict[int, str] | None = dict(names or {}) if config.keep_names or names else None
        self.schedule = SnapshotSchedule(snapshots, BackgroundWriter(snapshots), time.monotonic(),
                                         learner.examples_seen) if snapshots else None

    def summary(self) -> str:
        o = self.learner.options
        return (f"loss={o.loss} update={o.update} l1={o.l1:g} l2={o.l2:g} eta0={o.eta0:g} "
                f"schedule={o.schedule} origin={o.origin}"
                + (" adaptive" if o.adaptive else "")
                + (f" minibatch={o.minibatch}" if o.minibatch > 1 else ""))

    def replace(self, learner: Learner, names: dict[int, str] | None) -> None:
        """Serve ``learner`` from now on (a swap or a replica's reload): one
        assignment, so every request is answered wholly by the old model or
        wholly by the new."""
        self.learner = learner
        if self.names is not None or names:
            self.names = dict(names or {})
        if self.schedule is not None:
            self.schedule.last_t = -1      # the next periodic snapshot holds the new model

    def report(self) -> dict[str, Any]:
        """The ``stats`` reply of this model."""
        out = self.stats.report(self.learner)
        out["model"] = self.name
        out["update"] = self.learner.options.update
        out["snapshot_failing"] = bool(self.schedule and self.schedule.failing)
        cluster = getattr(self.learner, "cluster_report", None)
        if cluster is not None:          # onlinel1 cluster (docs/scaling.md)
            out["cluster"] = cluster()
        return out

    # ----------------------------------------------------------- learning

    def decode(self, msg: dict, learning: bool, names: dict[int, str] | None = None) -> Batch:
        """The checked batch of a train, learn (``learning``) or predict
        message: at most ``max_request_rows`` rows (``too_large``, a
        row-wise batch refused before it is decoded), crossed with the
        model's interactions if it is row-wise, then ``check``.  The names
        of its string features go into ``names`` if given; else, when
        learning and the model keeps names, the new ones travel with the
        batch (``TrainingBatch.new_names``) and join the model's names only
        when the batch is learned."""
        new_names = None
        if names is None and learning and self.names is not None:
            names = new_names = NewNames(self.names)
        batch = protocol.decode_batch(msg, need_labels=learning, names=names,
                                      max_rows=self.config.max_request_rows,
                                      options=self.learner.options)
        self.check(batch, learning)
        return TrainingBatch(batch, new_names) if learning else batch

    def check(self, batch: Batch, learning: bool) -> None:
        """``bad_batch`` unless the learner takes ``batch`` (finite, labels
        for the loss, the budget) and it is within the daemon's magnitudes
        (max_abs_value, and for training max_importance and max_abs_label):
        refused whole, before any row is learned."""
        try:
            self.learner.check(batch, learning=learning)
        except BatchError as exc:
            raise ProtocolError(protocol.BAD_BATCH, str(exc)) from None
        problem = magnitude_problem(batch, self.config, learning)
        if problem:
            raise ProtocolError(protocol.BAD_BATCH, problem)

    def learn(self, batch: Batch, request_fd: int,
              serve_between: Callable[[float], bool]) -> dict:
        """Learn a checked batch in slices, calling ``serve_between(s)``
        between them, ``s`` the seconds the slice took (it answers requests
        and says whether more may be waiting); return the reply of an
        acknowledged learn.  The batch is atomic (docs/algorithms.md,
        "Atomic batches"): a numeric failure in any slice undoes the slices
        before it too, and raises ``ProtocolError(numeric)``; the model,
        its counts and its names are as they were before the batch.
        Requests answered between slices see the rows learned so far."""
        self.stats.batches += 1
        indptr = batch.indptr
        n = batch.n_rows
        slice_nnz = self.config.slice_nnz
        wake = (request_fd, slice_nnz)
        budget = MAX_SLICES_PER_CALL * slice_nnz
        start = 0
        learner = self.learner
        before = learner.progress_sums
        learning = 0.0        # seconds spent learning (not answering requests)
        self.learning_s = 0.0
        results = []
        learner.begin()
        try:
            while start < n:
                # The largest stop with nnz(start:stop) <= budget (at least one row).
                stop = slice_end(indptr, start, budget)
                began = time.perf_counter()
                result = learner.learn(batch, check=False, rows=(start, stop), wake=wake)
                took = time.perf_counter() - began
                learning += took
                self.learning_s = learning
                results.append(result)
                start += result.rows
                if start < n:
                    more = serve_between(took)
                    # Requests left over (the per-turn limit) do not signal the
                    # descriptor again: come back after one slice.
                    budget = (1 if more else MAX_SLICES_PER_CALL) * slice_nnz
        except (NumericError, StoreFullError) as exc:
            learner.rollback()
            raise ProtocolError(protocol.NUMERIC, stopped_message(exc.reason, exc.row)) from None
        except BaseException:
            learner.rollback()
            raise
        learner.commit()
        for result in results:
            self.stats.learned(result)
        new_names = getattr(batch, "new_names", None)
        if new_names and self.names is not None:
            for key, name in new_names.items():
                self.names.setdefault(key, name)
        if self.metrics is not None:
            self.metrics.observe_batch(self.name, n, learning)
        after = learner.progress_sums
        weight = after["weight_sum"] - before["weight_sum"]
        loss = (after["loss_sum"] - before["loss_sum"]) / weight if weight > 0 else None
        return {"examples": n, "loss": loss, "t": learner.examples_seen}
