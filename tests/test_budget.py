"""The memory budget (``max_features``) and expiry (``expire_after_examples``)
of docs/algorithms.md, "The memory budget": every rule and both value types
against the eager reference of ``tests/reference_budget.py`` (the same rule
and the same eviction and expiry policy, applied eagerly), the bound on the
store after every batch, the order of eviction, a returning feature, the
exact expiry, snapshots, errors, and the results without a budget."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from onlinel1 import Batch, BatchError, Learner, LearnerOptions, model_file
from onlinel1.errors import OptionError, StoreFullError
from conftest import dense_weights, state_bits
from reference_budget import EagerBudget

RTOL = 1e-12

#: One configuration per kernel, each with a penalty that prunes.
RULES = {
    "plain": dict(update="plain", l1=0.0, l2=1e-3, eta0=0.2),
    "subgradient": dict(update="subgradient", l1=1e-3, l2=1e-3, eta0=0.2),
    "cumulative-start": dict(update="cumulative", origin="start", l1=2e-4, eta0=0.3),
    "cumulative-first-seen": dict(update="cumulative", origin="first-seen", l1=5e-3,
                                  l2=1e-3, eta0=0.3),
    "fobos": dict(update="fobos", l1=5e-3, l2=1e-3, eta0=0.3),
    "truncated": dict(update="truncated", l1=5e-3, eta0=0.3, truncate_every=3,
                      truncate_theta=0.3),
    "adagrad-fobos": dict(update="adagrad-fobos", l1=2e-2, l2=1e-2, eta0=0.2),
    "ftrl": dict(update="ftrl", l1=0.3, l2=1.0, eta0=0.3),
    "spred": dict(update="spred", l1=2e-2, eta0=0.3, spred_threshold=3e-3),
}
MODES = {
    "budget": dict(max_features=150),
    "expiry": dict(expire_after_examples=300),
    "both": dict(max_features=150, expire_after_examples=40),
}


def stream(seed: int, n_rows: int, *, hot: int = 400, n_hot: int = 6, fresh: int = 2,
           dtype=np.float64):
    """``(X, y)``: rows of ``n_hot`` keys drawn with a skew from ``hot`` keys
    (they come back, after long absences too) plus ``fresh`` keys never
    seen before, so the feature space grows without end; values are exact
    in float32; labels from a hidden linear model with noise."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 1.0, hot + n_rows * fresh)
    indptr, indices, data, labels = [0], [], [], []
    for r in range(n_rows):
        skewed = np.unique((hot * rng.random(3 * n_hot) ** 2.5).astype(np.int64))[:n_hot]
        new = hot + r * fresh + np.arange(fresh)
        idx = np.concatenate([skewed, new])
        x = np.round(rng.uniform(0.25, 1.5, idx.size) * 64) / 64
        indices += idx.tolist()
        data += x.tolist()
        indptr.append(len(indices))
        labels.append(1.0 if truth[idx] @ x + rng.normal(0, 0.5) > 0 else -1.0)
    X = sp.csr_matrix((np.array(data, dtype=dtype), np.array(indices), np.array(indptr)),
                      shape=(n_rows, hot + n_rows * fresh))
    return X, np.array(labels)


def cuts(seed: int, n_rows: int, largest: int = 700) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    edges = [0]
    while edges[-1] < n_rows:
        edges.append(min(n_rows, edges[-1] + int(rng.integers(1, largest))))
    return list(zip(edges[:-1], edges[1:]))


def stored_keys(learner: Learner) -> set[int]:
    return set(learner._kernel.store.export()[0].tolist())


dense = dense_weights


def assert_same_weights(mine: np.ndarray, ref: np.ndarray) -> None:
    scale = np.abs(ref).max()
    assert scale > 0, "the reference model is empty: the comparison would be vacuous"
    bad = ((mine != 0) != (ref != 0)) & (np.abs(ref) >= 1e-12)
    assert not bad.any(), f"non-zero patterns differ at keys {np.flatnonzero(bad)[:10]}"
    err = float(np.abs(mine - ref).max() / scale)
    assert err <= RTOL, f"max |diff| / max |ref| = {err:.3g}"


# ----------------------------------------------------- against the reference

@pytest.mark.parametrize("mode,dtype", [("budget", np.float64), ("expiry", np.float64),
                                        ("both", np.float64), ("both", np.float32)],
                         ids=["budget", "expiry", "both", "both-f32"])
