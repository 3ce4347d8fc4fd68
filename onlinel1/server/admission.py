"""How many connections each socket holds, who else gets in, and which
connections the daemon dropped for an oversized frame.

ZeroMQ bounds memory per connection only: a high-water mark counts
messages, and libzmq allocates a frame's full size (up to ``MAXMSGSIZE``)
when it reads the frame's header.  The bytes the daemon can be made to
hold are bounded only if its connections are (``memory_bound``).  So each
socket has a ``Gate``: the ZAP handler (auth.py) asks it at every handshake
(NULL sockets consult ZAP too, because the transport sets ``ZAP_DOMAIN``)
whether the socket has room for one more connection, and it refuses past
``max_connections``.

The live count comes from the socket's monitor (libzmq's events, read in
the ZAP handler's thread).  libzmq 4.3 gives an fd with ``ACCEPTED`` and
``DISCONNECTED`` but not with ``HANDSHAKE_SUCCEEDED``, so ``Census``
attributes a handshake's outcome to an fd when it can and otherwise counts
high: every connection the daemon may hold counts, and the count is exact
again once the handshakes in flight are over.  It never counts low.

A refused handshake gets ZAP status 300 (a temporary failure): libzmq
then closes it without an ERROR command, so a ZeroMQ peer reconnects a
moment later (reconnect_ivl) instead of giving the endpoint up, as it does
after a 400; the gate also closes the connection itself when it can tell
it apart (a NULL handshake would otherwise wait for ``HANDSHAKE_IVL``).

A connection whose handshake ZAP has seen is kept open a little longer by
a ``dup`` of its fd (closed when its ``DISCONNECTED`` is read): when
libzmq drops a connection after its handshake while unread input is still
there, the daemon closed it on a protocol error, which from a ZeroMQ peer
means a frame over ``MAXMSGSIZE``; that is counted and logged
(``oversized_disconnects``).  A peer that closed leaves an end of file.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("onlinel1.daemon")

#: The handshake timeout of the daemon's sockets (ZeroMQ's HANDSHAKE_IVL, in
#: milliseconds; libzmq's default is 30 s): how long a refused connection
#: can wait at worst before it is closed and its peer tries again.
HANDSHAKE_IVL_MS = 10_000
#: The events a gate reads.
EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
          | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
          | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED)
#: A CURVE socket's handshake failures that are a client without the right
#: keys: counted in ``auth_refused`` (a NULL or PLAIN client, a wrong key).
AUTH_PROTOCOL_ERRORS = frozenset(getattr(zmq, name, -1) for name in (
    "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC",
    "PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE", "PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_HELLO",
    "PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_INITIATE"))


def memory_bound(config, training: bool) -> dict[str, int]:
    """The most bytes of queued input and unsent replies the daemon's
    sockets can hold (docs/protocol.md, "Admission and memory bounds"),
    measured against libzmq 4.3 (benchmarks/admission_memory.py):

    * input: each connection holds at most HWM + 1 frames (HWM queued, one
      decoded frame waiting for room), each at most the frame cap;
    * replies: each request connection holds at most HWM + 1 replies (HWM
      queued, one being written), each at most ``reply_cap``;
    * the loop holds one frame per socket that it is reading.
    """
    hwm, conns = config.high_water_mark, config.max_connections
    frame, reply = frame_cap(config), reply_cap(config)
    parts = {"requests_input": conns * (hwm + 1) * frame + frame,
             "replies": conns * (hwm + 1) * reply,
             "training_input": (conns * (hwm + 1) * frame + frame) if training else 0}
    parts["total"] = sum(parts.values())
    return parts


#: A frame up to this many times ``max_message_bytes`` is read whole and
#: answered ``too_large`` (the connection and the batches after it kept);
#: libzmq drops the connection on a larger one.
FRAME_ALLOWANCE = 2


def reply_cap(config) -> int:
    """The largest reply the daemon sends, of any request: the smaller of
    ``max_reply_bytes`` and ``max_message_bytes`` (a larger one is a
    ``too_large`` error instead).  One cap, so that the memory bound and
    the replies agree."""
    return min(config.max_reply_bytes, config.max_message_bytes)


def reply_cap_setting(config) -> str:
    """The name of the setting that sets ``reply_cap``, for messages."""
    return "max_reply_bytes" if config.max_reply_bytes <= config.max_message_bytes \
        else "max_message_bytes"


def frame_cap(config) -> int:
    """ZeroMQ's ``MAXMSGSIZE`` on the daemon's sockets."""
    return FRAME_ALLOWANCE * config.max_message_bytes


class Counted:
    """A count, shared across threads, with a WARNING at most once per
    ``interval`` seconds that says how many were not logged."""

    def __init__(self, logger: logging.Logger = log, interval: float = 1.0) -> None:
        self.logger, self.interval = logger, interval
        self._lock = threading.Lock()
        self.count = 0
        self._held = 0
        self._last = -1e9

    def add(self, message: str, *args) -> None:
        with self._lock:
            self.count += 1
            now = time.monotonic()
            if now - self._last < self.interval:
                self._held += 1
                return
            held, self._held, self._last, total = self._held, 0, now, self.count
        self.logger.warning(message + " (%d so far%s)", *args, total,
                            f"; {held} more not logged" if held else "")


class Census:
    """The connections a socket may hold, from its monitor's events.

    ``live``: fds known to have finished their handshake.  ``new``: fds
    accepted whose fate is not known.  ``succeeded`` and ``refused``:
    handshakes that ended (admitted / refused by ZAP) whose fd is not known
    (some fd of ``new``).  ``pending``: admitted by ZAP, handshake not over.
    ``held`` never counts fewer connections than the daemon holds (the
    refused ones hold nothing: no message is read before the handshake).
    """

    def __init__(self) -> None:
        self.live: set[int] = set()
        self.new: set[int] = set()
        self.succeeded = self.refused = self.pending = 0
        self._failing = False     # a handshake failure whose DISCONNECTED follows at once

    @property
    def held(self) -> int:
        return len(self.live) + self.succeeded + self.pending

    def admitted(self) -> None:
        self.pending += 1

    def event(self, event: int, value: int) -> str | None:
        """Take one monitor event; for a DISCONNECTED, what the fd was:
        ``"live"``, ``"maybe_live"`` (an fd of ``new`` while some
        handshake succeeded unattributed), ``"handshake"``, or None."""
        failing, self._failing = self._failing, False
        state = None
        if event == zmq.EVENT_ACCEPTED:
            self.live.discard(value)
            self.new.add(value)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.pending = max(0, self.pending - 1)
            if len(self.new) == 1 and not self.succeeded and not self.refused:
                self.live.add(self.new.pop())
            else:
                self.succeeded += 1
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.refused += 1
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self._failing = True
        elif event == zmq.EVENT_DISCONNECTED:
            if value in self.live:
                self.live.discard(value)
                state = "live"
            elif value in self.new:
                self.new.discard(value)
                if failing:
                    state = "handshake"
                elif self.refused:
                    self.refused -= 1
                    state = "handshake"
                else:
                    state = "maybe_live" if self.succeeded else "handshake"
        self._normalize()
        return state

    def _normalize(self) -> None:
        # The unattributed outcomes are outcomes of fds of ``new``.
        excess = self.succeeded + self.refused - len(self.new)
        if excess > 0:
            cut = min(excess, self.refused)
            self.refused -= cut
            self.succeeded -= excess - cut
        self.pending = min(self.pending, len(self.new) - self.succeeded - self.refused)


class Gate:
    """One socket's admission: its monitor (read in the ZAP handler's
    thread, which calls ``open``, ``read`` and ``admit``) and its census."""

    def __init__(self, name: str, max_connections: int, refused: Counted,
                 oversized: Counted, on_auth_failure=None) -> None:
        self.name, self.max_connections = name, max_connections
        self.endpoint = f"inproc://onlinel1.monitor.{name}.{id(self):x}"
        self.refused, self.oversized = refused, oversized
        #: Called with a description for a handshake that failed for want
        #: of the right keys (CURVE sockets; see AUTH_PROTOCOL_ERRORS).
        self.on_auth_failure = on_auth_failure
        self.census = Census()
        self.monitor: zmq.Socket | None = None
        self.refused_here = 0
        self.oversized_here = 0
        self._dups: dict[int, socket.socket] = {}

    # ------------------------------------------------- the owning socket

    def watch(self, sock: zmq.Socket) -> None:
        """Start ``sock``'s monitor (before it binds; from its thread)."""
        sock.monitor(self.endpoint, EVENTS)

    # ---------------------------------------------- the ZAP handler's thread

    def open(self, context: zmq.Context) -> zmq.Socket:
        self.monitor = context.socket(zmq.PAIR)
        self.monitor.setsockopt(zmq.LINGER, 0)
        # No high-water mark: libzmq drops a monitor event that finds the
        # pipe full, and a lost DISCONNECTED would hold a slot for ever.
        self.monitor.setsockopt(zmq.RCVHWM, 0)
        self.monitor.connect(self.endpoint)
        return self.monitor

    def read(self) -> None:
        """Take every event waiting (never blocks)."""
        while self.monitor is not None:
            try:
                message = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            self._take(message["event"], message["value"])

    def _take(self, event: int, value: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value in AUTH_PROTOCOL_ERRORS \
                and self.on_auth_failure is not None:
            self.on_auth_failure(_protocol_error_name(value))
        state = self.census.event(event, value)
        if event == zmq.EVENT_DISCONNECTED:
            dup = self._dups.pop(value, None)
            if dup is not None:
                try:
                    if state in ("live", "maybe_live") and _dropped_unread(dup):
                        self.oversized_here += 1
                        self.oversized.add("%s socket: a connection was dropped by ZeroMQ: a "
                                           "frame over the cap (MAXMSGSIZE); the peer's later "
                                           "messages on it are lost", self.name)
                finally:
                    dup.close()
        elif event == zmq.EVENT_MONITOR_STOPPED:     # the socket is closed: so are its peers
            for dup in self._dups.values():
                dup.close()
            self._dups.clear()

    def admit(self, address: str) -> bool:
        """At a ZAP request: whether one more connection fits.  A refused
        one is closed now when it is the only connection in handshake
        from ``address`` (libzmq would otherwise leave a NULL one waiting
        for HANDSHAKE_IVL), so that its peer reconnects soon."""
        self.read()
        self._hold_new()
        if self.census.held >= self.max_connections:
            self.refused_here += 1
            self.refused.add("%s socket: refused a connection from %s: it holds %d, its "
                             "max_connections", self.name, address or "?", self.census.held)
            self._close_only(address)
            return False
        self.census.admitted()
        return True

    def _close_only(self, address: str) -> None:
        candidates = [dup for fd, dup in self._dups.items()
                      if fd in self.census.new and _peer_host(dup) == address]
        if len(candidates) == 1:
            try:
                candidates[0].shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _hold_new(self) -> None:
        """A dup of each fd in handshake (its DISCONNECTED not read yet)."""
        for fd in self.census.new:
            if fd in self._dups:
                continue
            try:
                dup = socket.socket(fileno=os.dup(fd))
            except OSError:
                continue       # gone already
            if dup.type != socket.SOCK_STREAM or dup.family not in (socket.AF_INET,
                                                                   socket.AF_INET6,
                                                                   socket.AF_UNIX):
                dup.close()
                continue
            self._dups[fd] = dup

    def close(self) -> None:
        for dup in self._dups.values():
            dup.close()
        self._dups.clear()
        if self.monitor is not None:
            self.monitor.close(linger=0)
            self.monitor = None

    def report(self) -> dict[str, int]:
        return {"open": self.census.held, "max": self.max_connections,
                "refused": self.refused_here, "oversized_disconnects": self.oversized_here}


def _peer_host(dup: socket.socket) -> str | None:
    try:
        peer = dup.getpeername()
    except OSError:
        return None
    return peer[0] if isinstance(peer, tuple) else None


def _dropped_unread(dup: socket.socket) -> bool:
    """Whether libzmq closed this connection on its side (input unread, or
    a quiet peer) rather than the peer closing it (end of file, reset)."""
    try:
        return dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError as exc:
        if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.EBADF):
            log.debug("peeking a closed connection: %s", exc)
        return False


def _protocol_error_name(value: int) -> str:
    for name in dir(zmq):
        if name.startswith("PROTOCOL_ERROR_ZMTP_") and getattr(zmq, name) == value:
            return name[len("PROTOCOL_ERROR_ZMTP_"):].lower().replace("_", " ")
    return f"protocol error {value:#x}"
