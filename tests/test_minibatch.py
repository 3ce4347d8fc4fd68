"""Mini-batch semantics (docs/algorithms.md, "Mini-batches").

(a) The mini-batch loop with B = 1 is the sequential loop bit for bit, for
    every rule (weights, intercept, clocks, progressive loss).
(b) B in {2, 7, 32} equals the eager numpy reference of
    tests/reference_minibatch.py (written from the doc) to 1e-12 relative,
    for every rule, on real data.
(c) Any cut of the stream into learn() calls gives identical weights.
(d) The option is validated; a memory budget refuses it.
(e) Flushing and saving.
"""
from __future__ import annotations

import numpy as np
import pytest

from onlinel1 import Batch, Learner, model_file
from onlinel1.errors import OptionError
from onlinel1.options import LearnerOptions
from conftest import assert_same_model, dense_weights
from reference_minibatch import eager_minibatch_fit

RTOL = 1e-12

#: (id, options) of every kernel, settings giving a sparse model on a9a.
RULES = [
    ("plain", dict(update="plain", l1=0.0, l2=1e-3, eta0=0.1)),
    ("subgradient", dict(update="subgradient", l1=2e-3, l2=1e-3, eta0=0.1)),
    ("cumulative-start", dict(update="cumulative", origin="start", l1=2e-3, l2=1e-3, eta0=0.1)),
    ("cumulative-first-seen", dict(update="cumulative", origin="first-seen", l1=2e-3, l2=1e-3,
                                   eta0=0.1)),
    ("fobos", dict(update="fobos", l1=2e-3, l2=1e-3, eta0=0.1)),
    # theta off the multiples of 0.05 (a9a's first steps, eta0 x g with
    # x = 1, y = +-1, sum to them exactly): no weight sits on the knife edge.
    ("truncated", dict(update="truncated", l1=2e-3, eta0=0.1, truncate_every=3,
                       truncate_theta=0.23)),
    ("adagrad-fobos", dict(update="adagrad-fobos", l1=1e-2, l2=1e-2, eta0=0.1)),
    ("ftrl", dict(update="ftrl", l1=1.0, l2=1.0, eta0=0.1)),
    ("spred", dict(update="spred", l1=2e-2, eta0=0.1, spred_threshold=3e-3)),
]
IDS = [r[0] for r in RULES]


dense = dense_weights


def importance(n: int) -> np.ndarray:
    return np.random.default_rng(7).uniform(0.5, 2.0, n)


# ------------------------------------------------------- (a) B = 1 is sequential

@pytest.mark.parametrize("loss", ["log", "hinge"])
@pytest.mark.parametrize("schedule", ["constant", "invscaling"])
@pytest.mark.parametrize("rule,options", RULES, ids=IDS)
def test_b1_is_the_sequential_loop_bit_for_bit(a9a_sample, rule, options, schedule, loss):
    X, y = a9a_sample
    batch = Batch.from_csr(X, y, importance(X.shape[0]))
    o = dict(options, loss=loss, schedule=schedule, fit_intercept=True)
    seq, mb = Learner(**o), Learner(**o)
    r_seq = seq._kernel.learn(batch.indptr, batch.keys, batch.values, batch.labels,
                              batch.weights)
    r_mb = mb._kernel.learn_minibatch(batch.indptr, batch.keys, batch.values, batch.labels,
                                      batch.weights, 1)
    assert r_seq == r_mb          # loss_sum, weight_sum, correct, rows: identical
    k_seq, w_seq = seq.weights()
    k_mb, w_mb = mb.weights()
    assert w_seq.size > 10
    assert np.array_equal(k_seq, k_mb) and np.array_equal(w_seq, w_mb)
    assert seq.intercept == mb.intercept
    assert seq._kernel.get_clocks() == mb._kernel.get_clocks()
    # Same store too: the state columns, not only the weights read back.
    s_seq, s_mb = seq._kernel.store.export(), mb._kernel.store.export()
    order_seq, order_mb = np.argsort(s_seq[0]), np.argsort(s_mb[0])
    assert np.array_equal(s_seq[0][order_seq], s_mb[0][order_mb])
    for a, b in zip([s_seq[1]] + list(s_seq[2]), [s_mb[1]] + list(s_mb[2])):
        assert np.array_equal(a[order_seq], b[order_mb], equal_nan=True)


