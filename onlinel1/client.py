"""Python clients of the onlinel1 daemon, written from docs/protocol.md alone.

Two classes, one per socket of the daemon:

* :class:`Producer` pushes training batches to the training endpoint
  (``PUSH`` to the daemon's ``PULL``; fire and forget, held back by
  ZeroMQ's high-water mark, never dropped)::

      from onlinel1.client import Producer

      with Producer("tcp://127.0.0.1:5555", producer="loader-1") as producer:
          producer.add({"price": 0.5, 17: 1.0}, label=1)
          producer.add({"age=30": 1}, label=-1, namespaces={"user": {"country=fr": 1}})
          producer.send_batch(batch)          # an onlinel1.Batch, sent columnar
          producer.send_rows(rows)            # row maps, sent row-wise (crossed by the daemon)
          producer.send_frame(df, label="y")  # a pandas DataFrame or an arrow table
      # leaving the block flushed the rows added and waited for delivery

* :class:`Client` asks the request endpoint (``DEALER`` to the daemon's
  ``ROUTER``); every call has a timeout and either returns the result map
  or raises::

      from onlinel1.client import Client

      with Client("tcp://127.0.0.1:5556", timeout=5.0) as client:
          client.health()                     # {"status": "ok", "mode": "training", ...}
          client.predict(batch)["predictions"]
          client.predict([{"features": {"price": 0.5}}], top_k=3, names=True)
          client.learn([{"label": 1, "features": {"17": 1.0}}])

Named models: a daemon may hold several models, each with a name
(docs/protocol.md). ``model="ctr"`` on a :class:`Producer` or a
:class:`Client` sends every message to that model; without it, messages
carry no ``model`` field and go to the daemon's ``default`` model, exactly
as before named models. ``Client`` also manages them::

    with Client(timeout=60.0) as client:
        client.create("ctr", update="fobos", l1=1e-5)   # the other settings: defaults
        client.predict(batch, model="ctr")               # one call to another model
        client.list_models()                             # [{"model": "ctr", ...}, ...]
        client.swap("ctr", "models/ctr-v2.ol1")          # read on the daemon's host
        client.drop("ctr")

Both encodings of a batch are available: a :class:`~onlinel1.batch.Batch`
(or a scipy.sparse matrix) is sent columnar (:func:`encode_csr`), a list of
row maps is sent row-wise (:func:`encode_rows`).

Errors: :class:`DaemonError` (the daemon replied with an error code),
:class:`DaemonTimeout` (no reply in time; the client has reconnected and
the next call works), :class:`ConnectTimeout` (a :class:`DaemonTimeout`:
no daemon answered at all, and why: nothing listens there, the endpoint
is the daemon's other one, CURVE refused), :class:`ProducerTimeout` (the
daemon did not take a batch in time; at close, how many batches were not
delivered). All are :class:`ClientError`.

Nothing waits without end by default: a :class:`Producer` checks that a
daemon's training socket took its connection (``connect_timeout``, 5 s),
gives up waiting for a daemon that went away after ``connect_timeout``,
and at close gives up when no batch was delivered for ``linger`` seconds
(30 s); every :class:`Client` request has its ``timeout`` (5 s).

CURVE: a daemon started with ``--curve-secret-key`` and ``--curve-allow``
speaks only CURVE (encrypted, and open only to the public keys it allows).
Both classes take ``curve_secret_key=`` (this client's secret key file,
``PATH.key`` of ``onlinel1 keygen PATH``, mode 0600) and
``curve_server_key=`` (the daemon's public key file, its ``.pub``)::

    Client("tcp://10.0.0.7:5556", curve_secret_key="loader-1.key",
           curve_server_key="server.pub")

A daemon that refuses the key (or whose public key is not the one given)
never answers: calls time out as with a daemon that is down.

Neither class is thread-safe: use one per thread.
"""
from __future__ import annotations

import collections
import itertools
import math
import numbers
import os
import time
import warnings
from typing import Any, Iterable, Mapping

import msgpack
import numpy as np
import zmq

from onlinel1 import curve as _curve
from onlinel1 import link as _link
from onlinel1.batch import Batch
from onlinel1.names import check_model_name

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_LINGER", "DEFAULT_REQUEST_ENDPOINT",
           "DEFAULT_TRAIN_ENDPOINT", "PROTOCOL_VERSION", "Client", "ClientError", "ConnectTimeout",
           "DaemonError", "DaemonTimeout", "MessageTooLarge", "Producer", "ProducerTimeout",
           "encode_csr", "encode_rows", "rows_to_batch"]

#: The version of docs/protocol.md spoken here (the ``v`` of every message).
PROTOCOL_VERSION = 1
DEFAULT_TRAIN_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_REQUEST_ENDPOINT = "tcp://127.0.0.1:5556"
#: Messages queued per socket before ``send`` blocks.
DEFAULT_HIGH_WATER_MARK = 64
#: Seconds a producer waits for a daemon to take its connection (at start,
#: and whenever the daemon has gone away while it waits).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds ``Producer.close`` waits with no batch delivered.
DEFAULT_LINGER = 30.0
#: Seconds at most spent finding out what an endpoint that refused a
#: socket's type is (``onlinel1.link.probe``), once a wait has failed (a
#: daemon's socket answers in milliseconds; a loaded machine takes longer).
PROBE_TIMEOUT = 2.0
#: Milliseconds a producer's socket lingers once every batch was handed to
#: the connection, for ZeroMQ to finish writing (0 when it gave up).
#: (No ZeroMQ heartbeats: a PONG not yet read when the socket closes makes
#: the kernel reset the connection and drop what its send buffer held.)
FLUSH_LINGER_MS = 1000
#: The largest message sent (the daemon's default ``max_message_bytes``).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_U64_MAX = (1 << 64) - 1
_CONFIGURED = object()   # "the producer's own setting", as a default argument
_ROW_FIELDS = frozenset(("label", "importance", "features", "namespaces", "tag"))
#: Operations about the daemon as a whole, to which the client's ``model``
#: is not added.
_DAEMON_WIDE_OPS = frozenset(("list",))
# Little-endian dtypes of the columnar fields (no copy on a little-endian host).
_INT64, _UINT64 = np.dtype("<i8"), np.dtype("<u8")
_FLOAT32, _FLOAT64 = np.dtype("<f4"), np.dtype("<f8")


class ClientError(Exception):
    """Base class of the errors of this module."""


