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
import math
import os
import pathlib
import struct
import tempfile
from typing import IO, Any, Callable, Iterable, Mapping

import msgpack
import numpy as np

import onlinel1
from onlinel1.learner import CLOCK_COLUMN, STATE_FORMAT, STATE_VERSION, Learner, state_columns

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


#: How feature names are stored in names:utf8: UTF-8, with the bytes of a
#: data file that are not UTF-8 kept as they are (the readers decode names
#: with surrogateescape, and onlinel1.io.hashing hashes them so).
_NAME_ERRORS = "surrogateescape"


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", _NAME_ERRORS))


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
            blob = b"".join(names[k].encode("utf-8", _NAME_ERRORS)
                            for k in known[i:i + _NAMES_CHUNK].tolist())
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
    # A model file holds no rows: an incomplete mini-batch is learned first
    # (Learner.flush; docs/algorithms.md, "Mini-batches").
    learner.flush()
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


#: The dtype each array of the format must have (either byte order: a
#: reader honours the one the header gives).
_ARRAY_KINDS = {"keys": "u8", "weights": "f8", "names:keys": "u8", "names:offsets": "u8",
                "names:utf8": "u1"}
_CLOCKS = ("t", "scale", "intercept", "clock", "clock_scale", "last_compact_t")
#: The clocks a model with a memory budget or expiry adds (docs/model-format.md).
_BUDGET_CLOCKS = ("evicted", "expired")
_PROGRESS = ("examples", "weight_sum", "loss_sum", "correct")
#: The largest example count a file may give: the kernel counts on in an
#: int64, and this leaves it room to (no stream is 2**62 examples long).
_MAX_COUNT = 2**62
#: Rows of an array checked for finiteness at a time.
_CHECK_ROWS = 1 << 16


