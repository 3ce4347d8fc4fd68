"""A batch of examples in CSR form: the unit of work of the learner.

``indptr`` (int64, n_rows + 1), ``keys`` (uint64 feature keys), ``values``
(float32 or float64), ``labels`` (float64, n_rows; may be None for
prediction) and optional importance ``weights`` (float64, n_rows).  Row i's
features are ``keys[indptr[i]:indptr[i+1]]``.  Arrays already of the right
dtype and contiguous are used as they are, without a copy.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from onlinel1._kernels import csr
from onlinel1.errors import BatchError   # defined there; imported from here too

__all__ = ["Batch", "BatchError"]


def _asarray(name: str, data: Any) -> np.ndarray:
    try:
        return np.asarray(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BatchError(f"{name}: cannot be read as an array ({exc})", field=name,
                         reason="not_array") from None


def _array(name: str, data: Any, dtype: Any) -> np.ndarray:
    arr = _asarray(name, data)
    if arr.ndim != 1:
        raise BatchError(f"{name}: must be one-dimensional, got shape {arr.shape}", field=name,
                         reason="shape")
    if arr.dtype == dtype:
        return np.ascontiguousarray(arr)
    if arr.size and arr.dtype.kind not in "iufb":
        raise BatchError(f"{name}: must be numeric, got dtype {arr.dtype}", field=name,
                         reason="dtype")
    if np.dtype(dtype).kind in "iu" and arr.size:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
                raise BatchError(f"{name}: must hold integers", field=name, reason="dtype")
        if np.dtype(dtype).kind == "u" and arr.dtype.kind in "if" and np.any(arr < 0):
            raise BatchError(f"{name}: must be non-negative", field=name, reason="out_of_range")
        if arr.dtype.kind == "f":
            # A float beyond the integer type would wrap (2.0**64 -> key 0).  And
            # numpy reads Python ints that mix values above 2**63 with smaller
            # ones as float64, rounding those above 2**53: then take the given
            # numbers themselves (integers, as checked above), exactly.
            info = np.iinfo(dtype)
            if isinstance(data, np.ndarray):
                # float(max) rounds up to 2**64 (2**63): the first float beyond.
                bad = np.any(arr >= float(info.max)) or np.any(arr < info.min)
            else:
                arr = [int(x) for x in np.asarray(data, dtype=object).ravel()]
                bad = max(arr) > info.max or min(arr) < info.min
            if bad:
                raise BatchError(f"{name}: must be in [{info.min}, {info.max}]", field=name,
                                 reason="out_of_range")
            return np.ascontiguousarray(np.array(arr, dtype=dtype))
    return np.ascontiguousarray(arr, dtype=dtype)


class Batch:
    """Examples in CSR form (see the module docstring)."""

    __slots__ = ("indptr", "keys", "values", "labels", "weights")

    def __init__(self, indptr: Any, keys: Any, values: Any, labels: Any = None,
                 weights: Any = None) -> None:
        self.indptr = _array("indptr", indptr, np.int64)
        self.keys = _array("keys", keys, np.uint64)
        values_arr = _asarray("values", values)
        self.values = _array("values", values_arr,
                             np.float32 if values_arr.dtype == np.float32 else np.float64)
        self.labels = None if labels is None else _array("labels", labels, np.float64)
        self.weights = None if weights is None else _array("weights", weights, np.float64)
        self._check_shape()

    def _check_shape(self) -> None:
        if self.indptr.size == 0:
            raise BatchError("indptr: must have n_rows + 1 entries, got an empty array",
                             field="indptr", reason="shape")
        n = self.n_rows
        if self.indptr[0] != 0:
            raise BatchError(f"indptr: must start at 0, got {self.indptr[0]}", field="indptr",
                             reason="start")
        row = csr.first_decrease(self.indptr)
        if row >= 0:
            raise BatchError(f"indptr: decreases at row {row}", field="indptr", row=int(row),
                             reason="decreasing")
        if self.indptr[-1] != self.keys.size:
            raise BatchError(f"indptr: ends at {self.indptr[-1]} but there are "
                             f"{self.keys.size} keys", field="indptr", reason="shape")
        if self.values.size != self.keys.size:
            raise BatchError(f"values: {self.values.size} values for {self.keys.size} keys",
                             field="values", reason="shape")
        for name in ("labels", "weights"):
            arr = getattr(self, name)
            if arr is not None and arr.size != n:
                raise BatchError(f"{name}: {arr.size} entries for {n} rows", field=name,
                                 reason="shape")

    @property
    def n_rows(self) -> int:
        return self.indptr.size - 1

    @property
    def nnz(self) -> int:
        return self.keys.size

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        return f"Batch(n_rows={self.n_rows}, nnz={self.nnz}, values={self.values.dtype})"

    def check_finite(self) -> None:
        """Raise BatchError naming the first non-finite or negative entry."""
        pos = csr.first_nonfinite(self.values)
        if pos >= 0:
            row = int(np.searchsorted(self.indptr, pos, side="right") - 1)
            raise BatchError(f"values: non-finite value {self.values[pos]} in row {row}",
                             field="values", row=row, reason="not_finite")
        if self.labels is not None:
            row = int(csr.first_nonfinite(self.labels))
            if row >= 0:
                raise BatchError(f"labels: non-finite label {self.labels[row]} in row {row}",
                                 field="labels", row=row, reason="not_finite")
        if self.weights is not None:
            row = int(csr.first_bad_weight(self.weights))
            if row >= 0:
                weight = self.weights[row]
                raise BatchError(f"weights: importance must be finite and >= 0, "
                                 f"got {weight} in row {row}", field="weights", row=row,
                                 reason="not_finite" if not np.isfinite(weight) else "negative")

    def check_binary_labels(self) -> None:
        """Raise BatchError unless every label is -1, 0 or +1."""
        if self.labels is None:
            return
        row = csr.first_not_binary(self.labels)
        if row >= 0:
            raise BatchError(f"labels: must be -1/+1 (or 0/1) for a classification loss, "
                             f"got {self.labels[row]} in row {row}", field="labels", row=int(row),
                             reason="label_out_of_range")

    def slice(self, start: int, stop: int) -> "Batch":
        """Rows ``start:stop`` as a Batch of views (no copy of the features)."""
        start, stop, _ = slice(start, stop).indices(self.n_rows)
        stop = max(start, stop)
        lo, hi = self.indptr[start], self.indptr[stop]
        return Batch(self.indptr[start:stop + 1] - lo, self.keys[lo:hi], self.values[lo:hi],
                     None if self.labels is None else self.labels[start:stop],
                     None if self.weights is None else self.weights[start:stop])

    @classmethod
    def from_csr(cls, X: Any, labels: Any = None, weights: Any = None) -> "Batch":
        """From a scipy.sparse matrix (or anything with ``tocsr()``):
        column j becomes feature key j."""
        X = X.tocsr()
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        values = X.data if X.data.dtype in (np.float32, np.float64) else X.data.astype(np.float64)
        return cls(X.indptr.astype(np.int64), X.indices.astype(np.uint64), values, labels, weights)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[Any, float]], labels: Any = None,
                  weights: Any = None) -> "Batch":
        """From one ``{key: value}`` mapping per example (integer keys)."""
        indptr, keys, values = [0], [], []
        for i, row in enumerate(rows):
            for key, value in row.items():
                if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
                    raise BatchError(f"keys: must be integers, got {key!r}", field="keys", row=i,
                                     reason="dtype")
                keys.append(key)
                values.append(value)
            indptr.append(len(keys))
        try:
            key_arr = np.array(keys, dtype=np.uint64)
        except OverflowError:
            raise BatchError("keys: must be integers in [0, 2**64)", field="keys",
                             reason="out_of_range") from None
        try:
            value_arr = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise BatchError("values: must be numbers", field="values", reason="dtype") from None
        return cls(indptr, key_arr, value_arr, labels, weights)