class DaemonError(ClientError):
    """The daemon answered with an error reply.

    ``code`` is one of the stable codes of docs/protocol.md (``bad_request``,
    ``bad_batch``, ``unknown_op``, ...); ``message`` is the daemon's text.

    >>> err = DaemonError("bad_batch", "labels: 2 entries for 3 rows")
    >>> err.code, str(err)
    ('bad_batch', 'bad_batch: labels: 2 entries for 3 rows')
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class DaemonTimeout(ClientError, TimeoutError):
    """No reply from the daemon within the client's timeout."""


class ConnectTimeout(DaemonTimeout):
    """No daemon answered at ``endpoint`` at all: no socket of a daemon
    completed the connection in time.  ``reason`` says what the socket saw
    (``onlinel1.link``): ``"nothing"`` (nothing accepted the connection),
    ``"socket_type"`` (something accepted it and closed it in the
    handshake, as a socket of another type does: the daemon's other
    endpoint, say), ``"curve"`` (the CURVE handshake failed),
    ``"no_handshake"`` (not a ZeroMQ endpoint?) or ``"lost"`` (the
    connection was made, then lost); the message says it in words, and
    where the endpoint was the wrong one of a daemon's two, which one it
    is."""

    def __init__(self, message: str, endpoint: str, reason: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.reason = reason
class MessageTooLarge(ClientError, ValueError):
    """A message larger than ``max_message_bytes``: not sent.  A daemon
    refuses such a message, and past twice its limit ZeroMQ drops the
    connection, losing the messages queued behind it."""


def _check_size(frame: bytes, limit: int, what: str) -> None:
    if len(frame) > limit:
        raise MessageTooLarge(f"{what} encodes to {len(frame)} bytes, more than "
                              f"max_message_bytes ({limit}); it was not sent (a daemon refuses "
                              f"it, and past twice its limit drops the connection with the "
                              f"messages behind it): send fewer rows per message, or raise "
                              f"max_message_bytes here and on the daemon")


def _limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_message_bytes must be an integer >= 1, got {value!r}")
    return value


class ProducerTimeout(ClientError, TimeoutError):
    """The daemon did not take a training batch within the producer's timeout
    (its queue stayed at the high-water mark); the batch was not sent."""


# ----------------------------------------------------------------- encoding

def _raw(arr: np.ndarray, dtype: np.dtype) -> memoryview:
    """The bytes of ``arr`` as ``dtype``: a view, copied only if the dtype,
    the byte order or the layout differ."""
    return np.ascontiguousarray(arr, dtype=dtype).view(np.uint8).data


def encode_csr(batch: Batch) -> dict[str, Any]:
    """The columnar ``csr`` map of docs/protocol.md for ``batch``.

    The arrays are raw little-endian bytes (memoryviews of the batch's own
    arrays where their dtype is already right), with no loop per example.
    ``values_dtype`` is given for float32 values only (float64 is the
    default); ``labels`` and ``weights`` only when the batch has them.

    >>> batch = Batch([0, 2, 3], [17, 4, 2**63], np.array([1.0, 0.5, -2.0], np.float32),
    ...               labels=[1, -1])
    >>> csr = encode_csr(batch)
    >>> sorted(csr)
    ['indptr', 'keys', 'labels', 'values', 'values_dtype']
    >>> np.frombuffer(csr["keys"], "<u8").tolist(), csr["values_dtype"]
    ([17, 4, 9223372036854775808], 'float32')
    """
    if not isinstance(batch, Batch):
        raise TypeError(f"encode_csr needs an onlinel1.Batch, got {type(batch).__name__}")
    csr: dict[str, Any] = {"indptr": _raw(batch.indptr, _INT64),
                           "keys": _raw(batch.keys, _UINT64)}
    if batch.values.dtype == np.float32:
        csr["values"] = _raw(batch.values, _FLOAT32)
        csr["values_dtype"] = "float32"
    else:
        csr["values"] = _raw(batch.values, _FLOAT64)
    if batch.labels is not None:
        csr["labels"] = _raw(batch.labels, _FLOAT64)
    if batch.weights is not None:
        csr["weights"] = _raw(batch.weights, _FLOAT64)
    return csr


def _number(value: Any, what: str) -> int | float:
    """``value`` as a plain Python number msgpack can pack."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def _key(key: Any, what: str) -> int | str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise TypeError(f"{what} must be an integer in [0, 2**64) or a str, got {key!r}")
    key = int(key)
    if not 0 <= key <= _U64_MAX:
        raise ValueError(f"{what} must be an integer in [0, 2**64), got {key}")
    return key


def _features(features: Any, where: str) -> dict[int | str, int | float]:
    if not isinstance(features, Mapping):
        raise TypeError(f"{where}: features must be a map of feature -> value, "
                        f"got {type(features).__name__}")
    out: dict[int | str, int | float] = {}
    for k, v in features.items():
        # The common case, plain ints or strs to plain numbers, as it is;
        # anything else (numpy scalars, bad values) through the checks.
        tk, tv = type(k), type(v)
        if (tk is str or (tk is int and 0 <= k <= _U64_MAX)) and (tv is float or tv is int):
            out[k] = v
        else:
            out[_key(k, f"{where}: feature {k!r}")] = _number(v, f"{where}: the value of {k!r}")
    return out


def _namespaces(namespaces: Any, where: str) -> dict[str, dict[int | str, int | float]]:
    if not isinstance(namespaces, Mapping):
        raise TypeError(f"{where}: namespaces must be a map of namespace -> features, "
                        f"got {type(namespaces).__name__}")
    out = {}
    for ns, features in namespaces.items():
        if not isinstance(ns, str):
            raise TypeError(f"{where}: namespace names must be str, got {ns!r}")
        out[ns] = _features(features, f"{where}, namespace {ns!r}")
    return out


def encode_rows(rows: Iterable[Mapping[str, Any]], labels_required: bool = False) -> list[dict]:
    """The row-wise ``rows`` list of docs/protocol.md, checked and made of
    plain Python values (numpy scalars become ints and floats).

    Each row is a map with ``features`` (feature -> value; a feature is an
    integer key or a string the daemon hashes), optional ``namespaces``
    (namespace -> features), ``label`` and ``importance``.

    >>> encode_rows([{"features": {"price": np.float32(0.5), 17: 1}, "label": np.int64(1)}])
    [{'features': {'price': 0.5, 17: 1}, 'label': 1}]
    """
    if isinstance(rows, (Mapping, str, bytes)):
        raise TypeError("rows must be a list of row maps, not a single "
                        f"{type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        where = f"row {i}"
        if not isinstance(row, Mapping):
            raise TypeError(f"{where}: must be a map with 'features' (and optionally "
                            f"'namespaces', 'label', 'importance'), got {type(row).__name__}")
        unknown = set(row) - _ROW_FIELDS
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(map(str, unknown))} "
                             f"(a row has {', '.join(sorted(_ROW_FIELDS))})")
        encoded: dict[str, Any] = {"features": _features(row.get("features", {}), where)}
        if row.get("namespaces") is not None:
            encoded["namespaces"] = _namespaces(row["namespaces"], where)
        if row.get("label") is not None:
            encoded["label"] = _number(row["label"], f"{where}: label")
        elif labels_required:
            raise ValueError(f"{where}: a label is required for training")
        if row.get("importance") is not None:
            encoded["importance"] = _number(row["importance"], f"{where}: importance")
        out.append(encoded)
    return out


def _hash(key: int | str, namespace: str | None) -> int:
    from onlinel1.io import feature_key
    return key if isinstance(key, int) else feature_key(key, namespace)


class _RowBuffer:
    """Rows added one at a time, hashed into CSR lists (client-side, exactly
    as the daemon would hash the same row sent row-wise)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.lengths: list[int] = []
        self.keys: list[int] = []
        self.values: list[float] = []
        self.labels: list[float] = []
        self.weights: list[float] = []

    def __len__(self) -> int:
        return len(self.lengths)

    def drop(self, n: int) -> None:
        """Forget the first ``n`` rows (they were sent)."""
        nnz = sum(self.lengths[:n])
        del self.lengths[:n], self.keys[:nnz], self.values[:nnz]
        del self.labels[:n], self.weights[:n]

    def add(self, features: Any, label: Any, importance: Any = 1.0,
            namespaces: Any = None, where: str = "row") -> None:
        # Check everything before appending anything: a bad row leaves no trace.
        label = float(_number(label, f"{where}: label"))
        importance = float(_number(importance, f"{where}: importance"))
        if not math.isfinite(label):
            raise ValueError(f"{where}: label must be finite, got {label!r}")
        if not (math.isfinite(importance) and importance >= 0):
            raise ValueError(f"{where}: importance must be finite and >= 0, got {importance!r}")
        items = [(_hash(k, None), v) for k, v in _features(features, where).items()]
        if namespaces is not None:
            for ns, named in _namespaces(namespaces, where).items():
                items.extend((_hash(k, ns), v) for k, v in named.items())
        for _, v in items:
            if not math.isfinite(v):
                raise ValueError(f"{where}: feature values must be finite, got {v!r}")
        self.lengths.append(len(items))
        self.keys.extend(k for k, _ in items)
        self.values.extend(v for _, v in items)
        self.labels.append(label)
        self.weights.append(importance)

    def batch(self, with_labels: bool = True) -> Batch:
        indptr = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=indptr[1:])
        weights = np.array(self.weights, dtype=np.float64)
        return Batch(indptr, np.array(self.keys, dtype=np.uint64),
                     np.array(self.values, dtype=np.float64),
                     np.array(self.labels, dtype=np.float64) if with_labels else None,
                     None if np.all(weights == 1.0) else weights)


