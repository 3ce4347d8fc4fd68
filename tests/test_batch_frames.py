"""``Batch.from_pandas`` / ``Batch.from_arrow`` pass ``categorical=`` and
``numeric=`` through to onlinel1.dataframe (issue 16, "DataFrames and
Arrow"): the features are exactly the columns listed, a categorical one
``c=value`` whatever its dtype, a numeric one its value.

The oracle is ``feature_key`` of the documented names (docs/formats.md,
"Keys"), computed here one feature at a time."""
from __future__ import annotations

import numpy as np
import pytest

from onlinel1 import Batch
from onlinel1.errors import BatchError
from onlinel1.io import feature_key

pd = pytest.importorskip("pandas")


def frame():
    return pd.DataFrame({"user": [42, 7, 42], "price": [0.5, 2.0, 0.0],
                         "color": ["red", None, "blue"], "y": [1, -1, 1]})


def rows(batch):
    """Each row as a {key: value} dict."""
    return [dict(zip(batch.keys[a:b].tolist(), batch.values[a:b].tolist()))
            for a, b in zip(batch.indptr[:-1], batch.indptr[1:])]


def expected_listed():
    """categorical=["user"], numeric=["price"]: color is no feature."""
    return [{feature_key("user=42"): 1.0, feature_key("price"): 0.5},
            {feature_key("user=7"): 1.0, feature_key("price"): 2.0},
            {feature_key("user=42"): 1.0}]          # price 0: no feature


def test_from_pandas_takes_categorical_and_numeric():
    names = {}
    b = Batch.from_pandas(frame(), label="y", categorical=["user"], numeric=["price"],
                          names=names)
    assert rows(b) == expected_listed()
    assert b.labels.tolist() == [1.0, -1.0, 1.0]
    assert sorted(set(names.values())) == ["price", "user=42", "user=7"]


def test_without_them_an_integer_column_is_numeric_and_every_column_a_feature():
    """The default (by dtype) is another batch: the options do change it."""
    b = Batch.from_pandas(frame(), label="y")
    assert rows(b)[0] == {feature_key("user"): 42.0, feature_key("price"): 0.5,
                          feature_key("color=red"): 1.0}
    assert rows(b) != expected_listed()


def test_numeric_alone_selects_only_those_columns():
    b = Batch.from_pandas(frame(), label="y", numeric=["user"])
    assert rows(b) == [{feature_key("user"): 42.0}, {feature_key("user"): 7.0},
                       {feature_key("user"): 42.0}]


def test_the_listed_columns_are_checked():
    with pytest.raises(BatchError, match="twice"):
        Batch.from_pandas(frame(), label="y", categorical=["user"], numeric=["user"])
    with pytest.raises(BatchError, match="numeric"):
        Batch.from_pandas(frame(), label="y", numeric=["color"])


def test_from_arrow_takes_them_too():
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(frame(), preserve_index=False)
    b = Batch.from_arrow(table, label="y", categorical=["user"], numeric=["price"])
    assert rows(b) == expected_listed()
    np.testing.assert_array_equal(b.labels, [1.0, -1.0, 1.0])
