"""The daemon: one event loop over two ZeroMQ sockets (docs/protocol.md).

* ``PULL`` (training endpoint): training batches, fire and forget.
* ``ROUTER`` (request endpoint): predict, learn, stats, health, config;
  every request gets exactly one reply, a result or an error with a code.

One thread polls both sockets (the ZeroMQ guide's pattern; no thread per
client).  A training batch is validated whole, then learned in slices of
about ``slice_nnz`` features; between slices the loop answers whatever
requests have arrived, so a large batch never holds a prediction for long.
Acknowledged ``learn`` requests that arrive while a batch is in hand wait
until it is done, so batches are never interleaved.  Every way a message
can be wrong ends in an error reply (request socket) or a counted, logged
rejection of the whole batch (training socket); the model is never
changed by a message that is refused.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable

import numpy as np
import zmq

import onlinel1
from onlinel1.batch import Batch, BatchError
from onlinel1.learner import Learner, NumericError, StoreFullError
from onlinel1.server import protocol
from onlinel1.server.config import DaemonConfig
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.stats import Stats

log = logging.getLogger("onlinel1.daemon")

MAX_TOP_K = 1000
POLL_MS = 100                 # how often the loop looks at the stop flag
REQUESTS_PER_TURN = 256       # requests answered before training resumes


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
    batch in hand is finished and ``run()`` returns; ``close()`` releases
    the sockets.
    """

    def __init__(self, learner: Learner, config: DaemonConfig,
                 context: zmq.Context | None = None) -> None:
        self.learner = learner
        self.config = config
        self.context = context or zmq.Context.instance()
        self.stats = Stats(config.window_examples)
        self.rejections = RateLimitedLog(log)
        self.training: zmq.Socket | None = None
        self.requests: zmq.Socket | None = None
        self._stop = False
        self._in_batch = False
        self._deferred: collections.deque[tuple[list[bytes], Any, Batch]] = collections.deque()
        self.handlers: dict[str, Callable[[dict], dict]] = {
            "predict": self._predict, "learn": self._learn_request, "stats": self._stats,
            "health": self._health, "config": self._config,
        }

    # ---------------------------------------------------------- lifecycle

    def bind(self) -> None:
        c = self.config
        # ZeroMQ drops frames beyond MAXMSGSIZE itself (bounding memory
        # against absurd sizes); up to that the daemon answers too_large.
        hard_cap = 4 * c.max_message_bytes
        training = self.context.socket(zmq.PULL)
        requests = self.context.socket(zmq.ROUTER)
        try:
            for sock in (training, requests):
                sock.setsockopt(zmq.RCVHWM, c.high_water_mark)
                sock.setsockopt(zmq.SNDHWM, c.high_water_mark)
                sock.setsockopt(zmq.MAXMSGSIZE, hard_cap)
                sock.setsockopt(zmq.LINGER, 1000)
            requests.setsockopt(zmq.ROUTER_MANDATORY, 0)
            training.bind(c.train_endpoint)
            requests.bind(c.request_endpoint)
        except zmq.ZMQError:
            training.close(linger=0)
            requests.close(linger=0)
            raise
        self.training, self.requests = training, requests
        log.info("training on %s (PULL), requests on %s (ROUTER); learner: %s",
                 c.train_endpoint, c.request_endpoint, self._learner_summary())

    def request_stop(self) -> None:
        """Stop taking input; ``run()`` returns once the batch in hand is done."""
        self._stop = True

    def close(self) -> None:
        for sock in (self.training, self.requests):
            if sock is not None:
                sock.close()
        self.training = self.requests = None

    def _learner_summary(self) -> str:
        o = self.learner.options
        return (f"loss={o.loss} update={o.update} l1={o.l1:g} l2={o.l2:g} eta0={o.eta0:g} "
                f"schedule={o.schedule} origin={o.origin}")

    # --------------------------------------------------------------- loop

    def run(self) -> None:
        assert self.training is not None and self.requests is not None, "bind() first"
        poller = zmq.Poller()
        poller.register(self.requests, zmq.POLLIN)
        poller.register(self.training, zmq.POLLIN)
        while not self._stop:
            events = dict(poller.poll(POLL_MS))
            if self.requests in events:
                self._serve_requests()
            while self._deferred:
                self._run_deferred_learn()
            if self.training in events and not self._stop:
                self._train_one()
        # Stop taking input; what was acknowledged-in-hand is answered.
        while self._deferred:
            self._run_deferred_learn()
        log.info("stopped after %d examples", self.learner.examples_seen)

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
            batch = protocol.decode_batch(msg, need_labels=True)
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
        budget = self.config.slice_nnz
        start = 0
        before_all = self.learner.progress_sums
        self._in_batch = True
        try:
            while start < n:
                # The largest stop with nnz(start:stop) <= budget (at least one row).
                stop = int(np.searchsorted(indptr, indptr[start] + budget, side="right")) - 1
                stop = min(max(stop, start + 1), n)
                before = self.learner.progress_sums
                try:
                    self.learner.learn(batch.slice(start, stop), check=False)
                except (NumericError, StoreFullError) as exc:
                    self.stats.learned(before, self.learner.progress_sums)
                    learned = start + exc.learned
                    raise ProtocolError(protocol.NUMERIC, f"example {learned} of the batch: "
                                        f"{str(exc).split(': ', 1)[-1]}") from None
                self.stats.learned(before, self.learner.progress_sums)
                start = stop
                if start < n:
                    self._serve_requests()
        finally:
            self._in_batch = False
        after = self.learner.progress_sums
        weight = after["weight_sum"] - before_all["weight_sum"]
        loss = (after["loss_sum"] - before_all["loss_sum"]) / weight if weight > 0 else None
        return {"examples": n, "loss": loss, "t": self.learner.examples_seen}

    # ----------------------------------------------------------- requests

    def _serve_requests(self) -> None:
        for _ in range(REQUESTS_PER_TURN):
            try:
                parts = self.requests.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._serve(parts)

    def _serve(self, parts: list) -> None:
        # DEALER: [identity, body]; REQ: [identity, b"", body].
        envelope = [bytes(p.buffer) for p in parts[:-1]]
        body = parts[-1].buffer
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
            if op == "learn" and self._in_batch:
                batch = self._learn_batch(msg)
                self._deferred.append((envelope, request_id, batch))
                return
            reply = protocol.encode_result(request_id, handler(msg))
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
        batch = protocol.decode_batch(msg, need_labels=True)
        self._check(batch, learning=True)
        return batch

    def _learn_checked(self, batch: Batch) -> dict:
        self.stats.batches += 1
        return self._learn_sliced(batch)

    def _learn_request(self, msg: dict) -> dict:
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
            predictions = self.learner.decision_function(batch)
        else:
            predictions = self.learner.predict(batch)
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
        return {"status": "ok", "mode": "training", "uptime_s": round(self.stats.uptime(), 3),
                "examples": self.learner.examples_seen}

    def _config(self, msg: dict) -> dict:
        return {"learner": self.learner.options.to_dict(), "daemon": self.config.to_dict(),
                "version": f"onlinel1 {onlinel1.__version__}", "protocol": protocol.VERSION}
