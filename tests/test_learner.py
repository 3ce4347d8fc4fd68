"""Learner behaviour: batch invariance, state, predict, origins, clocks."""
from __future__ import annotations

import os

import numpy as np
import pytest

from onlinel1 import Batch, Learner

RULES = [
    dict(update="plain", l1=0.0, l2=1e-3),
    dict(update="subgradient", l1=1e-3, l2=0.0),
    dict(update="subgradient", l1=5e-4, l2=1e-3),
    dict(update="cumulative", l1=1e-3, origin="start"),
    dict(update="cumulative", l1=1e-3, l2=5e-4, origin="first-seen"),
    dict(update="fobos", l1=1e-3, l2=0.0),
    dict(update="fobos", l1=1e-3, l2=1e-3),
]
IDS = ["plain-l2", "subgradient", "subgradient-l2", "cumulative-start",
       "cumulative-first-seen-l2", "fobos-l1", "fobos-l1-l2"]


def batches(X, y, cuts, weights=None):
    edges = [0, *cuts, X.shape[0]]
    for a, b in zip(edges[:-1], edges[1:]):
        yield Batch.from_csr(X[a:b], y[a:b], None if weights is None else weights[a:b])


def assert_identical(a: Learner, b: Learner) -> None:
    ka, wa = a.weights()
    kb, wb = b.weights()
    np.testing.assert_array_equal(ka, kb)
    np.testing.assert_array_equal(wa, wb)   # bit-identical, not close
    assert a.intercept == b.intercept
    sa, sb = a.state, b.state
    assert sa["clocks"] == sb["clocks"]


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_any_cut_into_batches_gives_bit_identical_weights(rcv1_sample, rule):
    X, y = rcv1_sample
    rng = np.random.default_rng(7)
    s = rng.uniform(0.5, 2.0, X.shape[0])
    whole = Learner(eta0=0.5, **rule)
    whole.learn(Batch.from_csr(X, y, s))
    assert whole.nnz > 10
    for trial in range(3):
        cuts = sorted(rng.choice(np.arange(1, X.shape[0]), size=trial * 7 + 1, replace=False))
        cut = Learner(eta0=0.5, **rule)
        for batch in batches(X, y, cuts, s):
            cut.learn(batch)
        assert_identical(whole, cut)
    single = Learner(eta0=0.5, **rule)
    for i in range(X.shape[0]):
        single.learn(Batch.from_csr(X[i:i + 1], y[i:i + 1], s[i:i + 1]))
    assert_identical(whole, single)


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_state_restore_mid_stream_continues_bit_identically(a9a_sample, rule):
    X, y = a9a_sample
    half = X.shape[0] // 2
    straight = Learner(eta0=0.2, schedule="invscaling", **rule)
    straight.learn(Batch.from_csr(X, y))
    first = Learner(eta0=0.2, schedule="invscaling", **rule)
    first.learn(Batch.from_csr(X[:half], y[:half]))
    state = first.state
    resumed = Learner.from_state(state)
    assert_identical(first, resumed)
    # The state is a copy: changing it later does not reach the learner.
    state["weights"][:] = 123.0
    resumed.learn(Batch.from_csr(X[half:], y[half:]))
    assert_identical(straight, resumed)
    assert resumed.progress["examples"] == X.shape[0]
    assert resumed.progress == pytest.approx(straight.progress)


@pytest.mark.parametrize("loss", ["log", "squared", "hinge"])
@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_predict_is_the_link_of_the_exported_weights(rcv1_sample, loss, rule):
    X, y = rcv1_sample
    learner = Learner(loss=loss, eta0=0.3, **rule)
    learner.learn(Batch.from_csr(X[:200], y[:200]))
    keys, w = learner.weights()
    assert np.all(w != 0)
    dense = np.zeros(X.shape[1])
    dense[keys.astype(np.int64)] = w
    margin = X[200:] @ dense + learner.intercept
    expected = 1.0 / (1.0 + np.exp(-margin)) if loss == "log" else margin
    got = learner.predict(Batch.from_csr(X[200:]))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_predict_does_not_change_the_model(a9a_sample):
    X, y = a9a_sample
    learner = Learner(update="fobos", l1=1e-3)
    learner.learn(Batch.from_csr(X[:1000], y[:1000]))
    before = learner.state
    learner.predict(Batch.from_csr(X[1000:]))
    after = learner.state
    np.testing.assert_array_equal(before["weights"], after["weights"])
    assert before["clocks"] == after["clocks"]


def late_feature_stream(X, y, late_key=10**9, start_at=1500, every=5):
    """The a9a rows, with one new, perfectly predictive feature (its value
    is the label) in every ``every``-th row from row ``start_at`` on."""
    X = X.tolil(copy=True)
    rows = []
    for i in range(X.shape[0]):
        row = dict(zip(X.rows[i], X.data[i]))
        if i >= start_at and (i - start_at) % every == 0:
            row[late_key] = float(y[i])
        rows.append(row)
    return Batch.from_rows(rows, y)


