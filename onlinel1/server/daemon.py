"""The daemon: one event loop over two ZeroMQ sockets (docs/protocol.md).

* ``PULL`` (training endpoint): training batches, fire and forget.
* ``ROUTER`` (request endpoint): predict, learn, stats, health, config;
  every request gets exactly one reply, a result or an error with a code.

One thread polls both sockets (the ZeroMQ guide's pattern; no thread per
client).  A training batch is validated whole, then learned in place; every
``slice_nnz`` features the learning kernel polls the request socket's
descriptor (``ZMQ_FD``, no waiting) and stops after the current example if
a request may be waiting.  The loop answers it and learns on, so a large
batch never holds a prediction for long, and a batch with no request in
the way is learned in few calls.
Acknowledged ``learn`` requests that arrive while a batch is in hand wait
until it is done, so batches are never interleaved.  Every way a message
can be wrong ends in an error reply (request socket) or a counted, logged
rejection of the whole batch (training socket); the model is never
changed by a message that is refused.
"""
from __future__ import annotations

import collections
import logging
import pathlib
import time
from typing import Any, Callable

import numpy as np
import zmq

import onlinel1
from onlinel1._kernels.csr import slice_end
from onlinel1.batch import Batch
from onlinel1.errors import BatchError, NumericError, StoreFullError, stopped_message
from onlinel1.learner import Learner
from onlinel1.server import protocol, threads
from onlinel1.server.config import DaemonConfig
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.snapshots import BackgroundWriter, SnapshotDir, Written, write_now
from onlinel1.server.stats import Stats

log = logging.getLogger("onlinel1.daemon")

MAX_TOP_K = 1000
POLL_MS = 100                 # how often the loop looks at the stop flag
REQUESTS_PER_TURN = 256       # requests answered before training resumes
#: A learning call covers at most this many slices (config.slice_nnz each);
#: the kernel stops sooner, after the slice in which a request arrives.
MAX_SLICES_PER_CALL = 8


class RateLimitedLog:
    """At most one log line per second per key; says how many it held back."""

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self.logger, self.interval = logger, interval
        self.last: dict[str, float] = {}
        self.held: collections.Counter[str] = collections.Counter()

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self.last.get(key, -1e9) < self.interval:
            self.held[key] += 1
            return
        held = self.held.pop(key, 0)
        self.last[key] = now
        self.logger.warning("%s%s", message, f" ({held} more like it not logged)" if held else "")


