"""The exceptions carry their facts as fields (field, row, reason, option)
and Learner.learn returns a LearnResult whose numbers are the progressive
evaluation, computed here independently."""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import onlinel1
from onlinel1 import (Batch, BatchError, LearnResult, Learner, LearnerOptions, NumericError,
                      OptionError, StoreFullError)
from onlinel1.errors import stopped_message

from conftest import state_bits

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def rows(a9a_sample):
    """60 real a9a rows as a Batch with writable copies of its arrays."""
    X, y = a9a_sample
    b = Batch.from_csr(X[:60], y[:60])
    return dict(indptr=b.indptr.copy(), keys=b.keys.copy(), values=b.values.copy(),
                labels=b.labels.copy(), weights=np.ones(b.n_rows))


def changed(rows, **changes):
    return {**{k: v.copy() for k, v in rows.items()}, **changes}


def with_entry(rows, name, index, value):
    out = changed(rows)
    out[name] = out[name].astype(float) if name == "keys" else out[name]
    out[name][index] = value
    return out


def first_value_of(rows, row):
    return int(rows["indptr"][row])


# --------------------------------------------------------------- BatchError

def bad_batches(rows):
    """(id, how to make the error, field, row, reason): one or more per
    reason code."""
    n = rows["labels"].size
    ragged = [1.0, [1.0, 2.0]] + [1.0] * (rows["keys"].size - 2)
    return [
        ("not_array", lambda: Batch(**changed(rows, values=ragged)), "values", None, "not_array"),
        ("not_array keys", lambda: Batch(**changed(rows, keys=[1, [2, 3]])), "keys", None,
         "not_array"),
        ("2-d values", lambda: Batch(**changed(rows, values=rows["values"][:, None])), "values",
         None, "shape"),
        ("labels short", lambda: Batch(**changed(rows, labels=rows["labels"][:-1])), "labels",
         None, "shape"),
        ("weights long", lambda: Batch(**changed(rows, weights=np.ones(n + 1))), "weights", None,
         "shape"),
        ("values short", lambda: Batch(**changed(rows, values=rows["values"][:-1])), "values",
         None, "shape"),
        ("indptr end", lambda: Batch(**with_entry(rows, "indptr", -1, rows["indptr"][-1] + 1)),
         "indptr", None, "shape"),
        ("indptr empty", lambda: Batch(**changed(rows, indptr=np.zeros(0, np.int64))), "indptr",
         None, "shape"),
        ("string keys", lambda: Batch(**changed(rows, keys=np.array(["a"] * rows["keys"].size))),
         "keys", None, "dtype"),
        ("fractional keys", lambda: Batch(**with_entry(rows, "keys", 5, 1.5)), "keys", None,
         "dtype"),
        ("from_rows float key", lambda: Batch.from_rows(
            [{1: 1.0}, {2: 1.0}, {3: 1.0, 1.5: 1.0}], [1, 1, 1]), "keys", 2, "dtype"),
        ("from_rows string value", lambda: Batch.from_rows([{1: 1.0}, {2: "a"}], [1, 1]),
         "values", None, "dtype"),
        ("negative key", lambda: Batch(**with_entry(rows, "keys", 5, -3)), "keys", None,
         "out_of_range"),
        ("key past 2**64", lambda: Batch.from_rows([{1: 1.0}, {2**64: 1.0}], [1, 1]), "keys",
         None, "out_of_range"),
        ("indptr start", lambda: Batch(**with_entry(rows, "indptr", 0, 1)), "indptr", None,
         "start"),
        ("indptr decreasing", lambda: Batch(**with_entry(rows, "indptr", 8, rows["indptr"][9] + 1)),
         "indptr", 8, "decreasing"),
    ]


def learn_errors(rows):
    """The same for what Learner.learn refuses (the batch itself is well formed)."""
    return [
        ("nan value", with_entry(rows, "values", first_value_of(rows, 17) + 1, np.nan), "values",
         17, "not_finite"),
        ("inf label", with_entry(rows, "labels", 23, np.inf), "labels", 23, "not_finite"),
        ("nan importance", with_entry(rows, "weights", 31, np.nan), "weights", 31, "not_finite"),
        ("negative importance", with_entry(rows, "weights", 40, -0.5), "weights", 40, "negative"),
        ("label 2", with_entry(rows, "labels", 44, 2.0), "labels", 44, "label_out_of_range"),
        ("no labels", changed(rows, labels=None), "labels", None, "missing"),
    ]


