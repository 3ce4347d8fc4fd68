"""Model files: a learner's complete state on disk (docs/model-format.md).

One format serves ``train --save``, ``predict --model``, ``inspect`` and
the daemon's snapshots.  Layout::

    magic  b"OL1MODEL"                      8 bytes
    format version (uint32, little-endian)  4 bytes
    header length H (uint32, little-endian) 4 bytes
    header: msgpack map                     H bytes
    arrays: raw little-endian, in header order
    BLAKE2b-256 digest of all bytes above  32 bytes

Writing streams: the header goes first (every array's length is known up
front, the store's row count), then each array one column at a time in
chunks of ``chunk_rows`` rows from the store (``column_chunks``), with the
digest updated as the bytes go out.  Saving a model therefore needs a few
chunks of memory beside the model, not a copy of it; ``encode`` runs the
same writer into memory.

Files are written atomically (temporary file in the same directory, fsync,
rename, fsync of the directory): a reader sees the old file or the new one,
never a torn one.  A load reads the file in chunks into one buffer, placed
so that the arrays are 8-byte aligned, hashing as it reads; it verifies the
digest before it trusts any byte past the fixed prefix, and the arrays it
hands to the store are views of that buffer, not copies.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import io
import os
import pathlib
import struct
import tempfile
from typing import IO, Any, Callable, Iterable, Mapping

import msgpack
import numpy as np

import onlinel1
from onlinel1.learner import STATE_FORMAT, STATE_VERSION, Learner, state_columns

MAGIC = b"OL1MODEL"
FORMAT_VERSION = 1
DIGEST_SIZE = 32
_PREFIX = struct.Struct("<8sII")

#: Rows per chunk when writing: 512 KiB of one column.
CHUNK_ROWS = 1 << 16
#: Bytes per read (and per digest update) when loading.
READ_CHUNK = 1 << 22
#: Buffer of the temporary file: small chunks (names, tests' chunk_rows=1)
#: are gathered into writes of this size.
_WRITE_BUFFER = 1 << 20
#: Names encoded per step when writing the names:* arrays.
_NAMES_CHUNK = 1 << 16


class ModelFileError(ValueError):
    """A model file that cannot be read: not ours, truncated, corrupt or of
    an unsupported version."""


def state_header(learner: Learner) -> dict[str, Any]:
    """What ``learner.state`` holds besides the arrays (options, clocks,
    progress counters, the names of the state columns), without copying
    the store."""
    o = learner.options
    return {"options": o.to_state_dict(),
            "clocks": learner._kernel.get_clocks(),
            "progress": learner.progress_sums,
            "columns": list(state_columns(o))}


def _stamp() -> dict[str, str]:
    """The header's ``written_by`` and ``written_at`` (tests fix them)."""
    return {"written_by": f"onlinel1 {onlinel1.__version__}",
            "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}


@dataclasses.dataclass
class _Array:
    """One array of the file: its header entry and where its chunks come from."""
    name: str
    dtype: np.dtype
    length: int
    chunks: Callable[[], Iterable[np.ndarray]]


def _slices(array: np.ndarray, chunk_rows: int) -> Callable[[], Iterable[np.ndarray]]:
    return lambda: (array[i:i + chunk_rows] for i in range(0, array.size, chunk_rows))


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _name_arrays(store: Any, names: Mapping[int, str], chunk_rows: int) -> list[_Array]:
    """``names:keys``, ``names:offsets`` and ``names:utf8`` for the stored
    keys that have a name.  Memory follows the number of names, not the size
    of the model: the stored keys are matched chunk by chunk against the
    sorted named keys, and the UTF-8 bytes are encoded as they are written."""
    wanted = np.fromiter((k for k in names if 0 <= k < 1 << 64), dtype=np.uint64)
    wanted.sort()
    found = np.zeros(wanted.size, dtype=bool)
    if wanted.size:
        for chunk in store.column_chunks(-1, chunk_rows):
            at = np.searchsorted(wanted, chunk)
            np.minimum(at, wanted.size - 1, out=at)
            found[at[wanted[at] == chunk]] = True
    known = wanted[found]
    del wanted, found
    offsets = np.zeros(known.size + 1, dtype=np.uint64)
    for i in range(0, known.size, _NAMES_CHUNK):
        part = known[i:i + _NAMES_CHUNK].tolist()
        offsets[i + 1:i + 1 + len(part)] = [_utf8_length(names[k]) for k in part]
    np.cumsum(offsets, out=offsets)

    def utf8_chunks() -> Iterable[np.ndarray]:
        for i in range(0, known.size, _NAMES_CHUNK):
            blob = b"".join(names[k].encode("utf-8") for k in known[i:i + _NAMES_CHUNK].tolist())
            yield np.frombuffer(blob, dtype=np.uint8)

    return [_Array("names:keys", np.dtype("<u8"), int(known.size), _slices(known, chunk_rows)),
            _Array("names:offsets", np.dtype("<u8"), int(offsets.size),
                   _slices(offsets, chunk_rows)),
            _Array("names:utf8", np.dtype("|u1"), int(offsets[-1]), utf8_chunks)]


def write(out: IO[bytes], learner: Learner, names: Mapping[int, str] | None = None,
          extra: Mapping[str, Any] | None = None, *, chunk_rows: int = CHUNK_ROWS) -> int:
    """Write the model file of ``learner`` (with feature ``names`` of the
    stored keys and free-form ``extra`` metadata) to the binary stream
    ``out``, ``chunk_rows`` rows of one column at a time; return its size.

    The store must not change meanwhile (a forked child's copy cannot; the
    daemon writes in-process only between batches): an array that comes out
    longer or shorter than the header says raises ``RuntimeError``."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    store = learner._kernel.store
    rows = len(store)
    meta = state_header(learner)
    f8, u8 = np.dtype("<f8"), np.dtype("<u8")
    arrays = [_Array("keys", u8, rows, functools.partial(store.column_chunks, -1, chunk_rows)),
              _Array("weights", f8, rows, functools.partial(store.column_chunks, 0, chunk_rows))]
    arrays += [_Array(f"column:{name}", f8, rows,
                      functools.partial(store.column_chunks, i, chunk_rows))
               for i, name in enumerate(meta["columns"], 1)]
    if names:
        arrays += _name_arrays(store, names, chunk_rows)
    header = {
        "state_format": STATE_FORMAT,
        "state_version": STATE_VERSION,
        "options": meta["options"],
        "clocks": meta["clocks"],
        "progress": meta["progress"],
        "columns": meta["columns"],
        "arrays": [{"name": a.name, "dtype": a.dtype.str, "length": a.length} for a in arrays],
        "extra": dict(extra or {}),
        **_stamp(),
    }
    head = msgpack.packb(header, use_bin_type=True)
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    size = 0

    def emit(data: bytes | memoryview) -> None:
        nonlocal size
        digest.update(data)
        out.write(data)
        size += len(data)

    emit(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)))
    emit(head)
    for array in arrays:
        done = 0
        for chunk in array.chunks():
            chunk = np.ascontiguousarray(chunk, dtype=array.dtype)
            done += chunk.size
            if done > array.length:
                break
            if chunk.size:
                emit(memoryview(chunk).cast("B"))
        if done != array.length:
            raise RuntimeError(f"array {array.name!r}: {'more' if done > array.length else done}"
                               f" entries where the header says {array.length} "
                               f"(the store changed while it was written)")
    out.write(digest.digest())
    return size + DIGEST_SIZE


def encode(learner: Learner, names: Mapping[int, str] | None = None,
           extra: Mapping[str, Any] | None = None, *, chunk_rows: int = CHUNK_ROWS) -> bytes:
    """The bytes of a model file holding ``learner`` (and feature ``names``
    of the stored keys, and free-form ``extra`` metadata): ``write`` into
    memory.  Files should be written with ``save``, which streams."""
    buffer = io.BytesIO()
    write(buffer, learner, names, extra, chunk_rows=chunk_rows)
    return buffer.getvalue()


# --------------------------------------------------------------------- read

def _check_prefix(prefix: bytes | memoryview, size: int, source: str) -> int:
    """The header length, once the magic, the size and the version of a file
    of ``size`` bytes starting with ``prefix`` check out."""
    if bytes(prefix[:len(MAGIC)]) != MAGIC:
        raise ModelFileError(f"{source}: not an onlinel1 model file")
    if size < _PREFIX.size:
        raise ModelFileError(f"{source}: truncated ({size} bytes)")
    _, version, head_len = _PREFIX.unpack_from(prefix)
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{source}: model format version {version} is not supported "
                             f"(this build reads version {FORMAT_VERSION})")
    if size < _PREFIX.size + head_len + DIGEST_SIZE:
        raise ModelFileError(f"{source}: truncated ({size} bytes)")
    return head_len


def _mismatch(source: str) -> ModelFileError:
    return ModelFileError(f"{source}: checksum mismatch: the file is corrupt or truncated")


def _build(data: memoryview, head_len: int, source: str
           ) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """The learner of a whole file whose digest has been verified.  Arrays
    in native byte order are views of ``data`` (``store.load`` copies them
    into the store); none of them outlives this call."""
    body = data[:-DIGEST_SIZE]
    try:
        header = msgpack.unpackb(body[_PREFIX.size:_PREFIX.size + head_len], raw=False)
        offset = _PREFIX.size + head_len
        arrays = {}
        for entry in header["arrays"]:
            dtype = np.dtype(entry["dtype"])
            size = entry["length"] * dtype.itemsize
            if offset + size > len(body):
                raise ModelFileError(f"{source}: array {entry['name']!r} runs past the end")
            array = np.frombuffer(body[offset:offset + size], dtype=dtype)
            if not dtype.isnative:   # a big-endian machine: convert (a copy)
                array = array.astype(dtype.newbyteorder("="))
            arrays[entry["name"]] = array
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
            utf8 = memoryview(arrays["names:utf8"]).cast("B")
            offs = arrays["names:offsets"].tolist()
            names = {k: str(utf8[offs[i]:offs[i + 1]], "utf-8")
                     for i, k in enumerate(arrays["names:keys"].tolist())}
        return learner, names, header.get("extra", {})
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
        # The digest matched, so this is a file written wrongly, not a torn one.
        raise ModelFileError(f"{source}: malformed model file ({exc})") from None


def decode(data: bytes | memoryview, source: str = "model file"
           ) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """``(learner, names, extra)`` from the bytes of a model file."""
    data = memoryview(data).cast("B")
    head_len = _check_prefix(data[:_PREFIX.size], len(data), source)
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    end = len(data) - DIGEST_SIZE
    for start in range(0, end, READ_CHUNK):
        digest.update(data[start:min(end, start + READ_CHUNK)])
    if digest.digest() != bytes(data[end:]):
        raise _mismatch(source)
    return _build(data, head_len, source)


#: A header larger than this is not one ``write`` made (it holds options,
#: clocks and a few array descriptions).
MAX_HEADER_BYTES = 1 << 20


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The header map of the model file at ``path``, read without the
    arrays and *not verified* (the digest covers the whole file): enough to
    recognise a file, never to trust its model.  ``ModelFileError`` if it
    does not start like a model file."""
    source = str(path)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(_PREFIX.size)
        head_len = _check_prefix(prefix, size, source)
        if head_len > MAX_HEADER_BYTES:
            raise ModelFileError(f"{source}: a header of {head_len} bytes is not one onlinel1 "
                                 f"writes")
        raw = f.read(head_len)
    try:
        header = msgpack.unpackb(raw, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ModelFileError(f"{source}: malformed header ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{source}: malformed header (not a map)")
    return header


def load(path: str | os.PathLike) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """``(learner, names, extra)`` from the model file at ``path``.

    The file is read in chunks of ``READ_CHUNK`` bytes into one buffer,
    shifted so that the arrays start 8-byte aligned (then the store takes
    them without a conversion copy), and hashed as it is read."""
    source = str(path)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(_PREFIX.size)
        head_len = _check_prefix(prefix, size, source)
        shift = -(_PREFIX.size + head_len) % 8
        buffer = np.empty(shift + size, dtype=np.uint8)
        data = memoryview(buffer)[shift:]
        data[:len(prefix)] = prefix
        end = size - DIGEST_SIZE
        digest = hashlib.blake2b(prefix, digest_size=DIGEST_SIZE)
        position = len(prefix)
        while position < size:
            got = f.readinto(data[position:min(size, position + READ_CHUNK)])
            if not got:   # shorter than when it was opened
                raise ModelFileError(f"{source}: truncated ({position} bytes)")
            if position < end:
                digest.update(data[position:min(end, position + got)])
            position += got
    if digest.digest() != bytes(data[end:]):
        raise _mismatch(source)
    return _build(data, head_len, source)


# -------------------------------------------------------------------- write

def _write_atomic(path: str | os.PathLike, fill: Callable[[IO[bytes]], Any]) -> None:
    """Run ``fill(f)`` on a temporary file in the directory of ``path``,
    then fsync it, rename it to ``path`` and fsync the directory, so that
    readers never see a partial file.  On any failure the temporary file
    is removed and ``path`` is left as it was."""
    path = pathlib.Path(path)
    directory = path.parent if str(path.parent) else pathlib.Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o644)   # mkstemp's 0600 would hide snapshots from a replica's user
        with os.fdopen(fd, "wb", buffering=_WRITE_BUFFER) as f:
            fill(f)
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


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file:
    temporary file in the same directory, fsync, rename, fsync directory."""
    _write_atomic(path, lambda f: f.write(data))


def save(path: str | os.PathLike, learner: Learner, names: Mapping[int, str] | None = None,
         extra: Mapping[str, Any] | None = None, *, chunk_rows: int = CHUNK_ROWS) -> int:
    """Write ``learner`` to ``path`` atomically, streaming (see ``write``);
    return the file's size."""
    sizes = []
    _write_atomic(path, lambda f: sizes.append(
        write(f, learner, names, extra, chunk_rows=chunk_rows)))
    return sizes[0]
