"""Wire protocol v1 (docs/protocol.md): decoding requests and batches,
encoding replies.

Columnar batches are read in place: the ``bin`` fields of the ``csr`` map
become numpy arrays over the ZeroMQ frame's own memory (``np.frombuffer`` on
a ``memoryview`` slice), with no copy and no loop per example.  msgpack's
own decoder copies every ``bin`` into a new ``bytes``; so messages are walked
by ``_Walker`` below, a small decoder of the msgpack format that returns
``bin`` values as memoryviews.  Row-wise messages, which are Python objects
by nature, go to msgpack's C decoder.
"""
from __future__ import annotations

import struct
from typing import Any, Mapping

import msgpack
import numpy as np

from onlinel1.batch import Batch, BatchError
from onlinel1.io import feature_key, feature_keys
from onlinel1.names import DEFAULT_MODEL, check_model_name

VERSION = 1

# Stable error codes (docs/protocol.md).
MALFORMED = "malformed"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_OP = "unknown_op"
BAD_REQUEST = "bad_request"
BAD_BATCH = "bad_batch"
TOO_LARGE = "too_large"
NUMERIC = "numeric"
READ_ONLY = "read_only"
UNKNOWN_MODEL = "unknown_model"
MODEL_EXISTS = "model_exists"
DUPLICATE = "duplicate"
INTERNAL = "internal"

MAX_DEPTH = 100   # deeper is refused (msgpack's C decoder has its own limit)
#: Messages up to this size go straight to msgpack's C decoder: copying
#: their bin fields costs less than walking them in Python.
SMALL_MESSAGE = 64 * 1024