@pytest.mark.parametrize("rule", RULES)
def test_the_kernel_learns_what_the_eager_reference_learns(rule, mode, dtype):
    # 5,000 rows (past the first periodic sweep at 4,096 examples), about
    # 10,000 distinct features for a budget of 150: dozens of eviction
    # rounds.  After every batch the store holds exactly the reference's
    # features (so the evicted ones are exactly the reference's too), never
    # more than the budget, and the counters agree.
    options = dict(RULES[rule], **MODES[mode], fit_intercept=True)
    X, y = stream(7, 5000, dtype=dtype)
    learner = Learner(**options)
    ref = EagerBudget(X.shape[1], **options)
    n_max = options.get("max_features", 0)
    results = []
    for a, b in cuts(1, X.shape[0]):
        results.append(learner.learn(Batch.from_csr(X[a:b], y[a:b])))
        ref.learn(X[a:b].astype(np.float64), y[a:b])
        assert stored_keys(learner) == ref.stored_keys(), f"after rows {a}:{b}"
        if n_max:
            assert learner.store_size <= n_max
        assert (learner.evicted, learner.expired) == (ref.evicted, ref.expired)
    if "max_features" in options:
        assert learner.evicted > 20 * n_max // 8, "too few evictions to test the policy"
    if "expire_after_examples" in options:
        assert learner.expired > 100
    assert sum(r.evicted for r in results) == learner.evicted
    assert sum(r.expired for r in results) == learner.expired
    mine = dense(learner, X.shape[1])
    assert_same_weights(mine, ref.weights())
    assert abs(learner.intercept - ref.intercept) <= RTOL * max(1.0, abs(ref.intercept))
    assert 10 < np.count_nonzero(mine) < learner.store_size + 1
    np.testing.assert_allclose(
        learner.weights_of(np.arange(X.shape[1], dtype=np.uint64)), ref.weights(),
        rtol=0, atol=RTOL * np.abs(ref.weights()).max())


@pytest.mark.parametrize("rule", ["fobos", "cumulative-first-seen", "spred"])
def test_one_row_batches_keep_the_store_within_the_budget_after_every_example(rule):
    options = dict(RULES[rule], max_features=40, fit_intercept=False)
    X, y = stream(3, 600, hot=60, n_hot=5, fresh=3)
    learner, ref = Learner(**options), EagerBudget(X.shape[1], **options)
    for i in range(X.shape[0]):
        learner.learn(Batch.from_csr(X[i:i + 1], y[i:i + 1]))
        ref.learn(X[i:i + 1], y[i:i + 1])
        assert learner.store_size <= 40
        assert stored_keys(learner) == ref.stored_keys(), f"after row {i}"
    assert learner.evicted == ref.evicted > 300
    assert_same_weights(dense(learner, X.shape[1]), ref.weights())


# ---------------------------------------------------------- the policy itself

def fresh_rows(n_rows: int, width: int, first_key: int = 1):
    """Rows of ``width`` keys never seen before, label +1."""
    keys = np.arange(first_key, first_key + n_rows * width, dtype=np.uint64)
    return Batch(np.arange(0, n_rows * width + 1, width), keys, np.ones(keys.size),
                 np.ones(n_rows))


def test_the_least_recently_updated_go_first_down_to_the_low_water_mark():
    from reference_budget import fmix64
    # Budget 80, rows of 5 fresh keys: rows 1-16 fill it; row 17 would pass
    # it, so the oldest go first, down to 80 - 80 // 8 = 70 before its 5
    # enter: rows 1-2.  Row 18 fits (75 + 5), row 19 evicts rows 3-4.
    learner = Learner(update="plain", l1=0.0, max_features=80)
    learner.learn(fresh_rows(16, 5))
    assert learner.evicted == 0 and learner.store_size == 80
    result = learner.learn(fresh_rows(1, 5, first_key=81))
    assert result.evicted == learner.evicted == 10
    assert stored_keys(learner) == set(range(11, 86))
    learner.learn(fresh_rows(2, 5, first_key=86))
    assert learner.evicted == 20 and stored_keys(learner) == set(range(21, 96))
    # Example 20 updates key 21 (no new feature: no eviction); example 21
    # fills the store again; example 22 evicts 10: keys 22-30 (examples 5
    # and 6) and, of example 7's keys 31-35, the one of smallest hash.
    learner.learn(Batch([0, 1], [21], [1.0], [1.0]))
    learner.learn(fresh_rows(2, 5, first_key=96))
    first_of_7 = min(range(31, 36), key=fmix64)
    assert stored_keys(learner) == {21} | (set(range(31, 106)) - {first_of_7})
    assert learner.evicted == 30


