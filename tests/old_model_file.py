"""The model-file encoder as it was before saves streamed (commit 803a96e),
kept as an independent oracle: it builds the whole file in memory from
``learner.state``.  ``written_by`` and ``written_at`` are parameters so
that its bytes can be compared with a file written now."""
from __future__ import annotations

import hashlib
import struct

import msgpack
import numpy as np

from onlinel1.learner import STATE_FORMAT, STATE_VERSION


def old_encode(learner, names=None, extra=None, *, written_by: str, written_at: str) -> bytes:
    state = learner.state
    arrays = [("keys", state["keys"]), ("weights", state["weights"])]
    arrays += [(f"column:{name}", col) for name, col in state["columns"].items()]
    if names:
        stored = set(state["keys"].tolist())
        known = sorted(k for k in names if k in stored)
        blobs = [names[k].encode("utf-8") for k in known]
        offsets = np.zeros(len(blobs) + 1, dtype=np.uint64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        arrays += [("names:keys", np.asarray(known, dtype=np.uint64)),
                   ("names:offsets", offsets),
                   ("names:utf8", np.frombuffer(b"".join(blobs), dtype=np.uint8))]
    table = []
    for name, arr in arrays:
        arr = np.ascontiguousarray(arr)
        table.append({"name": name, "dtype": arr.dtype.newbyteorder("<").str,
                      "length": int(arr.size)})
    header = {
        "state_format": STATE_FORMAT,
        "state_version": STATE_VERSION,
        "options": state["options"],
        "clocks": state["clocks"],
        "progress": state["progress"],
        "columns": list(state["columns"]),
        "arrays": table,
        "extra": dict(extra or {}),
        "written_by": written_by,
        "written_at": written_at,
    }
    head = msgpack.packb(header, use_bin_type=True)
    parts = [struct.pack("<8sII", b"OL1MODEL", 1, len(head)), head]
    parts += [np.ascontiguousarray(arr, dtype=np.dtype(t["dtype"])).tobytes()
              for (_, arr), t in zip(arrays, table)]
    body = b"".join(parts)
    return body + hashlib.blake2b(body, digest_size=32).digest()


def header_of(data: bytes) -> dict:
    """The msgpack header of a model file's bytes."""
    (length,) = struct.unpack_from("<I", data, 12)
    return msgpack.unpackb(data[16:16 + length], raw=False)
