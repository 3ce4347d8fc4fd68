"""Whether a client socket reached a daemon, and if not why: from a ZeroMQ
socket monitor.

ZeroMQ hides connections.  A ``PUSH`` or ``DEALER`` socket queues messages
whether or not anything listens at its endpoint, and reports nothing when
what answers there is not the socket it needs: a ``PUSH`` connected to a
daemon's request endpoint (a ``ROUTER``), or a ``DEALER`` connected to its
training endpoint (a ``PULL``), is accepted by TCP, refused in the ZeroMQ
handshake, and then waits without end.  The socket's monitor
(``zmq_socket_monitor``) sees those events; :class:`Link` keeps what they
say, and :meth:`Link.why_not` puts it in words:

* nothing accepted the connection (no daemon listens there);
* something accepted it and closed it in the handshake: what a ZeroMQ
  socket of the wrong type does (the daemon's other endpoint; a
  predict-only replica has no training endpoint), and ZeroMQ then gives
  up on that endpoint for good;
* the CURVE handshake failed (one side speaks CURVE and the other does
  not; the daemon refused this client's key; the daemon's public key is
  not the one given);
* something accepted the connection and never completed a ZeroMQ
  handshake (not a ZeroMQ endpoint: an HTTP one, say);
* the connection was made, then lost.

:func:`probe` asks, without sending anything, whether an endpoint takes a
socket of a given type: what tells a training endpoint from a request
endpoint once a socket was refused.
"""
from __future__ import annotations

import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

__all__ = ["Link", "probe"]

#: The events a link listens to (not the connection attempts themselves,
#: which ZeroMQ repeats ten times a second while nothing listens).
EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
          | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
          | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
#: The value of HANDSHAKE_FAILED_PROTOCOL when one side speaks CURVE and
#: the other does not (ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH).
MECHANISM_MISMATCH = 0x11000002

#: Reasons of :meth:`Link.why_not` (the ``reason`` of the errors built on it).
NOTHING, SOCKET_TYPE, CURVE, NO_HANDSHAKE, LOST = (
    "nothing", "socket_type", "curve", "no_handshake", "lost")
#: The words of :meth:`Link.why_not` for SOCKET_TYPE.
SOCKET_TYPE_WORDS = ("something accepted the connection and closed it in the handshake (as a "
                     "ZeroMQ socket of another type does)")


class Link:
    """The state of ``socket``'s connection to ``endpoint``, from its
    monitor.  Create it before ``socket.connect`` (no event is missed);
    :meth:`poll` reads the events that arrived; :meth:`close` it before
    closing the socket."""

    def __init__(self, socket: zmq.Socket, endpoint: str) -> None:
        self.endpoint = endpoint
        self._socket = socket
        self._monitor: zmq.Socket | None = socket.get_monitor_socket(EVENTS)
        self._monitor.setsockopt(zmq.LINGER, 0)
        #: Whether a daemon's socket completed the handshake and is connected now.
        self.up = False
        #: Whether one ever did.
        self.was_up = False
        #: Whether anything ever accepted a connection.
        self.accepted = False
        #: The last handshake failure (None: none since the last success).
        self.failure: str | None = None
        self._handshaking = False
        #: When ``up`` last changed (``time.monotonic``).
        self.since = time.monotonic()

    def down_for(self) -> float:
        """Seconds since a daemon was last connected (since the link was
        made if none ever was); 0 while one is."""
        self.poll()
        return 0.0 if self.up else time.monotonic() - self.since

    def poll(self) -> bool:
        """Read the events that arrived; whether a daemon is connected."""
        monitor = self._monitor
        while monitor is not None:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._event(parse_monitor_message(frames))
        return self.up

    def _event(self, message: dict[str, Any]) -> None:
        event, value = message["event"], message["value"]
        if event == zmq.EVENT_CONNECTED:
            self.accepted = self._handshaking = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._set_up(True)
            self.was_up, self.failure, self._handshaking = True, None, False
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.failure = "curve_mechanism" if value == MECHANISM_MISMATCH else "protocol"
            self._handshaking = False
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.failure, self._handshaking = "curve_refused", False
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self.failure, self._handshaking = "curve_handshake", False
        elif event == zmq.EVENT_DISCONNECTED:
            if self._handshaking:
                # Accepted, then closed with no handshake event: what a
                # peer does that refuses this socket's type (ZeroMQ then
                # does not retry).
                self.failure, self._handshaking = "socket_type", False
            self._set_up(False)

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up, self.since = up, time.monotonic()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a daemon to be connected;
        whether one is."""
        deadline = time.monotonic() + timeout
        while not self.poll():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._monitor is None:
                return False
            self._monitor.poll(max(1, int(remaining * 1000)))
        return True

    def ambiguous(self, curve: bool = False) -> bool:
        """Whether :meth:`why_not`'s CURVE may be a refused socket type: a
        socket without CURVE whose handshake failed with no detail, which
        is what a CURVE daemon does to it and, at times, what a socket of
        another type does (when the close comes after the greeting)."""
        self.poll()
        return self.failure == "curve_handshake" and not curve

    def why_not(self, curve: bool = False) -> tuple[str, str]:
        """``(reason, words)``: why no daemon is connected (reason one of
        NOTHING, SOCKET_TYPE, CURVE, NO_HANDSHAKE, LOST); ``curve``:
        whether this socket speaks CURVE."""
        self.poll()
        failure = self.failure
        if failure == "socket_type":
            return SOCKET_TYPE, SOCKET_TYPE_WORDS
        if failure == "curve_mechanism":
            return CURVE, ("the handshake failed: this client speaks CURVE and the daemon does "
                           "not" if curve else "the handshake failed: the daemon speaks CURVE "
                           "and this client does not")
        if failure == "curve_refused":
            return CURVE, "the daemon refused this client's CURVE key"
        if failure == "curve_handshake":
            # A CURVE server closes on a client without CURVE this way too.
            return CURVE, ("the CURVE handshake failed (is the daemon's public key the one "
                           "given?)" if curve else "the handshake failed (does the daemon "
                           "speak CURVE? this client does not)")
        if failure == "protocol":
            return NO_HANDSHAKE, "the ZeroMQ handshake failed (a protocol error)"
        if self.was_up:
            return LOST, "the connection to the daemon was lost"
        if self.accepted:
            return NO_HANDSHAKE, ("something accepted the connection but completed no ZeroMQ "
                                  "handshake (is it a ZeroMQ endpoint? a stopped daemon?)")
        return NOTHING, "nothing accepted the connection"

    def close(self) -> None:
        """Stop monitoring (before the socket is closed); harmless twice."""
        if self._monitor is None:
            return
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self._monitor = None


def probe(context: zmq.Context, endpoint: str, socket_type: int, timeout: float,
          curve: Any = None) -> bool:
    """Whether a socket of ``socket_type`` (``zmq.PUSH``: a training
    endpoint; ``zmq.DEALER``: a request endpoint) completes a handshake at
    ``endpoint`` within ``timeout`` seconds.  Nothing is sent.  ``curve``:
    the client's CURVE options (``onlinel1.curve.client_options``)."""
    from onlinel1 import curve as _curve
    socket = context.socket(socket_type)
    socket.setsockopt(zmq.LINGER, 0)
    link = Link(socket, endpoint)
    try:
        _curve.apply_client_options(socket, curve)
        socket.connect(endpoint)
        return link.wait(timeout)
    except zmq.ZMQError:
        return False
    finally:
        link.close()
        socket.close(linger=0)