def touches_until_nonzero(learner, stream, key, start_at=1500, every=5):
    """Learn ``stream``; count the late feature's occurrences before its
    weight first becomes non-zero (None if it never does)."""
    learner.learn(stream.slice(0, start_at))
    touches = 0
    for i in range(start_at, stream.n_rows):
        learner.learn(stream.slice(i, i + 1))
        if (i - start_at) % every == 0:
            touches += 1
            keys, w = learner.weights()
            if np.any((keys == key) & (w != 0)):
                return touches
    return None


def test_first_seen_lets_a_late_feature_in_where_start_makes_it_pay(a9a_sample):
    X, y = a9a_sample
    stream = late_feature_stream(X, y)
    options = dict(update="cumulative", l1=4e-3, eta0=0.5, schedule="constant")
    # By row 1500, u = 1500 * 0.5 * 4e-3 = 3.0.  Under origin "start" the new
    # feature owes all of it from its first occurrence and has to pay it off
    # (each step gives it at most eta * |g| * |x| < 0.5) before its weight can
    # leave zero; under "first-seen" it owes only the penalty of its own steps.
    start = touches_until_nonzero(Learner(origin="start", **options), stream, 10**9)
    first_seen = touches_until_nonzero(Learner(origin="first-seen", **options), stream, 10**9)
    assert first_seen is not None and first_seen <= 2
    assert start is None or start >= first_seen + 5, (start, first_seen)


def test_first_seen_prunes_zeros_and_start_keeps_their_debt(a9a_sample):
    X, y = a9a_sample
    options = dict(update="cumulative", l1=2e-3, eta0=0.5)
    start = Learner(origin="start", **options)
    first_seen = Learner(origin="first-seen", **options)
    batch = Batch.from_csr(X, y)
    start.learn(batch)
    first_seen.learn(batch)
    # first-seen: the store holds exactly the non-zero weights.
    assert first_seen.store_size == first_seen.nnz
    # start: zeroed weights that still owe (q != 0) stay in the store.
    assert start.store_size > start.nnz


def test_rebasing_the_clocks_keeps_results_and_batch_invariance(a9a_sample):
    X, y = a9a_sample
    for rule in (dict(update="cumulative", origin="first-seen", l1=1e-2),
                 dict(update="subgradient", l1=1e-3),
                 dict(update="fobos", l1=1e-3, l2=1e-2)):
        never = Learner(eta0=0.5, rebase_at=1e300, **rule)
        never.learn(Batch.from_csr(X, y))
        often = Learner(eta0=0.5, rebase_at=2.0, **rule)   # rebases every few examples
        often.learn(Batch.from_csr(X, y))
        kn, wn = never.weights()
        ko, wo = often.weights()
        np.testing.assert_array_equal(kn, ko)
        # Rebasing rounds each clock once more: equal to 1e-12 of the model's scale.
        assert np.abs(wo - wn).max() <= 1e-12 * np.abs(wn).max(), rule
        cut = Learner(eta0=0.5, rebase_at=2.0, **rule)
        for batch in batches(X, y, [3, 500, 501, 1777]):
            cut.learn(batch)
        assert_identical(often, cut)


def test_fobos_l2_clock_stays_bounded_where_it_would_overflow(a9a_sample):
    # A_t = prod (1 + eta l2) = 1.5^t passes 1e308 after ~1750 examples;
    # rebasing keeps it below 2^20 (tests/test_rules_vs_reference.py checks
    # the weights against the eager rule).
    X, y = a9a_sample
    learner = Learner(update="fobos", l1=1e-4, l2=1.0, eta0=0.5)
    learner.learn(Batch.from_csr(X, y))
    keys, w = learner.weights()
    assert np.all(np.isfinite(w)) and w.size > 0
    assert 1.0 <= learner.state["clocks"]["clock_scale"] <= 2.0**20


def test_l2_scale_reset_is_exact_enough_and_invisible(a9a_sample):
    # eta * l2 = 0.02: c falls below 1e-9 (and is reset) every ~1000 examples.
    X, y = a9a_sample
    learner = Learner(update="plain", l1=0.0, l2=0.04, eta0=0.5)
    learner.learn(Batch.from_csr(X, y))
    assert 1e-9 <= learner.state["clocks"]["scale"] <= 1.0
    keys, w = learner.weights()
    assert np.all(np.isfinite(w)) and np.abs(w).max() > 1e-3


