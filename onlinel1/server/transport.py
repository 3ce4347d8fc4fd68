"""The daemon's sockets: binding, polling, receiving and replying.

* ``PULL`` (training endpoint): training batches, fire and forget; absent
  on a predict-only replica.
* ``ROUTER`` (request endpoint): requests; every request gets one reply.

Two ZeroMQ contexts, each with its own I/O thread: the training stream on
one, requests and replies on the other, so a stream of large batches never
queues a reply; the training one runs at a lower CPU priority
(``config.training_io_nice``, see threads.py).  A context given by the
caller carries both sockets.

Other threads (the HTTP endpoint) never touch a socket: they ask the loop
through ``Transport.wake()``, a pipe the poller watches.

Each context gets a ZAP handler in a thread of its own (server/auth.py),
started before the sockets bind, and each socket a ZAP domain and an
``admission.Gate`` (its monitor): a handshake past ``max_connections`` is
refused (``connections_refused``), a connection ZeroMQ drops for a frame
over the cap is counted (``oversized_disconnects``).  With CURVE keys
(``config.curve_secret_key``, ``curve_allow``) both sockets are CURVE
servers and the handler admits the allowed keys only; ``auth_refused``
counts the handshakes refused for keys, and those of clients without the
right keys that libzmq ends before ZAP is asked (``CurveGate``).
``current_user`` is the CURVE
public key (Z85) of the client whose request ``recv_request`` returned
last: the loop serves one request at a time, so a command reads its
requester's.

Replies go out with ``ROUTER_MANDATORY``: one that cannot be queued (the
client's pipe holds ``high_water_mark`` replies, or the client is gone) is
dropped and counted by reason (``replies_dropped``), and so is one larger
than ``max_message_bytes``, which becomes a ``too_large`` error reply.
ZeroMQ's ``MAXMSGSIZE`` is ``admission.FRAME_ALLOWANCE`` times
``max_message_bytes``: a frame up to that is read and answered
``too_large`` (the connection kept); a larger one drops the connection.
"""
from __future__ import annotations

import collections
import errno
import logging
import os
import socket
from typing import Any

import msgpack
import zmq

from onlinel1.server import admission, auth, protocol, threads
from onlinel1.server.config import DaemonConfig

log = logging.getLogger("onlinel1.daemon")


