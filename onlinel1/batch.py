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

    def check_count_labels(self) -> None:
        """Raise BatchError unless every label is >= 0 (the poisson loss's
        counts; not necessarily integers)."""
        if self.labels is None:
            return
        below = np.flatnonzero(self.labels < 0)
        if below.size:
            row = int(below[0])
            raise BatchError(f"labels: must be >= 0 for the poisson loss, got "
                             f"{self.labels[row]} in row {row}", field="labels", row=row,
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

    def take(self, rows: Any) -> "Batch":
        """The rows at the indices ``rows`` (any order, repeats allowed), as
        a new Batch (copies)."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if rows.size and (rows.min() < -self.n_rows or rows.max() >= self.n_rows):
            raise IndexError(f"rows: an index out of range for {self.n_rows} rows")
        rows = rows % max(self.n_rows, 1)
        starts = self.indptr[:-1][rows]
        lengths = self.indptr[1:][rows] - starts
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        positions = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Batch(indptr, self.keys[positions], self.values[positions],
                     None if self.labels is None else self.labels[rows],
                     None if self.weights is None else self.weights[rows])

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[Any, Any]], labels: Any = None,
                  weights: Any = None, *, names: dict[int, str] | None = None) -> "Batch":
        """From one ``{feature: value}`` mapping per example.

        A feature is an integer key (taken as it is) or a string name,
        hashed as the daemon and the clients hash the features of a row
        (``onlinel1.io.feature_key``, docs/formats.md: a decimal name such
        as ``"17"`` is key 17).  A value that is itself a mapping is a
        namespace: ``{"user": {"age=30": 1.0}}`` holds the features of
        namespace ``user``, whose names are hashed with it.  Given a dict
        ``names``, the name of every string feature is added to it under its
        key (``"user^age=30"``, as the daemon records names), for
        ``onlinel1.save(learner, path, names)``.

        >>> from onlinel1.io import feature_key
        >>> b = Batch.from_rows([{"price": 0.5, 17: 1.0, "user": {"age=30": 1.0}}], [1])
        >>> b.keys.tolist() == [feature_key("price"), 17, feature_key("age=30", "user")]
        True
        """
        indptr, keys, values = [0], [], []
        # (namespace, name) -> the positions in keys of that string feature
        strings: dict[tuple[str | None, str], list[int]] = {}

        def add(key: Any, value: Any, namespace: str | None, row: int) -> None:
            tk = type(key)
            if tk is str:
                strings.setdefault((namespace, key), []).append(len(keys))
                keys.append(0)
            elif tk is int or (isinstance(key, (int, np.integer)) and not isinstance(key, bool)):
                keys.append(key)
            else:
                raise BatchError(f"keys: must be integers or strings, got {key!r} in row {row}",
                                 field="keys", row=row, reason="dtype")
            values.append(value)

        for i, row in enumerate(rows):
            for key, value in row.items():
                if isinstance(value, Mapping):
                    if type(key) is not str:
                        raise BatchError(f"keys: a namespace's name must be a string, got "
                                         f"{key!r} in row {i}", field="keys", row=i,
                                         reason="dtype")
                    for name, inner in value.items():
                        add(name, inner, key, i)
                else:
                    add(key, value, None, i)
            indptr.append(len(keys))
        try:
            key_arr = np.array(keys, dtype=np.uint64)
        except OverflowError:
            raise BatchError("keys: must be integers in [0, 2**64)", field="keys",
                             reason="out_of_range") from None
        if strings:
            _hash_strings(strings, key_arr, names)
        try:
            value_arr = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise BatchError("values: must be numbers", field="values", reason="dtype") from None
        return cls(indptr, key_arr, value_arr, labels, weights)

    @classmethod
    def from_pandas(cls, df: Any, label: Any = None, weight: Any = None, *,
                    namespace: str | Mapping[Any, str] | None = None,
                    names: dict[int, str] | None = None, categorical: Any = None,
                    numeric: Any = None) -> "Batch":
        """From a pandas DataFrame, one row per example: a numeric (or
        bool) column ``c`` is the string feature ``c`` with the row's value,
        a string or categorical column ``c`` the feature ``c=value`` with
        value 1 (a missing value: no feature).  ``label`` and ``weight``
        name the columns (or give the arrays) of the labels and importance
        weights; those columns are not features.  ``categorical`` and
        ``numeric`` (lists of columns): if either is given, the features are
        exactly those columns, a categorical one ``c=value`` whatever its
        dtype, a numeric one its value.  See ``onlinel1.dataframe``."""
        from onlinel1 import dataframe
        return dataframe.from_pandas(df, label, weight, namespace=namespace, names=names,
                                     categorical=categorical, numeric=numeric)

    @classmethod
    def from_arrow(cls, table: Any, label: Any = None, weight: Any = None, *,
                   namespace: str | Mapping[Any, str] | None = None,
                   names: dict[int, str] | None = None, categorical: Any = None,
                   numeric: Any = None) -> "Batch":
        """From a pyarrow Table (or RecordBatch), as ``from_pandas``
        (``categorical`` and ``numeric`` too)."""
        from onlinel1 import dataframe
        return dataframe.from_arrow(table, label, weight, namespace=namespace, names=names,
                                    categorical=categorical, numeric=numeric)


def _hash_strings(strings: Mapping[tuple[str | None, str], list[int]], keys: np.ndarray,
                  names: dict[int, str] | None) -> None:
    """Put the key of every string feature at its positions in ``keys``,
    one compiled hashing call per namespace; add the names to ``names``."""
    from onlinel1.io.hashing import feature_keys
    by_namespace: dict[str | None, list[tuple[str, list[int]]]] = {}
    for (namespace, name), positions in strings.items():
        by_namespace.setdefault(namespace, []).append((name, positions))
    for namespace, items in by_namespace.items():
        hashed = feature_keys([name for name, _ in items], namespace)
        for (name, positions), key in zip(items, hashed.tolist()):
            keys[positions] = key
            if names is None or key in names:
                continue
            if namespace and name.isascii() and name.isdigit() and int(name) == key:
                # A decimal name is its own key in any namespace: "ns^17"
                # would not hash back to 17 (the daemon keeps no name either).
                continue
            # The empty namespace is no namespace (io.hashing): no "^".
            names[key] = f"{namespace}^{name}" if namespace else name