def test_ties_in_the_clock_go_in_the_order_of_the_key_hash():
    from reference_budget import fmix64
    # One row of 16 keys, then rows of 4 new keys: each round evicts the
    # first keys of the old row in hash order.
    learner = Learner(update="plain", l1=0.0, max_features=16)
    learner.learn(fresh_rows(1, 16))
    learner.learn(fresh_rows(1, 4, first_key=100))
    by_hash = sorted(range(1, 17), key=fmix64)
    # 16 + 4 > 16: down to min(16 - 4, 16 - 2) = 12, 4 evicted.
    assert stored_keys(learner) == set(by_hash[4:]) | set(range(100, 104))


def test_a_returning_feature_starts_as_a_feature_never_seen():
    # Key 5 is learned, evicted by fresh keys, then comes back in one row
    # beside key 999, never seen, with the same value: both get the same
    # weight bit for bit, for every rule (its old state is gone whole, and
    # first-seen penalty clocks start at its return).
    for name, rule in RULES.items():
        learner = Learner(**dict(rule, max_features=30), fit_intercept=False)
        learner.learn(Batch([0, 3], [5, 6, 7], [1.0, 1.0, 1.0], [1.0]))
        before = learner.weights_of([5])[0]
        learner.learn(fresh_rows(20, 5, first_key=1000))
        assert 5 not in stored_keys(learner) and learner.weights_of([5])[0] == 0.0, name
        learner.learn(Batch([0, 2], [5, 999], [0.75, 0.75], [-1.0]))
        w5, w999 = learner.weights_of([5, 999])
        assert w5 == w999 != 0.0 and w5 != before, name


def test_an_expired_feature_reads_as_zero_exactly_when_it_is_due():
    # expire_after_examples=5: key 7, last updated by example 1, still reads
    # its weight after examples 2..5 and reads 0 once examples 2..6 (five)
    # have gone by without it, before any sweep removes it from the store.
    learner = Learner(update="fobos", l1=1e-4, expire_after_examples=5, fit_intercept=False)
    learner.learn(Batch([0, 1], [7], [1.0], [1.0]))
    for example in range(2, 7):
        assert learner.weights_of([7])[0] > 0, example
        learner.learn(Batch([0, 1], [100 + example], [1.0], [1.0]))
    assert learner.weights_of([7])[0] == 0.0
    assert 7 in stored_keys(learner) and learner.expired == 0   # memory only, not swept
    assert learner.predict(Batch([0, 1], [7], [1.0]))[0] == 0.5
    assert 7 not in learner.weights()[0].tolist()
    # Back, it is a new feature (counted as expired when found).
    learner.learn(Batch([0, 2], [7, 8], [1.0, 1.0], [1.0]))
    assert learner.expired == 1
    a, b = learner.weights_of([7, 8])
    assert a == b != 0.0


@pytest.mark.parametrize("rule", RULES)
def test_any_cut_into_batches_gives_bit_identical_models(rule):
    options = dict(RULES[rule], max_features=150, expire_after_examples=40)
    X, y = stream(11, 4500, dtype=np.float32)
    whole = Learner(**options)
    whole.learn(Batch.from_csr(X, y))
    cut = Learner(**options)
    for a, b in cuts(5, X.shape[0], largest=300):
        cut.learn(Batch.from_csr(X[a:b], y[a:b]))
    for x, z in zip(whole.weights(), cut.weights()):
        np.testing.assert_array_equal(x, z)
    assert stored_keys(whole) == stored_keys(cut)
    assert whole.state["clocks"] == cut.state["clocks"]
    assert whole.evicted > 0 and whole.expired > 0


# ---------------------------------------------------------------- snapshots

