"""Atomic batches (docs/algorithms.md, "Atomic batches"; issue 15, finding 4).

A batch that fails in its middle (a numeric overflow, the store full) is
undone: the learner's state is bit for bit what it was before the batch,
whatever the batch did on the way (keys added, pruned, evicted, expired,
the L2 scale folded into every weight, the clocks rebased, the table grown
or compacted), and learning goes on as if the batch had never come.  The
oracle is a second learner that never saw the failing batch.
"""
from __future__ import annotations

import numpy as np
import pytest

from onlinel1 import Batch, Learner, NumericError
from onlinel1.errors import StoreFullError

from conftest import state_bits

#: Every rule, and the paths of the undo journal each setting takes.
OPTIONS = [
    dict(update="plain", l1=0.0, l2=0.0),
    dict(update="plain", l1=0.0, l2=0.5, eta0=0.1),            # the L2 scale folds (a freeze)
    dict(update="subgradient", l1=1e-3, l2=0.3, eta0=0.1),
    dict(update="cumulative", l1=1e-3),
    dict(update="cumulative", l1=1e-3, origin="first-seen", l2=0.4, eta0=0.1),
    dict(update="fobos", l1=1e-2, rebase_at=4.0),               # clocks rebase (a freeze)
    dict(update="fobos", l1=1e-3, l2=1e-3, schedule="invscaling"),
    dict(update="truncated", l1=1e-2, truncate_every=3),
    dict(update="adagrad-fobos", l1=1e-2),
    dict(update="ftrl", l1=1.0),
    dict(update="spred", l1=1e-2),
    dict(update="fobos", l1=1e-3, max_features=60),             # evictions
    dict(update="cumulative", l1=1e-4, expire_after_examples=40),   # expiry
    dict(update="cumulative", l1=1e-3, origin="first-seen", adaptive=True, l2=1e-3),
    dict(update="fobos", l1=1e-3, adaptive=True),
]


def ids(options: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items())


