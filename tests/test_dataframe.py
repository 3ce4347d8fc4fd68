"""DataFrames as batches (onlinel1/dataframe.py): ``Batch.from_pandas`` and
``Batch.from_arrow`` against rows written out one by one in Python and
hashed by ``Batch.from_rows`` (itself checked against the daemon's decoder
in tests/test_python_api.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from onlinel1 import Batch, BatchError
from onlinel1.io import feature_key

pd = pytest.importorskip("pandas", reason="pandas is in the test extra; "
                         "pip install -e '.[test]'")
pa = pytest.importorskip("pyarrow", reason="pyarrow is in the test extra")


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def oracle_rows(df: "pd.DataFrame", numeric: set[str], namespace=None) -> list[dict]:
    """The rules of onlinel1/dataframe.py, one cell at a time: numeric
    column c -> feature c with the value (none for missing or 0), other
    columns -> feature "c=value" with 1 (none for missing)."""
    rows = []
    for record in df.to_dict("records"):
        row: dict = {}
        for column, value in record.items():
            ns = namespace.get(column) if isinstance(namespace, dict) else namespace
            target = row.setdefault(ns, {}) if ns else row
            if _missing(value):
                continue
            if column in numeric:
                if float(value) != 0.0:
                    target[str(column)] = float(value)
            else:
                target[f"{column}={value}"] = 1.0
        rows.append(row)
    return rows


def assert_same_batch(a: Batch, b: Batch) -> None:
    for field in ("indptr", "keys", "values", "labels", "weights"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=field)


@pytest.fixture
def frame():
    rng = np.random.default_rng(7)
    n = 300
    price = rng.normal(size=n)
    price[rng.random(n) < 0.1] = np.nan
    price[rng.random(n) < 0.1] = 0.0
    count = pd.array(rng.integers(0, 4, n), dtype="Int64")
    count[rng.random(n) < 0.1] = pd.NA
    color = pd.Categorical(rng.choice(["red", "green", "blue", None], n))
    city = rng.choice(["paris", "lyon", "zürich", None], n).astype(object)
    flag = rng.random(n) < 0.5
    return pd.DataFrame({"price": price, "count": count, "color": color, "city": city,
                         "flag": flag, "y": rng.choice([-1, 1], n),
                         "w": rng.random(n) + 0.5})


NUMERIC = {"price", "count", "flag"}


def test_from_pandas_is_the_rows_written_out_by_hand(frame):
    names: dict[int, str] = {}
    batch = Batch.from_pandas(frame, label="y", weight="w", names=names)
    features = frame.drop(columns=["y", "w"])
    expected_names: dict[int, str] = {}
    expected = Batch.from_rows(oracle_rows(features, NUMERIC), frame["y"], frame["w"],
                               names=expected_names)
    assert_same_batch(batch, expected)
    assert names == expected_names
    assert feature_key("color=red") in names and names[feature_key("price")] == "price"


def test_from_arrow_is_from_pandas(frame):
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert pa.types.is_dictionary(table.schema.field("color").type)
    assert_same_batch(Batch.from_arrow(table, label="y", weight="w"),
                      Batch.from_pandas(frame, label="y", weight="w"))
    # Several chunks, and a RecordBatch, read the same.
    chunked = pa.concat_tables([table.slice(0, 100), table.slice(100)])
    assert chunked.column("price").num_chunks == 2
    assert_same_batch(Batch.from_arrow(chunked, label="y"), Batch.from_arrow(table, label="y"))
    record_batch = table.to_batches(max_chunksize=len(frame))[0]
    assert_same_batch(Batch.from_arrow(record_batch, label="y", weight="w"),
                      Batch.from_pandas(frame, label="y", weight="w"))


def test_namespaces_and_arrays_for_labels(frame):
    features = frame.drop(columns=["y", "w"])
    namespace = {"color": "item", "city": "user"}
    batch = Batch.from_pandas(features, label=frame["y"].to_numpy(), namespace=namespace)
    expected = Batch.from_rows(oracle_rows(features, NUMERIC, namespace), frame["y"])
    assert_same_batch(batch, expected)
    everything = Batch.from_pandas(features, namespace="t")
    assert_same_batch(everything, Batch.from_rows(oracle_rows(features, NUMERIC, "t")))


def test_non_string_column_names_and_decimal_names_are_keys():
    df = pd.DataFrame(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    batch = Batch.from_pandas(df)
    # Column names 0, 1, 2 are the decimal names "0", "1", "2": keys 0, 1, 2,
    # the keys the scipy matrix of the same numbers has.
    import scipy.sparse as sp
    assert_same_batch(batch, Batch.from_csr(sp.csr_matrix(df.to_numpy())))


def test_pandas_string_dtype_and_empty_frames():
    df = pd.DataFrame({"s": pd.array(["a", None, "b"], dtype="string")})
    batch = Batch.from_pandas(df)
    assert batch.indptr.tolist() == [0, 1, 1, 2]
    assert batch.keys.tolist() == [feature_key("s=a"), feature_key("s=b")]
    empty = Batch.from_pandas(pd.DataFrame({"x": pd.Series([], dtype=float)}))
    assert empty.n_rows == 0 and empty.nnz == 0


def test_refusals_name_the_column():
    df = pd.DataFrame({"when": pd.to_datetime(["2026-01-01"]), "y": [1]})
    with pytest.raises(BatchError, match="column 'when'") as info:
        Batch.from_pandas(df, label="y")
    assert info.value.reason == "dtype"
    with pytest.raises(BatchError, match="no column 'label'") as info:
        Batch.from_pandas(df, label="label")
    assert info.value.field == "labels"
    with pytest.raises(BatchError, match="column 'when'"):
        Batch.from_arrow(pa.Table.from_pandas(df), label="y")
    with pytest.raises(TypeError, match="pandas DataFrame"):
        Batch.from_pandas({"x": [1]})
    # Bad values are refused where any batch's are: when it is learned.
    from onlinel1 import Learner
    inf = Batch.from_pandas(pd.DataFrame({"x": [1.0, np.inf], "y": [1, -1]}), label="y")
    with pytest.raises(BatchError) as info:
        Learner().learn(inf)
    assert (info.value.field, info.value.row) == ("values", 1)
