"""The controller: one event loop over the transport, dispatching to the
commands and the models (docs/protocol.md).

One thread polls the sockets (the ZeroMQ guide's pattern; no thread per
client).  A training batch names its model (absent: ``default``), is
validated whole, then learned in slices (trainer.py), the waiting requests
answered between slices.  Requests go to one module each (commands/); each
returns a result, an error, or an explicit deferred reply (results.py).
Acknowledged ``learn`` requests and model changes (``create``, ``drop``,
``swap``) that arrive while a batch is in hand wait until it is done, so
batches are never interleaved and a model never changes under a batch.
What kind of daemon this is (trainer or predict-only replica) is a policy
object (replica.py); snapshots have their own scheduler (scheduler.py).

Every way a message can be wrong ends in an error reply (request socket)
or a counted, logged rejection of the whole batch (training socket); the
model is never changed by a message that is refused.  A rejection or an
error is counted on the model the message names (no ``model`` field, or
no readable one: ``default``); one naming a model that does not exist is
counted in the daemon's own counters (``stats`` -> ``daemon``).
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import queue
import time
from typing import Any, Callable

import zmq

from onlinel1.names import DEFAULT_MODEL
from onlinel1.server import protocol
from onlinel1.server.commands import COMMANDS
from onlinel1.server.config import DaemonConfig
from onlinel1.server.fairness import BETWEEN, IDLE, WAITING, LoopAccount
from onlinel1.server.models import Models
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.replica import TrainingPolicy
from onlinel1.server.results import Deferred, Replier, Result
from onlinel1.server.scheduler import SnapshotScheduler
from onlinel1.server.stats import MAX_PRODUCER_NAME
from onlinel1.server.trainer import MAX_SLICES_PER_CALL, Trainer
from onlinel1.server.transport import Transport

log = logging.getLogger("onlinel1.daemon")

__all__ = ["Daemon", "MAX_SLICES_PER_CALL"]

POLL_MS = 100                 # how often the loop looks at the stop flag
REQUESTS_PER_TURN = 256       # requests answered at most before training resumes

#: Operations that change which models exist or what they hold: while a
#: batch is in hand they wait for its end.
WAIT_FOR_BATCH = frozenset({"create", "drop", "swap"})


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


class DaemonCounters:
    """What cannot be counted on a model: messages naming none that exists."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()