def rows_to_batch(rows: Iterable[Mapping[str, Any]], labels_required: bool = True) -> Batch:
    """Row maps (as for :func:`encode_rows`) hashed client-side into a
    :class:`~onlinel1.batch.Batch`, the same keys the daemon derives from
    the rows sent row-wise.

    >>> from onlinel1.io import feature_key
    >>> b = rows_to_batch([{"features": {"7": 1.0}, "namespaces": {"u": {"x": 2}}, "label": 1}])
    >>> b.keys.tolist() == [7, feature_key("x", "u")], b.values.tolist(), b.labels.tolist()
    (True, [1.0, 2.0], [1.0])
    """
    buffer = _RowBuffer()
    for i, row in enumerate(encode_rows(rows, labels_required)):
        buffer.add(row["features"], row.get("label", 0.0), row.get("importance", 1.0),
                   row.get("namespaces"), where=f"row {i}")
    return buffer.batch(with_labels=labels_required)


def _as_batch(data: Any) -> Batch | None:
    """A Batch for a Batch or a scipy.sparse matrix; None for anything else."""
    if isinstance(data, Batch):
        return data
    if hasattr(data, "tocsr") and hasattr(data, "shape"):
        return Batch.from_csr(data)
    return None


def _examples(data: Any, training: bool) -> dict[str, Any]:
    """``{"csr": ...}`` or ``{"rows": ...}`` for a batch or a list of rows.
    For prediction, labels and importance weights are left out: they play
    no part in it."""
    batch = _as_batch(data)
    if batch is not None:
        if training and batch.labels is None:
            raise ValueError("the batch has no labels; training needs them")
        if not training and (batch.labels is not None or batch.weights is not None):
            batch = Batch(batch.indptr, batch.keys, batch.values)
        return {"csr": encode_csr(batch)}
    if isinstance(data, (list, tuple)):
        rows = encode_rows(data, labels_required=training)
        if not training:
            for row in rows:
                row.pop("label", None)
                row.pop("importance", None)
        return {"rows": rows}
    raise TypeError("examples must be an onlinel1.Batch, a scipy.sparse matrix or a list of "
                    f"row maps, got {type(data).__name__}")


def _packer() -> msgpack.Packer:
    """A msgpack packer to keep: ``msgpack.packb`` starts every message in a
    small new buffer and grows it by copies (390 us for a 0.55 MB training
    message, against 24 us for a kept ``Packer``).  A failed ``pack``
    resets the packer's buffer (tests/test_client.py checks it)."""
    return msgpack.Packer(use_bin_type=True)


def _connect(socket: zmq.Socket, endpoint: str) -> None:
    try:
        socket.connect(endpoint)
    except zmq.ZMQError as exc:
        socket.close(linger=0)
        raise ValueError(f"cannot connect to {endpoint!r}: {exc}") from None