def test_every_reason_code_is_tested(rows):
    tested = {case[-1] for case in bad_batches(rows) + learn_errors(rows)}
    # "max_features" needs a learner with a memory budget: tests/test_budget.py
    # (test_a_row_larger_than_the_budget_is_refused_before_anything_is_learned).
    assert tested | {"max_features"} == set(BatchError.REASONS)


@pytest.mark.parametrize("index", range(16))
def test_a_malformed_batch_says_field_row_and_reason(rows, index):
    what, make, field, row, reason = bad_batches(rows)[index]
    with pytest.raises(BatchError) as info:
        make()
    exc = info.value
    assert (exc.field, exc.row, exc.reason) == (field, row, reason), (what, str(exc))
    assert isinstance(exc, ValueError)
    assert str(exc).startswith(f"{field}: ")


@pytest.mark.parametrize("index", range(6))
def test_a_batch_the_learner_refuses_says_field_row_and_reason(rows, index):
    what, fields, field, row, reason = learn_errors(rows)[index]
    learner = Learner(update="fobos", l1=1e-4)
    with pytest.raises(BatchError) as info:
        learner.learn(Batch(**fields))
    exc = info.value
    assert (exc.field, exc.row, exc.reason) == (field, row, reason), (what, str(exc))
    assert str(exc).startswith(f"{field}: ")
    if row is not None:
        assert str(exc).endswith(f"in row {row}")
    assert learner.progress["examples"] == 0 and learner.examples_seen == 0


def test_batch_error_is_the_same_class_everywhere():
    from onlinel1 import batch, errors, learner
    assert batch.BatchError is errors.BatchError is onlinel1.BatchError is learner.BatchError
    exc = BatchError("labels: x", field="labels", row=3, reason="not_finite")
    assert (str(exc), exc.field, exc.row, exc.reason) == ("labels: x", "labels", 3, "not_finite")
    assert BatchError("x").row is None and BatchError("x").field is None


# -------------------------------------------------------------- OptionError

#: One bad value (and the reason) for every LearnerOptions field.
BAD_OPTIONS = {
    "loss": (dict(loss="cauchy"), "choice"),   # "logistic" is a name of "log"
    "quantile_tau": (dict(loss="quantile", quantile_tau=1.0), "range"),
    "update": (dict(update="lasso"), "choice"),
    "l1": (dict(l1=-1e-3), "range"),
    "l2": (dict(l2=float("nan")), "not_finite"),
    "eta0": (dict(eta0=0.0), "range"),
    "schedule": (dict(schedule="optimal"), "choice"),
    "power_t": (dict(power_t="0.5"), "type"),
    "decay_rate": (dict(decay_rate=1.5), "range"),
    "decay_steps": (dict(decay_steps=-1), "range"),
    "origin": (dict(origin="begin"), "choice"),
    "fit_intercept": (dict(fit_intercept="yes"), "type"),
    "truncate_every": (dict(update="truncated", truncate_every=0), "range"),
    "truncate_theta": (dict(update="truncated", truncate_theta=0.0), "range"),
    "adagrad_delta": (dict(update="adagrad-fobos", adagrad_delta=0.0), "range"),
    "ftrl_beta": (dict(update="ftrl", ftrl_beta=-1.0), "range"),
    "spred_init": (dict(update="spred", spred_init=0.0), "range"),
    "spred_threshold": (dict(update="spred", spred_threshold=-1e-6), "range"),
    "rebase_at": (dict(rebase_at=1.0), "range"),
    "max_features": (dict(max_features=-1), "range"),
    "expire_after_examples": (dict(expire_after_examples=2.5), "type"),
    "interactions": (dict(interactions=["a"]), "range"),
    "namespaced_integers": (dict(namespaced_integers=1), "type"),
    "minibatch": (dict(minibatch=0), "range"),
    "adaptive": (dict(adaptive="yes"), "type"),
}


def test_every_option_has_a_bad_value_here():
    assert set(BAD_OPTIONS) == {f.name for f in dataclasses.fields(LearnerOptions)}


