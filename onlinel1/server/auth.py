"""Who may talk to the daemon: CURVE keys, the ZAP handler, the loopback
rule, and what the ``config`` reply hides.

* **CURVE** (``curve_secret_key`` + ``curve_allow``): both ZeroMQ sockets
  are CURVE servers, so every connection is encrypted and its client proves
  that it holds the secret key of a public key.  A ZAP handler (RFC 27,
  ``inproc://zeromq.zap.01`` of each of the transport's contexts) admits
  only the public keys of the allow list: the ``*.pub`` files of a folder,
  or one ``.pub`` file, read at start and again on SIGHUP
  (``Transport.reload_allow_list``: the handler's key set is replaced
  whole, never changed in place).  A refused handshake is counted
  (``stats`` -> ``daemon`` -> ``auth_refused``) and logged, at most one line
  a second: an unknown key (the ZAP handler), and a client without CURVE
  (NULL or PLAIN) or with the wrong server key, which libzmq refuses
  before asking ZAP (seen on the socket monitor, admission.py).
* **Admission**: with CURVE or without, every socket has a ZAP domain, so
  libzmq asks the ZAP handler at every handshake, and the handler asks the
  socket's ``admission.Gate`` whether one more connection fits
  (``max_connections``).
* **The loopback rule**: an endpoint that is not on loopback (127.0.0.0/8,
  ::1, ``localhost``; ``ipc://`` and ``inproc://`` are local) is refused
  without CURVE unless ``insecure`` is set, and then a WARNING says so at
  every start.  The HTTP endpoint has no authentication at all: off
  loopback, it needs ``insecure`` whether CURVE is on or not.
* **Redaction**: the ``config``, ``snapshot``, ``swap`` and ``drop``
  replies (results and error messages) show file system paths only to a
  requester whose CURVE key is in the allow list; otherwise each is
  ``"<redacted>"`` (``ipc://<redacted>`` for an ipc endpoint).

The ZAP handler runs in a thread of its own, with its own socket, answering
handshakes whatever the loop is doing (a long batch, say); the loop's
sockets are still touched by the loop thread alone.  A ZAP handler that
stopped answering would hold every new handshake (refused by time-out),
never admit one: libzmq admits every key only when no handler is bound at
all, and the handler is bound before the daemon's sockets are.
"""
from __future__ import annotations

import dataclasses
import glob
import ipaddress
import logging
import os
import re
import threading
import time
from typing import Any, Iterable

import zmq
from zmq.utils import z85

from onlinel1.curve import KeyFileError, PUBLIC_SUFFIX, read_public_key, read_secret_key
from onlinel1.server.config import ConfigError

log = logging.getLogger("onlinel1.daemon")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "onlinel1"


def zap_domain(socket_name: str) -> bytes:
    """The ZAP domain of one of the daemon's sockets (``requests``,
    ``training``): the handler tells them apart by it."""
    return f"{ZAP_DOMAIN}.{socket_name}".encode()
REDACTED = "<redacted>"
#: DaemonConfig fields that hold file system paths.
PATH_FIELDS = ("snapshot_dir", "curve_secret_key", "curve_allow")
LOOPBACK_NAMES = ("localhost",)


class AuthError(ConfigError):
    """A CURVE key file that cannot be used (the daemon refuses to start)."""


# ------------------------------------------------------------ loopback rule

def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped), or ``localhost``; anything
    else (``*``, 0.0.0.0, an interface name, another name) is not."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_local_endpoint(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint can only be reached from this machine:
    ``ipc://``, ``inproc://``, or ``tcp://`` on a loopback address.

    >>> [is_local_endpoint(e) for e in ("tcp://127.0.0.1:5555", "tcp://[::1]:1",
    ...  "tcp://localhost:2", "ipc:///tmp/s", "tcp://0.0.0.0:5555", "tcp://*:5555",
    ...  "tcp://10.0.0.7:5555", "tcp://eth0:5555")]
    [True, True, True, True, False, False, False, False]
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rpartition(":")[0]
    return bool(host) and ";" not in host and is_loopback_host(host)


def _http_host(endpoint: str) -> str:
    from onlinel1.server.http import parse_http_endpoint
    return parse_http_endpoint(endpoint)[0]


def exposures(config: Any) -> tuple[list[str], list[str]]:
    """(ZeroMQ endpoints open to anyone, HTTP endpoint off loopback), as
    ``"name value"`` texts: the ZeroMQ ones only without CURVE."""
    zmq_open = []
    if config.curve_secret_key is None:
        zmq_open = [f"{name} {getattr(config, name)}" for name in ("train_endpoint",
                                                                    "request_endpoint")
                    if not is_local_endpoint(getattr(config, name))]
    http_open = []
    if config.http_endpoint is not None and not is_loopback_host(_http_host(config.http_endpoint)):
        http_open = [f"http_endpoint {config.http_endpoint}"]
    return zmq_open, http_open


