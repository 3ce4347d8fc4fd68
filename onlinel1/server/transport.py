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

With CURVE keys (``config.curve_secret_key``, ``curve_allow``) both sockets
are CURVE servers and each context gets a ZAP handler in a thread of its
own (server/auth.py), started before the sockets bind; ``auth_refused``
counts the handshakes it refused.  ``current_user`` is the CURVE public
key (Z85) of the client whose request ``recv_request`` returned last: the
loop serves one request at a time, so a command reads its requester's.
"""
from __future__ import annotations

import errno
import logging
import os
import socket

import zmq

from onlinel1.server import auth, threads
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
        # ZeroMQ drops frames beyond MAXMSGSIZE itself (bounding memory
        # against absurd sizes); up to that the daemon answers too_large.
        hard_cap = 4 * c.max_message_bytes
        training = None
        if self.with_training:
            if self._own_contexts:
                training, started = threads.started_by(
                    lambda: self.training_context.socket(zmq.PULL))
                self.lowered_threads = threads.lower_priority(started, c.training_io_nice)
            else:
                training = self.training_context.socket(zmq.PULL)
        requests = self.context.socket(zmq.ROUTER)
        sockets = [s for s in (training, requests) if s is not None]
        try:
            if keys is not None:
                # After the sockets: the training context's I/O thread is
                # the one started (and lowered) with the first socket.
                self._zap = auth.start_handlers((self.context, self.training_context), keys,
                                                self.refusals)
                for sock in sockets:
                    auth.make_server(sock, keys)
            for sock in sockets:
                sock.setsockopt(zmq.RCVHWM, c.high_water_mark)
                sock.setsockopt(zmq.SNDHWM, c.high_water_mark)
                sock.setsockopt(zmq.MAXMSGSIZE, hard_cap)
                sock.setsockopt(zmq.LINGER, 1000)
            requests.setsockopt(zmq.ROUTER_MANDATORY, 0)
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

    @property
    def auth_refused(self) -> int:
        """CURVE handshakes refused by the ZAP handlers (0 without CURVE)."""
        return self.refusals.count

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
        try:
            self.requests.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:   # the client went away or is not reading
            log.debug("reply not delivered: %s", exc)

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