@pytest.mark.parametrize("option", sorted(BAD_OPTIONS))
def test_a_bad_option_says_which_and_why(option):
    kwargs, reason = BAD_OPTIONS[option]
    with pytest.raises(OptionError) as info:
        LearnerOptions(**kwargs)
    exc = info.value
    assert (exc.option, exc.reason) == (option, reason), str(exc)
    assert isinstance(exc, ValueError)
    assert str(exc) == f"{option} {exc.detail}"
    # The learner and from_dict raise the same.
    with pytest.raises(OptionError) as again:
        LearnerOptions.from_dict(kwargs)
    assert (again.value.option, str(again.value)) == (option, str(exc))


@pytest.mark.parametrize("kwargs,option,reason,message", [
    (dict(update="plain", l1=0.1), "l1", "conflict", "l1 must be 0 with update='plain'"),
    (dict(update="spred", l1=0.5, eta0=2.0), "l1", "conflict", "l1 * eta0 must be < 1"),
    (dict(update="cumulative", l2=20.0, eta0=0.1), "l2", "conflict", "l2 * eta0 must be < 1"),
    (dict(update="truncated", l2=1e-4), "l2", "conflict", "l2 must be 0 with update='truncated'"),
    (dict(truncate_every=2.5), "truncate_every", "type", "truncate_every must be an integer"),
    (dict(truncate_theta="inf"), "truncate_theta", "type", "truncate_theta must be a number"),
    (dict(eta0=float("inf")), "eta0", "not_finite", "eta0 must be finite"),
    (dict(l1=True), "l1", "type", "l1 must be a number, got True"),
])
def test_options_that_conflict_or_are_of_the_wrong_kind(kwargs, option, reason, message):
    with pytest.raises(OptionError) as info:
        Learner(**kwargs)
    assert (info.value.option, info.value.reason) == (option, reason)
    assert str(info.value).startswith(message)


def test_an_unknown_option_names_it():
    with pytest.raises(OptionError) as info:
        LearnerOptions.from_dict({"loss": "log", "l3": 1.0, "alpha": 2})
    assert (info.value.option, info.value.reason, info.value.detail) == ("alpha", "unknown", None)
    assert str(info.value) == "unknown learner option(s): alpha, l3"


# --------------------------------------------------- NumericError and friends

def overflow_batch(X, y, at: int, how: str) -> Batch:
    """Real rows 0..n with row ``at`` made to overflow: ``update`` (features
    not seen before, so that the margin is the intercept's, at 100 with
    importance 1e308: the step is infinite) or ``margin`` (row ``at - 1``
    takes a step of ~1e299 on its features, row ``at`` has those features
    at 1e10: the margin is infinite)."""
    b = Batch.from_csr(X[:at + 40], y[:at + 40])
    values, weights = b.values.copy(), np.ones(b.n_rows)
    keys, indptr = b.keys.copy(), b.indptr
    if how == "update":
        keys[indptr[at]:indptr[at + 1]] += 1000
        values[indptr[at]:indptr[at + 1]] = 100.0
        weights[at] = 1e308
    else:
        weights[at - 1] = 1e300
        lo, hi = indptr[at - 1], indptr[at]
        n = min(hi - lo, indptr[at + 1] - indptr[at])
        keys[indptr[at]:indptr[at] + n] = keys[lo:lo + n]
        values[indptr[at]:indptr[at + 1]] = 1e10
    return Batch(indptr, keys, values, b.labels, weights)


@pytest.mark.parametrize("how", ["update", "margin"])
def test_numeric_error_carries_the_row_the_reason_and_undoes_the_batch(a9a_sample, how):
    """Issue 15, finding 4: the 250 rows before the failing one stayed
    learned.  Now the batch is undone: the state is bit for bit the one
    before it, and the error still names the row and the reason."""
    X, y = a9a_sample
    batch = overflow_batch(X, y, 250, how)
    options = dict(update="fobos", l1=1e-4, eta0=0.5)
    learner = Learner(**options)
    learner.learn(Batch.from_csr(X[1000:1200], y[1000:1200]))
    before = learner.state
    with pytest.raises(NumericError) as info:
        learner.learn(batch)
    exc = info.value
    assert (exc.row, exc.reason, exc.learned, exc.result.rows) == (250, how, 0, 0)
    assert str(exc) == stopped_message(how, 250)
    assert str(exc).startswith(f"example 250 of the batch: the "
                               f"{'margin' if how == 'margin' else 'weight update'} is not finite")
    assert str(exc).endswith("the batch was not learned (the model is as it was before it)")
    assert state_bits(learner.state) == state_bits(before)


