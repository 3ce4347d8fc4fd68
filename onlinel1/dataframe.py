"""DataFrames as batches: ``Batch.from_pandas`` and ``Batch.from_arrow``.

One row of the table is one example, and every column that is not the
label's or the weight's gives it at most one feature, named as the
features of a row sent to the daemon are named and hashed as they are
(``onlinel1.io.feature_key``, docs/formats.md):

* a numeric or bool column ``c`` is the feature ``c`` with the row's value
  (bool: 1 or 0);
* a string, categorical (pandas) or dictionary (arrow) column ``c`` is the
  feature ``c=value`` with value 1;
* a missing value (NaN, None, ``pd.NA``, an arrow null) and a numeric 0
  give no feature (a zero adds nothing to a margin; a sparse row leaves it
  out, as a scipy matrix does);
* any other column type (dates, lists, ...) is refused with a
  ``BatchError`` naming the column.

``categorical`` and ``numeric`` (lists of columns) choose the feature
columns and how each reads: if either is given, the features are exactly
the columns listed (in the table's column order), a ``categorical`` one
``c=value`` whatever its dtype (an integer id 42 is ``c=42``, a float
1.5 ``c=1.5``: ``str`` of the value), a ``numeric`` one its value (a
column that is not numeric or bool is refused).  A column listed twice,
or one that is the label's or the weight's, is refused.

A column name that is not a string is taken as ``str(name)``; as
everywhere, a decimal name such as ``"3"`` *is* key 3.  ``namespace`` (a
string, or a map from column to namespace) hashes the features of the
columns with their namespace, VW's ``|ns``.  pandas and pyarrow are
optional (``pip install onlinel1[pandas]``, ``onlinel1[arrow]``): this
module imports neither until a table is given.

>>> import pandas as pd
>>> from onlinel1 import Batch
>>> from onlinel1.io import feature_key
>>> df = pd.DataFrame({"price": [0.5, 0.0], "color": ["red", None], "y": [1, -1]})
>>> names = {}
>>> b = Batch.from_pandas(df, label="y", names=names)
>>> b.indptr.tolist(), b.values.tolist(), b.labels.tolist()
([0, 2, 2], [0.5, 1.0], [1.0, -1.0])
>>> b.keys.tolist() == [feature_key("price"), feature_key("color=red")]
True
>>> sorted(names.values())
['color=red', 'price']
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, Mapping

import numpy as np

from onlinel1.batch import Batch, _hash_strings
from onlinel1.errors import BatchError

__all__ = ["from_arrow", "from_pandas", "from_table", "is_arrow", "is_pandas",
           "is_table", "numeric_only"]


class _Column:
    """One feature column: per row a key and a value, and whether the row
    has the feature (``present``).  Numeric columns have one name; string
    columns one per distinct value (``codes`` index ``labels``)."""

    __slots__ = ("name", "values", "present", "codes", "labels")

    def __init__(self, name: str, values: np.ndarray, present: np.ndarray,
                 codes: np.ndarray | None = None, labels: list[str] | None = None) -> None:
        self.name, self.values, self.present = name, values, present
        self.codes, self.labels = codes, labels


def _numeric(name: str, values: np.ndarray) -> _Column:
    values = np.asarray(values, dtype=np.float64)
    return _Column(name, values, ~np.isnan(values) & (values != 0))


def _strings(name: str, codes: np.ndarray, labels: Iterable[Any]) -> _Column:
    """A string column given as ``codes`` (-1: missing) into ``labels``."""
    codes = np.asarray(codes, dtype=np.int64)
    return _Column(name, np.ones(codes.size), codes >= 0, codes,
                   [f"{name}={label}" for label in labels])


def _column_namespace(namespace: str | Mapping[Any, str] | None, column: Any) -> str | None:
    if namespace is None or isinstance(namespace, str):
        return namespace
    return namespace.get(column)


def _assemble(n: int, columns: list[tuple[str | None, _Column]], labels: Any, weights: Any,
              names: dict[int, str] | None) -> Batch:
    """The CSR batch of ``n`` rows from the feature columns (each with its
    namespace), row by row, in column order."""
    keys = np.zeros((n, len(columns)), dtype=np.uint64)
    values = np.zeros((n, len(columns)), dtype=np.float64)
    present = np.zeros((n, len(columns)), dtype=bool)
    for j, (namespace, column) in enumerate(columns):
        present[:, j] = column.present
        values[:, j] = column.values
        if column.codes is None:
            strings = {(namespace, column.name): [0]}
            one = np.zeros(1, dtype=np.uint64)
            _hash_strings(strings, one, names)
            keys[:, j] = one[0]
        else:
            distinct = np.zeros(len(column.labels), dtype=np.uint64)
            _hash_strings({(namespace, label): [i] for i, label in enumerate(column.labels)},
                          distinct, names)
            if distinct.size:
                keys[:, j] = distinct[np.where(column.present, column.codes, 0)]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    return Batch(indptr, keys[present], values[present], labels, weights)


def _pick(given: Any, what: str, columns: list[Any], get: Any) -> tuple[Any, Any]:
    """``(array, column name or None)`` for ``label`` or ``weight``: a
    column's name (taken out of the features) or the values themselves."""
    if given is None:
        return None, None
    if isinstance(given, str) or (np.ndim(given) == 0 and given in columns):
        if given not in columns:
            raise BatchError(f"{what}: no column {given!r} in the table (columns: "
                             f"{', '.join(map(str, columns))})", field=what, reason="missing")
        return get(given), given
    return given, None


