"""Per-coordinate adaptive steps, ``adaptive=True`` (docs/algorithms.md,
"Adaptive steps"): the lazy kernels against the eager reference of
tests/reference_adaptive.py (written from the doc), batching, the store,
model files, undo, options and the command line."""
from __future__ import annotations

import numpy as np
import pytest

import onlinel1
from onlinel1 import Batch, Learner, NumericError, model_file
from onlinel1.cli import build_parser
from onlinel1.cli.common import learner_options
from onlinel1.errors import OptionError
from onlinel1.options import UPDATES, LearnerOptions
from conftest import assert_same_model
from reference import eager_fit
from reference_adaptive import eager_adaptive_fit
from test_rule_registry import slot_fields

RTOL = 1e-12

#: Per data set: eta0 and l1 giving a model that keeps some, not all, features.
DATASETS = {"a9a_sample": (0.1, 2e-3), "rcv1_sample": (0.5, 5e-4)}


def dense(learner: Learner, n: int) -> np.ndarray:
    keys, w = learner.weights()
    assert np.all(w != 0.0)
    out = np.zeros(n)
    out[keys.astype(np.int64)] = w
    return out


def assert_sparse_not_empty(ref: np.ndarray, X) -> None:
    seen = int(np.count_nonzero(X.getnnz(axis=0)))
    nnz = int(np.count_nonzero(ref))
    assert 0.05 * seen <= nnz <= 0.95 * seen, f"nnz {nnz} of {seen} seen"


def importance(n: int) -> np.ndarray:
    s = np.random.default_rng(11).uniform(0.0, 2.5, n)
    s[::13] = 0.0       # examples that must not move the model
    return s


# ----------------------------------------------------------- against the reference