@pytest.mark.parametrize("rule", RULES)
def test_save_load_continues_identically(tmp_path, rule):
    options = dict(RULES[rule], max_features=150, expire_after_examples=40)
    X, y = stream(13, 5000)
    straight = Learner(**options)
    straight.learn(Batch.from_csr(X, y))
    first = Learner(**options)
    first.learn(Batch.from_csr(X[:2100], y[:2100]))
    path = tmp_path / "m.ol1"
    model_file.save(path, first)
    resumed, _, _ = model_file.load(path)
    assert resumed.options == first.options
    assert (resumed.evicted, resumed.expired) == (first.evicted, first.expired) > (0, 0)
    resumed.learn(Batch.from_csr(X[2100:], y[2100:]))
    for a, b in zip(straight.weights(), resumed.weights()):
        np.testing.assert_array_equal(a, b)
    assert stored_keys(straight) == stored_keys(resumed)
    assert straight.state["clocks"] == resumed.state["clocks"]
    assert (straight.evicted, straight.expired) == (resumed.evicted, resumed.expired)
    # The state in memory round-trips too.
    again = Learner.from_state(first.state)
    assert again.state["clocks"] == first.state["clocks"]


def test_the_file_names_the_budget_and_keeps_the_clocks(tmp_path):
    from old_model_file import header_of
    learner = Learner(update="fobos", l1=1e-3, max_features=50, expire_after_examples=40)
    learner.learn(fresh_rows(30, 4))
    header = header_of(model_file.encode(learner))
    assert header["options"]["max_features"] == 50
    assert header["options"]["expire_after_examples"] == 40
    assert header["columns"] == ["last_clock", "last_update"]
    assert header["clocks"]["evicted"] == learner.evicted > 0
    clocks = learner.state["columns"]["last_update"]
    assert clocks.min() >= 1 and clocks.max() == 30
    # Without a budget nothing is added: the header of a version 1 file.
    plain = header_of(model_file.encode(Learner(update="fobos")))
    assert "max_features" not in plain["options"] and "evicted" not in plain["clocks"]
    assert plain["columns"] == ["last_clock"]


# ------------------------------------------------------------------- errors

@pytest.mark.parametrize("field", ["max_features", "expire_after_examples"])
@pytest.mark.parametrize("value,reason", [(-1, "range"), (2.5, "type"), ("10", "type"),
                                          (True, "type"), (None, "type")])
def test_bad_settings_are_refused_by_name(field, value, reason):
    with pytest.raises(OptionError) as info:
        LearnerOptions(**{field: value})
    assert info.value.option == field and info.value.reason == reason
    assert str(info.value).startswith(f"{field} must be an integer >= 0")
    assert LearnerOptions(**{field: 7.0}).to_dict()[field] == 7


def test_a_row_larger_than_the_budget_is_refused_before_anything_is_learned():
    learner = Learner(update="fobos", max_features=3)
    learner.learn(Batch([0, 2], [1, 2], [1.0, 1.0], [1.0]))
    big = Batch([0, 1, 5], [9, 1, 2, 3, 4], [1.0] * 5, [1.0, 1.0])
    with pytest.raises(BatchError) as info:
        learner.learn(big)
    assert (info.value.field, info.value.row, info.value.reason) == ("keys", 1, "max_features")
    assert "row 1 has 4 distinct features, more than max_features=3" in str(info.value)
    assert learner.examples_seen == 1
    # Repeated keys count once: four entries, three features, fits.
    learner.learn(Batch([0, 4], [1, 2, 3, 1], [1.0] * 4, [1.0]))
    # Unchecked, the kernel stops at that row and the batch is undone:
    # row 0, learned first (its feature 9 evicted one of the others), too.
    before = learner.state
    with pytest.raises(StoreFullError) as info:
        learner.learn(big, check=False)
    assert info.value.reason == "max_features" and info.value.row == 1
    assert info.value.result.rows == 0 and learner.examples_seen == 2
    assert state_bits(learner.state) == state_bits(before)
    assert learner.store_size <= 3


def test_the_command_line_takes_the_flags_and_names_them_in_errors():
    from onlinel1.cli.common import CommandError, Parser, add_learner_arguments, learner_options
    parser = Parser(prog="onlinel1 train")
    add_learner_arguments(parser)
    options = learner_options(parser.parse_args(["--max-features", "2000000",
                                                 "--expire-after-examples", "500"]))
    assert (options.max_features, options.expire_after_examples) == (2_000_000, 500)
    with pytest.raises(CommandError, match="^--max-features must be an integer >= 0"):
        learner_options(parser.parse_args(["--max-features", "-5"]))
    with pytest.raises(CommandError, match="^--expire-after-examples must be an integer"):
        learner_options(parser.parse_args(["--expire-after-examples", "-1"]))