class ProtocolError(Exception):
    """A message the daemon refuses, with its stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ----------------------------------------------------------------- decoding

class _RowsInside(Exception):
    """Decode this message with msgpack's C code: it is small, or it holds
    row-wise examples."""


_S = struct.Struct
#: Fixed-size msgpack values: first byte -> unpacker of the bytes after it.
_FIXED = {0xCA: _S(">f"), 0xCB: _S(">d"),
          0xCC: _S(">B"), 0xCD: _S(">H"), 0xCE: _S(">I"), 0xCF: _S(">Q"),
          0xD0: _S(">b"), 0xD1: _S(">h"), 0xD2: _S(">i"), 0xD3: _S(">q")}
#: Sized values: first byte -> (unpacker of the length, kind).
_SIZED = {0xC4: (_S(">B"), "bin"), 0xC5: (_S(">H"), "bin"), 0xC6: (_S(">I"), "bin"),
          0xD9: (_S(">B"), "str"), 0xDA: (_S(">H"), "str"), 0xDB: (_S(">I"), "str"),
          0xDC: (_S(">H"), "array"), 0xDD: (_S(">I"), "array"),
          0xDE: (_S(">H"), "map"), 0xDF: (_S(">I"), "map")}
_SIMPLE = {0xC0: None, 0xC2: False, 0xC3: True}


class _Walker:
    """Decode msgpack from a buffer; ``bin`` values come back as memoryview
    slices of that buffer (zero-copy)."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)

    def _take(self, n: int) -> memoryview:
        pos = self.pos
        end = pos + n
        if end > self.end:
            raise ProtocolError(MALFORMED, "message truncated: not valid msgpack")
        self.pos = end
        return self.buf[pos:end]

    def _unpack(self, unpacker: struct.Struct) -> Any:
        pos = self.pos
        end = pos + unpacker.size
        if end > self.end:
            raise ProtocolError(MALFORMED, "message truncated: not valid msgpack")
        self.pos = end
        return unpacker.unpack_from(self.buf, pos)[0]

    def value(self, depth: int = 0, top: bool = False) -> Any:
        if depth > MAX_DEPTH:
            raise ProtocolError(MALFORMED, f"message nested deeper than {MAX_DEPTH} levels")
        pos = self.pos
        if pos >= self.end:
            raise ProtocolError(MALFORMED, "message truncated: not valid msgpack")
        b = self.buf[pos]
        self.pos = pos + 1
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if b <= 0x8F:
            return self._map(b & 0x0F, depth, top)
        if b <= 0x9F:
            return self._array(b & 0x0F, depth)
        if b <= 0xBF:
            return self._str(b & 0x1F)
        fixed = _FIXED.get(b)
        if fixed is not None:
            return self._unpack(fixed)
        sized = _SIZED.get(b)
        if sized is not None:
            n = self._unpack(sized[0])
            kind = sized[1]
            if kind == "bin":
                return self._take(n)
            if kind == "str":
                return self._str(n)
            if kind == "array":
                return self._array(n, depth)
            return self._map(n, depth, top)
        if b in _SIMPLE:
            return _SIMPLE[b]
        raise ProtocolError(MALFORMED, f"byte 0x{b:02x} starts no msgpack type this protocol uses (ext types are not used)")

    def _str(self, n: int) -> str:
        try:
            return str(self._take(n), "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(MALFORMED, "a string is not valid UTF-8") from None

    def _array(self, n: int, depth: int) -> list:
        if n > len(self.buf) - self.pos:
            raise ProtocolError(MALFORMED, "message truncated: not valid msgpack")
        return [self.value(depth + 1) for _ in range(n)]

    def _map(self, n: int, depth: int, top: bool) -> dict:
        if n > len(self.buf) - self.pos:
            raise ProtocolError(MALFORMED, "message truncated: not valid msgpack")
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if type(key) is memoryview:
                # A bin key: bytes, as msgpack's decoder gives it (a view of a
                # writable frame, as zmq.Frame.buffer is, cannot be hashed).
                key = key.tobytes()
            if top and key == "rows":
                raise _RowsInside()
            try:
                out[key] = self.value(depth + 1)
            except TypeError:
                raise ProtocolError(MALFORMED, "a map key is not hashable") from None
        return out


def _nested_deeper(value: Any, levels: int) -> bool:
    """Whether ``value`` holds anything more than ``levels`` levels below
    it (level by level, so no recursion limit applies)."""
    containers = [value] if type(value) in (dict, list) else []
    for _ in range(levels):
        containers = [item for c in containers for item in (c.values() if type(c) is dict else c)
                      if type(item) in (dict, list)]
        if not containers:
            return False
    return any(containers)


def decode_message(frame: Any, max_bytes: int) -> dict:
    """The request map of one frame, or ProtocolError (malformed, too large,
    wrong version)."""
    buf = memoryview(frame)
    if buf.nbytes > max_bytes:
        raise ProtocolError(TOO_LARGE, f"message of {buf.nbytes} bytes is larger than "
                                       f"max_message_bytes ({max_bytes})")
    buf = buf.cast("B") if buf.format != "B" else buf
    try:
        if buf.nbytes <= SMALL_MESSAGE:
            raise _RowsInside()
        walker = _Walker(buf)
        msg = walker.value(top=True)
        if walker.pos != len(buf):
            raise ProtocolError(MALFORMED, f"{len(buf) - walker.pos} bytes after the message")
    except _RowsInside:
        try:
            msg = msgpack.unpackb(buf, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ProtocolError(MALFORMED, f"not valid msgpack ({exc})") from None
    if not isinstance(msg, dict):
        raise ProtocolError(MALFORMED, f"a message must be a msgpack map, got {type(msg).__name__}")
    # msgpack's decoder nests up to 1024 levels, the walker MAX_DEPTH.  Deeper
    # values are refused here too: the repr of a value nested ~1000 deep raises
    # RecursionError, and error messages quote fields (v, op, model, ...).
    # ``rows`` is left to decode_rows, which quotes no value of it (and the
    # walk would cost a tenth of decoding a large row-wise batch).
    if any(_nested_deeper(value, MAX_DEPTH - 1) for key, value in msg.items() if key != "rows"):
        raise ProtocolError(MALFORMED, f"message nested deeper than {MAX_DEPTH} levels")
    version = msg.get("v")
    if version != VERSION:
        raise ProtocolError(UNSUPPORTED_VERSION,
                            f"protocol version {version!r} is not supported (this daemon speaks {VERSION})"
                            if version is not None else "the message has no protocol version 'v'")
    return msg


def model_name(msg: Mapping[str, Any], required: bool = False) -> str:
    """The model a message is for: its ``model`` field, ``default`` when
    absent (unless ``required``)."""
    name = msg.get("model")
    if name is None:
        if required:
            raise ProtocolError(BAD_REQUEST, f"{msg.get('op')!r} needs a 'model' name")
        return DEFAULT_MODEL
    try:
        return check_model_name(name)
    except ValueError as exc:
        raise ProtocolError(BAD_REQUEST, str(exc)) from None


# ------------------------------------------------------------------ batches

_CSR_DTYPES = {"indptr": "<i8", "keys": "<u8", "labels": "<f8", "weights": "<f8"}


def _binary(csr: Mapping[str, Any], name: str, dtype: str) -> np.ndarray | None:
    raw = csr.get(name)
    if raw is None:
        return None
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ProtocolError(BAD_REQUEST, f"csr.{name} must be binary (msgpack bin), "
                                         f"got {type(raw).__name__}")
    itemsize = np.dtype(dtype).itemsize
    if len(raw) % itemsize:
        raise ProtocolError(BAD_BATCH, f"csr.{name} has {len(raw)} bytes, not a multiple of {itemsize}")
    return np.frombuffer(raw, dtype=dtype)


def decode_csr(csr: Any, need_labels: bool) -> Batch:
    if not isinstance(csr, dict):
        raise ProtocolError(BAD_REQUEST, "csr must be a map")
    unknown = set(csr) - {"indptr", "keys", "values", "values_dtype", "labels", "weights"}
    if unknown:
        raise ProtocolError(BAD_REQUEST, f"csr has unknown field(s): {', '.join(map(str, sorted(unknown, key=str)))}")
    values_dtype = csr.get("values_dtype", "float64")
    if values_dtype not in ("float32", "float64"):
        raise ProtocolError(BAD_REQUEST, f"csr.values_dtype must be 'float32' or 'float64', got {values_dtype!r}")
    arrays = {name: _binary(csr, name, dtype) for name, dtype in _CSR_DTYPES.items()}
    arrays["values"] = _binary(csr, "values", "<f4" if values_dtype == "float32" else "<f8")
    for name in ("indptr", "keys", "values"):
        if arrays[name] is None:
            raise ProtocolError(BAD_REQUEST, f"csr.{name} is missing")
    if need_labels and arrays["labels"] is None:
        raise ProtocolError(BAD_BATCH, "csr.labels is missing: training needs labels")
    try:
        return Batch(arrays["indptr"], arrays["keys"], arrays["values"], arrays["labels"],
                     arrays["weights"])
    except BatchError as exc:
        raise ProtocolError(BAD_BATCH, f"csr: {exc}") from None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(BAD_REQUEST, f"{what} must be a number, got {type(value).__name__}")
    return float(value)


def decode_rows(rows: Any, need_labels: bool, names: dict[int, str] | None = None) -> Batch:
    if not isinstance(rows, list):
        raise ProtocolError(BAD_REQUEST, "rows must be an array of examples")
    indptr = [0]
    keys: list[int] = []
    values: list[float] = []
    labels: list[float] = []
    weights: list[float] = []
    strings: dict[tuple[str | None, str], list[int]] = {}   # name -> positions in keys
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ProtocolError(BAD_REQUEST, f"rows[{i}] must be a map")
        unknown = set(row) - {"label", "importance", "features", "namespaces", "tag"}
        if unknown:
            raise ProtocolError(BAD_REQUEST, f"rows[{i}] has unknown field(s): "
                                             f"{', '.join(map(str, sorted(unknown, key=str)))}")
        if not need_labels:
            pass                    # prediction: labels are ignored
        elif "label" in row:
            labels.append(_number(row["label"], f"rows[{i}].label"))
        else:
            raise ProtocolError(BAD_BATCH, f"rows[{i}] has no label: training needs labels")
        weights.append(_number(row.get("importance", 1.0), f"rows[{i}].importance"))
        groups = [(None, row.get("features", {}))]
        namespaces = row.get("namespaces", {})
        if not isinstance(namespaces, dict):
            raise ProtocolError(BAD_REQUEST, f"rows[{i}].namespaces must be a map")
        groups += list(namespaces.items())
        for namespace, features in groups:
            where = f"rows[{i}]." + ("features" if namespace is None else f"namespaces[{namespace!r}]")
            if namespace is not None and not isinstance(namespace, str):
                raise ProtocolError(BAD_REQUEST, f"rows[{i}]: namespace names must be strings")
            if not isinstance(features, dict):
                raise ProtocolError(BAD_REQUEST, f"{where} must be a map of feature -> value")
            for name, value in features.items():
                tn = type(name)
                if tn is int and 0 <= name < 2**64:
                    keys.append(name)
                elif tn is str:
                    strings.setdefault((namespace, name), []).append(len(keys))
                    keys.append(0)
                else:
                    raise ProtocolError(BAD_REQUEST, f"{where}: feature {name!r} must be a string "
                                                     f"or an integer in [0, 2**64)")
                tv = type(value)
                if tv is float:
                    values.append(value)
                elif tv is int:
                    values.append(float(value))
                else:   # the message is built only here, for a value that may be bad
                    values.append(_number(value, f"{where}[{name!r}]"))
        indptr.append(len(keys))
    key_arr = np.array(keys, dtype=np.uint64)
    if strings:
        by_namespace: dict[str | None, list[tuple[str, list[int]]]] = {}
        for (namespace, name), positions in strings.items():
            by_namespace.setdefault(namespace, []).append((name, positions))
        for namespace, items in by_namespace.items():
            hashed = feature_keys([name for name, _ in items], namespace)
            for (name, positions), key in zip(items, hashed):
                key_arr[positions] = key
                if names is not None and int(key) not in names:
                    # The empty namespace is no namespace (io.hashing): no "^".
                    names[int(key)] = f"{namespace}^{name}" if namespace else name
    try:
        return Batch(np.array(indptr, dtype=np.int64), key_arr, np.array(values, dtype=np.float64),
                     np.array(labels, dtype=np.float64) if need_labels else None,
                     np.array(weights, dtype=np.float64) if any(w != 1.0 for w in weights) else None)
    except BatchError as exc:
        raise ProtocolError(BAD_BATCH, f"rows: {exc}") from None


def decode_batch(msg: Mapping[str, Any], need_labels: bool,
                 names: dict[int, str] | None = None) -> Batch:
    """The examples of a train/learn/predict message (``rows`` or ``csr``);
    the names of new string features go into ``names`` if it is a dict."""
    has_rows, has_csr = "rows" in msg, "csr" in msg
    if has_rows == has_csr:
        raise ProtocolError(BAD_REQUEST, "give the examples as exactly one of 'rows' or 'csr'")
    if has_rows:
        return decode_rows(msg["rows"], need_labels, names)
    return decode_csr(msg["csr"], need_labels)


# ------------------------------------------------------------------ replies

def encode_result(request_id: Any, result: Mapping[str, Any]) -> bytes:
    return msgpack.packb({"v": VERSION, "id": request_id, "ok": True, "result": result},
                         use_bin_type=True)


def encode_error(request_id: Any, code: str, message: str) -> bytes:
    return msgpack.packb({"v": VERSION, "id": request_id, "ok": False,
                          "error": {"code": code, "message": message}}, use_bin_type=True)


__all__ = ["VERSION", "ProtocolError", "decode_message", "decode_batch", "decode_csr",
           "decode_rows", "encode_result", "encode_error", "feature_key", "model_name"]