@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("update", ["cumulative", "fobos"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
@pytest.mark.parametrize("schedule", ["constant", "invscaling"])
def test_adaptive_matches_the_eager_reference(request, dataset, update, l2, schedule):
    X, y = request.getfixturevalue(dataset)
    eta0, l1 = DATASETS[dataset]
    s = importance(X.shape[0])
    o = dict(update=update, l1=l1, l2=l2, eta0=eta0, schedule=schedule, fit_intercept=True)
    learner = Learner(adaptive=True, **o)
    result = learner.learn(Batch.from_csr(X, y, s))
    w_ref, b_ref, losses = eager_adaptive_fit(X, y, weights=s, **o)
    assert_same_model(dense(learner, X.shape[1]), w_ref)
    assert abs(learner.intercept - b_ref) <= RTOL * abs(b_ref)
    mean = float(np.sum(s * losses) / np.sum(s))
    assert abs(result.loss - mean) <= RTOL * mean
    if update == "cumulative":
        assert_sparse_not_empty(w_ref, X)
    # Adaptive is another rule: the same settings without it differ.
    w_plain, _, _ = eager_fit(X, y, weights=s, loss="log", **o)
    assert np.abs(w_plain - w_ref).max() > 1e-3 * np.abs(w_ref).max()


def test_fobos_adaptive_is_adagrad_fobos_bit_for_bit(a9a_sample):
    X, y = a9a_sample
    batch = Batch.from_csr(X, y, importance(X.shape[0]))
    o = dict(l1=2e-3, l2=1e-3, eta0=0.1, schedule="invscaling", adagrad_delta=1e-6)
    a = Learner(update="fobos", adaptive=True, **o)
    b = Learner(update="adagrad-fobos", **o)
    assert a._kernel.kernel == b._kernel.kernel == "adagrad_fobos"
    assert a.learn(batch) == b.learn(batch)
    assert a.nnz > 10
    assert a.state["columns"].keys() == b.state["columns"].keys() == {"grad_sq_sum", "last_step"}
    for column in a.state["columns"]:
        assert a.state["columns"][column].tobytes() == b.state["columns"][column].tobytes()
    assert a.state["weights"].tobytes() == b.state["weights"].tobytes()
    assert a.state["clocks"] == b.state["clocks"]


# ----------------------------------------------------------- mini-batches

@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("B", [2, 7, 32])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_cumulative_adaptive_minibatch_matches_the_reference(request, dataset, B, l2):
    X, y = request.getfixturevalue(dataset)
    eta0, l1 = DATASETS[dataset]
    s = importance(X.shape[0])
    o = dict(update="cumulative", l1=l1, l2=l2, eta0=eta0, schedule="invscaling",
             fit_intercept=True)
    learner = Learner(adaptive=True, minibatch=B, **o)
    learner.learn(Batch.from_csr(X, y, s))
    learner.flush()
    w_ref, b_ref, _ = eager_adaptive_fit(X, y, B=B, weights=s, **o)
    assert_same_model(dense(learner, X.shape[1]), w_ref)
    assert abs(learner.intercept - b_ref) <= RTOL * abs(b_ref)
    sequential, _, _ = eager_adaptive_fit(X, y, B=1, weights=s, **o)
    assert np.abs(sequential - w_ref).max() > 1e-6     # B matters: not vacuous


@pytest.mark.parametrize("loss", ["log", "hinge"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_b1_minibatch_loop_is_the_sequential_loop_bit_for_bit(a9a_sample, loss, l2):
    X, y = a9a_sample
    batch = Batch.from_csr(X, y, importance(X.shape[0]))
    o = dict(update="cumulative", adaptive=True, l1=2e-3, l2=l2, eta0=0.1, loss=loss)
    seq, mb = Learner(**o), Learner(**o)
    r_seq = seq._kernel.learn(batch.indptr, batch.keys, batch.values, batch.labels,
                              batch.weights)
    r_mb = mb._kernel.learn_minibatch(batch.indptr, batch.keys, batch.values, batch.labels,
                                      batch.weights, 1)
    assert r_seq == r_mb
    assert seq.nnz > 10
    assert seq.state["weights"].tobytes() == mb.state["weights"].tobytes()
    assert seq.state["keys"].tobytes() == mb.state["keys"].tobytes()
    for column in seq.state["columns"]:
        assert seq.state["columns"][column].tobytes() == mb.state["columns"][column].tobytes()


@pytest.mark.parametrize("update,minibatch", [("cumulative", 1), ("cumulative", 7),
                                              ("fobos", 1)])
def test_any_cut_into_batches_gives_identical_weights(rcv1_sample, update, minibatch):
    X, y = rcv1_sample
    batch = Batch.from_csr(X, y)
    o = dict(update=update, adaptive=True, l1=5e-4, l2=1e-3, eta0=0.5, minibatch=minibatch)
    whole = Learner(**o)
    whole.learn(batch)
    whole.flush()
    for cuts in ([1, 2, 50, 51, 199], list(range(0, 300, 7))[1:]):
        cut = Learner(**o)
        for lo, hi in zip([0] + cuts, cuts + [batch.n_rows]):
            cut.learn(batch.slice(lo, hi))
        cut.flush()
        assert cut.state["keys"].tobytes() == whole.state["keys"].tobytes()
        assert cut.state["weights"].tobytes() == whole.state["weights"].tobytes()
        assert cut.intercept == whole.intercept


# ----------------------------------------------------------- the store

def test_the_slot_and_its_state_columns():
    learner = Learner(update="cumulative", adaptive=True)
    assert learner._kernel.kernel == "cumulative_adaptive"
    columns = ("grad_sq_sum", "cumulative_penalty", "last_step")
    assert onlinel1.learner.state_columns(learner.options) == columns
    assert slot_fields("cumulative_adaptive") == ["key_hash", "w", *columns]
    assert learner._kernel.store.slot_size == 40
    assert learner._kernel.store.n_aux == 3


@pytest.mark.parametrize("minibatch", [1, 7])
def test_exact_zeros_leave_the_store(a9a_sample, minibatch):
    X, y = a9a_sample
    learner = Learner(update="cumulative", adaptive=True, l1=2e-3, eta0=0.1,
                      minibatch=minibatch)
    learner.learn(Batch.from_csr(X, y))
    learner.flush()
    _, w = learner._kernel.current_weights()
    assert w.size == learner.store_size
    assert np.all(w != 0.0)
    seen = int(np.count_nonzero(X.getnnz(axis=0)))
    assert learner.store_size < seen          # the penalty did remove features


def test_a_failing_batch_is_undone_bit_for_bit(a9a_sample):
    from conftest import state_bits, with_overflowing_row
    X, y = a9a_sample
    o = dict(update="cumulative", adaptive=True, l1=2e-3, l2=1e-3, eta0=0.1)
    learner = Learner(**o)
    learner.learn(Batch.from_csr(X[:1000], y[:1000]))
    before = state_bits(learner.state)
    bad = with_overflowing_row(Batch.from_csr(X[1000:1500], y[1000:1500]), 499)
    with pytest.raises(NumericError):
        learner.learn(bad)
    assert state_bits(learner.state) == before


def test_save_and_load_round_trip(a9a_sample, tmp_path):
    X, y = a9a_sample
    batch = Batch.from_csr(X, y)
    o = dict(update="cumulative", adaptive=True, l1=2e-3, l2=1e-3, eta0=0.1)
    straight = Learner(**o)
    straight.learn(batch)
    first = Learner(**o)
    first.learn(batch.slice(0, 1200))
    path = tmp_path / "m.onl1"
    onlinel1.save(first, path)
    resumed = onlinel1.load(path)
    assert resumed.options == first.options and resumed.options.adaptive
    assert resumed.state["columns"].keys() == {"grad_sq_sum", "cumulative_penalty", "last_step"}
    resumed.learn(batch.slice(1200, batch.n_rows))
    assert resumed.state["weights"].tobytes() == straight.state["weights"].tobytes()
    assert resumed.state["keys"].tobytes() == straight.state["keys"].tobytes()
    # Pickling goes through the same state.
    again = model_file.decode(model_file.encode(straight))[0]
    assert again.state["weights"].tobytes() == straight.state["weights"].tobytes()


def test_a_model_without_adaptive_keeps_its_header():
    assert "adaptive" not in LearnerOptions().to_state_dict()
    assert LearnerOptions(update="fobos", adaptive=True).to_state_dict()["adaptive"] is True


def test_warm_start_keeps_the_weights_until_their_first_gradient(a9a_sample):
    X, y = a9a_sample
    learner = Learner(update="cumulative", l1=2e-3, eta0=0.1)
    learner.learn(Batch.from_csr(X[:500], y[:500]))
    warm = learner.with_options(LearnerOptions(update="cumulative", adaptive=True, l1=2e-3))
    assert np.array_equal(warm.weights()[1], learner.weights()[1])
    warm.learn(Batch.from_csr(X[500:], y[500:]))
    assert warm.nnz > 10


# ----------------------------------------------------------- options and the CLI

@pytest.mark.parametrize("update", [u for u in UPDATES if u not in ("cumulative", "fobos")])
def test_adaptive_with_a_rule_that_does_not_take_it(update):
    kwargs = {"l1": 0.0} if update == "plain" else {}
    with pytest.raises(OptionError, match="adaptive is not defined with") as info:
        LearnerOptions(update=update, adaptive=True, **kwargs)
    assert info.value.option == "adaptive" and info.value.reason == "conflict"


def test_adaptive_refusals():
    with pytest.raises(OptionError, match="origin must be 'first-seen'") as info:
        LearnerOptions(update="cumulative", origin="start", adaptive=True)
    assert info.value.option == "origin"
    LearnerOptions(update="fobos", origin="start", adaptive=True)      # fobos has no origin
    with pytest.raises(OptionError, match="adaptive cannot run with max_features") as info:
        LearnerOptions(update="cumulative", adaptive=True, max_features=100)
    assert info.value.option == "adaptive"
    with pytest.raises(OptionError, match="expire_after_examples"):
        LearnerOptions(update="cumulative", adaptive=True, expire_after_examples=100)
    LearnerOptions(update="fobos", adaptive=True, max_features=100)    # adagrad-fobos: 2 words
    with pytest.raises(OptionError, match="adaptive must be True or False") as info:
        LearnerOptions(adaptive=1)
    assert info.value.option == "adaptive"
    # The adaptive L2 is 1 / (1 + eta_i l2): no eta0 * l2 limit.
    LearnerOptions(update="cumulative", adaptive=True, l2=20.0, eta0=0.1)


def test_command_line_flags():
    parser = build_parser()
    args = parser.parse_args(["train", "x.svm", "--update", "fobos", "--adaptive", "-l", "0.5"])
    options = learner_options(args)
    assert options.adaptive and options.eta0 == 0.5
    default = learner_options(parser.parse_args(["train", "x.svm"]))
    # The defaults chosen by benchmarks/bench_defaults.py (README,
    # "Defaults"), the same for train, Learner() and the classifier.
    assert (default.update, default.eta0, default.l1) == ("adagrad-fobos", 0.05, 1e-4)
    assert not default.adaptive and default == LearnerOptions() == Learner().options
    from onlinel1.sklearn import OnlineL1Classifier
    params = OnlineL1Classifier().get_params()
    assert (params["update"], params["eta0"], params["l1"]) == ("adagrad-fobos", 0.05, 1e-4)
    # The default rule adapts its steps already: --adaptive alone says so.
    with pytest.raises(Exception, match="update='adagrad-fobos'.*adapt their steps already"):
        learner_options(parser.parse_args(["train", "x.svm", "--adaptive"]))
    args = parser.parse_args(["train", "x.svm", "--adaptive", "--update", "ftrl"])
    with pytest.raises(Exception, match="--adaptive is not defined with update='ftrl'"):
        learner_options(args)


def test_serve_adaptive_learns_as_the_learner(start_daemon, a9a_sample):
    """``serve --update cumulative --adaptive`` fed messages of 137 rows
    predicts exactly as the Learner fed them at once."""
    from test_daemon import learn_in_messages, predictions_of
    X, y = a9a_sample
    batch = Batch.from_csr(X, y)
    daemon = start_daemon("--update", "cumulative", "--adaptive", "--l1", "2e-3",
                          "-l", "0.2")
    learn_in_messages(daemon, batch, 1500)
    learner = Learner(update="cumulative", adaptive=True, l1=2e-3, eta0=0.2)
    learner.learn(batch.slice(0, 1500))
    test = batch.slice(1500, batch.n_rows)
    got = predictions_of(daemon, test)
    np.testing.assert_array_equal(got, learner.predict(test))
    plain = Learner(update="cumulative", l1=2e-3, eta0=0.2)
    plain.learn(batch.slice(0, 1500))
    assert np.abs(np.asarray(got) - plain.predict(test)).max() > 1e-6


@pytest.mark.parametrize("minibatch", [1, 7])
def test_float32_values_learn_as_their_float64_promotion(a9a_sample, minibatch):
    X, y = a9a_sample
    X32 = X.astype(np.float32)
    o = dict(update="cumulative", adaptive=True, l1=2e-3, l2=1e-3, eta0=0.1,
             minibatch=minibatch)
    a, b = Learner(**o), Learner(**o)
    a.learn(Batch.from_csr(X32, y))
    b.learn(Batch.from_csr(X32.astype(np.float64), y))
    a.flush()
    b.flush()
    assert a.nnz > 10
    assert a.state["weights"].tobytes() == b.state["weights"].tobytes()
