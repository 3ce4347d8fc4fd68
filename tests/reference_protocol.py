"""The row-wise decoder as it was before ``wire.convert`` (onlinel1 at
15649e5, server/protocol.py): msgpack's C decoder makes the whole message
Python objects, then one Python loop per row and feature.  Kept verbatim
as the oracle of tests/test_limits.py: the new decoder must give the same
batch, the same names and the same error (code and message) for every
message, only in bounded memory.
"""
from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from onlinel1.batch import Batch, BatchError
from onlinel1.io import feature_keys
from onlinel1.server.protocol import (BAD_BATCH, BAD_REQUEST, MALFORMED, MAX_DEPTH,
                                     UNSUPPORTED_VERSION, VERSION, ProtocolError, _nested_deeper)


def unpack(frame: bytes) -> Any:
    """msgpack's C decoder, as the old ``decode_message`` called it."""
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(MALFORMED, f"not valid msgpack ({exc})") from None


def decode_message(frame: bytes) -> dict:
    """The old ``decode_message`` of a message with a top-level ``rows``
    (msgpack's C decoder, whatever the size), then its checks."""
    msg = unpack(frame)
    if not isinstance(msg, dict):
        raise ProtocolError(MALFORMED, f"a message must be a msgpack map, got {type(msg).__name__}")
    if any(_nested_deeper(value, MAX_DEPTH - 1) for key, value in msg.items() if key != "rows"):
        raise ProtocolError(MALFORMED, f"message nested deeper than {MAX_DEPTH} levels")
    version = msg.get("v")
    if version != VERSION:
        raise ProtocolError(UNSUPPORTED_VERSION,
                            f"protocol version {version!r} is not supported (this daemon speaks {VERSION})"
                            if version is not None else "the message has no protocol version 'v'")
    return msg


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


