"""Wire protocol v1 (docs/protocol.md): decoding requests and batches,
encoding replies.

Every message is first checked by ``wire.scan`` (onlinel1/_kernels/wire.pyx),
one pass in C that allocates nothing: it is valid msgpack or not, how many
values it holds, and where its top-level ``rows`` value lies.  Then:

* Columnar batches are read in place: the ``bin`` fields of the ``csr``
  map become numpy arrays over the ZeroMQ frame's own memory
  (``np.frombuffer`` on a ``memoryview`` slice), with no copy and no loop
  per example.  msgpack's own decoder copies every ``bin`` into a new
  ``bytes``; so large messages are walked by ``_Walker`` below, a small
  decoder of the msgpack format that returns ``bin`` values as
  memoryviews; small ones go to msgpack's C decoder.
* A row-wise batch is never made into Python objects: the message's other
  fields are decoded by msgpack, and ``rows`` stays a ``Rows`` span of the
  frame that ``decode_rows`` reads straight into typed arrays (``wire.convert``).
  Its memory is bounded by the documented multiple of its size
  (docs/protocol.md, "Limits"), its time is linear.
* Outside ``rows`` a message holds at most ``MAX_VALUES`` values (each
  becomes a Python object): a message of a million empty maps is refused
  before it is built.
"""
from __future__ import annotations

import struct
from typing import Any, Mapping

import msgpack
import numpy as np

from onlinel1._kernels import wire
from onlinel1._kernels.parse import INTERACTIONS_BATCH_NNZ
from onlinel1.batch import Batch, BatchError
from onlinel1.io import feature_key
from onlinel1.io.interactions import InteractionLimitError, cross_arrays
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
#: Values a message may hold outside ``rows`` (a ``bin`` is one value):
#: each is a Python object.  A message of SMALL_MESSAGE bytes or less holds
#: no more (every value is at least a byte), a ``csr`` batch about twenty.
MAX_VALUES = 64 * 1024
#: An error naming a row's unknown fields reads at most this many of its keys.
MAX_QUOTED_KEYS = 1024