class Daemon:
    """Serve ``learner`` on the endpoints of ``config``.

    ``bind()`` opens the sockets (raising ``zmq.ZMQError`` if an endpoint
    cannot be bound), ``run()`` loops until ``request_stop()``, then the
    batch in hand is finished (and the final snapshot written) and
    ``run()`` returns; ``close()`` releases the sockets.

    ``producers`` and ``names`` carry on what a resumed snapshot held.
    ``replica_of`` (a snapshot file or directory) makes a read-only
    replica: no training socket, and the model is reloaded whenever a
    newer snapshot appears there.
    """

    def __init__(self, learner: Learner, config: DaemonConfig,
                 context: zmq.Context | None = None, *,
                 producers: dict[str, int] | None = None,
                 names: dict[int, str] | None = None,
                 replica_of: str | None = None) -> None:
        self.learner = learner
        self.config = config
        # Two contexts, each with its own I/O thread: the training stream on
        # one, requests and replies on the other, so a stream of large
        # batches never queues a reply; the training one runs at a lower CPU
        # priority (config.training_io_nice, see threads.py).  A context
        # given by the caller carries both sockets.
        self._own_contexts = context is None
        self.context = context or zmq.Context(io_threads=1)
        self.training_context = context or (None if replica_of else zmq.Context(io_threads=1))
        #: Thread ids whose priority the daemon lowered.
        self.lowered_threads: list[int] = []
        self.stats = Stats(config.window_examples)
        self.stats.producers.update(producers or {})
        self.names: dict[int, str] | None = dict(names or {}) if config.keep_names or names else None
        self.rejections = RateLimitedLog(log)
        self.training: zmq.Socket | None = None
        self.requests: zmq.Socket | None = None
        self._stop = False
        self._in_batch = False
        self._deferred: collections.deque[tuple[list[bytes], Any, Batch]] = collections.deque()
        self.handlers: dict[str, Callable[[dict], dict]] = {
            "predict": self._predict, "learn": self._learn_request, "stats": self._stats,
            "health": self._health, "config": self._config, "snapshot": self._snapshot_request,
        }
        # Snapshots.
        self.snapshots = SnapshotDir(config.snapshot_dir, config.keep) if config.snapshot_dir else None
        self.writer = BackgroundWriter(self.snapshots) if self.snapshots else None
        self._snapshot_waiters: list[tuple[list[bytes], Any]] = []
        self._writing_for: list[tuple[list[bytes], Any]] = []
        self._snapshot_wanted = False
        self._last_snapshot_time = time.monotonic()
        self._last_snapshot_t = learner.examples_seen
        # Read-only replica.
        self.replica_of = replica_of
        self._replica_version: Any = self._source_version() if replica_of else None
        self._next_reload_check = time.monotonic() + 1.0

    # ---------------------------------------------------------- lifecycle

    def bind(self) -> None:
        c = self.config
        # ZeroMQ drops frames beyond MAXMSGSIZE itself (bounding memory
        # against absurd sizes); up to that the daemon answers too_large.
        hard_cap = 4 * c.max_message_bytes
        if self.replica_of:
            training = None
        elif self._own_contexts:
            training, started = threads.started_by(lambda: self.training_context.socket(zmq.PULL))
            self.lowered_threads = threads.lower_priority(started, c.training_io_nice)
        else:
            training = self.training_context.socket(zmq.PULL)
        requests = self.context.socket(zmq.ROUTER)
        sockets = [s for s in (training, requests) if s is not None]
        try:
            for sock in sockets:
                sock.setsockopt(zmq.RCVHWM, c.high_water_mark)
                sock.setsockopt(zmq.SNDHWM, c.high_water_mark)
                sock.setsockopt(zmq.MAXMSGSIZE, hard_cap)
                sock.setsockopt(zmq.LINGER, 1000)
            requests.setsockopt(zmq.ROUTER_MANDATORY, 0)
            if training is not None:
                training.bind(c.train_endpoint)
            requests.bind(c.request_endpoint)
        except zmq.ZMQError:
            for sock in sockets:
                sock.close(linger=0)
            raise
        self.training, self.requests = training, requests
        # Readable when the request socket may have something (ZMQ_FD): the
        # learning kernel polls it every slice, so a request interrupts a
        # batch after the current slice, not after a fixed number of them.
        self._request_fd = requests.getsockopt(zmq.FD)
        if self.replica_of:
            log.info("predict-only replica of %s, requests on %s (ROUTER); learner: %s",
                     self.replica_of, c.request_endpoint, self._learner_summary())
        else:
            log.info("training on %s (PULL), requests on %s (ROUTER); learner: %s",
                     c.train_endpoint, c.request_endpoint, self._learner_summary())
            if self.lowered_threads:
                log.debug("the training stream's I/O threads %s run at nice %d",
                          self.lowered_threads, c.training_io_nice)

    def request_stop(self) -> None:
        """Stop taking input; ``run()`` returns once the batch in hand is done."""
        self._stop = True

    def close(self) -> None:
        for sock in (self.training, self.requests):
            if sock is not None:
                sock.close()
        self.training = self.requests = None
        if self._own_contexts:
            for ctx in (self.training_context, self.context):
                if ctx is not None and not ctx.closed:
                    ctx.term()

    def _learner_summary(self) -> str:
        o = self.learner.options
        return (f"loss={o.loss} update={o.update} l1={o.l1:g} l2={o.l2:g} eta0={o.eta0:g} "
                f"schedule={o.schedule} origin={o.origin}")

    # --------------------------------------------------------------- loop

    def run(self) -> None:
        assert self.requests is not None, "bind() first"
        poller = zmq.Poller()
        poller.register(self.requests, zmq.POLLIN)
        if self.training is not None:
            poller.register(self.training, zmq.POLLIN)
        while not self._stop:
            events = dict(poller.poll(POLL_MS))
            if self.requests in events:
                self._serve_requests()
            while self._deferred:
                self._run_deferred_learn()
            if self.training is not None and self.training in events and not self._stop:
                self._train_one()
            if self.snapshots is not None:
                self._snapshot_turn()
            if self.replica_of:
                self._reload_if_newer()
        # Stop taking input; what was acknowledged-in-hand is answered.
        while self._deferred:
            self._run_deferred_learn()
        if self.snapshots is not None:
            self._final_snapshot()
        log.info("stopped after %d examples", self.learner.examples_seen)

    # ---------------------------------------------------------- snapshots

    def _snapshot_due(self) -> bool:
        c = self.config
        if self._snapshot_wanted:
            return True
        if c.snapshot_every_seconds and \
                time.monotonic() - self._last_snapshot_time >= c.snapshot_every_seconds:
            return self.learner.examples_seen != self._last_snapshot_t
        if c.snapshot_every_examples and \
                self.learner.examples_seen - self._last_snapshot_t >= c.snapshot_every_examples:
            return True
        return False

    def _snapshot_turn(self) -> None:
        """Between batches: collect a finished write, start a due one."""
        record = self.writer.poll()
        if record is not None:
            self._snapshot_done(record, self._writing_for)
            self._writing_for = []
        if not self.writer.busy and self._snapshot_due():
            reason = "request" if self._snapshot_wanted else "periodic"
            self._writing_for, self._snapshot_waiters = self._snapshot_waiters, []
            self._snapshot_wanted = False
            self._last_snapshot_time = time.monotonic()
            self._last_snapshot_t = self.learner.examples_seen
            try:
                self.writer.start(self.learner, self.names, self.stats.producers, reason)
            except OSError as exc:   # fork failed (memory, process limits)
                self._snapshot_done(Written(0, pathlib.Path(""), False, 0, 0.0, 0.0, reason,
                                            f"cannot start the writer: {exc}"), self._writing_for)
                self._writing_for = []

    def _snapshot_done(self, record: Written, waiters: list) -> None:
        if record.ok:
            self.stats.last_snapshot = {
                "seq": record.seq, "file": record.path.name, "unix_time": round(time.time(), 3),
                "size": record.size, "duration_s": round(record.duration_s, 6),
                "pause_s": round(record.pause_s, 6), "reason": record.reason,
                "examples": self._last_snapshot_t}
            log.info("snapshot %s written (%d bytes, %.3f s, learning paused %.1f ms)",
                     record.path.name, record.size, record.duration_s, 1000 * record.pause_s)
        else:
            self.stats.snapshots_failed += 1
            log.error("snapshot %s failed: %s", record.path.name, record.error)
        for envelope, request_id in waiters:
            if record.ok:
                reply = protocol.encode_result(request_id, {
                    "file": record.path.name, "seq": record.seq, "size": record.size,
                    "examples": self._last_snapshot_t})
            else:
                reply = protocol.encode_error(request_id, protocol.INTERNAL,
                                              f"the snapshot failed: {record.error}")
            self._reply(envelope, reply)

    def _final_snapshot(self) -> None:
        record = self.writer.poll(block=True)
        if record is not None:
            self._snapshot_done(record, self._writing_for)
            self._writing_for = []
        waiters, self._snapshot_waiters = self._snapshot_waiters, []
        self._last_snapshot_t = self.learner.examples_seen
        try:
            record = write_now(self.snapshots, self.learner, self.names, self.stats.producers,
                               "shutdown")
        except OSError as exc:
            record = Written(0, pathlib.Path(""), False, 0, 0.0, 0.0, "shutdown", str(exc))
        self._snapshot_done(record, waiters)

    def _snapshot_request(self, msg: dict) -> dict | None:
        if self.replica_of:
            raise ProtocolError(protocol.READ_ONLY, "a predict-only replica takes no snapshots")
        if self.snapshots is None:
            raise ProtocolError(protocol.BAD_REQUEST,
                                "this daemon has no snapshot directory (start it with --snapshot-dir)")
        self._snapshot_wanted = True
        return None   # answered when the snapshot is on disk

    # ------------------------------------------------------------ replica

    def _source_version(self) -> Any:
        path = pathlib.Path(self.replica_of)
        if path.is_dir():
            listing = SnapshotDir(path, 1).listing()
            return listing[-1][0] if listing else None
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload_if_newer(self) -> None:
        now = time.monotonic()
        if now < self._next_reload_check:
            return
        self._next_reload_check = now + 1.0
        version = self._source_version()
        if version is None or version == self._replica_version:
            return
        from onlinel1 import model_file
        path = pathlib.Path(self.replica_of)
        try:
            if path.is_dir():
                loaded, problems = SnapshotDir(path, 1).load_newest_valid()
                for problem in problems:
                    log.warning("%s", problem)
                if loaded is None:
                    return
                learner, names, source = loaded.learner, loaded.names, loaded.path
            else:
                learner, names, _ = model_file.load(path)
                source = path
        except (model_file.ModelFileError, OSError) as exc:
            log.warning("not reloading %s: %s", self.replica_of, exc)
            return
        self.learner, self._replica_version = learner, version
        if self.names is not None or names:
            self.names = dict(names)
        self.stats.reloads += 1
        log.info("reloaded the model from %s (%d examples)", source, learner.examples_seen)

    # ----------------------------------------------------------- training

    def _train_one(self) -> None:
        try:
            frame = self.training.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        try:
            msg = protocol.decode_message(frame.buffer, self.config.max_message_bytes)
            op = msg.get("op", "train")
            if op != "train":
                raise ProtocolError(protocol.UNKNOWN_OP, f"the training socket takes 'train' "
                                                         f"messages only, got op {op!r}")
            producer, seq = msg.get("producer"), msg.get("seq")
            if producer is not None and not isinstance(producer, str):
                raise ProtocolError(protocol.BAD_REQUEST, "producer must be a string")
            if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
                raise ProtocolError(protocol.BAD_REQUEST, "seq must be an integer")
            batch = protocol.decode_batch(msg, need_labels=True, names=self.names)
            self._check(batch, learning=True)
        except ProtocolError as exc:
            self._reject(exc)
            return
        self.stats.batches += 1
        if producer is not None and seq is not None:
            self.stats.producers[producer] = seq
        try:
            self._learn_sliced(batch)
        except ProtocolError as exc:   # numeric: the examples before it were learned
            self._reject(exc)

    def _reject(self, exc: ProtocolError) -> None:
        self.stats.rejected[exc.code] += 1
        self.rejections.warning(exc.code, f"training batch rejected ({exc.code}): {exc.message}")

    def _check(self, batch: Batch, learning: bool) -> None:
        try:
            self.learner.check(batch, learning=learning)
        except BatchError as exc:
            raise ProtocolError(protocol.BAD_BATCH, str(exc)) from None

    def _learn_sliced(self, batch: Batch) -> dict:
        """Learn a checked batch in slices, answering requests in between;
        return the reply of an acknowledged learn."""
        indptr = batch.indptr
        n = batch.n_rows
        slice_nnz = self.config.slice_nnz
        wake = (self._request_fd, slice_nnz)
        budget = MAX_SLICES_PER_CALL * slice_nnz
        start = 0
        before_all = self.learner.progress_sums
        self._in_batch = True
        try:
            while start < n:
                # The largest stop with nnz(start:stop) <= budget (at least one row).
                stop = slice_end(indptr, start, budget)
                try:
                    result = self.learner.learn(batch, check=False, rows=(start, stop),
                                                wake=wake)
                except (NumericError, StoreFullError) as exc:
                    self.stats.learned(exc.result)
                    # Rows 0 .. exc.row - 1 of the batch were learned, in this
                    # call and the ones before it.
                    raise ProtocolError(protocol.NUMERIC,
                                        stopped_message(exc.reason, exc.row, exc.row)) from None
                self.stats.learned(result)
                start += result.rows
                if start < n:
                    more = self._serve_requests()
                    # Requests left over (the per-turn limit) do not signal
                    # the descriptor again: come back after one slice.
                    budget = (1 if more else MAX_SLICES_PER_CALL) * slice_nnz
        finally:
            self._in_batch = False
        after = self.learner.progress_sums
        weight = after["weight_sum"] - before_all["weight_sum"]
        loss = (after["loss_sum"] - before_all["loss_sum"]) / weight if weight > 0 else None
        return {"examples": n, "loss": loss, "t": self.learner.examples_seen}

    # ----------------------------------------------------------- requests

    def _serve_requests(self) -> bool:
        """Answer the waiting requests, at most REQUESTS_PER_TURN; return
        whether more may be waiting."""
        for _ in range(REQUESTS_PER_TURN):
            # Cheaper than a non-blocking recv that raises zmq.Again (this
            # runs between every two slices of a training batch).
            if not self.requests.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return False
            try:
                # Requests are small: copying beats zmq.Frame's bookkeeping.
                parts = self.requests.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return False
            self._serve(parts)
        return True

    def _serve(self, parts: list) -> None:
        # DEALER: [identity, body]; REQ: [identity, b"", body].
        envelope = parts[:-1]
        body = parts[-1]
        request_id = None
        op = "?"
        try:
            if len(parts) < 2 or (len(parts) == 3 and len(envelope[1]) != 0) or len(parts) > 3:
                raise ProtocolError(protocol.MALFORMED,
                                    "a request is one frame (DEALER) or an empty delimiter and "
                                    "one frame (REQ)")
            msg = protocol.decode_message(body, self.config.max_message_bytes)
            request_id = msg.get("id")
            op = msg.get("op")
            handler = self.handlers.get(op) if isinstance(op, str) else None
            if handler is None:
                raise ProtocolError(protocol.UNKNOWN_OP,
                                    f"unknown operation {op!r}; this daemon answers "
                                    f"{', '.join(sorted(self.handlers))}")
            self.stats.requests[op] += 1
            if op == "learn" and self._in_batch and not self.replica_of:
                batch = self._learn_batch(msg)
                self._deferred.append((envelope, request_id, batch))
                return
            result = handler(msg)
            if result is None:          # answered later (snapshot)
                self._snapshot_waiters.append((envelope, request_id))
                return
            reply = protocol.encode_result(request_id, result)
        except ProtocolError as exc:
            self.stats.errors[exc.code] += 1
            reply = protocol.encode_error(request_id, exc.code, exc.message)
        except Exception as exc:   # a bug: say so, keep serving
            log.exception("internal error answering %r", op)
            self.stats.errors[protocol.INTERNAL] += 1
            reply = protocol.encode_error(request_id, protocol.INTERNAL,
                                          f"{type(exc).__name__}: {exc}")
        self._reply(envelope, reply)

    def _reply(self, envelope: list[bytes], reply: bytes) -> None:
        try:
            self.requests.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:   # the client went away or is not reading
            log.debug("reply not delivered: %s", exc)

    def _run_deferred_learn(self) -> None:
        envelope, request_id, batch = self._deferred.popleft()
        try:
            reply = protocol.encode_result(request_id, self._learn_checked(batch))
        except ProtocolError as exc:
            self.stats.errors[exc.code] += 1
            reply = protocol.encode_error(request_id, exc.code, exc.message)
        self._reply(envelope, reply)

    # ----------------------------------------------------------- handlers

    def _learn_batch(self, msg: dict) -> Batch:
        batch = protocol.decode_batch(msg, need_labels=True, names=self.names)
        self._check(batch, learning=True)
        return batch

    def _learn_checked(self, batch: Batch) -> dict:
        self.stats.batches += 1
        return self._learn_sliced(batch)

    def _learn_request(self, msg: dict) -> dict:
        if self.replica_of:
            raise ProtocolError(protocol.READ_ONLY, "this is a predict-only replica: "
                                                    "send training to the trainer")
        return self._learn_checked(self._learn_batch(msg))

    def _predict(self, msg: dict) -> dict:
        batch = protocol.decode_batch(msg, need_labels=False)
        self._check(batch, learning=False)
        output = msg.get("output", "auto")
        loss = self.learner.options.loss
        if output not in ("auto", "probability", "margin"):
            raise ProtocolError(protocol.BAD_REQUEST,
                                f"output must be 'auto', 'probability' or 'margin', got {output!r}")
        if output == "probability" and loss != "log":
            raise ProtocolError(protocol.BAD_REQUEST,
                                f"output 'probability' needs the log loss; this model's loss is {loss!r}")
        top_k = msg.get("top_k", 0)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
            raise ProtocolError(protocol.BAD_REQUEST,
                                f"top_k must be an integer from 0 to {MAX_TOP_K}, got {top_k!r}")
        if output == "margin" or (output == "auto" and loss != "log"):
            predictions = self.learner.decision_function(batch, check=False)
        else:
            predictions = self.learner.predict(batch, check=False)
        result: dict[str, Any] = {"predictions": predictions.tolist()}
        if top_k:
            result["contributions"] = self._contributions(batch, top_k)
        return result

    def _contributions(self, batch: Batch, top_k: int) -> list:
        contrib = self.learner.weights_of(batch.keys) * batch.values
        out = []
        for i in range(batch.n_rows):
            lo, hi = batch.indptr[i], batch.indptr[i + 1]
            part = contrib[lo:hi]
            order = np.argsort(-np.abs(part), kind="stable")[:top_k]
            keys = batch.keys[lo:hi][order].tolist()
            out.append([[k, v] for k, v in zip(keys, part[order].tolist()) if v != 0.0])
        return out

    def _stats(self, msg: dict) -> dict:
        return self.stats.report(self.learner)

    def _health(self, msg: dict) -> dict:
        return {"status": "ok", "mode": "predict-only" if self.replica_of else "training",
                "uptime_s": round(self.stats.uptime(), 3), "examples": self.learner.examples_seen}

    def _config(self, msg: dict) -> dict:
        return {"learner": self.learner.options.to_dict(), "daemon": self.config.to_dict(),
                "version": f"onlinel1 {onlinel1.__version__}", "protocol": protocol.VERSION}