# ---------------------------------------------------------------- pandas

def is_pandas(obj: Any) -> bool:
    """Whether ``obj`` is a pandas DataFrame (without importing pandas)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def _select(columns: list[Any], taken: list[Any], categorical: Any,
            numeric: Any) -> list[tuple[Any, str | None]]:
    """The feature columns and how each reads (``"categorical"``,
    ``"numeric"``, or None: by its dtype), in the table's order."""
    if categorical is None and numeric is None:
        return [(c, None) for c in columns if c not in taken]
    kinds: dict[Any, str] = {}
    for kind, listed in (("categorical", categorical), ("numeric", numeric)):
        if isinstance(listed, str):
            listed = [listed]
        for c in listed or ():
            if c not in columns:
                raise BatchError(f"{kind}: no column {c!r} in the table (columns: "
                                 f"{', '.join(map(str, columns))})", field="keys",
                                 reason="missing")
            if c in taken:
                raise BatchError(f"{kind}: column {c!r} is the label's or the weight's",
                                 field="keys", reason="shape")
            if c in kinds:
                raise BatchError(f"column {c!r} is listed twice (categorical and numeric)",
                                 field="keys", reason="shape")
            kinds[c] = kind
    return [(c, kinds[c]) for c in columns if c in kinds]


def _pandas_column(name: str, series: Any, kind: str | None = None) -> _Column:
    import pandas as pd
    dtype = series.dtype
    numeric = pd.api.types.is_bool_dtype(dtype) or (pd.api.types.is_numeric_dtype(dtype)
                                                    and not isinstance(dtype, pd.CategoricalDtype))
    if kind == "numeric" and not numeric:
        raise BatchError(f"column {name!r}: listed as numeric, but its dtype {dtype} is not "
                         f"numeric or bool", field="values", reason="dtype")
    if kind == "categorical" and not isinstance(dtype, pd.CategoricalDtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        return _strings(name, codes, [str(u) for u in uniques])
    if isinstance(dtype, pd.CategoricalDtype):
        return _strings(name, series.cat.codes.to_numpy(), series.cat.categories)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        if pd.api.types.is_complex_dtype(dtype):
            raise BatchError(f"column {name!r}: complex numbers cannot be a feature's value",
                             field="values", reason="dtype")
        return _numeric(name, series.to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        return _strings(name, codes, [str(u) for u in uniques])
    raise BatchError(f"column {name!r}: dtype {dtype} is neither numeric, bool, string nor "
                     f"categorical", field="values", reason="dtype")


def from_pandas(df: Any, label: Any = None, weight: Any = None, *,
                namespace: str | Mapping[Any, str] | None = None,
                names: dict[int, str] | None = None, categorical: Any = None,
                numeric: Any = None) -> Batch:
    """The Batch of a pandas DataFrame (the module docstring has the
    rules).  ``label`` and ``weight``: column names (those columns are not
    features) or arrays; ``names``: a dict that gets the name of every
    feature under its key; ``categorical``, ``numeric``: the feature
    columns, and how they read."""
    if not is_pandas(df):
        raise TypeError(f"from_pandas needs a pandas DataFrame, got {type(df).__name__}")
    columns = list(df.columns)
    if len(set(columns)) != len(columns):
        raise BatchError("the DataFrame has duplicate column names", field="keys",
                         reason="shape")
    labels, label_col = _pick(label, "labels", columns, lambda c: df[c].to_numpy())
    weights, weight_col = _pick(weight, "weights", columns, lambda c: df[c].to_numpy())
    taken = [c for c in (label_col, weight_col) if c is not None]
    features = [(_column_namespace(namespace, c), _pandas_column(str(c), df[c], kind))
                for c, kind in _select(columns, taken, categorical, numeric)]
    return _assemble(len(df), features, labels, weights, names)


# ----------------------------------------------------------------- arrow

def is_arrow(obj: Any) -> bool:
    """Whether ``obj`` is a pyarrow Table or RecordBatch (without importing
    pyarrow)."""
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(obj, (pa.Table, pa.RecordBatch))


def _arrow_column(name: str, column: Any, how: str | None = None) -> _Column:
    import pyarrow as pa
    import pyarrow.compute as pc
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    number = pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if how == "numeric" and not number:
        raise BatchError(f"column {name!r}: listed as numeric, but its arrow type {kind} is not "
                         f"numeric or bool", field="values", reason="dtype")
    if how == "categorical" and number:
        encoded = pc.dictionary_encode(column)
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        return _strings(name, codes, [str(v) for v in encoded.dictionary.to_pylist()])
    if number:
        values = pc.fill_null(column.cast(pa.float64()), float("nan"))
        return _numeric(name, values.to_numpy(zero_copy_only=False))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) \
            or getattr(pa.types, "is_string_view", lambda _: False)(kind):
        encoded = pc.dictionary_encode(column)
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        return _strings(name, codes, encoded.dictionary.to_pylist())
    raise BatchError(f"column {name!r}: arrow type {kind} is neither numeric, bool, string "
                     f"nor dictionary", field="values", reason="dtype")


def from_arrow(table: Any, label: Any = None, weight: Any = None, *,
               namespace: str | Mapping[Any, str] | None = None,
               names: dict[int, str] | None = None, categorical: Any = None,
               numeric: Any = None) -> Batch:
    """The Batch of a pyarrow Table or RecordBatch, as ``from_pandas``."""
    if not is_arrow(table):
        raise TypeError(f"from_arrow needs a pyarrow Table or RecordBatch, got "
                        f"{type(table).__name__}")
    columns = list(table.column_names)
    if len(set(columns)) != len(columns):
        raise BatchError("the table has duplicate column names", field="keys", reason="shape")

    def get(c: str) -> np.ndarray:
        return table.column(c).to_numpy(zero_copy_only=False)

    labels, label_col = _pick(label, "labels", columns, get)
    weights, weight_col = _pick(weight, "weights", columns, get)
    taken = [c for c in (label_col, weight_col) if c is not None]
    features = [(_column_namespace(namespace, c), _arrow_column(str(c), table.column(c), how))
                for c, how in _select(columns, taken, categorical, numeric)]
    return _assemble(table.num_rows, features, labels, weights, names)


# ---------------------------------------------------------------- either

def is_table(obj: Any) -> bool:
    """A pandas DataFrame or a pyarrow Table/RecordBatch."""
    return is_pandas(obj) or is_arrow(obj)


def from_table(table: Any, label: Any = None, weight: Any = None, **kwargs: Any) -> Batch:
    """``from_pandas`` or ``from_arrow``, whichever ``table`` is."""
    if is_pandas(table):
        return from_pandas(table, label, weight, **kwargs)
    return from_arrow(table, label, weight, **kwargs)


def numeric_only(table: Any) -> bool:
    """Whether every column of ``table`` is numeric or bool (then it can be
    read as a matrix, column j as feature key j)."""
    if is_pandas(table):
        import pandas as pd
        return all((pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t))
                   and not isinstance(t, pd.CategoricalDtype) for t in table.dtypes)
    import pyarrow as pa
    return all(pa.types.is_boolean(f.type) or pa.types.is_integer(f.type)
               or pa.types.is_floating(f.type) for f in table.schema)