def check_config(config: Any) -> str | None:
    """Why ``config`` (a DaemonConfig) cannot be used as it is, or None:
    the types of the CURVE settings, and the loopback rule."""
    for name in ("curve_secret_key", "curve_allow"):
        value = getattr(config, name)
        if value is not None and (not isinstance(value, str) or not value):
            return f"{name} must be a path, got {value!r}"
    if (config.curve_secret_key is None) != (config.curve_allow is None):
        return ("curve_secret_key and curve_allow go together: the daemon's secret key file "
                "(--curve-secret-key, written by 'onlinel1 keygen') and the clients' public "
                "keys (--curve-allow, a folder of *.pub files or one .pub file)")
    if not isinstance(config.insecure, bool):
        return f"insecure must be true or false, got {config.insecure!r}"
    if config.insecure:
        return None
    zmq_open, http_open = exposures(config)
    reasons = []
    if zmq_open:
        reasons.append(
            f"{' and '.join(zmq_open)} {'is' if len(zmq_open) == 1 else 'are'} not on loopback "
            f"and the daemon has no CURVE keys: anyone who reaches "
            f"{'it' if len(zmq_open) == 1 else 'them'} could train the model, take snapshots and "
            f"read the settings. Turn CURVE on (--curve-secret-key and --curve-allow, keys from "
            f"'onlinel1 keygen'), or bind 127.0.0.1 or an ipc:// endpoint")
    if http_open:
        reasons.append(
            f"{http_open[0]} is not on loopback, and HTTP has no authentication (CURVE covers "
            f"the ZeroMQ sockets only): anyone who reaches it could read the metrics and the "
            f"status page. Bind 127.0.0.1")
    if not reasons:
        return None
    return ("; ".join(reasons) + ". Or, on a network you trust (a pod, a container), accept "
            "the risk with --insecure (insecure = true in [daemon])")


def warn_insecure(config: Any) -> None:
    """A WARNING per endpoint that ``insecure`` leaves open (every start)."""
    zmq_open, http_open = exposures(config)
    for what in zmq_open:
        log.warning("INSECURE (--insecure): %s is open to anyone who reaches it, with no "
                    "authentication and no encryption (CURVE is off)", what)
    for what in http_open:
        log.warning("INSECURE (--insecure): %s is open to anyone who reaches it: HTTP has no "
                    "authentication (metrics and the status page show the models' numbers)",
                    what)


# ---------------------------------------------------------------- the keys

@dataclasses.dataclass(frozen=True)
class ServerKeys:
    """The daemon's CURVE key pair and the client keys it admits (Z85)."""

    public: bytes
    secret: bytes
    allowed: frozenset[bytes]
    #: The files the allowed keys were read from.
    sources: tuple[str, ...]

    def with_allowed(self, allowed: frozenset[bytes], sources: tuple[str, ...]) -> "ServerKeys":
        return dataclasses.replace(self, allowed=allowed, sources=sources)

    def admits(self, user_id: str | bytes | None) -> bool:
        if user_id is None:
            return False
        key = user_id.encode("ascii", "replace") if isinstance(user_id, str) else user_id
        return key in self.allowed


def allowed_keys(location: str) -> tuple[frozenset[bytes], tuple[str, ...]]:
    """The public keys of a folder's ``*.pub`` files (not its subfolders),
    or of one certificate file."""
    if os.path.isdir(location):
        files = sorted(glob.glob(os.path.join(glob.escape(location), "*" + PUBLIC_SUFFIX)))
        if not files:
            raise AuthError(f"curve_allow {location}: no *{PUBLIC_SUFFIX} files in this folder, "
                            f"so no client could connect (copy the clients' public keys, "
                            f"written by 'onlinel1 keygen', there)")
    elif os.path.exists(location):
        files = [location]
    else:
        raise AuthError(f"curve_allow {location}: no such folder or file")
    keys = set()
    for path in files:
        try:
            keys.add(read_public_key(path))
        except KeyFileError as exc:
            raise AuthError(f"curve_allow: {exc}") from None
    return frozenset(keys), tuple(files)


