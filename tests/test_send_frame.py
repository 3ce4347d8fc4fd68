"""``Producer.send_frame``: a pandas DataFrame or an arrow table sent to a
daemon trains the model that ``Learner.learn(Batch.from_pandas(df))``
trains, bit for bit (issue 16, "DataFrames and Arrow"); ``categorical=``
and ``numeric=`` choose the columns, checked against rows built one cell
at a time (``rows_to_batch``, the client's own row hashing)."""
from __future__ import annotations

import numpy as np
import pytest

from onlinel1 import Batch, Learner, model_file
from onlinel1.client import Client, Producer, rows_to_batch
from onlinel1.dataframe import from_pandas
from onlinel1.errors import BatchError

pd = pytest.importorskip("pandas")

FLAGS = ("--update", "fobos", "--l1", "1e-4", "--eta0", "0.2")
OPTIONS = dict(update="fobos", l1=1e-4, eta0=0.2)


def frame(n: int = 600, seed: int = 0) -> "pd.DataFrame":
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "price": np.round(rng.normal(size=n), 3),
        "site": rng.choice(["a.com", "b.org", "c.net", None], size=n),
        "device": pd.Categorical(rng.choice(["ios", "web"], size=n)),
        "ad_id": rng.integers(0, 30, size=n),
        "young": rng.random(n) < 0.4,
        "y": rng.choice([-1, 1], size=n),
    })


def daemon_model(daemon, snaps):
    with Client(daemon.request, timeout=30) as client:
        done = client.snapshot()
    return model_file.load(snaps / "default" / done["file"])[0]


def assert_same_weights(a, b):
    for x, y in zip(a.weights(), b.weights()):
        np.testing.assert_array_equal(x, y)
    assert a.weights()[0].size > 5


def offline(batch: Batch) -> Learner:
    learner = Learner(**OPTIONS)
    learner.learn(batch)
    return learner


@pytest.mark.parametrize("kind", ["pandas", "arrow-table", "arrow-batch"])
def test_send_frame_trains_as_learn_on_from_pandas(start_daemon, tmp_path, kind):
    df = frame()
    table = df
    if kind != "pandas":
        pa = pytest.importorskip("pyarrow")
        table = pa.Table.from_pandas(df, preserve_index=False)
        if kind == "arrow-batch":
            table = table.to_batches()[0]
    snaps = tmp_path / "snaps"
    daemon = start_daemon(*FLAGS, "--snapshot-dir", str(snaps))
    with Producer(daemon.train, batch_size=128) as producer:
        producer.send_frame(table, label="y")
    stats = daemon.wait_stats(lambda s: s["examples"] >= len(df))
    assert stats["examples"] == len(df) and stats["rejected"] == {}
    assert_same_weights(daemon_model(daemon, snaps), offline(Batch.from_pandas(df, label="y")))


def test_categorical_and_numeric_choose_the_columns(start_daemon, tmp_path):
    df = frame(300, seed=1)
    snaps = tmp_path / "snaps"
    daemon = start_daemon(*FLAGS, "--snapshot-dir", str(snaps))
    with Producer(daemon.train) as producer:
        producer.send_frame(df, label="y", categorical=["ad_id", "site"], numeric=["price"])
    daemon.wait_stats(lambda s: s["examples"] >= len(df))
    # The oracle, a cell at a time in column order: price, site, ad_id.
    rows = []
    for price, site, ad_id, y in zip(df["price"], df["site"], df["ad_id"], df["y"]):
        features = {}
        if price != 0:
            features["price"] = float(price)
        if isinstance(site, str):          # (pandas reads None as NaN)
            features[f"site={site}"] = 1.0
        features[f"ad_id={ad_id}"] = 1.0
        rows.append({"features": features, "label": int(y)})
    want = rows_to_batch(rows)
    got = from_pandas(df, label="y", categorical=["ad_id", "site"], numeric=["price"])
    np.testing.assert_array_equal(got.keys, want.keys)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    assert_same_weights(daemon_model(daemon, snaps), offline(want))


def test_bad_frames_are_refused_before_sending(start_daemon):
    daemon = start_daemon(*FLAGS)
    df = frame(10)
    with Producer(daemon.train) as producer:
        with pytest.raises(ValueError, match="label"):
            producer.send_frame(df)
        with pytest.raises(TypeError, match="DataFrame"):
            producer.send_frame({"y": [1]}, label="y")
        with pytest.raises(BatchError, match="numeric"):
            producer.send_frame(df, label="y", numeric=["site"])
        with pytest.raises(BatchError, match="twice"):
            producer.send_frame(df, label="y", numeric=["price"], categorical=["price"])
        with pytest.raises(BatchError, match="no column"):
            producer.send_frame(df, label="y", categorical=["nope"])
        assert producer.seq == 0
