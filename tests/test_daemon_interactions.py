"""The daemon crosses row-wise messages with its model's interactions
(issue 16, "the daemon applies the model's interactions to incoming rows
too"): the same VW rows trained with ``-q`` offline (``onlinel1 train`` on
the file) and through a daemon (``Producer.send_rows``, row-wise messages
naming their namespaces) give the same model bit for bit, and ``predict``
over the daemon gives offline ``predict``'s numbers.

The oracle is the offline VW reader, whose crossing ``tests/test_vw_habits.py``
checks against an eager reference; here the rows are written both as VW
text and as row maps from one random description."""
from __future__ import annotations

import random

import numpy as np
import pytest

import onlinel1
import onlinel1._kernels.wire
from onlinel1 import model_file
from onlinel1.cli import main
from onlinel1.client import Client, Producer
from onlinel1.io import feature_key, read_batches
from onlinel1.io.interactions import cross_keys

FLAGS = ["--update", "fobos", "--l1", "1e-4", "--eta0", "0.3"]
TERMS = ["ab", "bc", "aa", " a"]
#: Namespaces by their VW name; "alpha" and "a" share the id 'a'.
NAMESPACES = ["a", "alpha", "b", "beta", "c"]
NAMES = ["x", "y2", "42", "007", "z", "hello", "7"]