def test_minibatch_1_learner_is_the_sequential_learner(a9a_sample):
    X, y = a9a_sample
    batch = Batch.from_csr(X, y)
    a, b = Learner(update="fobos", l1=1e-3), Learner(update="fobos", l1=1e-3, minibatch=1)
    assert a.learn(batch) == b.learn(batch)
    assert np.array_equal(a.weights()[1], b.weights()[1])
    assert b.pending_rows == 0


# ------------------------------------------------------- (b) against the reference

@pytest.mark.parametrize("dataset", ["a9a_sample", "rcv1_sample"])
@pytest.mark.parametrize("B", [2, 7, 32])
@pytest.mark.parametrize("rule,options", RULES, ids=IDS)
def test_minibatch_equals_the_eager_reference(request, dataset, rule, options, B):
    X, y = request.getfixturevalue(dataset)
    s = importance(X.shape[0])
    o = dict(options, loss="log", schedule="invscaling", fit_intercept=True)
    learner = Learner(minibatch=B, **o)
    learner.learn(Batch.from_csr(X, y, s))
    assert learner.pending_rows == X.shape[0] % B
    learner.flush()
    assert learner.pending_rows == 0 and learner.examples_seen == X.shape[0]
    w_ref, b_ref, losses = eager_minibatch_fit(X, y, B, weights=s, **o)
    mine = dense(learner, X.shape[1])
    assert_same_model(mine, w_ref)
    assert abs(learner.intercept - b_ref) <= RTOL * abs(b_ref)
    sums = learner.progress_sums
    ref_loss = float(np.sum(s * losses))
    assert abs(sums["loss_sum"] - ref_loss) <= RTOL * ref_loss
    # The mini-batches matter: the model is not the sequential one.
    w_seq, _, _ = eager_minibatch_fit(X, y, 1, weights=s, **o)
    assert np.abs(w_seq - w_ref).max() > 1e-6 * np.abs(w_ref).max()


@pytest.mark.parametrize("rule,options", RULES, ids=IDS)
def test_reference_with_b1_is_the_learner(a9a_sample, rule, options):
    """The reference itself, at B = 1, agrees with the sequential learner."""
    X, y = a9a_sample
    o = dict(options, loss="hinge", schedule="constant", fit_intercept=False)
    learner = Learner(**o)
    learner.learn(Batch.from_csr(X, y))
    w_ref, _, _ = eager_minibatch_fit(X, y, 1, **o)
    assert_same_model(dense(learner, X.shape[1]), w_ref)


# ------------------------------------------------------- (c) any cut of the stream

@pytest.mark.parametrize("rule,options", RULES, ids=IDS)
def test_any_cut_into_learn_calls_gives_identical_weights(a9a_sample, rule, options):
    X, y = a9a_sample
    batch = Batch.from_csr(X, y)
    n = batch.n_rows
    whole = Learner(minibatch=7, **options)
    whole.learn(batch)
    whole.flush()
    rng = np.random.default_rng(3)
    for cuts in (np.sort(rng.choice(np.arange(1, n), 40, replace=False)),
                 np.arange(1, n),           # one row per call
                 np.arange(7, n, 7) + 3):
        cut = Learner(minibatch=7, **options)
        bounds = [0] + cuts.tolist() + [n]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            result = cut.learn(batch.slice(lo, hi))
            assert result.rows == hi - lo
        cut.flush()
        assert np.array_equal(whole.weights()[0], cut.weights()[0])
        assert np.array_equal(whole.weights()[1], cut.weights()[1])
        assert whole.intercept == cut.intercept
        assert cut.examples_seen == n


