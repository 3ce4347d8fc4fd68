"""The example cache of ``onlinel1 train --cache FILE``: the parsed rows of
DATA in a binary file, written while pass 1 reads the text, read back by
the later passes (and by later runs on the same input and settings)
without parsing, in file order or in any order (``--shuffle``), with no
bound of memory: the rows stay in the file, memory-mapped, and the page
cache keeps what fits (Vowpal Wabbit's ``-c``).

The file (little-endian; ``docs/formats.md``, "The example cache"):

* ``OL1CACH1`` (8 bytes);
* the regions, each an array: ``keys`` (uint64, one per feature value),
  ``values`` (float64), ``lengths`` (int64, features per row), ``labels``
  (float64), ``weights`` (float64; absent for svmlight), ``lines``
  (int64: each row's 1-based line in DATA), and the names of string
  features: ``name_keys`` (uint64), ``name_ends`` (int64, the end of each
  name in ``name_bytes``), ``name_bytes`` (UTF-8, surrogateescape);
* a JSON object: ``version``, ``rows``, ``nnz``, ``regions`` (name ->
  ``[offset, bytes]``) and ``identity`` (the input and the settings that
  shape its rows: a cache of other ones is written again);
* the JSON's length (uint64) and ``OL1CACH1`` again.

It is written to ``FILE.<pid>.tmp`` and renamed into place once complete,
so a run that stops midway leaves no cache that looks whole.  In memory:
8 bytes per example (the row offsets), once the file is read back.

>>> import io, os, tempfile
>>> from onlinel1.io import read_batches
>>> path = os.path.join(tempfile.mkdtemp(), "rows.cache")
>>> cache = ExampleCache.create(path, {"data": "x"})
>>> for batch in read_batches(io.BytesIO(b"1 1:1\\n-1 2:1\\n1 3:1\\n"), "svmlight", 2):
...     cache.add(batch)
>>> cache.finish({})
>>> [b.labels.tolist() for b in ExampleCache.open(path, {"data": "x"}).batches(2, [2, 0, 1])]
[[1.0, 1.0], [-1.0]]
"""
from __future__ import annotations

import json
import os
import pathlib
import struct
import tempfile
from typing import Any, BinaryIO, Iterator, Mapping, Sequence

import numpy as np

from onlinel1.io.buffer import take
from onlinel1.io.readers import ReadBatch

__all__ = ["CacheError", "ExampleCache"]

MAGIC = b"OL1CACH1"
VERSION = 1
#: The regions in file order, with their dtypes.
REGIONS = (("keys", "<u8"), ("values", "<f8"), ("lengths", "<i8"), ("labels", "<f8"),
           ("weights", "<f8"), ("lines", "<i8"), ("name_keys", "<u8"), ("name_ends", "<i8"),
           ("name_bytes", "u1"))
_TRAILER = struct.Struct("<Q8s")