def load_server_keys(config: Any) -> ServerKeys | None:
    """The keys of ``config`` read and checked (``AuthError`` naming the
    file and the fault), or None without CURVE."""
    if config.curve_secret_key is None:
        return None
    if not zmq.has("curve"):
        raise AuthError("curve_secret_key: this libzmq was built without CURVE support")
    try:
        public, secret = read_secret_key(config.curve_secret_key)
    except KeyFileError as exc:
        raise AuthError(f"curve_secret_key: {exc}") from None
    allowed, sources = allowed_keys(config.curve_allow)
    return ServerKeys(public, secret, allowed, sources)


def make_server(socket: zmq.Socket, keys: ServerKeys) -> None:
    """Make ``socket`` a CURVE server (before it binds; its ZAP domain is
    set by the transport, as for a NULL socket)."""
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)


# ------------------------------------------------------------ ZAP handling

class Refusals:
    """Handshakes refused, counted across the ZAP handlers' threads, and
    logged at most once per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger = log, interval: float = 1.0) -> None:
        self.logger, self.interval = logger, interval
        self._lock = threading.Lock()
        self._count = 0
        self._held = 0
        self._last = -1e9

    @property
    def count(self) -> int:
        return self._count

    def refuse(self, why: str, address: str) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < self.interval:
                self._held += 1
                return
            held, self._held, self._last, total = self._held, 0, now, self._count
        self.logger.warning("CURVE: refused a connection from %s: %s (%d refused so far%s)",
                            address or "?", why, total,
                            f"; {held} more not logged" if held else "")


class ZapHandler:
    """A ZAP handler (RFC 27) for one ZeroMQ context, in a thread of its
    own.  With ``keys``, it admits the CURVE clients whose public key is in
    ``keys.allowed`` and refuses every other handshake; without, the NULL
    clients.  Either way a handshake on a socket of ``gates`` (by ZAP
    domain) is refused when that socket has no room (``Gate.admit``).
    The thread also reads the gates' monitors.  ``keys`` may be replaced
    from another thread (SIGHUP): it is read once per handshake."""

    def __init__(self, context: zmq.Context, keys: ServerKeys | None, refusals: Refusals,
                 gates: dict[bytes, Any] | None = None) -> None:
        self.context, self.keys, self.refusals = context, keys, refusals
        self.gates = dict(gates or {})
        self._thread: threading.Thread | None = None
        self._stop_r = self._stop_w = -1
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Bind the context's ZAP endpoint, connect the gates' monitors and
        start answering; raises what the bind raised (``zmq.ZMQError``)."""
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="onlinel1-zap", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the ZAP handler did not start")
        if self._error is not None:
            self._thread.join()
            self._close_pipe()
            raise self._error

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        self._thread.join(30)
        self._thread = None
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self._stop_r, self._stop_w):
            if fd >= 0:
                os.close(fd)
        self._stop_r = self._stop_w = -1

    def _run(self) -> None:
        monitors = {}
        try:
            sock = self.context.socket(zmq.REP)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(ZAP_ENDPOINT)
            for gate in self.gates.values():
                monitors[gate.open(self.context)] = gate
        except BaseException as exc:   # handed to start()
            for gate in self.gates.values():
                gate.close()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        for monitor in monitors:
            poller.register(monitor, zmq.POLLIN)
        poller.register(self._stop_r, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if self._stop_r in events:
                    return
                for monitor, gate in monitors.items():
                    if monitor in events:
                        gate.read()
                if sock not in events:
                    continue
                try:
                    request = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                sock.send_multipart(self.answer(request))
        except zmq.ZMQError as exc:     # the context is terminating
            log.debug("ZAP handler stopped: %s", exc)
        finally:
            sock.close(linger=0)
            for gate in self.gates.values():
                gate.close()

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to a ZAP request (never raises)."""
        request_id = request[1] if len(request) > 1 else b""
        try:
            if len(request) < 6 or request[0] != b"1.0":
                log.error("ZAP: a malformed request of %d frames", len(request))
                return [b"1.0", request_id, b"500", b"malformed ZAP request", b"", b""]
            _, _, domain, address, _, mechanism, *credentials = request
            where = address.decode("utf-8", "replace")
            keys, user = self.keys, b""
            if keys is not None:
                if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
                    self.refusals.refuse(f"mechanism {mechanism.decode('ascii', 'replace')}, "
                                         f"not CURVE", where)
                    return [b"1.0", request_id, b"400", b"CURVE only", b"", b""]
                user = z85.encode(credentials[0])
                if user not in keys.allowed:
                    self.refusals.refuse(f"client key {user.decode('ascii')} is not in "
                                         f"curve_allow", where)
                    return [b"1.0", request_id, b"400", b"unknown key", b"", b""]
            elif mechanism != b"NULL":     # the daemon's sockets are NULL servers then
                return [b"1.0", request_id, b"400", b"NULL only", b"", b""]
            gate = self.gates.get(domain)
            if gate is not None and not gate.admit(where):
                # 300, a temporary failure: libzmq closes the connection
                # without an ERROR command, so the peer reconnects (after
                # a 400 it would give the endpoint up).
                return [b"1.0", request_id, b"300", b"too many connections", b"", b""]
            return [b"1.0", request_id, b"200", b"OK", user, b""]
        except Exception:   # a bug: refuse, keep answering
            log.exception("ZAP: internal error")
            return [b"1.0", request_id, b"500", b"internal error", b"", b""]


def start_handlers(groups: Iterable[tuple[zmq.Context, dict[bytes, Any]]],
                   keys: ServerKeys | None, refusals: Refusals) -> list[ZapHandler]:
    """A started ZapHandler for each distinct context of ``groups``
    ((context, gates by ZAP domain) pairs; gates of one context go to one
    handler), stopped again if one fails to start."""
    merged: dict[int, tuple[zmq.Context, dict[bytes, Any]]] = {}
    for context, gates in groups:
        if context is not None:
            merged.setdefault(id(context), (context, {}))[1].update(gates)
    handlers: list[ZapHandler] = []
    try:
        for context, gates in merged.values():
            handler = ZapHandler(context, keys, refusals, gates)
            handler.start()
            handlers.append(handler)
    except BaseException:
        for handler in handlers:
            handler.stop()
        raise
    return handlers


# --------------------------------------------------------------- redaction

def _redact_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in PATH_FIELDS or os.path.isabs(value) or value.startswith("~"):
        return REDACTED
    if value.startswith("ipc://"):
        return "ipc://" + REDACTED
    return value


def redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """The daemon's settings (``DaemonConfig.to_dict()``) without file
    system paths: every path field, and any other value that is an absolute
    path, is ``"<redacted>"``; an ``ipc://`` endpoint is
    ``"ipc://<redacted>"``. Unset paths (None) stay None.

    >>> redacted({"snapshot_dir": "/var/lib/x", "keep": 5, "curve_allow": None,
    ...           "train_endpoint": "ipc:///run/t.sock", "request_endpoint": "tcp://*:1"})
    {'snapshot_dir': '<redacted>', 'keep': 5, 'curve_allow': None,
     'train_endpoint': 'ipc://<redacted>', 'request_endpoint': 'tcp://*:1'}
    """
    return {name: _redact_value(name, value) for name, value in settings.items()}


# An absolute path inside a text (an error message): a "/" or "~/" not
# following a letter, digit, "/", ":" or "." (so not "tcp://h:1" nor "1/2").
_PATH_IN_TEXT = re.compile(r"ipc://[^\s'\",;:)]+|(?<![\w/.:~-])~?/[^\s'\",;:)]*")
#: The fields of the snapshot and swap results that hold a path.
REPLY_PATH_FIELDS = ("path",)


def paths_shown(transport: Any) -> bool:
    """Whether the requester of the request in hand may see file system
    paths: CURVE admitted it with a key of the allow list."""
    keys = getattr(transport, "keys", None)
    return keys is not None and keys.admits(getattr(transport, "current_user", None))


def redact_text(text: str) -> str:
    """``text`` with its absolute paths (and ``ipc://`` endpoints) redacted.

    >>> redact_text("/srv/m.ol1: [Errno 2] No such file: '/srv/m.ol1' (tcp://h:1, 1/2)")
    "<redacted>: [Errno 2] No such file: '<redacted>' (tcp://h:1, 1/2)"
    """
    return _PATH_IN_TEXT.sub(lambda m: "ipc://" + REDACTED if m.group().startswith("ipc://")
                             else REDACTED, text)


def redacted_result(result: dict[str, Any]) -> dict[str, Any]:
    """A ``snapshot``/``swap``/``drop`` result without file system paths."""
    return {name: REDACTED if name in REPLY_PATH_FIELDS and isinstance(value, str)
            else _redact_value(name, value) for name, value in result.items()}


class RedactingReplier:
    """Answers through ``replier`` (results.Replier) with paths redacted:
    for a deferred reply, which is sent when the requester in hand is
    another one."""

    def __init__(self, replier: Any) -> None:
        self._replier = replier

    def result(self, value: dict[str, Any]) -> None:
        self._replier.result(redacted_result(value))

    def error(self, code: str, message: str) -> None:
        self._replier.error(code, redact_text(message))