def random_rows(seed: int, n: int):
    """``n`` examples: (label, default features, [(namespace, [(name, value)])]),
    each namespace and name at most once in a row (a row map is a map)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        default = [(name, round(rng.uniform(-2, 2), 3))
                   for name in rng.sample(NAMES, rng.randint(0, 2))]
        groups = [(ns, [(name, round(rng.uniform(-3, 3), 3))
                        for name in rng.sample(NAMES, rng.randint(1, 3))])
                  for ns in rng.sample(NAMESPACES, rng.randint(0, 4))]
        out.append((rng.choice([-1, 1]), default, groups))
    return out


def vw_text(rows, labels: bool = True) -> str:
    lines = []
    for label, default, groups in rows:
        parts = [str(label)] if labels else []
        # The default namespace first: a row map's "features" come first too.
        parts.append(" ".join(["|"] + [f"{n}:{v!r}" for n, v in default]))
        for ns, items in groups:
            parts.append(" ".join([f"|{ns}"] + [f"{n}:{v!r}" for n, v in items]))
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def row_maps(rows, labels: bool = True) -> list[dict]:
    out = []
    for label, default, groups in rows:
        row = {"features": dict(default), "namespaces": {ns: dict(items) for ns, items in groups}}
        if labels:
            row["label"] = label
        out.append(row)
    return out


def train_offline(capsys, tmp_path, data, extra):
    path = tmp_path / "offline.ol1"
    code = main(["train", str(data), *FLAGS, *extra, "--quiet", "--save", str(path)])
    assert code == 0, capsys.readouterr().err
    return path


def daemon_model(daemon, tmp_path):
    with Client(daemon.request, timeout=30) as client:
        done = client.snapshot()
    return model_file.load(tmp_path / "snaps" / "default" / done["file"])[0]


def assert_same_weights(a, b):
    for x, y in zip(a.weights(), b.weights()):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("namespaced", [False, True], ids=["plain-integers", "namespaced"])
def test_q_through_the_daemon_trains_and_predicts_as_train_and_predict(
        capsys, tmp_path, start_daemon, namespaced):
    rows = random_rows(16, 400)
    train, test = rows[:300], rows[300:]
    data, test_data = tmp_path / "train.vw", tmp_path / "test.vw"
    data.write_text(vw_text(train))
    test_data.write_text(vw_text(test, labels=False))
    extra = [f for t in TERMS for f in ("-q", t)]
    extra += ["--namespaced-integers"] if namespaced else []
    offline = model_file.load(train_offline(capsys, tmp_path, data, extra))[0]
    assert offline.options.interactions == ("ab", "bc", "aa", " a")
    assert offline.weights()[0].size > 100          # the crossed features are there

    daemon = start_daemon(*FLAGS, *extra, "--snapshot-dir", str(tmp_path / "snaps"))
    with Producer(daemon.train, batch_size=37, producer="vw") as producer:
        producer.send_rows(row_maps(train[:150]))
    # Learned before the second producer sends: the daemon takes two
    # producers' batches in the order they arrive, and the offline model
    # learned these first.
    daemon.wait_stats(lambda s: s["examples"] >= 150)
    # Producer.add, row-wise, for the rest.
    with Producer(daemon.train, batch_size=50, producer="vw2", row_wise=True) as producer:
        for label, default, groups in train[150:]:
            producer.add(dict(default), label, namespaces={ns: dict(i) for ns, i in groups})
    stats = daemon.wait_stats(lambda s: s["examples"] >= 300)
    assert stats["examples"] == 300 and stats["rejected"] == {}
    online = daemon_model(daemon, tmp_path)
    assert online.options.interactions == offline.options.interactions
    assert_same_weights(online, offline)

    # predict over the daemon (row-wise, crossed there) == offline predict.
    learner = onlinel1.load(tmp_path / "offline.ol1")
    test_batch = next(iter(read_batches(str(test_data), "vw", batch_size=1000,
                                        optional_labels=True, interactions=TERMS,
                                        namespaced_integers=namespaced)))
    test_batch = onlinel1.Batch(test_batch.indptr, test_batch.keys, test_batch.values)
    want_margins = learner.decision_function(test_batch)
    want_probs = learner.predict(test_batch)
    with Client(daemon.request, timeout=30) as client:
        margins = client.predict(row_maps(test, labels=False), output="margin")["predictions"]
        probs = client.predict(row_maps(test, labels=False))["predictions"]
    np.testing.assert_array_equal(margins, want_margins)
    np.testing.assert_array_equal(probs, want_probs)
    # The offline CLI's predict prints the same probabilities.
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "offline.ol1"), str(test_data)]) == 0
    printed = [float(line) for line in capsys.readouterr().out.split()]
    np.testing.assert_allclose(printed, probs, rtol=1e-6)


def test_without_crossing_the_daemon_model_would_differ(tmp_path, start_daemon, capsys):
    """The check above can fail: the same rows sent columnar (hashed by the
    producer, no namespaces) are not crossed, and give another model."""
    rows = random_rows(3, 120)
    data = tmp_path / "train.vw"
    data.write_text(vw_text(rows))
    offline = model_file.load(train_offline(capsys, tmp_path, data, ["-q", "ab"]))[0]
    daemon = start_daemon(*FLAGS, "-q", "ab", "--snapshot-dir", str(tmp_path / "snaps"))
    with Producer(daemon.train, producer="csr") as producer:     # columnar: not crossed
        for label, default, groups in rows:
            producer.add(dict(default), label, namespaces={ns: dict(i) for ns, i in groups})
    daemon.wait_stats(lambda s: s["examples"] >= 120)
    online = daemon_model(daemon, tmp_path)
    assert online.weights()[0].size < offline.weights()[0].size


def test_learn_and_predict_requests_cross_the_documented_example(start_daemon):
    """docs/formats.md's worked example, as a row map: the margin of a
    model that learned one row is the sum over its own and crossed keys."""
    daemon = start_daemon("--update", "plain", "--l1", "0", "--eta0", "0.5", "-q", "ua")
    row = {"namespaces": {"user": {"u7": 1.0}, "ad": {42: 0.5, "banner": 1.0}}}
    with Client(daemon.request, timeout=30) as client:
        client.learn([dict(row, label=1)])
        one = client.predict([row], output="margin", top_k=10)
    keys = [feature_key("u7", "user"), 42, feature_key("banner", "ad")]
    crossed = [cross_keys(42, keys[0]), cross_keys(keys[2], keys[0])]
    got = {k for k, _ in one["contributions"][0]}
    assert got == set(keys + crossed)
    assert crossed == [5685519860920403963, 11418868371115251150]   # the docs' keys


def test_a_row_crossing_too_many_features_is_a_bad_batch(start_daemon):
    from onlinel1.client import DaemonError
    daemon = start_daemon("--cubic", "aaa")
    wide = {"label": 1, "namespaces": {"a": {f"f{i}": 1.0 for i in range(400)}}}
    with Client(daemon.request, timeout=30) as client:
        with pytest.raises(DaemonError) as err:
            client.learn([wide])
        assert err.value.code == "bad_batch" and "interactions" in str(err.value)
        assert client.stats()["examples"] == 0


def test_a_named_model_crosses_with_its_own_interactions(start_daemon):
    """``create`` with interactions: that model crosses, ``default`` not."""
    daemon = start_daemon("--update", "plain", "--l1", "0", "--eta0", "0.5")
    row = {"namespaces": {"a": {"x": 1.0}, "b": {"y": 2.0}}}
    key_x, key_y = feature_key("x", "a"), feature_key("y", "b")
    with Client(daemon.request, timeout=30) as client:
        client.create("crossed", {"update": "plain", "l1": 0.0, "eta0": 0.5,
                                  "interactions": ["ba"]})
        for model in ("crossed", "default"):
            client.learn([dict(row, label=1)], model=model)
        crossed = client.predict([row], top_k=5, model="crossed")["contributions"][0]
        plain = client.predict([row], top_k=5)["contributions"][0]
    assert {k for k, _ in crossed} == {key_x, key_y, cross_keys(key_x, key_y)}
    assert {k for k, _ in plain} == {key_x, key_y}


@pytest.mark.parametrize("namespaced", [False, True], ids=["plain-integers", "namespaced"])
def test_the_decoder_gives_namespace_ids_and_keys_as_the_python_helpers(namespaced):
    """wire.convert's namespace ids and keys, against namespace_id and
    feature_key (nil and "" namespaces are the default one; msgpack
    integers and decimal strings are integer names)."""
    from onlinel1.io.interactions import namespace_id
    from onlinel1.io.hashing import namespace_hash
    from onlinel1.server.protocol import Rows
    from onlinel1.server.protocol import decode_rows
    from onlinel1.options import LearnerOptions
    rows = [{"label": 1, "features": {"x": 1.0, 5: 2.0},
             "namespaces": {"user": {"u7": 1.0, 42: 0.5, "007": 3.0}, "": {"e": 1.0},
                            None: {"n": 1.0}, "\u00fcber": {"9": 1.0, "y": 2.0}}}]
    want_keys, want_ids, want_names = [], [], {}
    for ns, group in [(None, rows[0]["features"]), *rows[0]["namespaces"].items()]:
        for name, _ in group.items():
            text = str(name)
            if isinstance(name, int):
                key = name + (namespace_hash(ns) if namespaced and ns else 0)
            else:
                key = feature_key(text, ns or None, namespaced_integers=namespaced)
            want_keys.append(key % 2**64)
            want_ids.append(namespace_id(ns))
            if isinstance(name, str) and not text.isdigit():
                want_names[key] = f"{ns}^{text}" if ns else text
            elif namespaced and ns:
                want_names[key] = f"{ns}^{text}"
            elif isinstance(name, str) and not ns:
                want_names[key] = text
    rows_value = Rows.of(rows)
    out = onlinel1._kernels.wire.convert(rows_value.buf, rows_value.start, rows_value.end,
                                         rows_value.entries, True, False, True, namespaced)
    assert out[0] == 0
    assert out[2].tolist() == want_keys
    assert out[8].tolist() == want_ids
    names: dict[int, str] = {}
    options = LearnerOptions(interactions=["uu"], namespaced_integers=namespaced)
    batch = decode_rows(rows_value, True, names, None, options)
    assert batch.keys[:len(want_keys)].tolist() == want_keys
    # "uu": the 3 features of user crossed with repetition (3 * 4 / 2 pairs);
    # "\u00fcber" starts with the byte 0xC3, not "u".
    assert batch.nnz == len(want_keys) + 6
    assert names == want_names