def test_progress_counts_loss_and_accuracy(a9a_sample):
    X, y = a9a_sample
    learner = Learner(update="fobos", l1=1e-4, eta0=0.2)
    mean_loss = learner.learn(Batch.from_csr(X, y)).loss
    progress = learner.progress
    assert progress["examples"] == X.shape[0]
    assert progress["loss"] == pytest.approx(mean_loss)
    # a9a: a linear model reaches ~84 % online; the majority class is 75 %.
    assert 0.78 < progress["accuracy"] < 0.9
    assert 0.3 < mean_loss < 0.5


def test_labels_zero_one_train_the_same_model_as_minus_one_plus_one(a9a_sample):
    X, y = a9a_sample
    a = Learner(update="cumulative", l1=1e-4)
    a.learn(Batch.from_csr(X, y))
    b = Learner(update="cumulative", l1=1e-4)
    b.learn(Batch.from_csr(X, (y > 0).astype(float)))
    assert_identical(a, b)


def test_importance_weight_two_equals_a_doubled_step_for_plain_sgd(a9a_sample):
    X, y = a9a_sample
    a = Learner(update="plain", l1=0.0, eta0=0.1, schedule="constant")
    a.learn(Batch.from_csr(X, y, np.full(X.shape[0], 2.0)))
    b = Learner(update="plain", l1=0.0, eta0=0.2, schedule="constant")
    b.learn(Batch.from_csr(X, y))
    ka, wa = a.weights()
    kb, wb = b.weights()
    np.testing.assert_array_equal(ka, kb)
    np.testing.assert_allclose(wa, wb, rtol=1e-12)


def test_duplicate_keys_in_an_example_act_as_their_sum():
    twice = Batch([0, 3, 4], [5, 5, 9, 5], [0.5, 1.5, 1.0, 1.0], [1, -1])
    once = Batch([0, 2, 3], [5, 9, 5], [2.0, 1.0, 1.0], [1, -1])
    for rule in RULES:
        a, b = Learner(eta0=0.5, **rule), Learner(eta0=0.5, **rule)
        a.learn(twice)
        b.learn(once)
        ka, wa = a.weights()
        kb, wb = b.weights()
        np.testing.assert_array_equal(ka, kb)
        np.testing.assert_allclose(wa, wb, rtol=1e-15)
        a._kernel.store.check_invariants()


def test_memory_follows_the_live_weights_after_pruning():
    rng = np.random.default_rng(3)
    n, k = 20_000, 20
    keys = rng.integers(0, 2**63, size=n * k, dtype=np.uint64)
    batch = Batch(np.arange(0, n * k + 1, k), keys, np.ones(n * k), rng.choice([-1.0, 1.0], n))
    learner = Learner(update="fobos", l1=0.05, eta0=0.1)
    learner.learn(batch)
    # Random labels on random keys: the penalty wins, nearly all weights die.
    learner._kernel.compact()
    assert learner.store_size == learner.nnz
    assert learner.nnz < n * k // 100
    assert learner.memory_bytes < 64 * max(learner.store_size, 1024)


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_learning_row_ranges_in_place_equals_one_batch(rcv1_sample, rule):
    # What the daemon does: check a batch once, learn it in slices of rows.
    X, y = rcv1_sample
    batch = Batch.from_csr(X, y, np.linspace(0.5, 2.0, X.shape[0]))
    whole = Learner(eta0=0.5, **rule)
    whole.learn(batch)
    sliced = Learner(eta0=0.5, **rule)
    sliced.check(batch)
    for start, stop in [(0, 1), (1, 1), (1, 120), (120, 299), (299, 300)]:
        sliced.learn(batch, check=False, rows=(start, stop))
    assert_identical(whole, sliced)
    assert sliced.progress["examples"] == X.shape[0]
    with pytest.raises(ValueError, match="rows 5:3 are not within"):
        sliced.learn(batch, rows=(5, 3))


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_a_readable_wake_descriptor_stops_learning_after_a_whole_row(rcv1_sample, rule):
    # The daemon passes its request socket's descriptor: the kernel polls it
    # every `every` features and stops after the row it is on if readable.
    X, y = rcv1_sample
    batch = Batch.from_csr(X, y)
    n, every = X.shape[0], 500
    quiet_r, quiet_w = os.pipe()
    busy_r, busy_w = os.pipe()
    os.write(busy_w, b"x")                  # readable until read: stops every look
    try:
        whole = Learner(eta0=0.5, **rule)
        whole.learn(batch)
        woken = Learner(eta0=0.5, **rule)
        start, stops = 0, []
        while start < n:
            learned = woken.learn(batch, check=False, rows=(start, n), wake=(busy_r, every)).rows
            assert learned >= 1
            stops.append(start + learned)
            # The first row at which `every` features were reached since `start`.
            nnz = np.diff(batch.indptr)[start:]
            reached = int(np.argmax(np.cumsum(nnz) >= every)) + 1 \
                if nnz.sum() >= every else n - start
            assert learned == reached, (start, learned, reached)
            start += learned
        assert len(stops) > 3 and stops[-1] == n
        assert_identical(whole, woken)      # stopping early changes nothing
        assert woken.progress["examples"] == n

        quiet = Learner(eta0=0.5, **rule)
        result = quiet.learn(batch, check=False, rows=(0, n), wake=(quiet_r, 1))
        assert result.rows == n    # nothing to read: the whole range
        assert_identical(whole, quiet)
        with pytest.raises(ValueError, match="wake_every must be at least 1"):
            quiet.learn(batch, check=False, wake=(quiet_r, 0))
    finally:
        for fd in (quiet_r, quiet_w, busy_r, busy_w):
            os.close(fd)


