"""Examples kept in memory: the rows of ``onlinel1 train`` when a pass
cannot re-read its input (standard input) or must shuffle it, and the
held-out rows of ``--holdout-fraction``.

The buffer holds the rows as CSR arrays, with each row's line in the input
(:class:`onlinel1.io.readers.ReadBatch`), and refuses rows beyond
``max_bytes`` (:class:`BufferFull`): 16 bytes per feature value and 40 per
example (offset, label, importance, line).  Putting the batches together
into one set of arrays, once, takes that much again for a moment.

>>> import io
>>> from onlinel1.io import read_batches
>>> buf = ExampleBuffer(1 << 20)
>>> for batch in read_batches(io.BytesIO(b"1 1:1\\n-1 2:1\\n1 3:1\\n"), "svmlight", 2):
...     buf.add(batch)
>>> [b.labels.tolist() for b in buf.batches(2, order=[2, 0, 1])]
[[1.0, 1.0], [-1.0]]
>>> [b.lines.tolist() for b in buf.batches(2, order=[2, 0, 1])]
[[3, 1], [2]]
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from onlinel1.batch import Batch
from onlinel1.io.readers import ReadBatch

__all__ = ["BufferFull", "ExampleBuffer", "batch_bytes", "every_kth", "held_out", "take"]


class BufferFull(Exception):
    """The rows would pass the buffer's bound."""


def batch_bytes(batch: Batch) -> int:
    """The bytes a batch's rows take in an :class:`ExampleBuffer`."""
    return 16 * batch.nnz + 40 * batch.n_rows + 8


def take(batch: ReadBatch, rows: Sequence[int] | np.ndarray) -> ReadBatch:
    """The rows ``rows`` (indices, in that order) of ``batch``, copied."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = np.diff(batch.indptr)[rows]
    indptr = np.zeros(rows.size + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # The position of every entry of the new rows in the old arrays.
    pos = np.repeat(batch.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1],
                                                                            dtype=np.int64)
    return ReadBatch(indptr, batch.keys[pos], batch.values[pos],
                     None if batch.labels is None else batch.labels[rows],
                     None if batch.weights is None else batch.weights[rows], batch.lines[rows])


def held_out(n: int, k: int, before: int = 0) -> np.ndarray:
    """Which of ``n`` examples, the first of them example ``before + 1`` of
    the input, are held out: example i (1-based, in input order) when i is
    a multiple of k, as Vowpal Wabbit's ``--holdout_period k`` holds out
    examples k, 2k, ...."""
    return (before + 1 + np.arange(n)) % k == 0


def every_kth(batch: ReadBatch, k: int, before: int) -> tuple[ReadBatch, ReadBatch]:
    """``(the other rows, every k-th row)`` of ``batch``, whose first row is
    example ``before + 1`` of its input (``held_out``)."""
    held = held_out(batch.n_rows, k, before)
    if not held.any():
        return batch, take(batch, [])
    return take(batch, np.flatnonzero(~held)), take(batch, np.flatnonzero(held))


class ExampleBuffer:
    """Rows added batch by batch, then read back in any order (see the
    module docstring)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.n_rows = 0
        self._chunks: list[ReadBatch] = []
        self._whole: ReadBatch | None = None

    def add(self, batch: ReadBatch) -> None:
        """Keep the rows of ``batch`` (the arrays themselves, no copy)."""
        size = batch_bytes(batch)
        if self.nbytes + size > self.max_bytes:
            raise BufferFull(f"more than {self.max_bytes:,} bytes of examples")
        if self._whole is not None:
            self._chunks, self._whole = [self._whole], None
        self._chunks.append(batch)
        self.nbytes += size
        self.n_rows += batch.n_rows

    def whole(self) -> ReadBatch:
        """Every row, in the order added, as one batch."""
        if self._whole is None:
            self._whole = _concat(self._chunks)
            self._chunks = []
        return self._whole

    def batches(self, batch_size: int, order: Sequence[int] | np.ndarray | None = None
                ) -> Iterator[ReadBatch]:
        """The rows in ``order`` (a permutation of the row indices; None:
        the order added), ``batch_size`` at a time."""
        whole = self.whole()
        n = whole.n_rows
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield whole.slice(start, stop) if order is None else take(whole, order[start:stop])


def _concat(batches: list[ReadBatch]) -> ReadBatch:
    if not batches:
        return ReadBatch([0], np.zeros(0, np.uint64), np.zeros(0), np.zeros(0))
    if len(batches) == 1:
        return batches[0]
    offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate([[0]] + [b.indptr[1:] + o for b, o in zip(batches, offsets)])
    weights = None
    if any(b.weights is not None for b in batches):
        weights = np.concatenate([b.weights if b.weights is not None else np.ones(b.n_rows)
                                  for b in batches])
    return ReadBatch(indptr, np.concatenate([b.keys for b in batches]),
                     np.concatenate([b.values for b in batches]),
                     np.concatenate([b.labels for b in batches]), weights,
                     np.concatenate([b.lines for b in batches]))