class ProtocolError(Exception):
    """A message the daemon refuses, with its stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ----------------------------------------------------------------- decoding

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

    def value(self, depth: int = 0) -> Any:
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
            return self._map(b & 0x0F, depth)
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
            return self._map(n, depth)
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

    def _map(self, n: int, depth: int) -> dict:
        if n > len(self.buf) - self.pos:
            raise ProtocolError(MALFORMED, "message truncated: not valid msgpack")
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if type(key) is memoryview:
                # A bin key: bytes, as msgpack's decoder gives it (a view of a
                # writable frame, as zmq.Frame.buffer is, cannot be hashed).
                key = key.tobytes()
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


class Rows:
    """A message's ``rows`` value, checked (``wire.scan``) but not decoded:
    ``buf[start:end]`` of the frame, ``items`` rows if it is an array, at
    most ``entries`` map entries inside.  ``decode_rows`` reads it."""

    __slots__ = ("buf", "start", "end", "items", "entries")

    def __init__(self, buf: memoryview, start: int, end: int, items: int, entries: int) -> None:
        self.buf, self.start, self.end = buf, start, end
        self.items, self.entries = items, entries

    @classmethod
    def of(cls, rows: Any) -> "Rows":
        """The Rows of a Python value (as if a client had sent it)."""
        frame = memoryview(msgpack.packb({"rows": rows}, use_bin_type=True))
        scan = wire.scan(frame)
        return cls(frame, scan["rows_start"], scan["rows_end"], scan["rows_items"],
                   scan["rows_entries"])

    def __repr__(self) -> str:
        return f"Rows(items={self.items}, bytes={self.end - self.start})"


def _unpack(data: Any) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(MALFORMED, f"not valid msgpack ({exc})") from None


def _map_header(n: int) -> bytes:
    """msgpack's header of a map of ``n`` entries (a Packer allocates a
    buffer of its own, too much for one header)."""
    if n < 16:
        return bytes((0x80 | n,))
    return (b"\xde" + n.to_bytes(2, "big")) if n < 65536 else (b"\xdf" + n.to_bytes(4, "big"))


def _with_rows(buf: memoryview, scan: dict) -> dict:
    """The map of a message with a top-level ``rows``: its other fields as
    msgpack decodes them, ``rows`` as a ``Rows``."""
    if scan["error"]:
        raise ProtocolError(MALFORMED, f"not valid msgpack ({wire.SCAN_ERRORS[scan['error']]}, "
                                       f"at byte {scan['error_pos']})")
    if scan["rows_keys"] == 1:
        # The other entries are the bytes before the "rows" key and after its value.
        rest = b"".join((_map_header(scan["top_entries"] - 1),
                         buf[scan["top_first"]:scan["rows_key_start"]], buf[scan["rows_end"]:]))
    else:                   # "rows" more than once: the last one counts, as in a dict
        spans, _ = wire.map_entries(buf, 0, scan["top_entries"])
        kept = [buf[k:end] for k, key_end, end in spans if _unpack(buf[k:key_end]) != "rows"]
        rest = b"".join([_map_header(len(kept))] + kept)
    msg = _unpack(rest)
    msg["rows"] = Rows(buf, scan["rows_start"], scan["rows_end"], scan["rows_items"],
                       scan["rows_entries"])
    return msg


def decode_message(frame: Any, max_bytes: int) -> dict:
    """The request map of one frame, or ProtocolError (malformed, too large,
    wrong version)."""
    buf = memoryview(frame)
    if buf.nbytes > max_bytes:
        raise ProtocolError(TOO_LARGE, f"message of {buf.nbytes} bytes is larger than "
                                       f"max_message_bytes ({max_bytes})")
    buf = buf.cast("B") if buf.format != "B" else buf
    scan = wire.scan(buf)
    if scan["outside_values"] > MAX_VALUES:
        raise ProtocolError(TOO_LARGE, f"the message holds more than {MAX_VALUES} values "
                                       f"outside 'rows' (each becomes an object): send examples "
                                       f"as 'rows' or 'csr', not in other fields")
    if scan["rows_start"] >= 0:
        msg = _with_rows(buf, scan)
    elif buf.nbytes <= SMALL_MESSAGE:
        msg = _unpack(buf)
    else:
        walker = _Walker(buf)
        msg = walker.value()
        if walker.pos != len(buf):
            raise ProtocolError(MALFORMED, f"{len(buf) - walker.pos} bytes after the message")
    if not isinstance(msg, dict):
        raise ProtocolError(MALFORMED, f"a message must be a msgpack map, got {type(msg).__name__}")
    # msgpack's decoder nests up to 1024 levels, the walker MAX_DEPTH.  Deeper
    # values are refused here too: the repr of a value nested ~1000 deep raises
    # RecursionError, and error messages quote fields (v, op, model, ...).
    # ``rows`` is left to decode_rows, which quotes no value of it.
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


#: Python's name of each msgpack type, by its first byte (what an error
#: reply says a wrong value is; ext -1 is a ``Timestamp``, see _type_name).
_TYPE_NAMES = (["int"] * 0x80 + ["dict"] * 0x10 + ["list"] * 0x10 + ["str"] * 0x20
               + ["NoneType", "?", "bool", "bool", "bytes", "bytes", "bytes",
                  "ExtType", "ExtType", "ExtType", "float", "float"] + ["int"] * 8
               + ["ExtType"] * 5 + ["str"] * 3 + ["list", "list", "dict", "dict"]
               + ["int"] * 0x20)
#: Where an ext value's type code is, after its first byte.
_EXT_CODE_AT = {0xC7: 2, 0xC8: 3, 0xC9: 5, 0xD4: 1, 0xD5: 1, 0xD6: 1, 0xD7: 1, 0xD8: 1}


def _type_name(buf: memoryview, pos: int) -> str:
    """The Python type name of the (checked) msgpack value at ``pos``,
    without decoding it (it may be large)."""
    first = buf[pos]
    at = _EXT_CODE_AT.get(first)
    if at is not None and buf[pos + at] == 0xFF:
        return "Timestamp"
    return _TYPE_NAMES[first]


def _value_at(buf: memoryview, pos: int) -> Any:
    """The (checked) msgpack value at ``pos`` as msgpack decodes it (used
    for map keys, which are scalars)."""
    return msgpack.unpackb(buf[pos:wire.value_end(buf, pos)], raw=False, strict_map_key=False)


def _unknown_fields(buf: memoryview, row_at: int) -> str:
    """The unknown fields of the row map at ``row_at``, as an error names
    them (the distinct ones among its first MAX_QUOTED_KEYS keys)."""
    spans, n = wire.map_entries(buf, row_at, MAX_QUOTED_KEYS)
    keys = {_value_at(buf, start) for start, _, _ in spans}
    unknown = keys - _ROW_FIELDS
    more = f" (of its first {MAX_QUOTED_KEYS} keys; it has {n})" if n > MAX_QUOTED_KEYS else ""
    return ", ".join(map(str, sorted(unknown, key=str))) + more


_ROW_FIELDS = frozenset({"label", "importance", "features", "namespaces", "tag"})
_E = wire.ROW_ERRORS


def _row_error(buf: memoryview, error: int, row: int, a: int, b: int, c: int) -> ProtocolError:
    """The error reply of the first wrong row that ``wire.convert`` found:
    ``a``, ``b`` and ``c`` are positions in ``buf`` as each case reads."""
    def where(namespace_at: int) -> str:
        return f"rows[{row}]." + ("features" if namespace_at < 0 else
                                  f"namespaces[{_value_at(buf, namespace_at)!r}]")
    if error == _E["ROW_NOT_ARRAY"]:
        return ProtocolError(BAD_REQUEST, "rows must be an array of examples")
    if error == _E["ROW_NOT_MAP"]:
        return ProtocolError(BAD_REQUEST, f"rows[{row}] must be a map")
    if error == _E["ROW_UNKNOWN_FIELD"]:            # a: the row
        return ProtocolError(BAD_REQUEST, f"rows[{row}] has unknown field(s): "
                                          f"{_unknown_fields(buf, a)}")
    if error == _E["ROW_NO_LABEL"]:
        return ProtocolError(BAD_BATCH, f"rows[{row}] has no label: training needs labels")
    if error in (_E["ROW_LABEL"], _E["ROW_IMPORTANCE"]):     # a: the value
        field = "label" if error == _E["ROW_LABEL"] else "importance"
        return ProtocolError(BAD_REQUEST, f"rows[{row}].{field} must be a number, "
                                          f"got {_type_name(buf, a)}")
    if error == _E["ROW_NAMESPACES_NOT_MAP"]:
        return ProtocolError(BAD_REQUEST, f"rows[{row}].namespaces must be a map")
    if error == _E["ROW_NAMESPACE_NAME"]:
        return ProtocolError(BAD_REQUEST, f"rows[{row}]: namespace names must be strings")
    if error == _E["ROW_GROUP_NOT_MAP"]:            # a: the namespace key, or -1
        return ProtocolError(BAD_REQUEST, f"{where(a)} must be a map of feature -> value")
    if error == _E["ROW_FEATURE_NAME"]:             # a: namespace key, b: feature key
        return ProtocolError(BAD_REQUEST, f"{where(a)}: feature {_value_at(buf, b)!r} must be a "
                                          f"string or an integer in [0, 2**64)")
    if error == _E["ROW_FEATURE_VALUE"]:            # ... c: its value
        return ProtocolError(BAD_REQUEST, f"{where(a)}[{_value_at(buf, b)!r}] must be a number, "
                                          f"got {_type_name(buf, c)}")
    return ProtocolError(INTERNAL, f"rows[{row}]: unknown decoding error {error}")


def _record_names(rows: Rows, keys: np.ndarray, name_pos: np.ndarray, namespace_pos: np.ndarray,
                  names: dict[int, str]) -> None:
    """Name the string features whose keys ``names`` does not hold yet
    (the first occurrence in the batch names a key)."""
    spelled = np.flatnonzero(name_pos >= 0)
    if not spelled.size:
        return
    unique, first = np.unique(keys[spelled], return_index=True)
    for key, at in zip(unique.tolist(), spelled[first].tolist()):
        if key in names:
            continue
        name = _value_at(rows.buf, int(name_pos[at]))
        ns_at = int(namespace_pos[at])
        # The empty namespace is no namespace (io.hashing): no "^".
        names[key] = f"{_value_at(rows.buf, ns_at)}^{name}" if ns_at >= 0 else name


#: A row-wise batch crossed with a model's interactions holds at most this
#: many features (own and crossed, 16 bytes each: 512 MiB), the VW reader's
#: bound of a batch with interactions (docs/formats.md, "Interactions").
MAX_CROSSED_NNZ = INTERACTIONS_BATCH_NNZ


def decode_rows(rows: Any, need_labels: bool, names: dict[int, str] | None = None,
                max_rows: int | None = None, options: Any = None) -> Batch:
    """The Batch of a ``rows`` value (a ``Rows`` of a message, or a Python
    list of row maps), read straight into arrays; the names of new string
    features go into ``names`` if it is a dict.

    With learner ``options``, the rows read as that model reads them: its
    ``namespaced_integers`` (the keys of integer names in a named
    namespace) and its ``interactions``, applied to the rows' namespaces
    as the VW reader applies them to a line's (docs/formats.md,
    "Interactions"; docs/protocol.md, "Interactions").  The wire decoder
    gives each feature's namespace id in the same pass; crossing is one
    compiled loop (cross_arrays), bounded per row (MAX_CROSSED_PER_ROW)
    and per batch (MAX_CROSSED_NNZ), both counted before anything is
    allocated: beyond, ``bad_batch``."""
    if isinstance(rows, list):
        rows = Rows.of(rows)
    if not isinstance(rows, Rows):
        raise ProtocolError(BAD_REQUEST, "rows must be an array of examples")
    if max_rows is not None and rows.items > max_rows:
        raise ProtocolError(TOO_LARGE, f"the batch has {rows.items} rows, more than "
                                       f"max_request_rows ({max_rows})")
    interactions = options.interactions if options is not None else ()
    namespaced = bool(options is not None and options.namespaced_integers)
    out = wire.convert(rows.buf, rows.start, rows.end, rows.entries, need_labels,
                       names is not None, bool(interactions), namespaced)
    if out[0]:
        raise _row_error(rows.buf, *out)
    indptr, keys, values, labels, weights, name_pos, namespace_pos = out[1:8]
    if names is not None:
        _record_names(rows, keys, name_pos, namespace_pos, names)
    if interactions:
        try:
            indptr, keys, values = cross_arrays(indptr, keys, values, out[8], interactions,
                                                max_nnz=MAX_CROSSED_NNZ)
        except InteractionLimitError as exc:
            where = "the batch" if exc.row is None else f"rows[{exc.row}]"
            raise ProtocolError(BAD_BATCH,
                                f"{where}: the model's interactions "
                                f"({','.join(interactions)}) would give {exc.count} "
                                f"features or more, more than {exc.limit}: send fewer rows "
                                f"at a time") from None
    try:
        return Batch(indptr, keys, values, labels, weights)
    except BatchError as exc:
        raise ProtocolError(BAD_BATCH, f"rows: {exc}") from None


def decode_batch(msg: Mapping[str, Any], need_labels: bool,
                 names: dict[int, str] | None = None, max_rows: int | None = None,
                 options: Any = None) -> Batch:
    """The examples of a train/learn/predict message (``rows`` or ``csr``);
    the names of new string features go into ``names`` if it is a dict.
    A batch of more than ``max_rows`` rows is ``too_large``, refused before
    a row-wise one is decoded.  ``options``: those of the model, for
    ``decode_rows`` (a columnar batch carries no namespaces: producers
    send it crossed)."""
    has_rows, has_csr = "rows" in msg, "csr" in msg
    if has_rows == has_csr:
        raise ProtocolError(BAD_REQUEST, "give the examples as exactly one of 'rows' or 'csr'")
    if has_rows:
        return decode_rows(msg["rows"], need_labels, names, max_rows, options)
    batch = decode_csr(msg["csr"], need_labels)
    if max_rows is not None and batch.n_rows > max_rows:
        raise ProtocolError(TOO_LARGE, f"the batch has {batch.n_rows} rows, more than "
                                       f"max_request_rows ({max_rows})")
    return batch


# ------------------------------------------------------------------ replies

class Packed:
    """A value of a result already encoded as msgpack (``data``): large
    parts of a reply written straight from arrays (wire.pack_floats,
    wire.pack_contributions), spliced in as they are."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def encode_result(request_id: Any, result: Mapping[str, Any]) -> bytes:
    """The reply of a result; ``Packed`` values are spliced in, so the bytes
    are those of ``packb`` of the decoded values."""
    if not any(type(value) is Packed for value in result.values()):
        return msgpack.packb({"v": VERSION, "id": request_id, "ok": True, "result": result},
                             use_bin_type=True)
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(4), packer.pack("v"), packer.pack(VERSION),
             packer.pack("id"), packer.pack(request_id), packer.pack("ok"), packer.pack(True),
             packer.pack("result"), packer.pack_map_header(len(result))]
    for key, value in result.items():
        parts.append(packer.pack(key))
        parts.append(value.data if type(value) is Packed else packer.pack(value))
    return b"".join(parts)


def encode_error(request_id: Any, code: str, message: str) -> bytes:
    return msgpack.packb({"v": VERSION, "id": request_id, "ok": False,
                          "error": {"code": code, "message": message}}, use_bin_type=True)


__all__ = ["VERSION", "Packed", "ProtocolError", "Rows", "decode_message", "decode_batch",
           "decode_csr", "decode_rows", "encode_result", "encode_error", "feature_key",
           "model_name"]