@pytest.mark.parametrize("how", ["update", "margin"])
def test_in_an_open_batch_the_error_carries_the_partial_result_until_rollback(a9a_sample, how):
    X, y = a9a_sample
    batch = overflow_batch(X, y, 250, how)
    options = dict(update="fobos", l1=1e-4, eta0=0.5)
    learner = Learner(**options)
    before = learner.state
    learner.begin()
    with pytest.raises(NumericError) as info:
        learner.learn(batch, rows=(0, 100))
        learner.learn(batch, check=False, rows=(100, batch.n_rows))
    exc = info.value
    assert (exc.row, exc.reason, exc.learned) == (250, how, 150)
    assert str(exc) == stopped_message(how, 250, 150)
    # The partial result is what learning rows 100:250 after 0:100 gives.
    reference = Learner(**options)
    reference.learn(batch.slice(0, 100))
    expected = reference.learn(batch.slice(100, 250))
    assert exc.result == expected
    assert learner.progress_sums == reference.progress_sums
    assert learner.in_batch
    learner.rollback()
    assert not learner.in_batch
    assert state_bits(learner.state) == state_bits(before)
    # After a rollback the learner goes on as if the batch had never come.
    good = Batch.from_csr(X[:300], y[:300])
    learner.learn(good)
    fresh = Learner(**options)
    fresh.learn(good)
    assert state_bits(learner.state) == state_bits(fresh.state)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS as Linux has it")