def _no_daemon(link: _link.Link, seconds: float, socket_type: int, context: zmq.Context,
               curve: dict[int, bytes] | None) -> ConnectTimeout:
    """The error of a socket that no daemon took within ``seconds``:
    what its link saw; for a socket whose type was refused, what the
    endpoint is (asked with a socket of the other type)."""
    reason, words = link.why_not(curve is not None)
    endpoint = link.endpoint
    other = zmq.DEALER if socket_type == zmq.PUSH else zmq.PUSH
    if reason == _link.SOCKET_TYPE or link.ambiguous(curve is not None):
        taken = _link.probe(context, endpoint, other, PROBE_TIMEOUT, curve)
        if taken:       # a socket of the other type is welcome: not CURVE, then
            reason, words = _link.SOCKET_TYPE, _link.SOCKET_TYPE_WORDS
    message = f"no daemon answered at {endpoint} within {float(seconds)} s: {words}"
    if reason == _link.SOCKET_TYPE:
        if socket_type == zmq.PUSH:
            message += ("; it is a daemon's request endpoint, not its training endpoint (a "
                        "predict-only replica has no training endpoint)" if taken else
                        "; it is not a daemon's training endpoint")
        else:
            message += (f"; it is a daemon's training endpoint: requests go to the request "
                        f"endpoint (default {DEFAULT_REQUEST_ENDPOINT})" if taken else
                        f"; it is not a daemon's request endpoint (default "
                        f"{DEFAULT_REQUEST_ENDPOINT})")
    return ConnectTimeout(message, endpoint, reason)


def _model(name: str | None) -> str | None:
    """``name`` checked as a model name (``ValueError`` if it is not one),
    or None."""
    return None if name is None else check_model_name(name)


