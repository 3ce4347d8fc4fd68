"""Streaming readers: svmlight/libsvm and Vowpal Wabbit text into Batches.

One reader per format, one entry point::

    for batch in read_batches("train.svm.gz", "svmlight", batch_size=8192):
        learner.learn(batch)

The file is read in large blocks (``block_size``, 1 MiB by default); the
compiled parser (onlinel1/_kernels/parse.pyx) turns the complete lines of a
block into CSR arrays without a Python object per line or per feature, and
the line cut by the end of a block is carried over to the next one.  The
exact formats, what is ignored and how keys are formed are in
docs/formats.md.

A malformed line raises :class:`ParseError` naming the file and the 1-based
line.  The complete rows before it are yielded first, whatever the batch
size, so a learner fed the stream has seen the same rows at the moment of
the error whether the batches were of 1 row or of 8192.  Every batch is a
:class:`ReadBatch`, whose ``lines`` give the 1-based line of each row, so
that an error found later (a label the loss cannot take) names its line
the same way.

Gzip input is recognised by its first two bytes (``1f 8b``), on standard
input and in files of any name, as well as by a ``.gz`` name.

>>> import io
>>> data = io.BytesIO(b"1 |f 3:0.5 color\\n-1 2 'id7 |f 3:1.5\\n")
>>> batch = next(read_batches(data, "vw"))
>>> batch.labels.tolist(), batch.weights.tolist(), batch.indptr.tolist()
([1.0, -1.0], [1.0, 2.0], [0, 2, 3])
>>> batch.lines.tolist()
[1, 2]
>>> unlabelled = io.BytesIO(b"3:1 4:1\\n\\n1 5:2\\n")
>>> batch = next(read_batches(unlabelled, "svmlight", optional_labels=True))
>>> batch.labels.tolist(), batch.lines.tolist()
([nan, 1.0], [1, 3])
"""
from __future__ import annotations

import gzip
import io
import os
import zlib
from typing import Any, BinaryIO, Iterator, MutableMapping

import numpy as np

from onlinel1._kernels.parse import ERRORS, FORMATS as _FORMAT_CODES, Parser
from onlinel1.batch import Batch
from onlinel1.options import normalise_interactions

__all__ = ["FORMATS", "ParseError", "ReadBatch", "read_batches"]

FORMATS = tuple(sorted(_FORMAT_CODES))
DEFAULT_BLOCK_SIZE = 1 << 20
# How much of an offending token an error message quotes.
MAX_QUOTED = 60
#: The first two bytes of a gzip stream (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"


class ParseError(ValueError):
    """A line of an input file is malformed.

    ``source`` names the file (the path as given, or the file object's
    ``name``) and ``line`` is the 1-based line number in it (after
    decompression for ``.gz`` files).
    """

    def __init__(self, message: str, source: str, line: int) -> None:
        super().__init__(message)
        self.source = source
        self.line = line


class ReadBatch(Batch):
    """A :class:`Batch` read from text, with ``lines``: the 1-based line
    number in the input of each row (int64; blank and comment lines count,
    as in :class:`ParseError`)."""

    __slots__ = ("lines",)

    def __init__(self, indptr: Any, keys: Any, values: Any, labels: Any = None,
                 weights: Any = None, lines: Any = None) -> None:
        super().__init__(indptr, keys, values, labels, weights)
        lines = np.zeros(self.n_rows, np.int64) if lines is None \
            else np.ascontiguousarray(lines, dtype=np.int64)
        if lines.shape != (self.n_rows,):
            raise ValueError(f"lines: {lines.size} entries for {self.n_rows} rows")
        self.lines = lines

    def slice(self, start: int, stop: int) -> "ReadBatch":
        part = super().slice(start, stop)
        start, stop, _ = slice(start, stop).indices(self.n_rows)
        return ReadBatch(part.indptr, part.keys, part.values, part.labels, part.weights,
                         self.lines[start:max(start, stop)])


class _Prefixed(io.RawIOBase):
    """The bytes of ``head``, then the rest of ``rest`` (a binary stream
    whose first bytes were read to look for the gzip magic)."""

    def __init__(self, head: bytes, rest: Any) -> None:
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, view: Any) -> int:
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return _read_into(self._rest, memoryview(view).cast("B"))