# ------------------------------------------------------- without a budget

@pytest.mark.parametrize("rule", RULES)
def test_a_budget_never_reached_learns_the_same_weights_bit_for_bit(rule):
    # With a budget the periodic compaction runs inside the loop, not at
    # the end of a batch: that changes when exact zeros leave the store,
    # never a weight.
    X, y = stream(17, 5000, fresh=1)
    off, never = Learner(**RULES[rule]), Learner(**RULES[rule], max_features=10**9)
    for a, b in cuts(2, X.shape[0]):
        off.learn(Batch.from_csr(X[a:b], y[a:b]))
        never.learn(Batch.from_csr(X[a:b], y[a:b]))
    for x, z in zip(off.weights(), never.weights()):
        np.testing.assert_array_equal(x, z)
    assert never.evicted == 0 and never.expired == 0


@pytest.mark.parametrize("name", ["v1_a9a_fobos.ol1", "v1_vw0002_cumulative.ol1"])
def test_training_again_gives_the_rows_of_a_file_written_before_the_budget(tmp_path, name):
    # The files of tests/data were trained before the budget existed (the
    # commands in tests/data/README.md): training again gives the same
    # stored rows bit for bit (with the step of the defaults then, eta0 0.1).
    from conftest import SAMPLES
    from onlinel1.cli import main
    data = {"v1_a9a_fobos.ol1": ["a9a_head2000.svm", "--update", "fobos", "--l1", "1e-3",
                                 "--eta0", "0.1"],
            "v1_vw0002_cumulative.ol1": ["vw0002_head60.vw", "--loss", "squared", "--update",
                                         "cumulative", "--origin", "first-seen", "--l1",
                                         "1e-4", "--eta0", "0.1"]}[name]
    out = tmp_path / "again.ol1"
    assert main(["train", str(SAMPLES / data[0]), *data[1:], "--quiet",
                 "--save", str(out)]) == 0
    old, _, _ = model_file.load(SAMPLES / name)
    new, _, _ = model_file.load(out)
    a, b = old.state, new.state
    for field in ("keys", "weights"):
        np.testing.assert_array_equal(a[field], b[field])
    assert list(a["columns"]) == list(b["columns"])
    for column in a["columns"]:
        np.testing.assert_array_equal(a["columns"][column], b["columns"][column])
    assert a["clocks"] == b["clocks"] and a["options"] == b["options"]


def test_train_and_inspect_report_the_budget(tmp_path, capsys):
    from conftest import SAMPLES
    from onlinel1.cli import main
    path = tmp_path / "m.ol1"
    assert main(["train", str(SAMPLES / "rcv1_small_head300.svm"), "--update", "fobos",
                 "--max-features", "500", "--save", str(path)]) == 0
    learner = model_file.load(path)[0]
    assert learner.store_size <= 500 and learner.evicted > 1000
    line = (f"max_features=500 expire_after_examples=0 ({learner.store_size} stored, "
            f"{learner.evicted} evicted, 0 expired)")
    assert f"budget            {line}" in capsys.readouterr().err.splitlines()
    assert main(["inspect", str(path)]) == 0
    assert f"budget            {line}" in capsys.readouterr().out.splitlines()


def test_a_warm_start_onto_a_smaller_budget_evicts_at_once():
    # with_options (serve --force-config, train --initial): every feature
    # counts as updated by the last example; too many are evicted at once,
    # in hash order, down to the low-water mark.
    from reference_budget import fmix64
    big = Learner(update="plain", l1=0.0)
    big.learn(fresh_rows(100, 10))
    small = big.with_options(LearnerOptions(update="fobos", l1=1e-4, max_features=400))
    assert small.store_size == 400 - 400 // 8 and small.evicted == 1000 - 350
    assert stored_keys(small) == set(sorted(range(1, 1001), key=fmix64)[650:])
    np.testing.assert_array_equal(small.weights_of(sorted(stored_keys(small))),
                                  big.weights_of(sorted(stored_keys(small))))
    assert set(small.state["columns"]["last_update"].tolist()) == {100.0}