@pytest.mark.parametrize("update", ["plain", "subgradient", "cumulative", "fobos", "truncated",
                                    "adagrad-fobos", "ftrl", "spred"])
def test_nnz_counts_the_exported_non_zero_weights(rcv1_sample, update):
    X, y = rcv1_sample
    learner = Learner(update=update, l1=0.0 if update == "plain" else 1e-3, eta0=0.5)
    learner.learn(Batch.from_csr(X, y))
    keys, _ = learner.weights()
    assert learner.nnz == keys.size > 0
    if update in ("cumulative", "fobos", "truncated", "adagrad-fobos", "ftrl"):
        assert learner.nnz < len(set(X.indices.tolist()))   # the count can tell zeros apart


@pytest.mark.parametrize("update", ["fobos", "cumulative", "adagrad-fobos", "ftrl"])
def test_keys_built_to_collide_learn_what_any_other_keys_learn(update):
    # Every key has the last home slot, so the run of slots passes the
    # overflow slots and the table grows in the middle of an example (the
    # kernel must find its slots again).  A rule never looks at key values:
    # the same rows with the keys renamed 0..n-1 learn the same weights.
    from test_store import colliding_key
    rng = np.random.default_rng(11)
    n_keys, n_rows, per_row = 400, 120, 30
    names = np.array([colliding_key(0xFFFFF, v) for v in range(n_keys)], dtype=np.uint64)
    ids = np.concatenate([rng.choice(n_keys, per_row, replace=False) for _ in range(n_rows)])
    indptr = np.arange(0, n_rows * per_row + 1, per_row)
    values = rng.normal(size=ids.size)
    labels = rng.choice([-1.0, 1.0], n_rows)
    built = Learner(update=update, l1=1e-3, eta0=0.1)
    plain = Learner(update=update, l1=1e-3, eta0=0.1)
    built.learn(Batch(indptr, names[ids], values, labels))
    plain.learn(Batch(indptr, ids.astype(np.uint64) + 1, values, labels))
    built._kernel.store.check_invariants()
    keys, weights = built.weights()
    plain_keys, plain_weights = plain.weights()
    back = {int(k): i + 1 for i, k in enumerate(names.tolist())}
    assert dict(zip([back[k] for k in keys.tolist()], weights.tolist())) == \
        dict(zip(plain_keys.tolist(), plain_weights.tolist()))
    assert len(keys) > 100


NNZ_RULES = [dict(update="plain", l1=0.0), dict(update="subgradient"),
             dict(update="cumulative", origin="start"),
             dict(update="cumulative", origin="first-seen"),
             dict(update="cumulative", adaptive=True), dict(update="fobos"),
             dict(update="truncated"), dict(update="adagrad-fobos"), dict(update="ftrl"),
             dict(update="spred")]


@pytest.mark.parametrize("rule, expire", [
    pytest.param(rule, expire, id="-".join(map(str, rule.values())) + f"-expire-{expire}")
    for rule in NNZ_RULES for expire in (0, 150)
    if not (expire and rule.get("adaptive"))])   # its slot has no room for a clock
def test_nnz_counts_the_caught_up_weights_that_are_not_zero(rule, expire):
    # nnz walks the table with the rule's catch-up inlined; weights() reads
    # every slot through the rule's weight function instead.  Key 0 (kept
    # outside the table) is a feature here, the L1 is strong enough that
    # stored weights reach zero, and with expiry the rare features expire.
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(11)
    n, d = 600, 80
    dense = rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.08)
    dense[:, 0] = rng.normal(size=n) * (rng.random(n) < 0.5)
    dense[100:, 60:] = 0.0      # rare features: expired by the end
    X = sp.csr_matrix(dense)
    y = (dense @ rng.normal(size=d) > 0).astype(float)
    options = {"l1": 3e-3, "eta0": 0.05, **rule}
    if expire:
        options["expire_after_examples"] = expire
    learner = Learner(**options)
    for batch in batches(X, y, [200, 400]):
        learner.learn(batch)
        keys, w = learner.weights()
        assert learner.nnz == keys.size == np.count_nonzero(w)
    assert 0 in keys and learner.nnz > 10