class Daemon:
    """Serve ``models`` on the endpoints of ``config``.

    ``bind()`` opens the sockets (``zmq.ZMQError`` if an endpoint cannot be
    bound), ``run()`` loops until ``request_stop()``, then the work in hand
    is finished, the final snapshots written, and ``run()`` returns whether
    they all were; ``close()`` releases the sockets.  ``policy`` is a
    ``TrainingPolicy`` or a ``ReplicaPolicy``; ``metrics`` (optional) gets
    each request's latency.
    """

    def __init__(self, models: Models, config: DaemonConfig, policy: Any = None, *,
                 context: zmq.Context | None = None, metrics: Any = None) -> None:
        self.models = models
        self.config = config
        self.policy = policy or TrainingPolicy()
        self.metrics = metrics
        self.transport = Transport(config, self.policy.accepts_training, context)
        self.scheduler = SnapshotScheduler(config)
        self.counters = DaemonCounters()
        #: Seconds the loop spent learning and answering requests (fairness.py).
        self.loop = LoopAccount(config.training_share)
        self.rejections = RateLimitedLog(log)
        self._held: list[int] = []
        self._stop = False
        self._snapshots_wanted: str | None = None
        self._in_batch = False
        #: Work that waits for the batch in hand: (run, replier, is a learn).
        self._deferred: collections.deque[tuple[Callable[[], Any], Replier, bool]] = \
            collections.deque()
        #: Learning seconds of the batch in hand already accounted (between slices).
        self._slices_accounted = 0.0
        #: Calls other threads asked the loop to make (``ask``).
        self._asks: queue.SimpleQueue = queue.SimpleQueue()

    # ---------------------------------------------------------- lifecycle

    def bind(self) -> None:
        self.transport.bind()
        c = self.config
        if self.policy.accepts_training:
            log.info("training on %s (PULL), requests on %s (ROUTER)", c.train_endpoint,
                     c.request_endpoint)
        else:
            log.info("predict-only replica of %s, requests on %s (ROUTER)",
                     getattr(self.policy, "source", "?"), c.request_endpoint)
        for trainer in self.models:
            self.log_model(trainer, "serving")

    @property
    def lowered_threads(self) -> list[int]:
        return self.transport.lowered_threads

    def request_stop(self) -> None:
        """Stop taking input; ``run()`` returns once the work in hand is done."""
        self._stop = True
        self.transport.wake()

    def request_snapshots(self, reason: str) -> None:
        """Snapshot every model soon (SIGUSR1); safe from a signal handler."""
        self._snapshots_wanted = reason
        self.transport.wake()

    def hold(self, fd: int) -> None:
        """Keep ``fd`` (a lock: the snapshot directory's) open until ``close``."""
        self._held.append(fd)

    def close(self) -> None:
        self.transport.close()
        for fd in self._held:
            os.close(fd)
        self._held = []

    def uptime(self) -> float:
        return time.monotonic() - self.counters.started

    @property
    def in_batch(self) -> bool:
        return self._in_batch

    def log_model(self, trainer: Trainer, what: str) -> None:
        log.info("model %s %s: %s", trainer.name, what, trainer.summary())

    def own_counters(self) -> dict[str, Any]:
        c = self.counters
        return {"models": len(self.models), "requests": dict(c.requests),
                "errors": dict(c.errors), "rejected": dict(c.rejected),
                "loop": self.loop.report(),
                "auth_refused": self.transport.auth_refused,
                **self.transport.admission_report()}

    # --------------------------------------------------------------- loop

    def run(self) -> bool:
        assert self.transport.requests is not None, "bind() first"
        snapshots = self.policy.takes_snapshots and self.models.snapshots
        while not self._stop:
            requests, training, _ = self.transport.poll(POLL_MS)
            self._serve_asks()
            if requests:
                # With training waiting too, requests get their share of
                # the time, not more (config.training_share, fairness.py).
                waiting = training or self._training_deferred()
                self._serve_requests(WAITING if waiting else IDLE)
                # A message may have come while the requests were answered.
                training = training or self.transport.training_waiting()
            self._run_deferred()
            if training and not self._stop:
                self._train_one()
            self.policy.turn(self.models)
            if snapshots:
                if self._snapshots_wanted:
                    log.info("%s: a snapshot of every model", self._snapshots_wanted)
                    self._snapshots_wanted = None
                    for trainer in self.models:
                        self.scheduler.request(trainer)
                self.scheduler.turn(list(self.models))
        # Stop taking input; what was acknowledged-in-hand is answered.
        self._run_deferred()
        ok = self.scheduler.final(list(self.models)) if snapshots else True
        log.info("stopped after %s", "; ".join(
            f"{t.learner.examples_seen} examples" + ("" if t.name == DEFAULT_MODEL else
                                                      f" of model {t.name}")
            for t in self.models) or "no models")
        return ok

    # ---------------------------------------------------- other threads

    def ask(self, fn: Callable[[], Any], timeout: float) -> Any:
        """``fn()`` called by the loop thread (between two requests or two
        slices, so it sees a consistent model); from any thread.
        ``TimeoutError`` if the loop does not get to it in time."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._asks.put((fn, future))
        self.transport.wake()
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the daemon's loop did not answer within {timeout} s") from None

    def _serve_asks(self) -> None:
        while True:
            try:
                fn, future = self._asks.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:   # handed to the asking thread
                future.set_exception(exc)

    def status(self) -> dict[str, Any]:
        """Every model's report (for the HTTP endpoint; call it through ``ask``)."""
        import onlinel1
        return {"daemon": {"mode": self.policy.mode, "uptime_s": round(self.uptime(), 3),
                           "version": f"onlinel1 {onlinel1.__version__}",
                           **self.own_counters()},
                "models": {t.name: t.report() for t in self.models}}

    def status_source(self) -> "LoopStatus":
        """What the HTTP endpoint reads: ``status()``, computed by the loop."""
        return LoopStatus(self)

    # ----------------------------------------------------------- training

    def _attributed(self, msg: dict | None) -> Trainer | None:
        """The model a message's counts go to (see the module's docstring)."""
        if msg is None or msg.get("model") is None:
            return self.models.find(DEFAULT_MODEL)
        name = msg.get("model")
        return self.models.find(name) if isinstance(name, str) else None

    def _train_one(self) -> float:
        """Take one training message; return the seconds spent learning it."""
        frame = self.transport.recv_training()
        if frame is None:
            return 0.0
        msg = None
        try:
            msg = protocol.decode_message(frame.buffer, self.config.max_message_bytes)
            op = msg.get("op", "train")
            if op != "train":
                raise ProtocolError(protocol.UNKNOWN_OP, f"the training socket takes 'train' "
                                                         f"messages only, got op {op!r}")
            trainer = self.models.get(protocol.model_name(msg))
            producer, seq = msg.get("producer"), msg.get("seq")
            if producer is not None and (not isinstance(producer, str)
                                         or len(producer) > MAX_PRODUCER_NAME):
                raise ProtocolError(protocol.BAD_REQUEST, f"producer must be a string of at "
                                                          f"most {MAX_PRODUCER_NAME} characters")
            if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)
                                    or not 0 <= seq < 2**63):
                raise ProtocolError(protocol.BAD_REQUEST, "seq must be an integer from 0 to 2^63-1")
            if producer is not None and seq is not None:
                self._check_seq(trainer, producer, seq)
            batch = trainer.decode(msg, learning=True)
        except ProtocolError as exc:
            self._reject(exc, self._attributed(msg))
            return 0.0
        try:
            self.learn(trainer, batch)
        except ProtocolError as exc:   # numeric: the batch was undone
            self._reject(exc, trainer)
            return trainer.learning_s
        if producer is not None and seq is not None:
            trainer.stats.producers.record(producer, seq)
        return trainer.learning_s

    def _check_seq(self, trainer: Trainer, producer: str, seq: int) -> None:
        """A ``seq`` not above the producer's last one is a resend (or a
        restarted producer): counted and logged; skipped with dedupe_seq."""
        last = trainer.stats.producers.get(producer)
        if last is None or seq > last:
            return
        trainer.stats.seq_repeats += 1
        skipped = self.config.dedupe_seq
        self.rejections.warning("seq", f"producer {producer!r} sent seq {seq} after {last}"
                                       f"{': skipped (dedupe_seq)' if skipped else ''}")
        if skipped:
            raise ProtocolError(protocol.DUPLICATE, f"seq {seq} of producer {producer!r} is not "
                                                   f"above its last one, {last}")

    def _reject(self, exc: ProtocolError, trainer: Trainer | None) -> None:
        counters = trainer.stats.rejected if trainer is not None else self.counters.rejected
        counters[exc.code] += 1
        where = f"model {trainer.name}: " if trainer is not None and trainer.name != DEFAULT_MODEL \
            else ""
        self.rejections.warning(exc.code, f"{where}training batch rejected ({exc.code}): "
                                          f"{exc.message}")

    def learn(self, trainer: Trainer, batch: Any) -> dict:
        """Learn a checked batch into ``trainer``, answering requests between
        its slices; the reply of an acknowledged learn."""
        self._in_batch = True
        self._slices_accounted = 0.0
        try:
            return trainer.learn(batch, self.transport.request_fd, self._serve_between)
        finally:
            self._in_batch = False
            # The slices followed by requests were accounted between them.
            self.loop.learned(trainer.learning_s - self._slices_accounted)

    def _serve_between(self, learned_s: float) -> bool:
        self.loop.learned(learned_s)
        self._slices_accounted += learned_s
        self._serve_asks()
        return self._serve_requests(BETWEEN)

    def defer_learn(self, trainer: Trainer, batch: Any, replier: Replier) -> None:
        self._deferred.append((lambda: self._learn_if_present(trainer, batch), replier, True))

    def _learn_if_present(self, trainer: Trainer, batch: Any) -> dict:
        if self.models.find(trainer.name) is not trainer:
            raise ProtocolError(protocol.UNKNOWN_MODEL,
                                f"model {trainer.name!r} was dropped before this batch was learned")
        return self.learn(trainer, batch)

    def _training_deferred(self) -> bool:
        """Whether an acknowledged ``learn`` waits behind the last batch."""
        return any(is_learn for _, _, is_learn in self._deferred)

    def _training_waiting(self) -> bool:
        return self.transport.training_waiting() or self._training_deferred()

    def _run_deferred(self) -> None:
        while self._deferred:
            run, replier, _ = self._deferred.popleft()
            self._answer(replier, run)

    # ----------------------------------------------------------- requests

    def _serve_requests(self, where: str = IDLE) -> bool:
        """Answer the waiting requests, at most REQUESTS_PER_TURN; while
        training waits (``where`` is not ``IDLE``), only while the loop's
        credit lasts (fairness.py), but at least one if any waits, so
        requests are never starved.  Their seconds go to account
        ``where``; with ``IDLE``, each request looks again whether
        training input arrived.  Return whether more may be waiting."""
        loop, clock = self.loop, self.loop.clock
        for answered in range(REQUESTS_PER_TURN):
            if not self.transport.request_waiting():
                return False
            if where == IDLE and self._training_waiting():
                where = WAITING
            if not loop.may_serve(where, answered):
                return True
            parts = self.transport.recv_request()
            if parts is None:
                return False
            began, inside = clock(), loop.total_s
            self._serve(parts)
            # Less the learning and requests accounted inside (a ``learn``).
            loop.served(clock() - began - (loop.total_s - inside), where)
        return True

    def _serve(self, parts: list) -> None:
        # DEALER: [identity, body]; REQ: [identity, b"", body].
        envelope, body = parts[:-1], parts[-1]
        replier = Replier(self._send, envelope, None, "?", None, time.perf_counter(),
                          self._count_error)
        msg = None
        try:
            if len(parts) < 2 or (len(parts) == 3 and len(envelope[1]) != 0) or len(parts) > 3:
                raise ProtocolError(protocol.MALFORMED,
                                    "a request is one frame (DEALER) or an empty delimiter and "
                                    "one frame (REQ)")
            msg = protocol.decode_message(body, self.config.max_message_bytes)
            replier.request_id = msg.get("id")
            op = msg.get("op")
            command = COMMANDS.get(op) if isinstance(op, str) else None
            if command is None:
                raise ProtocolError(protocol.UNKNOWN_OP,
                                    f"unknown operation {op!r}; this daemon answers "
                                    f"{', '.join(sorted(COMMANDS))}")
            replier.op = op
        except ProtocolError as exc:
            trainer = self._attributed(msg)
            replier.model = trainer.name if trainer is not None else None
            replier.error(exc.code, exc.message)
            return
        trainer = self._attributed(msg)
        replier.model = trainer.name if trainer is not None else None
        (trainer.stats.requests if trainer is not None else self.counters.requests)[op] += 1
        if op in WAIT_FOR_BATCH and self._in_batch:
            self._deferred.append((lambda: command(self, msg), replier, False))
            return
        self._answer(replier, lambda: command(self, msg))

    def _answer(self, replier: Replier, run: Callable[[], Any]) -> None:
        """Run a command (or deferred work) and answer ``replier`` with what
        it gives: a Result or a plain map now, a Deferred later."""
        try:
            outcome = run()
            if isinstance(outcome, Deferred):
                outcome.attach(replier)
                return
            replier.result(outcome.value if isinstance(outcome, Result) else outcome)
        except ProtocolError as exc:
            replier.error(exc.code, exc.message)
        except Exception as exc:   # a bug: say so, keep serving
            log.exception("internal error answering %r", replier.op)
            replier.error(protocol.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _count_error(self, code: str, model: str | None) -> None:
        trainer = self.models.find(model) if model is not None else None
        (trainer.stats.errors if trainer is not None else self.counters.errors)[code] += 1

    def _send(self, replier: Replier, reply: bytes) -> None:
        self.transport.reply(replier.envelope, reply)
        if self.metrics is not None:
            self.metrics.observe(replier.model or "", replier.op,
                                 time.perf_counter() - replier.started)


class LoopStatus:
    """A ``StatusSource`` (server/http.py) over a running daemon: every read
    is answered by the loop thread, so it sees one consistent moment."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def read(self, timeout: float) -> dict[str, Any]:
        return self.daemon.ask(self.daemon.status, timeout)
