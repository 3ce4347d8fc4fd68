"""Bad input gets a clear error and never changes the model."""
from __future__ import annotations

import numpy as np
import pytest

from onlinel1 import Batch, BatchError, Learner, LearnerOptions, NumericError


@pytest.fixture
def trained(a9a_sample):
    X, y = a9a_sample
    learner = Learner(update="cumulative", l1=1e-3, origin="first-seen")
    learner.learn(Batch.from_csr(X[:500], y[:500]))
    return learner


def snapshot(learner):
    s = learner.state
    return (s["keys"].copy(), s["weights"].copy(),
            {k: v.copy() for k, v in s["columns"].items()}, dict(s["clocks"]),
            dict(s["progress"]))


def assert_unchanged(before, learner):
    after = snapshot(learner)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    for k in before[2]:
        np.testing.assert_array_equal(before[2][k], after[2][k])
    assert before[3] == after[3]
    assert before[4] == after[4]


GOOD = dict(indptr=[0, 2, 3], keys=[1, 2, 3], values=[1.0, 1.0, 1.0], labels=[1.0, -1.0])


def with_(**changes):
    return {**GOOD, **changes}


@pytest.mark.parametrize("fields,message", [
    (with_(values=[1.0, np.nan, 1.0]), "values: non-finite value nan in row 0"),
    (with_(values=[1.0, 1.0, np.inf]), "values: non-finite value inf in row 1"),
    (with_(labels=[1.0, np.nan]), "labels: non-finite label nan in row 1"),
    (with_(labels=[1.0, 2.0]), "labels: must be -1/+1 (or 0/1)"),
    (with_(labels=[1.0]), "labels: 1 entries for 2 rows"),
    (with_(weights=[1.0, -1.0]), "weights: importance must be finite and >= 0"),
    (with_(weights=[1.0, np.inf]), "weights: importance must be finite and >= 0"),
    (with_(weights=[1.0]), "weights: 1 entries for 2 rows"),
    (with_(values=[1.0, 1.0]), "values: 2 values for 3 keys"),
    (with_(indptr=[0, 2, 4]), "indptr: ends at 4 but there are 3 keys"),
    (with_(indptr=[1, 2, 3]), "indptr: must start at 0"),
    (with_(indptr=[0, 3, 2, 3]), "indptr: decreases at row 1"),
    (with_(indptr=[]), "indptr: must have n_rows + 1 entries"),
    (with_(keys=[1, -2, 3]), "keys: must be non-negative"),
    (with_(keys=[1.5, 2, 3]), "keys: must hold integers"),
    (with_(keys=["a", "b", "c"]), "keys: must be numeric"),
    (with_(values=[[1.0], [1.0], [1.0]]), "values: must be one-dimensional"),
    (with_(labels=None), "labels: a batch to learn from needs labels"),
])
def test_malformed_batch_is_refused_and_the_model_untouched(trained, fields, message):
    before = snapshot(trained)
    with pytest.raises(BatchError) as info:
        trained.learn(Batch(**fields))
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    assert_unchanged(before, trained)


def test_non_finite_example_late_in_a_batch_rejects_the_whole_batch(trained, a9a_sample):
    X, y = a9a_sample
    batch = Batch.from_csr(X[500:900], y[500:900])
    batch.values.flags.writeable = True
    values = batch.values.copy()
    values[-1] = np.nan
    bad = Batch(batch.indptr, batch.keys, values, batch.labels)
    before = snapshot(trained)
    with pytest.raises(BatchError, match="row 399"):
        trained.learn(bad)
    assert_unchanged(before, trained)


def test_overflowing_example_undoes_its_batch(a9a_sample):
    """Issue 15, finding 4: the 300 rows before the overflowing one stayed
    learned.  Now the whole batch is undone: the model is a fresh one."""
    X, y = a9a_sample
    head = Batch.from_csr(X[:300], y[:300])
    # Finite, valid, and absurd: importance 1e308 times eta * g * 10 is inf.
    huge = Batch([0, 1], [5], [10.0], [1.0])
    rows = Batch(np.concatenate([head.indptr, head.indptr[-1] + huge.indptr[1:]]),
                 np.concatenate([head.keys, huge.keys]),
                 np.concatenate([head.values, huge.values]),
                 np.concatenate([head.labels, huge.labels]),
                 np.concatenate([np.ones(300), [1e308]]))
    options = dict(update="fobos", l1=1e-4, eta0=0.5)
    learner = Learner(**options)
    with pytest.raises(NumericError) as info:
        learner.learn(rows)
    assert info.value.learned == 0
    assert (info.value.row, info.value.reason, info.value.result.rows) == (300, "update", 0)
    assert "example 300 of the batch: the weight update is not finite" in str(info.value)
    fresh = Learner(**options)
    assert learner.state["clocks"] == fresh.state["clocks"] and learner.store_size == 0
    assert learner.progress_sums == fresh.progress_sums
    # The rows before it, learned alone, are learned as if it had never come.
    learner.learn(head)
    fresh.learn(head)
    np.testing.assert_array_equal(learner.weights()[1], fresh.weights()[1])


def test_predict_refuses_non_finite_values(trained):
    with pytest.raises(BatchError, match="non-finite"):
        trained.predict(Batch([0, 1], [1], [np.nan]))


def test_learn_wants_a_batch(trained):
    with pytest.raises(TypeError, match="onlinel1.Batch"):
        trained.learn([[1, 2, 3]])


@pytest.mark.parametrize("kwargs,name", [
    (dict(loss="cauchy"), "loss must be one of"),
    (dict(update="l1"), "update must be one of"),
    (dict(schedule="optimal"), "schedule must be one of"),
    (dict(origin="begin"), "origin must be one of"),
    (dict(l1=-1.0), "l1 must be >= 0"),
    (dict(l1="0.1"), "l1 must be a number"),
    (dict(l2=float("nan")), "l2 must be finite"),
    (dict(eta0=0.0), "eta0 must be > 0"),
    (dict(power_t=-0.5), "power_t must be >= 0"),
    (dict(decay_rate=1.5), "decay_rate must be in (0, 1]"),
    (dict(decay_steps=0), "decay_steps must be > 0"),
    (dict(fit_intercept="yes"), "fit_intercept must be True or False"),
    (dict(update="plain", l1=0.1), "l1 must be 0 with update='plain'"),
    (dict(update="cumulative", l2=20.0, eta0=0.1), "l2 * eta0 must be < 1"),
    (dict(rebase_at=0.5), "rebase_at must be > 1"),
])
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*")):
        Learner(**kwargs)


def test_unknown_option_in_a_state_is_refused():
    with pytest.raises(ValueError, match="unknown learner option"):
        LearnerOptions.from_dict({"loss": "log", "l3": 1.0})


def test_state_of_another_format_or_version_is_refused(trained):
    state = trained.state
    with pytest.raises(ValueError, match="unsupported version 99"):
        Learner.from_state({**state, "version": 99})
    with pytest.raises(ValueError, match="not a learner state"):
        Learner.from_state({**state, "format": "something"})
    with pytest.raises(ValueError, match="columns"):
        Learner.from_state({**state, "columns": {}})
