"""Model files: a learner's complete state on disk (docs/model-format.md).

One format serves ``train --save``, ``predict --model``, ``inspect`` and
the daemon's snapshots.  Layout::

    magic  b"OL1MODEL"                      8 bytes
    format version (uint32, little-endian)  4 bytes
    header length H (uint32, little-endian) 4 bytes
    header: msgpack map                     H bytes
    arrays: raw little-endian, in header order
    BLAKE2b-256 digest of all bytes above  32 bytes

Files are written atomically (temporary file in the same directory, fsync,
rename, fsync of the directory): a reader sees the old file or the new one,
never a torn one.  A load verifies the digest before it trusts any byte.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import pathlib
import struct
import tempfile
from typing import Any, Mapping

import msgpack
import numpy as np

import onlinel1
from onlinel1.learner import STATE_FORMAT, STATE_VERSION, Learner

MAGIC = b"OL1MODEL"
FORMAT_VERSION = 1
DIGEST_SIZE = 32
_PREFIX = struct.Struct("<8sII")


class ModelFileError(ValueError):
    """A model file that cannot be read: not ours, truncated, corrupt or of
    an unsupported version."""


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def encode(learner: Learner, names: Mapping[int, str] | None = None,
           extra: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of a model file holding ``learner`` (and feature ``names``
    of the stored keys, and free-form ``extra`` metadata)."""
    state = learner.state
    arrays: list[tuple[str, np.ndarray]] = [("keys", state["keys"]), ("weights", state["weights"])]
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
        "written_by": f"onlinel1 {onlinel1.__version__}",
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    head = msgpack.packb(header, use_bin_type=True)
    parts = [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)), head]
    parts += [np.ascontiguousarray(arr, dtype=np.dtype(t["dtype"])).tobytes()
              for (_, arr), t in zip(arrays, table)]
    body = b"".join(parts)
    return body + _digest(body)


def decode(data: bytes | memoryview, source: str = "model file"
           ) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """``(learner, names, extra)`` from the bytes of a model file."""
    data = memoryview(data)
    if bytes(data[:len(MAGIC)]) != MAGIC:
        raise ModelFileError(f"{source}: not an onlinel1 model file")
    if len(data) < _PREFIX.size:
        raise ModelFileError(f"{source}: truncated ({len(data)} bytes)")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{source}: model format version {version} is not supported "
                             f"(this build reads version {FORMAT_VERSION})")
    if len(data) < _PREFIX.size + head_len + DIGEST_SIZE:
        raise ModelFileError(f"{source}: truncated ({len(data)} bytes)")
    body, digest = data[:-DIGEST_SIZE], bytes(data[-DIGEST_SIZE:])
    if _digest(body) != digest:
        raise ModelFileError(f"{source}: checksum mismatch: the file is corrupt or truncated")
    try:
        header = msgpack.unpackb(body[_PREFIX.size:_PREFIX.size + head_len], raw=False)
        offset = _PREFIX.size + head_len
        arrays = {}
        for entry in header["arrays"]:
            dtype = np.dtype(entry["dtype"])
            size = entry["length"] * dtype.itemsize
            if offset + size > len(body):
                raise ModelFileError(f"{source}: array {entry['name']!r} runs past the end")
            arrays[entry["name"]] = np.frombuffer(body[offset:offset + size], dtype=dtype) \
                .astype(dtype.newbyteorder("="))
            offset += size
        if offset != len(body):
            raise ModelFileError(f"{source}: {len(body) - offset} unexpected bytes after the arrays")
        state = {
            "format": header["state_format"],
            "version": header["state_version"],
            "options": header["options"],
            "clocks": header["clocks"],
            "progress": header["progress"],
            "keys": arrays["keys"],
            "weights": arrays["weights"],
            "columns": {c: arrays[f"column:{c}"] for c in header["columns"]},
        }
        learner = Learner.from_state(state)
        names: dict[int, str] = {}
        if "names:keys" in arrays:
            blob = arrays["names:utf8"].tobytes()
            offs = arrays["names:offsets"].tolist()
            names = {k: blob[offs[i]:offs[i + 1]].decode("utf-8")
                     for i, k in enumerate(arrays["names:keys"].tolist())}
        return learner, names, header.get("extra", {})
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
        # The digest matched, so this is a file written wrongly, not a torn one.
        raise ModelFileError(f"{source}: malformed model file ({exc})") from None


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file:
    temporary file in the same directory, fsync, rename, fsync directory."""
    path = pathlib.Path(path)
    directory = path.parent if str(path.parent) else pathlib.Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o644)   # mkstemp's 0600 would hide snapshots from a replica's user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(path: str | os.PathLike, learner: Learner, names: Mapping[int, str] | None = None,
         extra: Mapping[str, Any] | None = None) -> int:
    """Write ``learner`` to ``path`` atomically; return the file's size."""
    data = encode(learner, names, extra)
    write_atomic(path, data)
    return len(data)


def load(path: str | os.PathLike) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """``(learner, names, extra)`` from the model file at ``path``."""
    with open(path, "rb") as f:
        data = f.read()
    return decode(data, source=str(path))