def random_batch(rng: np.random.Generator, n_rows: int, n_keys: int, loss: str = "log",
                 first_key: int = 0) -> Batch:
    """Rows of 1 to 12 features drawn from a skewed key space that holds
    key 0 (its own slot in the store) and repeats keys within rows."""
    lengths = rng.integers(1, 13, n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    keys = (first_key + np.minimum(rng.zipf(1.3, indptr[-1]) - 1, n_keys)).astype(np.uint64)
    values = rng.choice([1.0, 0.5, -2.0, 0.0], indptr[-1])
    labels = rng.choice([-1.0, 1.0], n_rows) if loss == "log" else rng.normal(size=n_rows)
    return Batch(indptr, keys, values, labels)


def failing_at_the_end(batch: Batch, fresh_key: int = 10**9) -> Batch:
    """``batch`` with one row more, whose update overflows (value 100,
    importance 1e308, a feature never seen)."""
    indptr = np.append(batch.indptr, batch.indptr[-1] + 1)
    keys = np.append(batch.keys, np.uint64(fresh_key))
    values = np.append(batch.values, 100.0)
    labels = np.append(batch.labels, 1.0)
    weights = np.append(np.ones(batch.n_rows), 1e308)
    return Batch(indptr, keys, values, labels, weights)


@pytest.mark.parametrize("options", OPTIONS, ids=ids)
def test_a_batch_that_fails_at_its_last_row_is_undone_bit_for_bit(options):
    rng = np.random.default_rng(7)
    learner, oracle = Learner(**options), Learner(**options)
    first, then = random_batch(rng, 300, 400), random_batch(rng, 200, 400)
    bad = failing_at_the_end(random_batch(rng, 700, 3000))
    for model in (learner, oracle):
        model.learn(first)
    before = state_bits(learner.state)
    with pytest.raises(NumericError) as info:
        learner.learn(bad)
    assert (info.value.row, info.value.reason, info.value.result.rows) == (700, "update", 0)
    assert state_bits(learner.state) == before
    assert not learner.in_batch
    for model in (learner, oracle):
        model.learn(then)
    assert state_bits(learner.state) == state_bits(oracle.state)


@pytest.mark.parametrize("options", OPTIONS, ids=ids)
def test_a_batch_learned_in_slices_is_undone_whole(options):
    """The daemon's way: ``begin``, several ``learn`` calls over row ranges
    (between them the store may be compacted and shrunk), ``rollback``."""
    rng = np.random.default_rng(11)
    learner = Learner(**options)
    learner.learn(random_batch(rng, 200, 300))
    before = state_bits(learner.state)
    bad = failing_at_the_end(random_batch(rng, 5000, 20000))
    learner.begin()
    with pytest.raises(NumericError):
        for start in range(0, bad.n_rows, 997):
            learner.learn(bad, check=False, rows=(start, min(start + 997, bad.n_rows)))
    assert learner.examples_seen == 5200       # learned until the failure...
    learner.rollback()
    assert state_bits(learner.state) == before  # ...and undone
    assert learner.progress_sums["examples"] == 200


def test_commit_keeps_the_batch_and_the_journal_is_given_back():
    rng = np.random.default_rng(3)
    learner, oracle = Learner(update="fobos", l1=1e-3), Learner(update="fobos", l1=1e-3)
    batch = random_batch(rng, 2000, 5000)
    learner.begin()
    learner.learn(batch, rows=(0, 1000))
    learner.learn(batch, check=False, rows=(1000, 2000))
    assert learner._kernel.store.journal_bytes > 0
    learner.commit()
    oracle.learn(batch.slice(0, 1000))          # the same calls: the loss sums add alike
    oracle.learn(batch.slice(1000, 2000))
    assert state_bits(learner.state) == state_bits(oracle.state)
    with pytest.raises(RuntimeError, match="no batch is open"):
        learner.rollback()


def test_a_failure_in_the_first_row_of_an_empty_model_leaves_it_empty():
    learner = Learner(update="cumulative", l1=1e-3)
    bad = failing_at_the_end(Batch(np.zeros(1, np.int64), np.empty(0, np.uint64),
                                   np.empty(0), np.empty(0)), fresh_key=0)
    with pytest.raises(NumericError) as info:
        learner.learn(bad)
    assert info.value.row == 0
    assert learner.store_size == 0 and learner.examples_seen == 0


def test_a_row_larger_than_the_budget_undoes_the_rows_before_it():
    rng = np.random.default_rng(5)
    learner = Learner(update="fobos", l1=1e-3, max_features=8)
    learner.learn(random_batch(rng, 50, 8))
    before = state_bits(learner.state)
    good = random_batch(rng, 40, 100)
    big = Batch(np.append(good.indptr, good.indptr[-1] + 9),
                np.append(good.keys, np.arange(100, 109, dtype=np.uint64)),
                np.append(good.values, np.ones(9)), np.append(good.labels, 1.0))
    with pytest.raises(StoreFullError) as info:
        learner.learn(big, check=False)
    assert (info.value.row, info.value.reason) == (40, "max_features")
    assert state_bits(learner.state) == before


@pytest.mark.parametrize("options, scale", [
    (dict(update="adagrad-fobos", l1=1e-3, eta0=1e308), 1.0),
    (dict(update="ftrl", l1=1e-3, loss="squared"), 1e150),
    (dict(update="spred", l1=1e-3, loss="squared"), 1e150),
], ids=["adagrad-fobos", "ftrl", "spred"])
def test_an_update_that_makes_a_weight_infinite_is_refused_where_it_happens(options, scale):
    """A finite update could store an infinite weight; the example after
    it raised NumericError.  Now the example that overflows the weight is
    the one refused, and its batch undone."""
    rng = np.random.default_rng(2)
    batch = random_batch(rng, 50, 30, loss=options.get("loss", "log"))
    batch = Batch(batch.indptr, batch.keys, batch.values * scale, batch.labels)
    learner = Learner(**options)
    with pytest.raises(NumericError) as info:
        learner.learn(batch)
    assert info.value.reason == "update"
    assert learner.store_size == 0 and learner.examples_seen == 0
    # The same rows one at a time: each row before the refused one is kept.
    for row in range(info.value.row):
        learner.learn(batch.slice(row, row + 1))
    weights = learner.state["weights"]
    assert np.all(np.isfinite(weights)) and np.isfinite(learner.intercept)
    with pytest.raises(NumericError) as again:
        learner.learn(batch.slice(info.value.row, info.value.row + 1))
    assert again.value.row == 0


@pytest.mark.parametrize("options", [o for o in OPTIONS if "max_features" not in o
                                     and "expire_after_examples" not in o], ids=ids)
def test_a_failing_batch_of_mini_batches_is_undone_with_its_pending_rows(options):
    """With ``minibatch`` > 1 (docs/algorithms.md, "Mini-batches") the
    mini-batches learned before the failing one are undone too, and the
    rows of an incomplete mini-batch left from before wait again."""
    rng = np.random.default_rng(13)
    o = dict(options, minibatch=5)
    learner, oracle = Learner(**o), Learner(**o)
    first, then = random_batch(rng, 303, 400), random_batch(rng, 200, 400)
    bad = failing_at_the_end(random_batch(rng, 696, 3000))   # 3 + 697 = 140 x 5
    for model in (learner, oracle):
        model.learn(first)
    assert learner.pending_rows == 3
    before = state_bits(learner._kernel.store.export())
    with pytest.raises(NumericError) as info:
        learner.learn(bad)
    assert info.value.row == 696 and learner.pending_rows == 3
    assert state_bits(learner._kernel.store.export()) == before
    for model in (learner, oracle):
        model.learn(then)
    assert state_bits(learner.state) == state_bits(oracle.state)


# ------------------------------------------------------- atomic=False (train)

@pytest.mark.parametrize("options", OPTIONS + [dict(update="fobos", l1=1e-3, minibatch=4)],
                         ids=ids)
def test_learning_without_the_journal_gives_the_same_model_bit_for_bit(options):
    # atomic=False only leaves out the undo journal (onlinel1 train's path):
    # the model it learns is the atomic one's, bit for bit.
    rng = np.random.default_rng(7)
    batches = [random_batch(rng, 50, 300) for _ in range(4)]
    journaled, bare = Learner(**options), Learner(**options)
    for batch in batches:
        r1 = journaled.learn(batch)
        r2 = bare.learn(batch, atomic=False)
        assert r1 == r2
    assert state_bits(bare.state) == state_bits(journaled.state)


def test_a_learner_whose_unjournaled_batch_failed_refuses_every_later_use():
    rng = np.random.default_rng(8)
    learner = Learner(update="fobos", l1=1e-3)
    learner.learn(random_batch(rng, 30, 100))
    with pytest.raises(NumericError) as failed:
        learner.learn(failing_at_the_end(random_batch(rng, 30, 100)), atomic=False)
    assert failed.value.row == 30 and failed.value.reason == "update"
    for use in (lambda: learner.learn(random_batch(rng, 5, 10)),
                lambda: learner.predict(random_batch(rng, 5, 10)),
                lambda: learner.weights(), lambda: learner.nnz, lambda: learner.state):
        with pytest.raises(RuntimeError, match="atomic=False failed part-way"):
            use()


def test_inside_begin_atomic_false_changes_nothing():
    # An open batch (begin) keeps its journal whatever the call says: the
    # caller's rollback still undoes it.
    rng = np.random.default_rng(9)
    before = random_batch(rng, 30, 100)
    learner, oracle = Learner(update="fobos", l1=1e-3), Learner(update="fobos", l1=1e-3)
    learner.learn(before)
    oracle.learn(before)
    learner.begin()
    learner.learn(random_batch(rng, 20, 100), atomic=False)
    with pytest.raises(NumericError):
        learner.learn(failing_at_the_end(random_batch(rng, 30, 100)), atomic=False)
    learner.rollback()
    assert state_bits(learner.state) == state_bits(oracle.state)