class _Gunzip(io.RawIOBase):
    """The decompressed bytes of a gzip stream (RFC 1952; members one after
    another, zero padding between them skipped, as ``gzip`` does), read so
    that the bytes passed on do not depend on the size of the reads, and so
    that of a damaged stream every byte decompressed before the damage is
    passed on before the error (a ``zlib.error``, ``EOFError`` or
    ``gzip.BadGzipFile``).

    The compressed stream is fed ``FEED`` bytes at a time, at most ``OUT``
    bytes out per step, whatever the caller asks for; when a step fails,
    its input is fed again one byte at a time into a copy of the
    decompressor taken before it, which gives the bytes before the damage
    (found by fuzz/fuzz_vw.py and fuzz/fuzz_svmlight.py: ``GzipFile``'s
    reads of the caller's size lost them in one reading and not in the
    other)."""

    FEED = 64 * 1024
    OUT = 1 << 20

    def __init__(self, f: Any) -> None:
        super().__init__()
        self._f = f
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._in_member = True        # a member's header has begun
        self._out = b""
        self._pos = 0
        self._error: BaseException | None = None
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, view: Any) -> int:
        while self._pos == len(self._out):
            if self._error is not None:
                error, self._error = self._error, None
                self._eof = True
                raise error
            if self._eof:
                return 0
            self._out, self._pos = self._step(), 0
        n = min(len(view), len(self._out) - self._pos)
        view[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def _step(self) -> bytes:
        """The next decompressed bytes (maybe none); sets ``_error`` or
        ``_eof`` when the stream ends."""
        data = self._d.unconsumed_tail        # input held back by the OUT cap
        if not data:
            feed = bytearray(self.FEED)
            data = bytes(memoryview(feed)[:_read_into(self._f, memoryview(feed))])
            if not data:
                if self._in_member:
                    self._error = EOFError("Compressed file ended before the end-of-stream "
                                           "marker was reached")
                else:
                    self._eof = True
                return b""
        out = []
        while data:
            if not self._in_member:
                # Between members: zero padding, then a member or the end.
                data = data.lstrip(b"\0")
                if not data:
                    break
                if not data.startswith(GZIP_MAGIC[:len(data)]):
                    self._error = gzip.BadGzipFile(f"Not a gzipped file ({data[:2]!r})")
                    break
                self._in_member = True
            before = self._d.copy()
            try:
                out.append(self._d.decompress(data, self.OUT))
            except zlib.error as exc:
                self._error = exc
                out.append(self._salvage(before, data))
                break
            if not self._d.eof:
                break               # the feed is used up, or the OUT cap holds some back
            data = self._d.unused_data
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._in_member = False
        return b"".join(out)

    @staticmethod
    def _salvage(d: Any, data: bytes) -> bytes:
        """The bytes ``d`` gives for ``data`` up to the damage in it."""
        out = []
        for i in range(len(data)):
            try:
                out.append(d.decompress(data[i:i + 1]))
            except zlib.error:
                break
        return b"".join(out)

    def close(self) -> None:
        self._out = b""
        super().close()


def _gunzip(f: Any) -> _Gunzip:
    return _Gunzip(f)


def _sniff_gzip(f: Any) -> Any:
    """``f``, or a stream of its decompressed bytes if it starts with the
    gzip magic; the bytes looked at are not lost."""
    peek = getattr(f, "peek", None)
    if peek is not None:
        head = peek(2)[:2]
        if len(head) == 2 or not head:
            return _gunzip(f) if head == GZIP_MAGIC else f
    head = b""
    while len(head) < 2:
        buf = bytearray(2 - len(head))
        n = _read_into(f, memoryview(buf))
        if n == 0:
            break
        head += bytes(buf[:n])
    stream = io.BufferedReader(_Prefixed(head, f))
    return _gunzip(stream) if head == GZIP_MAGIC else stream


def _open(source: Any) -> tuple[BinaryIO, str, Any]:
    """(binary file object, name for messages, what to close: the file we
    opened, or None for a caller's file object)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if path.endswith(".gz"):
            raw = open(path, "rb")
            return _gunzip(raw), path, raw
        raw = open(path, "rb")
        return _sniff_gzip(raw), path, raw
    if isinstance(source, io.TextIOBase):
        raise TypeError("read_batches needs a binary file object (open the file with 'rb')")
    if not (hasattr(source, "readinto") or hasattr(source, "read")):
        raise TypeError(f"source must be a path or a binary file object, "
                        f"got {type(source).__name__}")
    name = getattr(source, "name", None)
    return _sniff_gzip(source), (name if isinstance(name, str) else "<stream>"), None


def _read_into(f: Any, view: memoryview) -> int:
    """Fill ``view`` from ``f`` as far as one read goes; 0 at the end."""
    readinto = getattr(f, "readinto", None)
    if readinto is not None:
        n = readinto(view)
        return 0 if n is None else n
    data = f.read(len(view))
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("read_batches needs a binary file object (read() returned "
                        f"{type(data).__name__})")
    view[:len(data)] = data
    return len(data)


def _quote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if len(text) > MAX_QUOTED:
        text = text[:MAX_QUOTED] + "..."
    return repr(text)


def read_batches(source: str | os.PathLike | BinaryIO, fmt: str, batch_size: int = 8192,
                 names: MutableMapping[int, str] | None = None, *,
                 block_size: int = DEFAULT_BLOCK_SIZE, optional_labels: bool = False,
                 interactions: Any = (), namespaced_integers: bool = False) -> Iterator[ReadBatch]:
    """Yield the examples of ``source`` as Batches of ``batch_size`` rows
    (the last one may be shorter; with ``interactions``, so is one that
    reaches ``INTERACTIONS_BATCH_NNZ`` features, 2**25).

    ``source``: a path (``str`` or path-like; ``.gz`` is decompressed) or a
    binary file object (left open).  ``fmt``: ``"svmlight"`` or ``"vw"``.
    Labels and values are float64 exactly as written; svmlight keys are the
    indices as written, VW keys follow :func:`onlinel1.io.hashing.feature_key`.
    ``weights`` is None for svmlight and the importance of every row for VW.

    ``names``: if a dict, ``names[key] = "namespace^name"`` (or ``"name"``)
    is set for every hashed feature the first time it is seen (integer
    features are their own keys and are not added).  ``block_size``: bytes
    per read (lines longer than that are handled; tests make it tiny).
    ``optional_labels``: for data to predict, a line may leave out its
    label (svmlight: its first field holds a ``:``; VW: nothing but a tag
    before the first ``|``); such a row's label is NaN.

    VW only (the learner settings of the same names, docs/formats.md):
    ``interactions`` (Vowpal Wabbit's ``-q ab``, a list of strings of
    namespace characters) appends each line's crossed features to its own
    (crossed features get no name); ``namespaced_integers`` offsets an
    integer name in a named namespace by the namespace's hash (and names
    it ``namespace^name``).  Interactions need namespaces: with svmlight
    they are refused (``ValueError``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) \
            or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if names is not None and not hasattr(names, "__setitem__"):
        raise TypeError("names must be a dict (key -> name) or None")
    terms = normalise_interactions(interactions)
    if terms and fmt != "vw":
        raise ValueError(f"interactions cross namespaces, and {fmt} has none: give the data "
                         f"as Vowpal Wabbit text")
    if not isinstance(namespaced_integers, bool):
        raise TypeError(f"namespaced_integers must be True or False, got {namespaced_integers!r}")
    parser = Parser(fmt, names is not None, bool(optional_labels), terms, namespaced_integers)
    return _batches(source, parser, int(batch_size), names, int(block_size))