def _seconds(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return value


# ----------------------------------------------------------------- Producer

class Producer:
    """Sends training batches to the daemon's training endpoint.

    ``endpoint`` is the daemon's training endpoint. Rows given to
    :meth:`add` are gathered into columnar batches of ``batch_size`` rows;
    :meth:`send_batch` and :meth:`send_csr` send ready-made batches (split
    into messages of at most ``batch_size`` rows). Every message carries
    the next ``seq`` number (1, 2, ...) and, if given, the ``producer``
    name, which the daemon's ``stats`` reports.

    ``model`` names the daemon's model that learns the batches (a name of
    :mod:`onlinel1.names`, checked here: ``ValueError``). Without it the
    messages carry no ``model`` field, and the daemon's ``default`` model
    learns them.

    ZeroMQ connects in the background and says nothing of a connection that
    fails, so the producer watches its socket (``onlinel1.link``): it
    starts only once the daemon's training socket took the connection,
    waiting up to ``connect_timeout`` seconds (then
    :class:`ConnectTimeout`, which says why: nothing listens there, the
    endpoint is a request endpoint, CURVE refused, ...).
    ``connect_timeout=None`` does not check, and waits for a daemon as
    long as it takes.

    When ``high_water_mark`` messages are queued (the daemon is slower than
    the producer), sending blocks until there is room: up to
    ``send_timeout`` seconds if given, then :class:`ProducerTimeout` is
    raised and that batch is not sent; and in any case no longer than
    ``connect_timeout`` with no daemon connected. Nothing is dropped
    silently.

    :meth:`close` (or leaving a ``with`` block) sends the rows still
    buffered and waits while the queued batches are delivered (handed to
    the daemon's connection). It gives up when none was delivered for
    ``linger`` seconds (default 30; None: no limit), or when no daemon was
    connected for ``connect_timeout`` seconds; then
    :class:`ProducerTimeout` says how many batches were not delivered
    (they are dropped). :attr:`undelivered` counts them at any time.

    ``curve_secret_key`` and ``curve_server_key``: as for :class:`Client`
    (a daemon that refuses the key takes nothing: the connect check fails
    with reason ``"curve"``).

    ``row_wise=True`` makes :meth:`add` send its rows row-wise (as
    :meth:`send_rows` does) rather than hashed here and sent columnar:
    the daemon then reads them with its model's settings, crossing them
    with the model's interactions (``serve -q ab``), which it cannot do
    for a columnar batch (docs/protocol.md, "Interactions and namespaced
    integers").

    A message larger than ``max_message_bytes`` (the daemon's default,
    64 MiB; give the daemon's own if it differs) is not sent:
    :class:`MessageTooLarge`, and the rows stay buffered (lower
    ``batch_size``).

    ::

        with Producer("tcp://127.0.0.1:5555", batch_size=1000, producer="etl") as p:
            for features, label in stream:
                p.add(features, label)
            p.send_csr(X, y)                  # scipy.sparse rows, column j is key j
        print(p.seq, p.examples_sent)
    """

    def __init__(self, endpoint: str = DEFAULT_TRAIN_ENDPOINT, *, batch_size: int = 1000,
                 producer: str | None = None, high_water_mark: int = DEFAULT_HIGH_WATER_MARK,
                 send_timeout: float | None = None, linger: float | None = DEFAULT_LINGER,
                 model: str | None = None,
                 curve_secret_key: str | os.PathLike[str] | None = None,
                 curve_server_key: str | os.PathLike[str] | None = None,
                 connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 row_wise: bool = False) -> None:
        #: Whether :meth:`add` sends its rows row-wise (namespaces named, so
        #: the daemon applies its model's interactions) instead of hashed
        #: here and sent columnar.
        self.row_wise = bool(row_wise)
        #: The largest message this producer sends (bytes).
        self.max_message_bytes = _limit(max_message_bytes)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if producer is not None and not isinstance(producer, str):
            raise TypeError(f"producer must be a str, got {type(producer).__name__}")
        if isinstance(high_water_mark, bool) or not isinstance(high_water_mark, int) \
                or high_water_mark < 1:
            raise ValueError(f"high_water_mark must be an integer >= 1, got {high_water_mark!r}")
        #: The daemon's model the batches go to (None: the daemon's default).
        self.model = _model(model)
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.producer = producer
        self.send_timeout = _seconds(send_timeout, "send_timeout")
        self.linger = _seconds(linger, "linger")
        self.connect_timeout = _seconds(connect_timeout, "connect_timeout") or None
        options = _curve.client_options(curve_secret_key, curve_server_key)
        #: Whether this producer speaks CURVE.
        self.curve = options is not None
        self._curve = options
        #: The ``seq`` of the last message sent (0 before the first).
        self.seq = 0
        self.examples_sent = 0
        self._rows = _RowBuffer()
        #: With ``row_wise``: the row maps of the rows in ``_rows``.
        self._row_maps: list[dict[str, Any]] = []
        self._packer = _packer()
        #: (seq, rows, tracker) of each batch sent and not yet delivered,
        #: oldest first (ZeroMQ's MessageTracker: done once the message has
        #: left the queue for the connection).
        self._in_flight: collections.deque[tuple[int, int, zmq.MessageTracker]] = \
            collections.deque()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self._socket.copy_threshold = 0        # every message zero-copy, so tracked
        _curve.apply_client_options(self._socket, options)
        self._link = _link.Link(self._socket, endpoint)
        self._closed = False
        try:
            _connect(self._socket, endpoint)
        except ValueError:
            self._closed = True
            self._link.close()
            self._context.term()
            raise
        if self.connect_timeout is not None and not self._link.wait(self.connect_timeout):
            error = _no_daemon(self._link, self.connect_timeout, zmq.PUSH, self._context,
                               self._curve)
            self._shut()
            raise error

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        model = "" if self.model is None else f"model={self.model!r}, "
        return (f"Producer({self.endpoint!r}, {model}producer={self.producer!r}, "
                f"seq={self.seq}, {state})")

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # The block failed: the rows still buffered are not sent, what was
        # queued still is; a failure to deliver it must not hide the cause,
        # nor go unsaid: a warning.
        try:
            self.close(flush=False)
        except ClientError as failure:
            warnings.warn(f"while an exception left the producer's block: {failure}",
                          RuntimeWarning, stacklevel=2)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Rows added but not sent yet."""
        return len(self._rows)

    @property
    def undelivered(self) -> int:
        """Batches sent (queued) but not yet delivered to the daemon's
        connection; after a failed :meth:`close`, those dropped."""
        if not self._closed:
            self._prune()
        return len(self._in_flight)

    @property
    def connected(self) -> bool:
        """Whether a daemon's training socket is connected now."""
        return not self._closed and self._link.poll()

    def _prune(self) -> bool:
        """Forget the batches delivered; whether any was.  Before any daemon
        connected, none was: ZeroMQ also releases the messages it drops (a
        peer that refused the socket type ends the queue)."""
        in_flight, before = self._in_flight, len(self._in_flight)
        if not self._link.poll() and not self._link.was_up:
            return False
        while in_flight and in_flight[0][2].done:
            in_flight.popleft()
        return len(in_flight) < before

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("the producer is closed")

    # -- adding and sending

    def add(self, features: Mapping[Any, float], label: float, importance: float = 1.0, *,
            namespaces: Mapping[str, Mapping[Any, float]] | None = None) -> None:
        """Add one example; a batch is sent each time ``batch_size`` rows
        are buffered.

        ``features`` maps a feature to its value: an integer key in
        ``[0, 2**64)`` or a string name, hashed here with
        :func:`onlinel1.io.feature_key` (a decimal name is its own key).
        ``namespaces`` maps a namespace to its ``{name: value}`` features,
        hashed as ``namespace^name``.

        ::

            producer.add({"price": 0.5, 17: 1.0}, 1, namespaces={"user": {"age=30": 1}})
        """
        self._check_open()
        where = f"example {self.examples_sent + len(self._rows) + 1}"
        self._rows.add(features, label, importance, namespaces, where=where)
        if self.row_wise:
            row: dict[str, Any] = {"features": features, "label": label}
            if importance != 1.0:
                row["importance"] = importance
            if namespaces is not None:
                row["namespaces"] = namespaces
            self._row_maps.extend(encode_rows([row], labels_required=True))
        if len(self._rows) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Send the rows added and not sent yet (if any), in batches of at
        most ``batch_size`` rows. Rows whose batch timed out stay buffered:
        the next ``flush`` (or ``close``) tries them again."""
        self._check_open()
        while len(self._rows):
            n = min(len(self._rows), self.batch_size)
            if self.row_wise:
                self._send_rows(self._row_maps[:n])
                del self._row_maps[:n]
            else:
                self._send(self._rows.batch().slice(0, n))
            self._rows.drop(n)

    def send_batch(self, batch: Batch) -> None:
        """Send a ready :class:`~onlinel1.batch.Batch` (with labels), or a
        scipy.sparse matrix's rows converted by ``Batch.from_csr``.

        Rows added before and not sent yet go first, so the daemon learns
        the examples in the order given. A batch longer than ``batch_size``
        is sent as several messages.
        """
        self._check_open()
        converted = _as_batch(batch)
        if converted is None:
            raise TypeError(f"send_batch needs an onlinel1.Batch, got {type(batch).__name__}")
        if converted.labels is None:
            raise ValueError("the batch has no labels; training needs them")
        converted.check_finite()
        self.flush()
        for start in range(0, converted.n_rows, self.batch_size):
            self._send(converted if converted.n_rows <= self.batch_size
                       else converted.slice(start, start + self.batch_size))

    def send_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Send row maps (as :func:`encode_rows` takes them, labels
        required) row-wise, in messages of at most ``batch_size`` rows.

        Row-wise rows name their namespaces, so the daemon reads them with
        its model's settings: it crosses them with the model's interactions
        (``serve -q ab``) and applies its ``namespaced_integers``, exactly
        as ``onlinel1 train`` reads the same rows from a VW file
        (docs/protocol.md, "Interactions"). Rows added before and not sent
        yet go first.

        ::

            producer.send_rows([{"label": 1, "namespaces": {"user": {"u7": 1},
                                                            "ad": {"42": 0.5}}}])
        """
        self._check_open()
        encoded = encode_rows(rows, labels_required=True)
        for i, row in enumerate(encoded):
            groups = [row["features"], *(row.get("namespaces") or {}).values()]
            numbers_ = [row["label"], row.get("importance", 1.0)]
            numbers_ += [v for group in groups for v in group.values()]
            if not all(math.isfinite(v) for v in numbers_):
                raise ValueError(f"row {i}: labels, importances and values must be finite")
            if row.get("importance", 1.0) < 0:
                raise ValueError(f"row {i}: importance must be >= 0")
        self.flush()
        for start in range(0, len(encoded), self.batch_size):
            self._send_rows(encoded[start:start + self.batch_size])

    def send_frame(self, frame: Any, label: Any = None, weight: Any = None, *,
                   categorical: Iterable[Any] | None = None,
                   numeric: Iterable[Any] | None = None,
                   namespace: str | Mapping[Any, str] | None = None) -> None:
        """Send the rows of a pandas DataFrame or a pyarrow Table or
        RecordBatch, converted without a loop per row
        (:func:`onlinel1.dataframe.from_table`, the rules of
        ``Batch.from_pandas``: a numeric column ``c`` is the feature ``c``,
        a string or categorical one ``c=value``), then sent columnar as
        :meth:`send_batch` sends. ``label`` (required) and ``weight``: column
        names or arrays. ``categorical`` and ``numeric``: if either is given,
        the feature columns are exactly those listed, the first hashed as
        ``c=value`` whatever their dtype (integer ids), the second taken as
        values. ``namespace``: as for ``Batch.from_pandas``.

        ::

            producer.send_frame(df, label="clicked", categorical=["site", "ad_id"],
                                numeric=["price"])
        """
        from onlinel1 import dataframe
        if not dataframe.is_table(frame):
            raise TypeError(f"send_frame needs a pandas DataFrame or a pyarrow Table or "
                            f"RecordBatch, got {type(frame).__name__}")
        if label is None:
            raise ValueError("send_frame needs label= (a column name or an array): training "
                             "needs labels")
        self.send_batch(dataframe.from_table(frame, label, weight, namespace=namespace,
                                             categorical=categorical, numeric=numeric))

    def send_csr(self, X: Any, y: Any, weights: Any = None) -> None:
        """Send the rows of a scipy.sparse matrix ``X`` (column j is feature
        key j) with labels ``y`` and optional importance ``weights``."""
        self.send_batch(Batch.from_csr(X, y, weights))

    def _send(self, batch: Batch) -> None:
        self._send_message({"csr": encode_csr(batch)}, batch.n_rows)

    def _send_rows(self, rows: list[dict[str, Any]]) -> None:
        self._send_message({"rows": rows}, len(rows))

    def _send_message(self, examples: dict[str, Any], n_rows: int) -> None:
        """Send one train message of ``n_rows`` examples (its ``csr`` or
        ``rows`` field in ``examples``)."""
        message: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": "train"}
        if self.model is not None:
            message["model"] = self.model
        message["seq"] = self.seq + 1
        message.update(examples)
        if self.producer is not None:
            message["producer"] = self.producer
        frame = self._packer.pack(message)
        _check_size(frame, self.max_message_bytes,
                    f"batch seq {self.seq + 1} of {n_rows} examples")
        deadline = None if self.send_timeout is None else time.monotonic() + self.send_timeout
        while True:
            try:
                tracker = self._socket.send(frame, zmq.NOBLOCK, copy=False, track=True)
                break
            except zmq.Again:
                pass
            # At the high-water mark: wait for room, in slices so that Ctrl-C
            # works and a daemon that went away is noticed.
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            not_sent = f"batch seq {self.seq + 1} of {n_rows} examples was not sent"
            if remaining <= 0:
                raise ProducerTimeout(
                    f"the daemon at {self.endpoint} took no batch within "
                    f"{self.send_timeout} s (its queue is full or it is not running); "
                    f"{not_sent}")
            gone = self._gone()
            if gone is not None:
                raise ProducerTimeout(f"{gone}; {not_sent}, and {self.undelivered} batches "
                                      f"before it are still queued")
            self._socket.poll(int(min(remaining, 0.1) * 1000) + 1, zmq.POLLOUT)
        self._in_flight.append((self.seq + 1, n_rows, tracker))
        self._prune()          # (reads the link's events: keeps the monitor's queue short)
        self.seq += 1
        self.examples_sent += n_rows

    def _gone(self) -> str | None:
        """Why waiting for the daemon is over (no daemon connected for
        ``connect_timeout`` seconds), or None."""
        if self.connect_timeout is None or self._link.down_for() < self.connect_timeout:
            return None
        _, why = self._link.why_not(self.curve)
        return (f"no daemon has been connected at {self.endpoint} for {self.connect_timeout} s "
                f"({why})")

    # -- closing

    def close(self, linger: Any = _CONFIGURED, flush: bool = True) -> None:
        """Send the buffered rows (unless ``flush=False``), then wait while
        the queued batches are delivered: until none was for ``linger``
        seconds (default: the producer's ``linger``; None: no limit), or no
        daemon was connected for ``connect_timeout`` seconds. Raises
        :class:`ProducerTimeout`, saying how many batches were not
        delivered (they are then dropped), if it gave up. Closing twice is
        harmless."""
        if self._closed:
            return
        linger = self.linger if linger is _CONFIGURED else _seconds(linger, "linger")
        try:
            if flush:
                self.flush()
        except BaseException:
            # The daemon takes nothing (or we were interrupted): do not then
            # wait for the queue to drain.
            self._shut()
            raise
        try:
            why = self._drain(linger)
        finally:                    # (interrupted too: nothing left open)
            undelivered = list(self._in_flight)
            self._shut()
        if why is not None:
            rows = sum(n for _, n, _ in undelivered)
            first, last = undelivered[0][0], undelivered[-1][0]
            seqs = f"seq {first}" if first == last else f"seq {first} to {last}"
            raise ProducerTimeout(f"{len(undelivered)} of the {self.seq} batches sent "
                                  f"({seqs}, {rows} examples) were not delivered to "
                                  f"{self.endpoint} and were dropped: {why}")

    def _drain(self, linger: float | None) -> str | None:
        """Wait while batches are delivered; None once all are, else why
        it gave up."""
        idle_since = time.monotonic()
        while True:
            if self._prune():
                idle_since = time.monotonic()
            if not self._in_flight:
                return None
            gone = self._gone()
            if gone is not None:
                return gone
            idle = time.monotonic() - idle_since
            if linger is not None and idle >= linger:
                return (f"the daemon connected there took none of them for {linger} s "
                        f"(busy or stuck?)" if self._link.up else
                        f"none was delivered for {linger} s")
            step = 0.1 if linger is None else min(0.1, linger - idle)
            try:
                self._in_flight[0][2].wait(max(step, 0.001))
            except zmq.NotDone:
                pass

    def _shut(self) -> None:
        """Close the socket, dropping what is still queued (what was handed
        to the connection gets FLUSH_LINGER_MS to be written)."""
        self._closed = True
        self._link.close()
        self._socket.close(linger=0 if self._in_flight else FLUSH_LINGER_MS)
        self._context.term()


# ------------------------------------------------------------------- Client

class Client:
    """Requests to the daemon's request endpoint; one reply per request.

    Every request carries ``v`` and a fresh ``id``; a reply whose ``id`` is
    not the one awaited (left over from an earlier request) is discarded.
    A result reply returns its ``result`` map; an error reply raises
    :class:`DaemonError`. With no reply within ``timeout`` seconds,
    :class:`DaemonTimeout` is raised and the socket is replaced by a new
    one, so the next call starts clean. When no daemon took the
    connection at all, it is a :class:`ConnectTimeout` saying why
    (nothing listens there; the endpoint is a training endpoint, which
    takes no requests; CURVE refused; ...).

    ::

        with Client("tcp://127.0.0.1:5556", timeout=2.0) as client:
            p = client.predict(batch, output="margin", top_k=3)
            p["predictions"], p["contributions"]
            client.stats()["progressive"]["loss"]

    ``predict`` and ``learn`` take an :class:`~onlinel1.batch.Batch` or a
    scipy.sparse matrix (sent columnar) or a list of row maps (sent
    row-wise)::

        client.predict([{"features": {"price": 0.5}, "namespaces": {"u": {"age=30": 1}}}])

    Named models: ``model`` is the daemon's model that every request is
    for (all but ``list``, which is about the daemon as a whole); each
    method's ``model=`` argument overrides it for one call. With neither,
    requests carry no ``model`` field, and the daemon answers for its
    ``default`` model, as before named models. Names are checked here
    (:func:`onlinel1.names.check_model_name`): an invalid one is a
    ``ValueError`` and nothing is sent::

        with Client(model="ctr") as client:
            client.stats()                    # the stats of "ctr"
            client.stats(model="default")     # and of the default model

    :meth:`create`, :meth:`drop`, :meth:`list_models` and :meth:`swap`
    manage the models.

    ``curve_secret_key`` and ``curve_server_key`` (paths, both or neither)
    make the socket a CURVE client of a daemon that uses CURVE: this
    client's secret key file (``onlinel1 keygen``'s ``PATH.key``) and the
    daemon's public key file. A key file that cannot be used is a
    ``ValueError`` (:class:`onlinel1.curve.KeyFileError`) here; a key the
    daemon refuses shows as :class:`DaemonTimeout`.

    A request larger than ``max_message_bytes`` (the daemon's default,
    64 MiB) is not sent: :class:`MessageTooLarge`.
    """

    def __init__(self, endpoint: str = DEFAULT_REQUEST_ENDPOINT, *, timeout: float = 5.0,
                 context: zmq.Context | None = None, model: str | None = None,
                 curve_secret_key: str | os.PathLike[str] | None = None,
                 curve_server_key: str | os.PathLike[str] | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        timeout = _seconds(timeout, "timeout")
        #: The largest request this client sends (bytes).
        self.max_message_bytes = _limit(max_message_bytes)
        if not timeout:
            raise ValueError("timeout must be > 0 seconds")
        #: CURVE socket options (None: CURVE off); a bad key file is a ValueError.
        self._curve = _curve.client_options(curve_secret_key, curve_server_key)
        #: The daemon's model the requests are for (None: the daemon's default).
        self.model = _model(model)
        self.endpoint = endpoint
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._packer = _packer()
        self._socket: zmq.Socket | None = None
        self._open_socket()

    @property
    def curve(self) -> bool:
        """Whether this client speaks CURVE."""
        return self._curve is not None

    def __repr__(self) -> str:
        model = "" if self.model is None else f", model={self.model!r}"
        secured = ", curve" if self._curve is not None else ""
        return f"Client({self.endpoint!r}, timeout={self.timeout}{model}{secured})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._socket is None

    def close(self) -> None:
        """Close the socket; unanswered requests are abandoned."""
        if self._socket is not None:
            self._link.close()
            self._socket.close(linger=0)
            self._socket = None

    def _open_socket(self) -> None:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        _curve.apply_client_options(socket, self._curve)
        link = _link.Link(socket, self.endpoint)
        try:
            _connect(socket, self.endpoint)
        except ValueError:
            link.close()
            raise
        self._socket, self._link = socket, link

    def _timed_out(self) -> DaemonTimeout:
        """The error of a request not answered in time: a ConnectTimeout
        when no daemon even took the connection."""
        if self._link.poll():
            return DaemonTimeout(f"no answer from {self.endpoint} within "
                                 f"{float(self.timeout)} s")
        return _no_daemon(self._link, self.timeout, zmq.DEALER, self._context, self._curve)

    def _recover(self) -> None:
        # A timed-out request may still be answered later; a new socket (a
        # new identity at the daemon's ROUTER) never sees that stale reply.
        self.close()
        self._open_socket()

    # -- operations

    def predict(self, examples: Any, output: str = "auto", top_k: int = 0, *,
                model: str | None = None, names: bool = False) -> dict[str, Any]:
        """``{"predictions": [...]}`` for the examples (plus ``contributions``
        if ``top_k`` > 0: per row, ``[key, w * x]`` pairs); ``output`` is
        ``"auto"``, ``"probability"`` or ``"margin"``.

        ``names=True`` (with ``top_k``) asks the daemon for the names of the
        contributing features it knows (the string features of these rows,
        and those its model learned from rows): each such key in
        ``contributions`` is replaced by its name (``"namespace^name"``, or
        ``"name"`` without a namespace), the others stay keys, and
        ``names`` holds the daemon's ``{key: name}`` map::

            client.predict([{"features": {"price": 0.5}}], top_k=3, names=True)
            # {"predictions": [...], "contributions": [[["price", 0.21]]], "names": {...}}
        """
        fields = _examples(examples, training=False)
        fields["output"] = output
        if top_k:
            fields["top_k"] = int(top_k)
        if names:
            fields["names"] = True
        result = self.request("predict", model=model, **fields)
        if names and "contributions" in result:
            known = result.get("names") or {}
            result["contributions"] = [[[known.get(key, key), value] for key, value in row]
                                       for row in result["contributions"]]
        return result

    def learn(self, examples: Any, *, model: str | None = None) -> dict[str, Any]:
        """Acknowledged training: ``{"examples": n, "loss": ..., "t": ...}``
        once the daemon has learned the examples (labels required)."""
        return self.request("learn", model=model, **_examples(examples, training=True))

    def stats(self, *, model: str | None = None) -> dict[str, Any]:
        """The daemon's counters (docs/protocol.md, ``stats``)."""
        return self.request("stats", model=model)

    def health(self, *, model: str | None = None) -> dict[str, Any]:
        """``{"status": "ok", "mode": ..., "uptime_s": ..., "examples": ...}``."""
        return self.request("health", model=model)

    def config(self, *, model: str | None = None) -> dict[str, Any]:
        """The daemon's learner and daemon settings and its version."""
        return self.request("config", model=model)

    def snapshot(self, *, model: str | None = None, **fields: Any) -> dict[str, Any]:
        """Ask the daemon to write a snapshot of its model now."""
        return self.request("snapshot", model=model, **fields)

    # -- named models

    def create(self, name: str, learner: Mapping[str, Any] | None = None,
               **settings: Any) -> dict[str, Any]:
        """Create the model ``name`` on the daemon, with its own learner
        settings: ``learner`` (a map) and/or keyword arguments, named as the
        fields of :class:`onlinel1.options.LearnerOptions`; the settings not
        given take their defaults. Only the settings given are sent; the
        daemon checks them (``bad_request``). Returns ``{"model": name,
        "learner": {...every setting...}}``; a name already in use is
        :class:`DaemonError` ``model_exists``.

        ::

            client.create("ctr", update="fobos", l1=1e-5)
            client.create("ctr", {"update": "fobos", "l1": 1e-5})
        """
        name = check_model_name(name)
        if learner is not None and not isinstance(learner, Mapping):
            raise TypeError(f"learner must be a map of learner settings, got "
                            f"{type(learner).__name__}")
        merged = dict(learner or {})
        twice = sorted(set(merged) & set(settings))
        if twice:
            raise ValueError(f"{', '.join(twice)}: given both in learner and as a keyword")
        merged.update(settings)
        for key, value in merged.items():
            if not isinstance(key, str):
                raise TypeError(f"learner setting names must be strings, got {key!r}")
            if isinstance(value, np.generic):      # np.int64(3): a plain 3 on the wire
                merged[key] = value.item()
        return self.request("create", model=name, learner=merged)

    def drop(self, name: str) -> dict[str, Any]:
        """Remove the model ``name`` from the daemon: ``{"model": name,
        "examples": t}``; an unknown name is :class:`DaemonError`
        ``unknown_model``."""
        return self.request("drop", model=check_model_name(name))

    def list_models(self) -> list[dict[str, Any]]:
        """The daemon's models, sorted by name: a list of ``{"model": name,
        "update": rule, "loss": loss, "examples": t, "nnz": n}`` maps."""
        models = self.request("list").get("models")
        if not isinstance(models, list):
            raise ClientError(f"malformed reply from {self.endpoint}: list gave no list "
                              f"of models")
        return models

    def swap(self, name: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Replace the weights of the model ``name``, at once, by those of a
        model file or a snapshot (or a snapshot directory's newest).

        ``path`` is read **by the daemon, on the daemon's host**, not here:
        a relative path is made absolute against this process's working
        directory (``os.path.abspath``), which names the right file only
        when the daemon shares this file system; for a remote daemon give
        the path as the daemon's host sees it. Returns ``{"model": name,
        "examples": t, "nnz": n, "path": path}``.
        """
        name = check_model_name(name)
        path = os.fspath(path) if isinstance(path, os.PathLike) else path
        if not isinstance(path, str):
            raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
        if not path:
            raise ValueError("path must not be empty")
        return self.request("swap", model=name, path=os.path.abspath(path))

    def request(self, op: str, /, **fields: Any) -> dict[str, Any]:
        """Send ``{"v": 1, "op": op, "id": <new>, **fields}`` and return the
        reply's ``result`` (or raise :class:`DaemonError` /
        :class:`DaemonTimeout`).

        A ``model`` field is checked as a model name; ``model=None`` (or no
        ``model``) means the client's own ``model``, if it has one (not
        added to ``list``). No ``model`` field is sent otherwise.

        ::

            client.request("predict", rows=[{"features": {"17": 1}}], output="margin")
        """
        if self._socket is None:
            raise ClientError("the client is closed")
        reserved = {"v", "op", "id"} & set(fields)
        if reserved:
            raise ValueError(f"{', '.join(sorted(reserved))}: set by the client, not a field")
        model = fields.pop("model", None)
        if model is None and op not in _DAEMON_WIDE_OPS:
            model = self.model
        request_id = next(self._ids)
        message: dict[str, Any] = {"v": PROTOCOL_VERSION, "op": op, "id": request_id}
        if model is not None:
            message["model"] = check_model_name(model)
        message.update(fields)
        frame = self._packer.pack(message)
        _check_size(frame, self.max_message_bytes, f"the {op} request")
        deadline = time.monotonic() + self.timeout
        socket = self._socket
        self._link.poll()          # keeps the monitor's queue short
        try:
            if not socket.poll(self._ms_until(deadline), zmq.POLLOUT):
                raise zmq.Again()
            socket.send(frame, zmq.NOBLOCK)
            while True:
                if not socket.poll(self._ms_until(deadline), zmq.POLLIN):
                    raise zmq.Again()
                reply = self._decode(socket.recv_multipart(zmq.NOBLOCK)[-1])
                # A reply without an id (or a null one) answers a request the
                # daemon could not read the id of: only ours is in flight on
                # this socket.
                reply_id = reply.get("id")
                if reply_id is not None and reply_id != request_id:
                    continue     # a stale reply: not the one awaited
                break
        except zmq.Again:
            error = self._timed_out()
            self._recover()
            raise error from None
        if reply.get("ok") is True:
            result = reply.get("result", {})
            return result if isinstance(result, dict) else {"result": result}
        error = reply.get("error")
        if reply.get("ok") is False and isinstance(error, dict):
            raise DaemonError(str(error.get("code", "unknown")), str(error.get("message", "")))
        raise ClientError(f"malformed reply from {self.endpoint}: neither a result nor an "
                          f"error: {reply!r:.200}")

    @staticmethod
    def _ms_until(deadline: float) -> int:
        return max(0, math.ceil((deadline - time.monotonic()) * 1000))

    def _decode(self, frame: bytes) -> dict[str, Any]:
        try:
            reply = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ClientError(f"malformed reply from {self.endpoint}: not msgpack ({exc})") \
                from None
        if not isinstance(reply, dict):
            raise ClientError(f"malformed reply from {self.endpoint}: not a map")
        return reply