class Transport:
    """The request socket, the training socket (if ``training``) and a
    wake-up pipe, polled together."""

    def __init__(self, config: DaemonConfig, training: bool,
                 context: zmq.Context | None = None) -> None:
        self.config = config
        self._own_contexts = context is None
        self.context = context or zmq.Context(io_threads=1)
        self.training_context = (context or zmq.Context(io_threads=1)) if training else None
        self.with_training = training
        #: Thread ids whose priority was lowered.
        self.lowered_threads: list[int] = []
        self.training: zmq.Socket | None = None
        self.requests: zmq.Socket | None = None
        self.request_fd = -1
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller: zmq.Poller | None = None
        #: The CURVE keys (None: CURVE is off), read by bind().
        self.keys: auth.ServerKeys | None = None
        self.refusals = auth.Refusals(log)
        self._zap: list[auth.ZapHandler] = []
        #: The requester of the request received last (CURVE only; else None).
        self.current_user: str | None = None
        self.connections_refused = admission.Counted(log)
        self.oversized = admission.Counted(log)
        #: Each socket's admission, by name (``requests``, ``training``).
        self.gates: dict[str, admission.Gate] = {}
        #: Replies not delivered as built, by reason: ``full`` (the client's
        #: pipe is at its high-water mark), ``gone``, ``too_large``.
        self.replies_dropped: collections.Counter[str] = collections.Counter()
        self._dropped_log = admission.Counted(log)

    def bind(self) -> None:
        """Open and bind the sockets; ``zmq.ZMQError`` if an endpoint cannot
        be bound, ``auth.AuthError`` if a CURVE key file cannot be used
        (nothing is left open then)."""
        c = self.config
        for endpoint in (c.train_endpoint if self.with_training else None, c.request_endpoint):
            if endpoint and endpoint.startswith("ipc://"):
                refuse_live_ipc(endpoint)
        keys = auth.load_server_keys(c)
        auth.warn_insecure(c)
        # ZeroMQ drops the connection on a frame beyond MAXMSGSIZE itself
        # (it allocates a frame whole when it reads its header); up to that
        # the daemon reads it and answers too_large.
        hard_cap = admission.frame_cap(c)
        training = None
        if self.with_training:
            if self._own_contexts:
                training, started = threads.started_by(
                    lambda: self.training_context.socket(zmq.PULL))
                self.lowered_threads = threads.lower_priority(started, c.training_io_nice)
            else:
                training = self.training_context.socket(zmq.PULL)
        requests = self.context.socket(zmq.ROUTER)
        named = [(name, sock, ctx) for name, sock, ctx in
                 (("training", training, self.training_context),
                  ("requests", requests, self.context)) if sock is not None]
        sockets = [sock for _, sock, _ in named]
        on_auth_failure = None if keys is None else (
            lambda why: self.refusals.refuse(f"handshake failed ({why}): a client without CURVE "
                                             f"(NULL or PLAIN) or with another server key",
                                             "(address not known)"))
        try:
            groups = []
            for name, sock, ctx in named:
                if keys is not None:
                    auth.make_server(sock, keys)
                sock.setsockopt(zmq.ZAP_DOMAIN, auth.zap_domain(name))
                try:    # no handler (a moment at shutdown): refuse, never admit unchecked
                    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
                except (AttributeError, zmq.ZMQError):
                    pass
                sock.setsockopt(zmq.RCVHWM, c.high_water_mark)
                sock.setsockopt(zmq.SNDHWM, c.high_water_mark)
                sock.setsockopt(zmq.MAXMSGSIZE, hard_cap)
                sock.setsockopt(zmq.LINGER, 1000)
                sock.setsockopt(zmq.HANDSHAKE_IVL, admission.HANDSHAKE_IVL_MS)
                gate = (admission.Gate if keys is None else CurveGate)(
                    name, c.max_connections, self.connections_refused, self.oversized,
                    on_auth_failure)
                gate.watch(sock)
                self.gates[name] = gate
                groups.append((ctx, {auth.zap_domain(name): gate}))
            requests.setsockopt(zmq.ROUTER_MANDATORY, 1)
            # After the sockets: the training context's I/O thread is the
            # one started (and lowered) with the first socket.
            self._zap = auth.start_handlers(groups, keys, self.refusals)
            if training is not None:
                training.bind(c.train_endpoint)
            requests.bind(c.request_endpoint)
        except BaseException:
            for sock in sockets:
                sock.close(linger=0)
            self._stop_zap()
            raise
        self.training, self.requests = training, requests
        self.keys = keys
        if keys is not None:
            log.info("CURVE on the %s: %d client key(s) admitted, from %s",
                     "training and request sockets" if training is not None else "request socket",
                     len(keys.allowed), c.curve_allow)
        bound = admission.memory_bound(c, training is not None)
        log.info("at most %d connection(s) per socket; queued input and unsent replies held "
                 "at most %s (high_water_mark %d, frame cap %d bytes)", c.max_connections,
                 format_bytes(bound["total"]), c.high_water_mark, hard_cap)
        # Readable when the request socket may have something (ZMQ_FD): the
        # learning kernel polls it every slice, so a request interrupts a
        # batch after the current slice.
        self.request_fd = requests.getsockopt(zmq.FD)
        poller = zmq.Poller()
        poller.register(requests, zmq.POLLIN)
        if training is not None:
            poller.register(training, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._poller = poller
        if self.lowered_threads:
            log.debug("the training stream's I/O threads %s run at nice %d",
                      self.lowered_threads, c.training_io_nice)

    def poll(self, timeout_ms: int) -> tuple[bool, bool, bool]:
        """Wait up to ``timeout_ms``: (requests, training, woken) readiness."""
        events = dict(self._poller.poll(timeout_ms))
        woken = self._wake_r in events
        if woken:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        return self.requests in events, self.training is not None and self.training in events, woken

    def wake(self) -> None:
        """Make the next (or current) ``poll`` return; safe from any thread."""
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):   # full (a wake is pending) or closed
            pass

    def request_waiting(self) -> bool:
        """Whether the request socket may hold a message (cheaper than a
        non-blocking recv that raises ``zmq.Again``)."""
        return bool(self.requests.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    def training_waiting(self) -> bool:
        """Whether the training socket may hold a message (False without one)."""
        return self.training is not None and \
            bool(self.training.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    @property
    def auth_refused(self) -> int:
        """CURVE handshakes refused by the ZAP handlers (0 without CURVE)."""
        return self.refusals.count

    def admission_report(self) -> dict[str, Any]:
        """The admission counters for ``stats`` -> ``daemon``."""
        return {"connections": {name: gate.report() for name, gate in self.gates.items()},
                "connections_refused": self.connections_refused.count,
                "oversized_disconnects": self.oversized.count,
                "replies_dropped": dict(self.replies_dropped),
                "memory_bound_bytes": admission.memory_bound(self.config,
                                                             self.with_training)}

    def reload_allow_list(self) -> int:
        """Read ``curve_allow`` again (SIGHUP) and admit its keys from the
        next handshake on; the number of keys.  ``auth.AuthError`` (and
        nothing changed) if it cannot be used.  Connections already in
        keep going: CURVE checks a key at the handshake only."""
        if self.keys is None:
            raise auth.AuthError("CURVE is off: there is no allow list to reload")
        keys = self.keys.with_allowed(*auth.allowed_keys(self.config.curve_allow))
        for handler in self._zap:
            handler.keys = keys            # one assignment: a handshake sees old or new
        self.keys = keys
        return len(keys.allowed)

    def recv_request(self) -> list[bytes] | None:
        try:
            if self.keys is None:
                # Requests are small: copying beats zmq.Frame's bookkeeping.
                return self.requests.recv_multipart(zmq.NOBLOCK)
            frames = self.requests.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        try:
            self.current_user = frames[-1].get("User-Id")
        except zmq.ZMQError:          # no such property: not a ZAP-admitted peer
            self.current_user = None
        return [frame.bytes for frame in frames]

    def recv_training(self) -> zmq.Frame | None:
        try:
            return self.training.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def reply(self, envelope: list[bytes], reply: bytes) -> None:
        cap = admission.reply_cap(self.config)
        if len(reply) > cap:
            setting = admission.reply_cap_setting(self.config)
            self._dropped("too_large", f"a reply of {len(reply)} bytes was larger than "
                                       f"{setting}; sent a too_large error instead")
            reply = protocol.encode_error(
                _request_id(reply), protocol.TOO_LARGE,
                f"the reply would be {len(reply)} bytes, more than {setting} "
                f"({cap}): ask for fewer rows at a time")
        try:
            self.requests.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.Again:             # ROUTER_MANDATORY: the client's pipe is full
            self._dropped("full", f"a reply was dropped: the client's queue holds "
                                  f"{self.config.high_water_mark} replies it has not read")
        except zmq.ZMQError as exc:   # EHOSTUNREACH: the client went away
            self._dropped("gone", f"a reply was dropped: the client is gone ({exc})")

    def _dropped(self, reason: str, message: str) -> None:
        self.replies_dropped[reason] += 1
        self._dropped_log.add("%s", message)

    def close(self) -> None:
        for sock in (self.training, self.requests):
            if sock is not None:
                sock.close()
        self.training = self.requests = None
        self._stop_zap()
        if self._own_contexts:
            for ctx in (self.training_context, self.context):
                if ctx is not None and not ctx.closed:
                    ctx.term()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def _stop_zap(self) -> None:
        for handler in self._zap:
            handler.stop()
        self._zap = []


def _request_id(reply: bytes) -> Any:
    """The ``id`` of an encoded reply (protocol.encode_result: ``v``, then
    ``id``), read without decoding the rest."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(reply[:4096])
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            value = unpacker.unpack()
            if key == "id":
                return value
    except (ValueError, msgpack.OutOfData, msgpack.ExtraData):
        pass
    return None


def format_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps it above 1.

    >>> format_bytes(8321499136), format_bytes(512), format_bytes(3 << 20)
    ('7.75 GiB', '512 bytes', '3.00 MiB')
    """
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


class CurveGate(admission.Gate):
    """The ``admission.Gate`` of a CURVE socket, which also counts in
    ``auth_refused`` a handshake that ended with no detail
    (``EVENT_HANDSHAKE_FAILED_NO_DETAIL``, its value an errno).

    A client without CURVE (NULL or PLAIN) and the daemon each send a
    greeting naming their mechanism, and each side refuses the other's.
    When the daemon reads the client's greeting first, its monitor says
    ``HANDSHAKE_FAILED_PROTOCOL`` / ``PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH``
    (counted by ``admission.Gate``); when the client hangs up first, the
    reset discards the greeting it sent, and the daemon sees only a write
    or read that failed (``EPIPE`` or ``ECONNRESET``): no detail.  Which
    happens is a race (libzmq 4.3.5: about half of the attempts each), so
    only counting both is reliable.  libzmq emits no-detail only while the
    greeting or the handshake is unfinished, never after ZAP refused a
    key (the mechanism is then in error, and that refusal is counted
    once, by the ZAP handler).  A connection that is dropped before its
    handshake completes for another reason (a TCP probe, a client killed
    in the middle) is counted too: on a CURVE socket it got no access
    either.  docs/protocol.md, "Authentication (CURVE)"."""

    def _take(self, event: int, value: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self.on_auth_failure is not None:
            self.on_hangup(value)
        super()._take(event, value)

    def on_hangup(self, value: int) -> None:
        code = errno.errorcode.get(value, str(value))
        self.on_auth_failure(f"the connection ended before the handshake completed, {code}")


def refuse_live_ipc(endpoint: str) -> None:
    """``zmq.ZMQError(EADDRINUSE)`` if a live process listens on the
    ``ipc://`` endpoint: ZeroMQ's bind would silently unlink its socket
    file and take the endpoint over.  A stale file (nobody listening) is
    left for ZeroMQ to replace."""
    path = endpoint[len("ipc://"):]
    if not path or path.startswith("@") or not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        return                      # nobody there
    finally:
        probe.close()
    raise zmq.ZMQError(errno.EADDRINUSE,
                       f"{endpoint} is in use by a live process (another daemon?); "
                       f"refusing to take it over")