def test_rows_argument_is_a_cut_too(a9a_sample):
    X, y = a9a_sample
    batch = Batch.from_csr(X, y)
    a, b = Learner(minibatch=5, update="fobos"), Learner(minibatch=5, update="fobos")
    a.learn(batch)
    for lo in range(0, batch.n_rows, 333):
        b.learn(batch, rows=(lo, min(lo + 333, batch.n_rows)))
    assert np.array_equal(a.weights()[1], b.weights()[1])


# ------------------------------------------------------- (d) options

@pytest.mark.parametrize("value,reason", [(0, "range"), (-3, "range"), (2.5, "type"),
                                          ("2", "type"), (True, "type"), (None, "type")])
def test_bad_minibatch_is_refused(value, reason):
    with pytest.raises(OptionError) as info:
        LearnerOptions(minibatch=value)
    assert info.value.option == "minibatch" and info.value.reason == reason
    assert str(info.value).startswith("minibatch must be an integer >= 1")


def test_minibatch_accepts_integral_numbers():
    assert LearnerOptions(minibatch=4.0).minibatch == 4
    assert LearnerOptions(minibatch=np.int64(3)).minibatch == 3
    assert LearnerOptions().minibatch == 1


@pytest.mark.parametrize("budget", [dict(max_features=100), dict(expire_after_examples=50)])
def test_a_budget_refuses_minibatches(budget):
    with pytest.raises(OptionError) as info:
        LearnerOptions(minibatch=4, **budget)
    assert info.value.option == "minibatch" and info.value.reason == "conflict"
    LearnerOptions(minibatch=1, **budget)


def test_state_dict_keeps_the_old_header_at_b1():
    assert "minibatch" not in LearnerOptions().to_state_dict()
    assert LearnerOptions(minibatch=8).to_state_dict()["minibatch"] == 8


