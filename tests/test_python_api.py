"""The Python on-ramp (issue 16): importing from a checkout, save/load,
pickling and cloning a Learner, string features in ``Batch.from_rows``."""
from __future__ import annotations

import copy
import pathlib
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

import onlinel1
from onlinel1 import Batch, BatchError, Learner
from onlinel1.io import feature_key

from conftest import state_bits

ROOT = pathlib.Path(onlinel1.__file__).resolve().parent.parent


# ------------------------------------------------- a checkout that shadows

def _copy_sources(dest: pathlib.Path, with_kernels: bool) -> None:
    """The Python sources of onlinel1 under ``dest`` (as a fresh checkout
    has them), and the built kernels too if ``with_kernels`` (as an
    installed copy has them)."""
    def ignore(directory, entries):
        keep_so = with_kernels and directory.endswith("_kernels")
        return [e for e in entries if e == "__pycache__" or e.endswith((".c", ".html"))
                or (e.endswith(".so") and not keep_so)]
    shutil.copytree(ROOT / "onlinel1", dest / "onlinel1", ignore=ignore)


def test_a_checkout_without_built_kernels_says_it_shadows_the_installed_package(tmp_path):
    # Finding: after `pip install .`, `python` started in the checkout
    # imported the source tree and failed with "cannot import name 'csr'".
    checkout, site = tmp_path / "checkout", tmp_path / "site-packages"
    _copy_sources(checkout, with_kernels=False)
    _copy_sources(site, with_kernels=True)
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    snippet = "from onlinel1 import Batch, Learner"
    shadowed = subprocess.run([sys.executable, "-c", snippet], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=120)
    assert shadowed.returncode != 0
    last = shadowed.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ")
    assert "cannot import name" not in last
    assert f"This source tree shadows the installed onlinel1 (in {site})" in last
    assert "`pip install -e .`" in last and "from another directory" in last
    # From anywhere else the installed copy imports and works.
    elsewhere = subprocess.run(
        [sys.executable, "-c", snippet + "; import onlinel1; print(onlinel1.__file__); "
         "print(Learner().predict(Batch([0, 1], [3], [1.0])))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout.startswith(str(site))


def test_a_checkout_with_nothing_installed_says_how_to_build(tmp_path):
    _copy_sources(tmp_path, with_kernels=False)
    run = subprocess.run([sys.executable, "-c", "import onlinel1"], cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=120)
    last = run.stderr.strip().splitlines()[-1]
    assert "compiled kernels (csr, hashing, parse, sgd, store) are not built" in last
    assert "shadows" not in last and "`pip install -e .`" in last


# --------------------------------------------------- the learner's state

def _trained(a9a_sample, **options) -> Learner:
    X, y = a9a_sample
    learner = Learner(**options)
    learner.learn(Batch.from_csr(X[:1500], y[:1500]))
    return learner


def assert_same_state(a: Learner, b: Learner) -> None:
    assert state_bits(a.state) == state_bits(b.state)


def _continue(learner: Learner, a9a_sample) -> tuple:
    X, y = a9a_sample
    result = learner.learn(Batch.from_csr(X[1500:], y[1500:]))
    keys, weights = learner.weights()
    return result.loss_sum, keys.tobytes(), weights.tobytes(), learner.intercept


OPTIONS = [dict(update="cumulative", l1=1e-4),
           dict(update="ftrl", l1=1e-3, eta0=0.5),
           dict(update="fobos", l1=1e-4, l2=1e-5, schedule="invscaling", max_features=40)]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: o["update"])
def test_pickle_and_deepcopy_restore_a_learner_bit_for_bit(a9a_sample, options):
    learner = _trained(a9a_sample, **options)
    for restored in (pickle.loads(pickle.dumps(learner)), copy.deepcopy(learner)):
        assert type(restored) is Learner and restored.options == learner.options
        assert_same_state(restored, learner)
        assert restored.progress_sums == learner.progress_sums
        assert restored.evicted == learner.evicted
    # The copies go on exactly as the original does.
    twin = pickle.loads(pickle.dumps(learner))
    assert _continue(twin, a9a_sample) == _continue(learner, a9a_sample)


def test_a_pickle_is_the_model_file(a9a_sample):
    from onlinel1 import model_file
    learner = _trained(a9a_sample)
    state = learner.__getstate__()
    assert set(state) == {"model_file"}
    assert state["model_file"][:8] == model_file.MAGIC
    # A corrupt pickle is refused by the model file's digest, not loaded.
    blob = bytearray(state["model_file"])
    blob[-40] ^= 1
    with pytest.raises(model_file.ModelFileError, match="pickled Learner"):
        Learner.__new__(Learner).__setstate__({"model_file": bytes(blob)})


def test_save_and_load_are_symmetric(a9a_sample, tmp_path):
    from onlinel1 import model_file
    learner = _trained(a9a_sample, update="fobos", l1=1e-4)
    path = tmp_path / "a9a.ol1"
    size = onlinel1.save(learner, path)
    assert size == path.stat().st_size
    assert_same_state(onlinel1.load(path), learner)
    # Names of string features are kept for the keys the model holds.
    names: dict[int, str] = {}
    rows = [{"user=42": 1.0, "ad": {"7": 1.0}, 3: 0.5}, {"user=43": 1.0}]
    learner.learn(Batch.from_rows(rows, [1, -1], names=names))
    onlinel1.save(learner, path, names)
    loaded, saved_names, _ = model_file.load(path)
    assert_same_state(loaded, learner)
    # "7" in namespace "ad" is key 7 itself: no name ("ad^7" would not hash to 7).
    assert saved_names == {feature_key("user=42"): "user=42", feature_key("user=43"): "user=43"}
    assert feature_key("7", "ad") == 7


def test_get_params_rebuilds_the_options_and_clone_gives_a_fresh_learner(a9a_sample):
    from sklearn.base import clone
    learner = _trained(a9a_sample, update="truncated", l1=1e-3, truncate_every=5,
                       schedule="exponential")
    params = learner.get_params()
    assert Learner(**params).options == learner.options
    fresh = clone(learner)
    assert type(fresh) is Learner and fresh.options == learner.options
    assert fresh.examples_seen == 0 and fresh.nnz == 0 and fresh is not learner
    assert learner.examples_seen == 1500


# ----------------------------------------------------- Batch.from_rows

ROWS = [
    {"price": 0.5, 17: 1.0, "user": {"age=30": 1.0, "9": 2.0, 5: 3.0}},
    {"17": 2.0, "café": 1.0, "": {"x": 1.0}},
    {},
    {np.uint64(2**64 - 1): 1.0, "ad": {"id=7": 0.25}, "price": 1.5},
]


def _as_protocol_rows(rows):
    """The same rows as the daemon's row maps: features and namespaces."""
    out = []
    for row in rows:
        features = {(int(k) if not isinstance(k, str) else k): v for k, v in row.items()
                    if not isinstance(v, dict)}
        namespaces = {k: v for k, v in row.items() if isinstance(v, dict)}
        out.append({"features": features, "namespaces": namespaces, "label": 1})
    return out


def test_from_rows_hashes_string_features_as_the_daemon_and_the_client_do():
    # Finding: from_rows refused string keys though the README says it takes
    # Python rows.  Two independent oracles: the daemon's decoder of row
    # maps and the Python client's own client-side hashing.
    from onlinel1.client import rows_to_batch
    from onlinel1.server.protocol import decode_rows
    names: dict[int, str] = {}
    mine = Batch.from_rows(ROWS, [1, 1, 1, 1], names=names)
    daemon_names: dict[int, str] = {}
    daemon = decode_rows(_as_protocol_rows(ROWS), need_labels=True, names=daemon_names)
    client = rows_to_batch(_as_protocol_rows(ROWS))
    for other in (daemon, client):
        np.testing.assert_array_equal(mine.indptr, other.indptr)
        # Both put a row's plain features first, then its namespaces.
        for i in range(mine.n_rows):
            lo, hi = mine.indptr[i], mine.indptr[i + 1]
            assert sorted(zip(mine.keys[lo:hi].tolist(), mine.values[lo:hi].tolist())) == \
                sorted(zip(other.keys[lo:hi].tolist(), other.values[lo:hi].tolist()))
    assert names == daemon_names
    assert names[feature_key("age=30", "user")] == "user^age=30"
    assert names[feature_key("x")] == "x"             # the empty namespace is none
    assert feature_key("9", "user") == 9 and mine.keys[3] == 9   # decimal names are keys


def test_from_rows_refuses_what_is_neither_a_key_nor_a_name():
    with pytest.raises(BatchError) as info:
        Batch.from_rows([{1: 1.0}, {2.5: 1.0}])
    assert (info.value.field, info.value.row, info.value.reason) == ("keys", 1, "dtype")
    with pytest.raises(BatchError) as info:
        Batch.from_rows([{1: 1.0}, {}, {3: {"x": 1.0}}])
    assert (info.value.field, info.value.row, info.value.reason) == ("keys", 2, "dtype")
    with pytest.raises(BatchError) as info:
        Batch.from_rows([{"user": {"deeper": {"x": 1.0}}}])
    assert info.value.field == "values"
    with pytest.raises(BatchError) as info:
        Batch.from_rows([{True: 1.0}])
    assert info.value.reason == "dtype"


def test_take_gives_the_rows_asked_for(rcv1_sample):
    X, y = rcv1_sample
    batch = Batch.from_csr(X, y, weights=np.arange(X.shape[0], dtype=float))
    rows = np.random.default_rng(0).integers(-X.shape[0], X.shape[0], size=500)
    taken = batch.take(rows)
    expected = Batch.from_csr(X[rows], y[rows], weights=np.arange(X.shape[0])[rows])
    for field in ("indptr", "keys", "values", "labels", "weights"):
        np.testing.assert_array_equal(getattr(taken, field), getattr(expected, field))
    assert batch.take([]).n_rows == 0
    with pytest.raises(IndexError):
        batch.take([X.shape[0]])


# ------------------------------------------------- names in contributions

def test_top_k_contributions_get_the_names_a_producer_sent(start_daemon):
    # Finding: top_k answers raw 64-bit keys even for features a Producer
    # sent as strings (the Producer hashes them itself: the daemon never
    # sees the names).  The rows predicted hold the names client-side.
    from onlinel1.client import Client, Producer
    from onlinel1.feature_names import row_names, with_names
    daemon = start_daemon("--update", "plain", "--l1", "0", "--eta0", "0.5")
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(400):
        user, ad = int(rng.integers(0, 5)), int(rng.integers(0, 5))
        rows.append({"features": {f"user={user}": 1.0, 11: 0.5},
                     "namespaces": {"ad": {f"id={ad}": 1.0}},
                     "label": 1 if (user + ad) % 2 else -1})
    with Producer(daemon.train, batch_size=100) as producer:
        for row in rows:
            producer.add(row["features"], row["label"], namespaces=row["namespaces"])
    daemon.wait_stats(lambda s: s["examples"] >= len(rows))
    asked = rows[:25]
    with Client(daemon.request) as client:
        reply = client.predict(asked, top_k=3)
    raw = reply["contributions"]
    named = with_names(raw, row_names(asked))
    for row, pairs, keyed in zip(asked, named, raw):
        expected = {n for n in row["features"] if isinstance(n, str)} | \
            {f"ad^{n}" for n in row["namespaces"]["ad"]} | {11}
        assert len(pairs) == 3 and {name for name, _ in pairs} == expected
        for (name, value), (key, raw_value) in zip(pairs, keyed):
            assert value == raw_value
            if isinstance(name, str):
                namespace, _, bare = name.rpartition("^")
                assert feature_key(bare, namespace or None) == key
            else:
                assert name == key == 11


def test_names_of_reads_the_names_a_daemon_kept():
    import types
    from onlinel1.feature_names import names_of
    from onlinel1.server.protocol import decode_rows
    kept: dict[int, str] = {}
    decode_rows([{"features": {"price": 1.0, 4: 1.0}, "namespaces": {"u": {"x": 1.0}},
                  "label": 1}], need_labels=True, names=kept)
    keys = [feature_key("x", "u"), 4, feature_key("price"), feature_key("unseen")]
    trainer = types.SimpleNamespace(names=kept)
    assert names_of(trainer, keys) == ["u^x", 4, "price", feature_key("unseen")]
    assert names_of(kept, keys[:1]) == ["u^x"]
    assert names_of(types.SimpleNamespace(names=None), keys) == keys   # no --keep-names