class CacheError(Exception):
    """A cache file that cannot be used: not one, damaged, or of another
    input or settings (``reason``: ``format``, ``damaged``, ``other``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ExampleCache:
    """Rows added batch by batch into a cache file (``create``, ``add``,
    ``finish``), or read back from one (``open``): ``n_rows``, ``whole``
    and ``batches`` as :class:`onlinel1.io.buffer.ExampleBuffer` has them."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self.n_rows = 0
        self.nnz = 0
        self._parts: dict[str, BinaryIO] = {}
        self._weights: bool | None = None
        self._whole: ReadBatch | None = None
        self._names: dict[int, str] = {}
        self._identity: Mapping[str, Any] = {}

    # ------------------------------------------------------------ writing

    @classmethod
    def create(cls, path: str | os.PathLike, identity: Mapping[str, Any]) -> "ExampleCache":
        """A new cache for rows of the input ``identity`` describes (it
        replaces ``path`` once ``finish`` is called)."""
        cache = cls(path)
        cache._identity = dict(identity)
        directory = cache.path.parent
        try:
            cache._parts = {name: tempfile.TemporaryFile(dir=directory)
                            for name, _ in REGIONS[:6]}
        except OSError as exc:
            raise CacheError(f"{path}: cannot write the cache here ({exc.strerror or exc})",
                             "format") from None
        return cache

    def add(self, batch: ReadBatch) -> None:
        """Append the rows of ``batch``."""
        weighted = batch.weights is not None
        if self._weights is None:
            self._weights = weighted
        elif self._weights != weighted:
            raise ValueError("every batch of a cache has importance weights, or none")
        arrays = {"keys": batch.keys, "values": batch.values.astype(np.float64, copy=False),
                  "lengths": np.diff(batch.indptr), "labels": batch.labels,
                  "weights": batch.weights, "lines": batch.lines}
        try:
            for name, dtype in REGIONS[:6]:
                if arrays[name] is not None:
                    self._parts[name].write(np.ascontiguousarray(arrays[name], dtype).tobytes())
        except OSError as exc:
            self.discard()
            raise CacheError(f"{self.path}: cannot write the cache ({exc.strerror or exc})",
                             "format") from None
        self.n_rows += batch.n_rows
        self.nnz += batch.nnz

    def finish(self, names: Mapping[int, str] | None) -> None:
        """Write the file (with ``names``, the names of string features
        the rows hold) and put it in place."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        keys = np.fromiter((names or {}).keys(), np.uint64, len(names or {}))
        encoded = [name.encode("utf-8", "surrogateescape") for name in (names or {}).values()]
        extra = {"name_keys": keys.tobytes(),
                 "name_ends": np.cumsum([len(b) for b in encoded], dtype=np.int64).tobytes(),
                 "name_bytes": b"".join(encoded)}
        regions: dict[str, list[int]] = {}
        try:
            with open(tmp, "wb") as out:
                out.write(MAGIC)
                for name, _ in REGIONS:
                    start = out.tell()
                    if name in self._parts:
                        part = self._parts[name]
                        part.seek(0)
                        while chunk := part.read(1 << 22):
                            out.write(chunk)
                    else:
                        out.write(extra[name])
                    regions[name] = [start, out.tell() - start]
                    out.write(b"\0" * (-out.tell() % 8))        # the next region 8-aligned
                meta = json.dumps({"version": VERSION, "rows": self.n_rows, "nnz": self.nnz,
                                   "weights": bool(self._weights), "regions": regions,
                                   "identity": self._identity}, sort_keys=True).encode()
                out.write(meta)
                out.write(_TRAILER.pack(len(meta), MAGIC))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CacheError(f"{self.path}: cannot write the cache ({exc.strerror or exc})",
                             "format") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            for part in self._parts.values():
                part.close()
            self._parts = {}
        self._names = dict(names or {})

    def discard(self) -> None:
        """Drop a cache being written (the input ended in an error)."""
        for part in self._parts.values():
            part.close()
        self._parts = {}

    # ------------------------------------------------------------ reading

    @classmethod
    def open(cls, path: str | os.PathLike, identity: Mapping[str, Any] | None = None
             ) -> "ExampleCache":
        """The cache at ``path``; ``CacheError`` unless it is whole and
        (given ``identity``) of that input and settings."""
        cache = cls(path)
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(len(MAGIC))
                if head != MAGIC or size < len(MAGIC) + _TRAILER.size:
                    raise CacheError(f"{path}: not an onlinel1 example cache", "format")
                f.seek(size - _TRAILER.size)
                length, magic = _TRAILER.unpack(f.read(_TRAILER.size))
                if magic != MAGIC or length > size - len(MAGIC) - _TRAILER.size:
                    raise CacheError(f"{path}: damaged (no end marker)", "damaged")
                f.seek(size - _TRAILER.size - length)
                meta = json.loads(f.read(length))
        except OSError as exc:
            raise CacheError(f"{path}: cannot read it ({exc.strerror or exc})", "format") from None
        except (ValueError, UnicodeDecodeError):
            raise CacheError(f"{path}: damaged (its description is not JSON)", "damaged") from None
        try:
            if meta["version"] != VERSION:
                raise CacheError(f"{path}: a cache of version {meta['version']}, this is "
                                 f"version {VERSION}", "other")
            rows, nnz, regions = int(meta["rows"]), int(meta["nnz"]), meta["regions"]
            arrays = {}
            for name, dtype in REGIONS:
                offset, nbytes = (int(x) for x in regions[name])
                item = np.dtype(dtype).itemsize
                if offset < len(MAGIC) or offset + nbytes > size or nbytes % item:
                    raise CacheError(f"{path}: damaged (region {name})", "damaged")
                arrays[name] = (np.memmap(path, dtype, "r", offset, nbytes // item)
                                if nbytes else np.zeros(0, dtype))
        except (KeyError, TypeError, ValueError):
            raise CacheError(f"{path}: damaged (its description)", "damaged") from None
        expected = {"keys": nnz, "values": nnz, "lengths": rows, "labels": rows, "lines": rows,
                    "weights": rows if meta.get("weights") else 0}
        for name, n in expected.items():
            if arrays[name].size != n:
                raise CacheError(f"{path}: damaged (region {name})", "damaged")
        indptr = np.zeros(rows + 1, np.int64)
        np.cumsum(arrays["lengths"], out=indptr[1:])
        if rows and (indptr[-1] != nnz or (arrays["lengths"] < 0).any()):
            raise CacheError(f"{path}: damaged (row lengths)", "damaged")
        if identity is not None and meta.get("identity") != dict(identity):
            raise CacheError(f"{path}: a cache of another input or settings", "other")
        ends = arrays["name_ends"]
        if ends.size != arrays["name_keys"].size or (ends.size and (
                ends[-1] != arrays["name_bytes"].size or (np.diff(ends) < 0).any())):
            raise CacheError(f"{path}: damaged (names)", "damaged")
        blob = bytes(arrays["name_bytes"])
        starts = [0] + ends[:-1].tolist()
        cache._names = {int(k): blob[a:b].decode("utf-8", "surrogateescape")
                        for k, a, b in zip(arrays["name_keys"].tolist(), starts, ends.tolist())}
        cache._whole = ReadBatch(indptr, arrays["keys"], arrays["values"], arrays["labels"],
                                 arrays["weights"] if meta.get("weights") else None,
                                 arrays["lines"])
        cache.n_rows, cache.nnz, cache._identity = rows, nnz, meta.get("identity", {})
        return cache

    @property
    def names(self) -> dict[int, str]:
        """The names of the string features of the rows."""
        return self._names

    def whole(self) -> ReadBatch:
        """Every row, in input order (arrays mapped from the file)."""
        if self._whole is None:
            self._whole = ExampleCache.open(self.path)._whole
        return self._whole

    def batches(self, batch_size: int, order: Sequence[int] | np.ndarray | None = None
                ) -> Iterator[ReadBatch]:
        """The rows in ``order`` (row indices; None: input order),
        ``batch_size`` at a time, each batch copied out of the file."""
        whole = self.whole()
        n = whole.n_rows if order is None else len(order)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield (take(whole, np.arange(start, stop)) if order is None
                   else take(whole, order[start:stop]))