def _batches(source: Any, parser: Parser, batch_size: int,
             names: MutableMapping[int, str] | None, block_size: int) -> Iterator[ReadBatch]:
    f, display, opened = _open(source)
    try:
        buf = np.empty(block_size, dtype=np.uint8)
        start = stop = 0
        at_end = False
        while True:
            start = parser.parse(buf, start, stop, at_end, batch_size)
            if parser.error:
                if parser.n_rows:
                    yield _take(parser, names, failed=True)
                token = _quote(bytes(buf[parser.error_start:parser.error_stop]))
                what = ERRORS[parser.error].format(token=token)
                raise ParseError(f"{display}:{parser.error_line}: {what}", display,
                                 parser.error_line)
            if parser.n_rows >= batch_size or 0 <= parser.max_nnz <= parser.nnz:
                yield _take(parser, names)
                continue
            if at_end:
                break
            # Every complete line is parsed: keep the tail, read the next block.
            tail = stop - start
            if start:
                buf[:tail] = buf[start:stop]
                start, stop = 0, tail
            if stop == buf.size:  # one line longer than the buffer
                bigger = np.empty(2 * buf.size, dtype=np.uint8)
                bigger[:stop] = buf[:stop]
                buf = bigger
            try:
                n = _read_into(f, memoryview(buf)[stop:])
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                # Found by fuzz/fuzz_svmlight.py: the gzip magic, then junk
                # or nothing.  The lines before the damage were passed on.
                line = parser.lines + 1
                raise ParseError(f"{display}:{line}: damaged gzip data ({exc})", display,
                                 line) from None
            if n == 0:
                at_end = True
            stop += n
        if parser.n_rows:
            yield _take(parser, names)
    finally:
        if opened is not None:
            if f is not opened:
                f.close()
            opened.close()


def _take(parser: Parser, names: MutableMapping[int, str] | None,
          failed: bool = False) -> ReadBatch:
    """The rows parsed so far; ``failed``: the rows before a malformed line,
    whose features were noted too (named only if they are in these rows,
    so that ``names`` does not depend on the batch size)."""
    lines = parser.row_lines()
    indptr, keys, values, labels, weights = parser.take_batch()
    if names is not None:
        # Only keys the parser has never reported before cost Python work.
        new_keys, text, offsets = parser.take_names()
        bounds = offsets.tolist()
        kept = np.isin(new_keys, keys).tolist() if failed else None
        for i, key in enumerate(new_keys.tolist()):
            if key not in names and (kept is None or kept[i]):
                names[key] = text[bounds[i]:bounds[i + 1]].decode("utf-8", "surrogateescape")
    return ReadBatch(indptr, keys, values, labels, weights, lines)