def _integer(value: Any, what: str, low: int, high: int = _MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _finite(value: Any, what: str, positive: bool = False, non_negative: bool = False) -> float:
    """``value``, a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if (positive and not value > 0) or (non_negative and not value >= 0):
        raise ValueError(f"{what} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def _entry(entry: Any) -> tuple[str, np.dtype, int]:
    """``(name, dtype, length)`` of one ``arrays`` entry of a header."""
    if not isinstance(entry, dict):
        raise ValueError(f"an arrays entry must be a map, got {entry!r}")
    name, dtype, length = entry.get("name"), entry.get("dtype"), entry.get("length")
    if not isinstance(name, str):
        raise ValueError(f"an array name must be a string, got {name!r}")
    kind = _ARRAY_KINDS.get(name, "f8" if name.startswith("column:") else None)
    allowed = {"u8": ("<u8", ">u8"), "f8": ("<f8", ">f8"), "u1": ("|u1",),
               None: ("<u8", ">u8", "<f8", ">f8", "|u1")}[kind]
    if dtype not in allowed:
        raise ValueError(f"array {name!r} must have dtype {' or '.join(allowed)}, got {dtype!r}")
    return name, np.dtype(dtype), _integer(length, f"array {name!r}: length", 0)


def _check_snapshot(snapshot: Any) -> None:
    """The fields of ``extra.snapshot`` that are there, as
    docs/snapshot-format.md gives them (a daemon resuming reads
    ``producers``, ``inspect`` all four)."""
    if not isinstance(snapshot, dict):
        raise ValueError(f"extra.snapshot must be a map, got {snapshot!r}")
    if "seq" in snapshot:
        _integer(snapshot["seq"], "extra.snapshot.seq", 0)
    if "reason" in snapshot and not isinstance(snapshot["reason"], str):
        raise ValueError(f"extra.snapshot.reason must be a string, got {snapshot['reason']!r}")
    if "unix_time" in snapshot:
        # A time a clock gives (time.gmtime takes it): 1970 to the year 36812.
        when = _finite(snapshot["unix_time"], "extra.snapshot.unix_time", non_negative=True)
        if when > 2**40:
            raise ValueError(f"extra.snapshot.unix_time must be at most 2**40, got {when!r}")
    producers = snapshot.get("producers", {})
    if not isinstance(producers, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in producers.items()):
        raise ValueError(f"extra.snapshot.producers must map names to sequence numbers, "
                         f"got {producers!r}")


def _check_state(header: dict, arrays: dict[str, np.ndarray]) -> None:
    """What the digest cannot vouch for: clocks, counters and arrays that a
    learner could have written (sizes, ranges, finiteness)."""
    clocks, progress = header["clocks"], header["progress"]
    budgeted = isinstance(clocks, dict) and any(name in clocks for name in _BUDGET_CLOCKS)
    for what, given, wanted in (("clocks", clocks, _CLOCKS + _BUDGET_CLOCKS * budgeted),
                                ("progress", progress, _PROGRESS)):
        if not isinstance(given, dict) or sorted(given) != sorted(wanted):
            raise ValueError(f"{what} must be a map of {', '.join(wanted)}, got {given!r}")
    t = _integer(clocks["t"], "clocks.t", 0)
    for name in _BUDGET_CLOCKS * budgeted:
        _integer(clocks[name], f"clocks.{name}", 0)
    _integer(clocks["last_compact_t"], "clocks.last_compact_t", 0, t)
    for name in ("scale", "clock_scale"):
        _finite(clocks[name], f"clocks.{name}", positive=True)
    _finite(clocks["intercept"], "clocks.intercept")
    # The rule's clock is a running sum, like the state columns it is read
    # against: it may saturate at +-inf (cumulative L1 with l1 * eta0 beyond
    # the doubles) but not be NaN.
    if isinstance(clocks["clock"], bool) or not isinstance(clocks["clock"], (int, float)) \
            or math.isnan(clocks["clock"]):
        raise ValueError(f"clocks.clock must be a number, got {clocks['clock']!r}")
    examples = _integer(progress["examples"], "progress.examples", 0)
    _integer(progress["correct"], "progress.correct", 0, examples)
    for name in ("weight_sum", "loss_sum"):
        # Statistics that learning never reads, so not checked for finiteness:
        # the kernels' sums overflow to inf (a squared loss of 1e300), and reach
        # NaN (importance 0 times an infinite loss).  A negative sum is impossible.
        value = progress[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"progress.{name} must be a number >= 0, got {value!r}")
    columns = header["columns"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) \
            or len(set(columns)) != len(columns):
        raise ValueError(f"columns must be a list of distinct names, got {columns!r}")
    extra = header.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"extra must be a map, got {extra!r}")
    if "snapshot" in extra:
        _check_snapshot(extra["snapshot"])
    # Weights must be finite (an infinite one makes every margin it enters
    # infinite); a rule's state column may saturate at +-inf (AdaGrad's and
    # FTRL's sums of squared gradients do) but NaN is never a state.
    n = arrays["keys"].size
    for name in ["weights"] + [f"column:{c}" for c in columns]:
        array = arrays[name]
        if array.size != n:
            raise ValueError(f"array {name!r} has {array.size} entries for {n} keys")
        test = np.isfinite if name == "weights" else lambda part: ~np.isnan(part)
        for start in range(0, n, _CHECK_ROWS):    # a chunk at a time: little memory
            good = test(array[start:start + _CHECK_ROWS])
            if not good.all():
                row = start + int(np.argmin(good))
                raise ValueError(f"array {name!r}: {array[row]} at row {row}")
    if f"column:{CLOCK_COLUMN}" in arrays:
        # The example count of each feature's last update: 0 to t, whole.
        clock = arrays[f"column:{CLOCK_COLUMN}"]
        for start in range(0, n, _CHECK_ROWS):
            part = clock[start:start + _CHECK_ROWS]
            good = (part >= 0) & (part <= t) & (part == np.floor(part))
            if not good.all():
                row = start + int(np.argmin(good))
                raise ValueError(f"array 'column:{CLOCK_COLUMN}': {part[row - start]} at row "
                                 f"{row} (an example count from 0 to t = {t})")
    named = [name for name in ("names:keys", "names:offsets", "names:utf8") if name in arrays]
    if named:
        if len(named) != 3:
            raise ValueError(f"names need names:keys, names:offsets and names:utf8, "
                             f"got only {', '.join(named)}")
        offsets = arrays["names:offsets"]
        if offsets.size != arrays["names:keys"].size + 1 or offsets[0] != 0 \
                or np.any(offsets[1:] < offsets[:-1]) or offsets[-1] != arrays["names:utf8"].size:
            raise ValueError("names:offsets must be len(names:keys) + 1 non-decreasing offsets "
                             "from 0 to the end of names:utf8")


def _build(data: memoryview, head_len: int, source: str
           ) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """The learner of a whole file whose digest has been verified.  Arrays
    in native byte order are views of ``data`` (``store.load`` copies them
    into the store); none of them outlives this call.

    The digest only says the file is as it was written; what was written is
    checked too (``_entry``, ``_check_state``: sizes, dtypes, clocks,
    finiteness), so a file no learner could have written is refused here
    instead of loading a learner that fails on first use."""
    body = data[:-DIGEST_SIZE]
    try:
        header = msgpack.unpackb(body[_PREFIX.size:_PREFIX.size + head_len], raw=False)
        if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
            raise ValueError("the header must be a map with a list of arrays")
        offset = _PREFIX.size + head_len
        arrays = {}
        for entry in header["arrays"]:
            name, dtype, length = _entry(entry)
            if name in arrays:
                raise ValueError(f"array {name!r} is given twice")
            size = length * dtype.itemsize
            if offset + size > len(body):
                raise ModelFileError(f"{source}: array {name!r} runs past the end")
            array = np.frombuffer(body[offset:offset + size], dtype=dtype)
            if not dtype.isnative:   # a big-endian machine: convert (a copy)
                array = array.astype(dtype.newbyteorder("="))
            arrays[name] = array
            offset += size
        if offset != len(body):
            raise ModelFileError(f"{source}: {len(body) - offset} unexpected bytes after the arrays")
        _check_state(header, arrays)
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
        if not isinstance(state["options"], dict):
            raise ValueError(f"options must be a map, got {state['options']!r}")
        learner = Learner.from_state(state)
        names: dict[int, str] = {}
        if "names:keys" in arrays:
            utf8 = memoryview(arrays["names:utf8"]).cast("B")
            offs = arrays["names:offsets"].tolist()
            names = {k: str(utf8[offs[i]:offs[i + 1]], "utf-8", _NAME_ERRORS)
                     for i, k in enumerate(arrays["names:keys"].tolist())}
        return learner, names, header.get("extra", {})
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, msgpack.UnpackException) as exc:
        # The digest matched, so this is a file written wrongly, not a torn one.
        # OverflowError: a number too large for the kernel's C types (an option
        # such as truncate_every = 2**64 - 1, which LearnerOptions lets through).
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


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Check the digest of the model file at ``path`` reading it in chunks
    (no model is built, memory stays at one chunk); its header.
    ``ModelFileError`` if it is not whole and intact."""
    source = str(path)
    header = read_header(path)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        end = size - DIGEST_SIZE
        digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
        position = 0
        while position < end:
            chunk = f.read(min(READ_CHUNK, end - position))
            if not chunk:
                raise ModelFileError(f"{source}: truncated ({position} bytes)")
            digest.update(chunk)
            position += len(chunk)
        if digest.digest() != f.read(DIGEST_SIZE):
            raise _mismatch(source)
    return header


def load(path: str | os.PathLike) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """``(learner, names, extra)`` from the model file at ``path``.  A
    cluster snapshot's manifest (docs/snapshot-format.md, "Cluster
    snapshots") loads as the whole model: its shard files, each verified,
    merged into one learner."""
    learner, names, extra = load_file(path)
    if isinstance(extra.get("cluster"), dict):
        from onlinel1.cluster import manifest
        return manifest.merge(path, learner, extra, source=str(path))
    return learner, names, extra


def load_file(path: str | os.PathLike) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """``load`` of the one file at ``path`` (a manifest as itself).

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