def test_cli_flag(tmp_path, a9a_sample):
    """``train --minibatch B`` learns like ``Learner(minibatch=B)`` and flushes at the end."""
    import subprocess
    import sys
    from conftest import SAMPLES
    model = tmp_path / "m.onl1"
    run = subprocess.run([sys.executable, "-m", "onlinel1", "train",
                          str(SAMPLES / "a9a_head2000.svm"), "--minibatch", "7",
                          "--update", "fobos", "--l1", "1e-3", "--save", str(model), "--quiet"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    trained = model_file.load(model)[0]
    assert trained.options.minibatch == 7 and trained.examples_seen == 2000
    X, y = a9a_sample
    mine = Learner(minibatch=7, update="fobos", l1=1e-3)
    mine.learn(Batch.from_csr(X, y))
    mine.flush()
    np.testing.assert_allclose(dense(trained, X.shape[1]), dense(mine, X.shape[1]),
                               rtol=0, atol=1e-6)     # svmlight values parse as float32
    bad = subprocess.run([sys.executable, "-m", "onlinel1", "train",
                          str(SAMPLES / "a9a_head2000.svm"), "--minibatch", "0"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--minibatch must be an integer >= 1" in bad.stderr


# ------------------------------------------------------- (e) flush and saving

def test_saving_flushes_the_pending_rows(a9a_sample):
    X, y = a9a_sample
    batch = Batch.from_csr(X[:100], y[:100])
    learner = Learner(minibatch=32, update="cumulative", l1=1e-3)
    learner.learn(batch)
    assert learner.pending_rows == 4 and learner.examples_seen == 96
    flushed = Learner(minibatch=32, update="cumulative", l1=1e-3)
    flushed.learn(batch)
    result = flushed.flush()
    assert result.rows == 4 and flushed.examples_seen == 100
    data = model_file.encode(learner)        # saving learns the 4 rows first
    assert learner.pending_rows == 0 and learner.examples_seen == 100
    loaded = model_file.decode(data)[0]
    for other in (learner, loaded, Learner.from_state(flushed.state)):
        assert np.array_equal(other.weights()[1], flushed.weights()[1])
        assert other.options.minibatch == 32
    assert flushed.flush().rows == 0
    # A pickled learner is a saved one.
    import pickle
    again = Learner(minibatch=32, update="cumulative", l1=1e-3)
    again.learn(batch)
    assert np.array_equal(pickle.loads(pickle.dumps(again)).weights()[1], flushed.weights()[1])


def test_pending_rows_do_not_alias_the_callers_arrays(a9a_sample):
    X, y = a9a_sample
    batch = Batch.from_csr(X[:10], y[:10])
    a, b = Learner(minibatch=16), Learner(minibatch=16)
    a.learn(batch)
    b.learn(Batch(batch.indptr.copy(), batch.keys.copy(), batch.values.copy(),
                  batch.labels.copy()))
    batch.values[:] = 0.0
    batch.keys[:] = 0
    a.flush()
    b.flush()
    assert np.array_equal(a.weights()[1], b.weights()[1]) and a.nnz > 0


# ------------------------------------------------------- the daemon

def test_serve_minibatch_learns_as_the_learner_whatever_the_messages(start_daemon, a9a_sample):
    """``serve --minibatch 7`` fed messages of 137 rows (not multiples of 7)
    predicts exactly as ``Learner(minibatch=7)`` fed the 1500 rows at once:
    the same 214 mini-batches, the same 2 rows pending."""
    from test_daemon import learn_in_messages, predictions_of
    X, y = a9a_sample
    batch = Batch.from_csr(X, y)
    daemon = start_daemon("--update", "fobos", "--l1", "1e-4", "--eta0", "0.2",
                          "--minibatch", "7")
    learn_in_messages(daemon, batch, 1500)
    learner = Learner(update="fobos", l1=1e-4, eta0=0.2, minibatch=7)
    learner.learn(batch.slice(0, 1500))
    assert learner.pending_rows == 1500 % 7
    test = batch.slice(1500, batch.n_rows)
    got = predictions_of(daemon, test)
    np.testing.assert_array_equal(got, learner.predict(test))
    # The sequential daemon predicts otherwise (the comparison is not vacuous).
    sequential = Learner(update="fobos", l1=1e-4, eta0=0.2)
    sequential.learn(batch.slice(0, 1500))
    assert np.abs(np.asarray(got) - sequential.predict(test)).max() > 1e-6


# ------------------------------------------------------- scale folds within a mini-batch

FOLDING = [
    ("plain", dict(update="plain", l1=0.0, l2=0.05, eta0=0.5)),
    ("subgradient", dict(update="subgradient", l1=1e-3, l2=0.05, eta0=0.5)),
    ("cumulative", dict(update="cumulative", origin="first-seen", l1=1e-3, l2=0.05, eta0=0.5)),
    ("spred", dict(update="spred", l1=0.5, eta0=0.1, spred_threshold=1e-9)),
]


@pytest.mark.parametrize("rule,options", FOLDING, ids=[r[0] for r in FOLDING])
def test_global_scale_folds_inside_mini_batches(a9a_sample, rule, options):
    """Decays strong enough that the global scale is folded into the
    weights many times (scaled.pxi, spred's SPRED_RESET), inside and at
    the end of mini-batches: B = 1 is still bit for bit, B = 7 still the
    reference."""
    X, y = a9a_sample
    batch = Batch.from_csr(X, y)
    o = dict(options, fit_intercept=True)
    seq, mb = Learner(**o), Learner(**o)
    seq._kernel.learn(batch.indptr, batch.keys, batch.values, batch.labels, None)
    mb._kernel.learn_minibatch(batch.indptr, batch.keys, batch.values, batch.labels, None, 1)
    assert np.array_equal(seq.weights()[1], mb.weights()[1]) and seq.nnz > 0
    learner = Learner(minibatch=7, **o)
    learner.learn(batch)
    learner.flush()
    w_ref, b_ref, _ = eager_minibatch_fit(X, y, 7, **o)
    assert_same_model(dense(learner, X.shape[1]), w_ref)


# ------------------------------------------------------- failures and repeated keys

def test_an_overflowing_example_undoes_its_whole_batch(a9a_sample):
    """Row 45 overflows: with B = 10 the error names row 45, and the whole
    batch is undone (docs/algorithms.md, "Atomic batches"), the mini-batches
    of rows 0..39 too; inside a batch opened with ``begin`` those are
    learned until the caller rolls back."""
    from conftest import state_bits, with_overflowing_row
    from onlinel1.errors import NumericError
    X, y = a9a_sample
    batch = with_overflowing_row(Batch.from_csr(X[:100], y[:100]), 45)
    learner = Learner(minibatch=10, update="fobos", l1=1e-3)
    with pytest.raises(NumericError) as info:
        learner.learn(batch)
    assert info.value.row == 45 and info.value.result.rows == 0
    assert learner.examples_seen == 0 and learner.pending_rows == 0 and learner.store_size == 0
    learner.begin()
    with pytest.raises(NumericError) as info:
        learner.learn(batch)
    assert info.value.row == 45 and info.value.result.rows == 40
    assert learner.examples_seen == 40 and learner.pending_rows == 0
    expected = Learner(minibatch=10, update="fobos", l1=1e-3)
    expected.learn(batch.slice(0, 40))
    assert np.array_equal(learner.weights()[1], expected.weights()[1])
    assert learner.intercept == expected.intercept
    learner.rollback()
    assert learner.examples_seen == 0 and learner.store_size == 0
    # Completed from pending rows: the error names the row of this batch,
    # and the pending rows are pending again after the undo.
    learner = Learner(minibatch=10, update="fobos", l1=1e-3)
    learner.learn(batch.slice(0, 43))
    before = state_bits(learner._kernel.store.export())
    with pytest.raises(NumericError) as info:
        learner.learn(batch.slice(43, 100))
    assert info.value.row == 2 and learner.examples_seen == 40 and learner.pending_rows == 3
    assert state_bits(learner._kernel.store.export()) == before


@pytest.mark.parametrize("rule,options", RULES, ids=IDS)
def test_repeated_keys_in_an_example_add_up(a9a_sample, rule, options):
    """Every entry split in two (0.25 x and 0.75 x of the same key): the
    reference's summed matrix, to 1e-12."""
    X, y = a9a_sample
    X = X[:600]
    y = y[:600]
    lengths = np.diff(X.indptr)
    indptr = np.concatenate([[0], np.cumsum(2 * lengths)]).astype(np.int64)
    keys = np.repeat(X.indices.astype(np.uint64), 2)
    values = np.repeat(X.data, 2) * np.tile([0.25, 0.75], X.data.size)
    learner = Learner(minibatch=7, **options)
    learner.learn(Batch(indptr, keys, values, y))
    learner.flush()
    w_ref, _, _ = eager_minibatch_fit(X, y, 7, fit_intercept=True, **options)
    assert_same_model(dense(learner, X.shape[1]), w_ref)


@pytest.mark.parametrize("rule,options", RULES[::2], ids=IDS[::2])
def test_float32_values_b1_bit_for_bit_and_mixed_cuts(a9a_sample, rule, options):
    """float32 values: the f32 loop is bit for bit the sequential one at
    B = 1, and pending float32 rows completed by float64 ones (promoted
    exactly) give the weights of the stream in float64."""
    X, y = a9a_sample
    X32 = X.astype(np.float32)
    b32 = Batch.from_csr(X32, y)
    assert b32.values.dtype == np.float32
    seq, mb = Learner(**options), Learner(**options)
    seq._kernel.learn(b32.indptr, b32.keys, b32.values, b32.labels, None)
    mb._kernel.learn_minibatch(b32.indptr, b32.keys, b32.values, b32.labels, None, 1)
    assert np.array_equal(seq.weights()[1], mb.weights()[1])
    b64 = Batch.from_csr(X32.astype(np.float64), y)
    whole = Learner(minibatch=7, **options)
    whole.learn(b64)
    mixed = Learner(minibatch=7, **options)
    for i, lo in enumerate(range(0, b64.n_rows, 100)):
        mixed.learn((b32 if i % 2 else b64).slice(lo, lo + 100))
    assert np.array_equal(whole.weights()[1], mixed.weights()[1])