def test_store_full_error_carries_the_row_and_the_partial_result_until_rollback():
    # A child process whose address space is capped a little above what it
    # holds: the store cannot grow to the batch's 5M distinct keys.
    child = r"""
import json, resource
import numpy as np
from onlinel1 import Batch, Learner, StoreFullError
n_rows, per_row = 5000, 1000
keys = np.arange(n_rows * per_row, dtype=np.uint64)
batch = Batch(np.arange(0, keys.size + 1, per_row), keys, np.ones(keys.size), np.ones(n_rows))
learner = Learner(update="fobos", l1=0.0, eta0=0.1)
learner.learn(batch.slice(0, 10))
with open("/proc/self/statm") as f:
    vm = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (vm + 64 * 2**20, resource.RLIM_INFINITY))
learner.begin()
try:
    learner.learn(batch, rows=(10, n_rows))
    print(json.dumps(None))
except StoreFullError as exc:
    examples = learner.progress["examples"]
    learner.rollback()
    print(json.dumps({"row": exc.row, "learned": exc.learned, "reason": exc.reason,
                      "result": [exc.result.rows, exc.result.weight_sum, exc.result.correct],
                      "examples": examples, "message": str(exc),
                      "memory": isinstance(exc, MemoryError),
                      "undone": [learner.examples_seen, learner.store_size,
                                 learner.progress["examples"]]}))
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got is not None, "the store grew past the address-space limit"
    row, learned = got["row"], got["learned"]
    assert got["reason"] == "store_full" and got["memory"]
    assert 10 < row < 5000 and row == 10 + learned
    assert got["result"] == [learned, float(learned), learned]   # labels 1, margins >= 0
    assert got["examples"] == row                                 # the 10 before, then these
    assert got["message"] == stopped_message("store_full", row, learned)
    assert got["undone"] == [10, 10 * 1000, 10]                   # rolled back to the 10 rows


def test_the_fields_are_keywords_and_the_message_is_written_from_them():
    given = NumericError(None, 4, (0.0, 4.0, 2), row=104, reason="margin")
    assert (given.row, given.reason, given.learned) == (104, "margin", 4)
    assert given.result == LearnResult(4, 0.0, 4.0, 2)
    assert str(given) == stopped_message("margin", 104, 4)
    assert isinstance(given, FloatingPointError)
    full = StoreFullError(None, 3, (0.5, 3.0, 1), row=3)
    assert (full.row, full.reason) == (3, "store_full") and isinstance(full, MemoryError)
    assert str(full) == stopped_message("store_full", 3, 3)


# ------------------------------------------------------------- LearnResult

@pytest.mark.parametrize("loss", ["log", "hinge", "squared"])
def test_the_result_is_the_progressive_evaluation_row_by_row(a9a_sample, loss):
    # An independent computation: a second learner taught one row at a
    # time, its margin read before each row with decision_function.
    X, y = a9a_sample
    n = 300
    s = np.random.default_rng(3).uniform(0.2, 2.0, n)
    batch = Batch.from_csr(X[:n], y[:n], s)
    options = dict(loss=loss, update="fobos", l1=1e-4, eta0=0.1 if loss != "squared" else 0.01)
    result = Learner(**options).learn(batch)

    stepper = Learner(**options)
    losses, correct = np.zeros(n), 0
    for i in range(n):
        row = batch.slice(i, i + 1)
        m = stepper.decision_function(row)[0]
        if loss == "log":
            losses[i] = np.logaddexp(0.0, -y[i] * m)
        elif loss == "hinge":
            losses[i] = max(0.0, 1.0 - y[i] * m)
        else:
            losses[i] = 0.5 * (m - y[i]) ** 2
        correct += (m > 0) == (y[i] > 0)
        stepper.learn(row, check=False)
    assert result.rows == n
    assert result.weight_sum == pytest.approx(s.sum(), rel=1e-13)
    assert result.loss_sum == pytest.approx(np.dot(s, losses), rel=1e-10)
    assert result.loss == pytest.approx(np.dot(s, losses) / s.sum(), rel=1e-10)
    if loss == "squared":
        assert result.correct is None and math.isnan(result.accuracy)
    else:
        assert result.correct == correct and result.accuracy == correct / n
        assert 0.6 < result.accuracy < 0.95     # a9a, learned online


def test_the_results_add_up_to_the_progress(a9a_sample):
    X, y = a9a_sample
    learner = Learner(update="cumulative", l1=1e-4)
    results = [learner.learn(Batch.from_csr(X[a:a + 400], y[a:a + 400]))
               for a in range(0, 2000, 400)]
    sums = learner.progress_sums
    assert sum(r.rows for r in results) == sums["examples"] == 2000
    assert sum(r.correct for r in results) == sums["correct"]
    assert math.fsum(r.loss_sum for r in results) == pytest.approx(sums["loss_sum"], rel=1e-13)
    assert learner.progress["loss"] == pytest.approx(
        math.fsum(r.loss_sum for r in results) / math.fsum(r.weight_sum for r in results))


def test_an_empty_result_has_nan_loss_and_accuracy():
    result = Learner().learn(Batch([0], [], [], []))
    assert (result.rows, result.loss_sum, result.weight_sum, result.correct) == (0, 0.0, 0.0, 0)
    assert math.isnan(result.loss) and math.isnan(result.accuracy)
    zero_weight = Learner().learn(Batch([0, 1], [1], [1.0], [1.0], [0.0]))
    assert zero_weight.rows == 1 and math.isnan(zero_weight.loss)
    assert zero_weight.accuracy == 0.0     # margin 0 is not a right prediction of +1
    with pytest.raises(dataclasses.FrozenInstanceError):
        zero_weight.rows = 2
    assert onlinel1.LearnResult is LearnResult
    assert not hasattr(Learner(), "last_counts")


# ------------------------------------------------------------------ README

def _readme_api_block() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```\n", start)]


def _commented_value(line: str):
    """The literal a README comment shows for the expression on ``line``
    (``expr  # ("values", 1, ...)...``), or None."""
    comment = line.split("#", 1)[1].strip() if "#" in line else ""
    if not comment.startswith("("):
        return None
    depth = 0
    for i, ch in enumerate(comment):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return ast.literal_eval(comment[:i + 1])
    return None


def test_the_readme_api_block_runs_and_shows_what_it_gives():
    source = _readme_api_block()
    lines = source.splitlines()
    namespace: dict = {}
    checked = []

    def check(node, namespace):
        value = eval(compile(ast.Expression(node.value), "README.md", "eval"), namespace)
        expected = _commented_value(lines[node.lineno - 1])
        if expected is not None:
            assert value == expected, (lines[node.lineno - 1], value)
            checked.append(expected)

    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr):
            check(node, namespace)
        elif isinstance(node, ast.Try):
            try:
                exec(compile(ast.Module(node.body, []), "README.md", "exec"), namespace)
            except Exception as exc:   # noqa: BLE001 - matched against the handlers below
                handler = next(h for h in node.handlers
                               if isinstance(exc, eval(ast.unparse(h.type), namespace)))
                namespace[handler.name] = exc
                for statement in handler.body:
                    check(statement, namespace)
            else:
                raise AssertionError(f"README: {ast.unparse(node.body[0])} raised nothing")
        else:
            exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
    assert len(checked) == 4, checked
