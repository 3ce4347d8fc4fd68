"""``predict`` with ``top_k`` and ``names: true`` answers the names of the
contributing features (issue 16, "top_k gives names for every feature
whose name the daemon saw"); without the field the reply is what it was.

The oracle for each name is ``onlinel1.io.feature_key``: a name answered
for key k must hash to k (docs/formats.md), and every string feature of
the rows must be answered by its name."""
from __future__ import annotations

import random

import pytest

from onlinel1.client import Client, DaemonError, Producer, rows_to_batch
from onlinel1.io import feature_key

FLAGS = ("--update", "plain", "--l1", "0", "--eta0", "0.5")
WORDS = ["red", "green", "blue", "big", "small", "fr", "de", "ios", "web"]


def random_rows(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        features = {f"w={w}": 1.0 for w in rng.sample(WORDS, 2)}
        features[rng.randint(0, 20)] = 0.5                          # an integer key: no name
        out.append({"label": rng.choice([-1, 1]), "features": features,
                    "namespaces": {"user": {f"c={rng.choice(WORDS)}": 1.0, "7": 2.0}}})
    return out


def spelled(row: dict) -> dict[int, str]:
    """The names of a row's string features, as the daemon spells them."""
    out = {feature_key(k): k for k in row["features"] if isinstance(k, str)}
    for ns, group in row["namespaces"].items():
        out.update({feature_key(k, ns): f"{ns}^{k}" for k in group
                    if isinstance(k, str) and not k.isdigit()})
    return out


def check_named(result: dict, rows: list[dict]) -> int:
    """Every contribution of a string feature is its name; integers stay keys."""
    named = 0
    assert set(result) == {"predictions", "contributions", "names"}
    for row, contributions in zip(rows, result["contributions"]):
        names = spelled(row)
        by_name = {v: k for k, v in names.items()}
        assert contributions, "a trained row has contributions"
        for key, _ in contributions:
            if isinstance(key, str):
                assert key in by_name, key
                named += 1
            else:
                assert key not in names, f"{key} ({names.get(key)}) should have been named"
    for key, name in result["names"].items():
        ns, _, bare = name.rpartition("^")
        assert feature_key(bare, ns or None) == key
    return named


def test_predict_names_from_the_request_rows_and_from_the_model(start_daemon):
    daemon = start_daemon(*FLAGS, "--keep-names")
    train = random_rows(1, 200)
    with Producer(daemon.train, batch_size=64, row_wise=True) as producer:
        for row in train:
            producer.add(row["features"], row["label"], namespaces=row["namespaces"])
    daemon.wait_stats(lambda s: s["examples"] >= 200)
    test = random_rows(2, 20)
    for row in test:
        row.pop("label")
    with Client(daemon.request, timeout=30) as client:
        # Row-wise: the request's own rows name their features.
        rows_result = client.predict(test, top_k=5, names=True)
        assert check_named(rows_result, test) > 20
        # Columnar: no names in the request; the model's table (kept from
        # the row-wise training stream) names them.
        csr_result = client.predict(rows_to_batch(test, labels_required=False), top_k=5,
                                    names=True)
        assert check_named(csr_result, test) > 20
        assert csr_result["contributions"] == rows_result["contributions"]
        # An old client: no field, today's reply (keys only, no names map).
        plain = client.predict(test, top_k=5)
        assert set(plain) == {"predictions", "contributions"}
        assert all(isinstance(k, int) for row in plain["contributions"] for k, _ in row)
        assert plain["predictions"] == rows_result["predictions"]
        # The keys under the names are the plain reply's keys.
        renamed = [[[csr_result["names"].get(k, k), v] for k, v in row]
                   for row in plain["contributions"]]
        assert renamed == csr_result["contributions"]


def test_without_kept_names_a_columnar_request_gets_keys(start_daemon):
    daemon = start_daemon(*FLAGS)
    train = random_rows(3, 100)
    with Producer(daemon.train, row_wise=True) as producer:
        producer.send_rows(train)
    daemon.wait_stats(lambda s: s["examples"] >= 100)
    test = [{k: v for k, v in row.items() if k != "label"} for row in train[:5]]
    with Client(daemon.request, timeout=30) as client:
        result = client.predict(rows_to_batch(test, labels_required=False), top_k=5, names=True)
        assert result["names"] == {}
        assert all(isinstance(k, int) for row in result["contributions"] for k, _ in row)
        # Row-wise, the request itself names them.
        assert check_named(client.predict(test, top_k=5, names=True), test) > 5


def test_names_must_be_a_bool(start_daemon):
    daemon = start_daemon(*FLAGS)
    with Client(daemon.request, timeout=30) as client:
        with pytest.raises(DaemonError) as err:
            client.request("predict", rows=[{"features": {"a": 1}}], top_k=1, names="yes")
        assert err.value.code == "bad_request" and "names" in str(err.value)
        # names without top_k: nothing to name, the plain reply.
        assert set(client.predict([{"features": {"a": 1}}], names=True)) == {"predictions"}
