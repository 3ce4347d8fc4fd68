"""Every update rule of the lazy Cython learner against the eager numpy
reference of ``tests/reference.py`` (written from docs/algorithms.md alone).

The learner touches only the features present in an example and catches the
others up lazily; the reference applies every penalty to every weight at
every step.  On real data (the a9a and RCV1 samples) they must give the same
weights to 1e-12 relative, the same set of non-zero weights, the same
intercept and the same progressive loss.
"""
from __future__ import annotations

import numpy as np
import pytest

from onlinel1 import Batch, Learner
from reference import eager_fit, weighted_mean_loss

RTOL = 1e-12
#: An exact-zero mismatch is tolerated only where the reference weight is
#: itself this small (a clip that lands on 0 in one rounding and not the other).
ZERO_TOL = 1e-12


# ------------------------------------------------------------------ helpers

def learner_dense(learner: Learner, n_features: int) -> np.ndarray:
    """The learner's caught-up non-zero weights as a dense vector."""
    keys, w = learner.weights()
    assert np.all(w != 0.0)
    assert np.all(np.diff(keys.astype(np.int64)) > 0), "keys must be sorted and unique"
    assert keys.size == 0 or int(keys.max()) < n_features
    dense = np.zeros(n_features)
    dense[keys.astype(np.int64)] = w
    return dense


def rel_diff(mine: np.ndarray, ref: np.ndarray) -> float:
    scale = np.abs(ref).max()
    assert scale > 0, "the reference model is empty: the comparison would be vacuous"
    return float(np.abs(mine - ref).max() / scale)


def assert_same_model(mine: np.ndarray, ref: np.ndarray) -> None:
    mismatch = (mine != 0) != (ref != 0)
    bad = mismatch & (np.abs(ref) >= ZERO_TOL)
    assert not bad.any(), (
        f"{int(bad.sum())} non-zero pattern mismatches, e.g. keys {np.flatnonzero(bad)[:10]}: "
        f"learner {mine[bad][:10]}, reference {ref[bad][:10]}")
    err = rel_diff(mine, ref)
    assert err <= RTOL, f"max |diff| / max |ref| = {err:.3g} > {RTOL:g}"


def assert_close(a: float, b: float, what: str) -> None:
    scale = max(abs(b), 1e-300)
    assert abs(a - b) <= RTOL * scale, f"{what}: learner {a!r} vs reference {b!r}"


def seen_features(X) -> int:
    return int(np.count_nonzero(X.getnnz(axis=0)))


def assert_genuinely_sparse(ref: np.ndarray, X, lo: float = 0.05, hi: float = 0.95) -> None:
    """The L1 penalty zeroed some, but not all, of the features seen."""
    seen = seen_features(X)
    nnz = int(np.count_nonzero(ref))
    assert lo * seen <= nnz <= hi * seen, (
        f"nnz {nnz} of {seen} features seen is outside [{lo:.0%}, {hi:.0%}]")


def fit_both(X, y, weights=None, **options):
    """(learner, reference (w, b, losses), learner's mean progressive loss)."""
    options.setdefault("fit_intercept", False)
    learner = Learner(**options)
    mean_loss = learner.learn(Batch.from_csr(X, y, weights)).loss
    ref = eager_fit(X, y, weights=weights, **options)
    return learner, ref, mean_loss


def check(X, y, weights=None, **options):
    """Fit both, compare weights, intercept and progressive loss; return the
    reference weights."""
    learner, (w_ref, b_ref, losses), mean_loss = fit_both(X, y, weights, **options)
    assert learner.examples_seen == X.shape[0]
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert_close(learner.intercept, b_ref, "intercept")
    assert_close(mean_loss, weighted_mean_loss(losses, weights), "progressive loss")
    return w_ref


# ---------------------------------------------------------- rules x schedules

#: (rule id, update, origin, l1 factor, l2): l1 is the data set's l1 times
#: the factor (0 for no L1).
RULES = [
    ("plain-l2", "plain", "start", 0.0, 1e-3),
    ("subgradient", "subgradient", "start", 1.0, 0.0),
    ("subgradient-l2", "subgradient", "start", 1.0, 1e-3),
    ("cumulative-start", "cumulative", "start", 1.0, 0.0),
    ("cumulative-start-l2", "cumulative", "start", 1.0, 1e-3),
    ("cumulative-first-seen", "cumulative", "first-seen", 1.0, 0.0),
    ("cumulative-first-seen-l2", "cumulative", "first-seen", 1.0, 1e-3),
    ("fobos-l1", "fobos", "start", 1.0, 0.0),
    ("fobos-l2", "fobos", "start", 0.0, 1e-3),
    ("fobos-l1-l2", "fobos", "start", 1.0, 1e-3),
]

SCHEDULES = {
    "constant": {"schedule": "constant"},
    "invscaling": {"schedule": "invscaling", "power_t": 0.5},
    # decay_steps comparable to the sample length, so that eta really decays
    "exponential": {"schedule": "exponential", "decay_rate": 0.85, "decay_steps": 300.0},
}

#: Per data set: eta0 and the base l1 (chosen so that cumulative and FOBOS
#: models keep between 5 % and 95 % of the features seen).
DATASETS = {
    "a9a": {"eta0": 0.1, "l1": 2e-3},
    "rcv1": {"eta0": 0.5, "l1": 5e-4},
}


@pytest.fixture
def dataset(request, a9a_sample, rcv1_sample):
    return {"a9a": a9a_sample, "rcv1": rcv1_sample}[request.param]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("rule,update,origin,l1_factor,l2", RULES, ids=[r[0] for r in RULES])
@pytest.mark.parametrize("dataset", list(DATASETS), indirect=True)
def test_rule_matches_eager_reference(dataset, request, rule, update, origin, l1_factor, l2,
                                      schedule):
    X, y = dataset
    name = request.node.callspec.params["dataset"]
    cfg = DATASETS[name]
    l1 = cfg["l1"] * l1_factor
    w_ref = check(X, y, loss="log", update=update, origin=origin, l1=l1, l2=l2,
                  eta0=cfg["eta0"], **SCHEDULES[schedule])
    seen = seen_features(X)
    if update in ("cumulative", "fobos") and l1 > 0:
        assert_genuinely_sparse(w_ref, X)
    elif update == "subgradient":
        # Naive subgradient L1 jitters around zero instead of reaching it, so
        # it is not sparse; the penalty must still have shrunk the model
        # (L1 norm at least 5 % below the same run without L1).
        w_no_l1, _, _ = eager_fit(X, y, loss="log", update=update, origin=origin, l1=0.0,
                                  l2=l2, eta0=cfg["eta0"], **SCHEDULES[schedule])
        assert np.abs(w_ref).sum() < 0.95 * np.abs(w_no_l1).sum()
    else:
        # No L1: with the log loss every feature seen gets a non-zero weight.
        assert np.count_nonzero(w_ref) == seen


def test_first_seen_differs_from_start(a9a_sample):
    """The two origins of cumulative L1 are genuinely different rules here
    (otherwise the first-seen tests would not test the origin)."""
    X, y = a9a_sample
    common = dict(loss="log", update="cumulative", l1=2e-3, eta0=0.1)
    w_start = check(X, y, origin="start", **common)
    w_first = check(X, y, origin="first-seen", **common)
    assert np.count_nonzero(w_first) > np.count_nonzero(w_start)


# ------------------------------------------------------------ other settings

IMPORTANCE_RULES = [
    ("subgradient", "start", 1e-3),
    ("cumulative", "start", 1e-3),
    ("cumulative", "first-seen", 1e-3),
    ("fobos", "start", 1e-3),
]


@pytest.mark.parametrize("update,origin,l2", IMPORTANCE_RULES)
def test_importance_weights(a9a_sample, update, origin, l2):
    X, y = a9a_sample
    rng = np.random.default_rng(20240607)
    s = rng.uniform(0.0, 3.0, size=X.shape[0])
    s[rng.random(X.shape[0]) < 0.1] = 0.0   # examples that must not move the model
    w_ref = check(X, y, weights=s, loss="log", update=update, origin=origin, l1=2e-3, l2=l2,
                  eta0=0.1, schedule="invscaling", fit_intercept=True)
    if update != "subgradient":
        assert_genuinely_sparse(w_ref, X)
    # the importances matter: unweighted gives another model
    w_plain, _, _ = eager_fit(X, y, loss="log", update=update, origin=origin, l1=2e-3, l2=l2,
                              eta0=0.1, schedule="invscaling", fit_intercept=True)
    assert rel_diff(w_plain, w_ref) > 1e-3


@pytest.mark.parametrize("update,origin,l2", [
    ("plain", "start", 1e-3),
    ("subgradient", "start", 0.0),
    ("cumulative", "start", 1e-3),
    ("cumulative", "first-seen", 0.0),
    ("fobos", "start", 1e-3),
])
def test_squared_loss_real_valued_labels(rcv1_sample, update, origin, l2):
    X, y = rcv1_sample
    y = 2.5 * y
    w_ref = check(X, y, loss="squared", update=update, origin=origin,
                  l1=0.0 if update == "plain" else 2e-3, l2=l2, eta0=0.2,
                  schedule="exponential", decay_rate=0.85, decay_steps=300.0,
                  fit_intercept=True)
    if update in ("cumulative", "fobos"):
        assert_genuinely_sparse(w_ref, X)


@pytest.mark.parametrize("update,origin,l2", [
    ("subgradient", "start", 1e-3),
    ("cumulative", "start", 0.0),
    ("cumulative", "first-seen", 0.0),
    ("cumulative", "first-seen", 1e-3),
    ("fobos", "start", 0.0),
    ("fobos", "start", 1e-3),
])
@pytest.mark.parametrize("dataset", list(DATASETS), indirect=True)
def test_hinge_loss(dataset, update, origin, l2):
    """The hinge gradient is 0 for well-classified examples: present features
    get no gradient step (and, first-seen, do not enter the store)."""
    X, y = dataset
    w_ref = check(X, y, loss="hinge", update=update, origin=origin, l1=1e-3, l2=l2, eta0=0.05,
                  schedule="constant")
    if update != "subgradient":
        assert_genuinely_sparse(w_ref, X)


@pytest.mark.parametrize("loss", ["log", "hinge"])
@pytest.mark.parametrize("update,origin", [("subgradient", "start"),
                                           ("cumulative", "first-seen"), ("fobos", "start")])
def test_labels_zero_one(a9a_sample, loss, update, origin):
    """Label 0 is read as -1 by the classification losses."""
    X, y = a9a_sample
    y01 = (y > 0).astype(np.float64)
    options = dict(loss=loss, update=update, origin=origin, l1=2e-3, l2=1e-3, eta0=0.1,
                   schedule="invscaling", fit_intercept=True)
    w_ref = check(X, y01, **options)
    assert_genuinely_sparse(w_ref, X, lo=0.05, hi=1.0)
    pm, zo = Learner(**options), Learner(**options)
    assert pm.learn(Batch.from_csr(X, y)) == zo.learn(Batch.from_csr(X, y01))
    assert all(np.array_equal(a, b) for a, b in zip(pm.weights(), zo.weights()))
    assert pm.intercept == zo.intercept


@pytest.mark.parametrize("update,origin", [("plain", "start"), ("subgradient", "start"),
                                           ("cumulative", "start"),
                                           ("cumulative", "first-seen"), ("fobos", "start")])
def test_gradient_clipped_at_1e12(rcv1_sample, update, origin):
    """Squared loss with enormous labels: dl/dp = p - y is clipped to
    [-1e12, 1e12] (so the intercept moves by at most eta0 * 1e12 a step)."""
    X, y = rcv1_sample
    y = 1e13 * y
    eta0 = 0.01
    check(X, y, loss="squared", update=update, origin=origin,
          l1=0.0 if update == "plain" else 1e-3, l2=1e-3, eta0=eta0, schedule="constant",
          fit_intercept=True)
    _, b, _ = eager_fit(X, y, loss="squared", update=update, origin=origin,
                        l1=0.0 if update == "plain" else 1e-3, l2=1e-3, eta0=eta0,
                        fit_intercept=True)
    # the clip was active: unclipped, the first step alone would move b by 0.01 * 1e13
    assert 0 < abs(b) <= X.shape[0] * eta0 * 1e12


@pytest.mark.parametrize("update,origin,l1,l2", [
    ("plain", "start", 0.0, 1e-3),
    ("subgradient", "start", 2e-3, 1e-3),
    ("cumulative", "start", 2e-3, 0.0),
    ("cumulative", "first-seen", 2e-3, 1e-3),
    ("fobos", "start", 2e-3, 1e-3),
])
def test_fit_intercept(a9a_sample, update, origin, l1, l2):
    X, y = a9a_sample
    learner, (w_ref, b_ref, losses), mean_loss = fit_both(
        X, y, loss="log", update=update, origin=origin, l1=l1, l2=l2, eta0=0.1,
        schedule="constant", fit_intercept=True)
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert abs(b_ref) > 1e-3, "the intercept did not move: the check would be vacuous"
    assert_close(learner.intercept, b_ref, "intercept")
    assert_close(mean_loss, weighted_mean_loss(losses), "progressive loss")
    # and the intercept changes the model
    w_no_b, b0, _ = eager_fit(X, y, loss="log", update=update, origin=origin, l1=l1, l2=l2,
                              eta0=0.1, schedule="constant", fit_intercept=False)
    assert b0 == 0.0 and rel_diff(w_no_b, w_ref) > 1e-3


# ---------------------------------------------------------------- batching

#: Batch boundaries: single rows first (each returns one example's loss),
#: then uneven sizes, including an empty batch.
BOUNDS_A9A = [0, 1, 2, 3, 4, 5, 17, 17, 250, 251, 900, 1333, 2000]
BOUNDS_RCV1 = [0, 1, 2, 3, 40, 41, 41, 157, 299, 300]


@pytest.mark.parametrize("update,origin,l1,l2,schedule", [
    ("plain", "start", 0.0, 1e-3, "invscaling"),
    ("subgradient", "start", 1e-3, 1e-3, "exponential"),
    ("cumulative", "start", 1e-3, 1e-3, "invscaling"),
    ("cumulative", "first-seen", 1e-3, 0.0, "exponential"),
    ("cumulative", "first-seen", 1e-3, 1e-3, "constant"),
    ("fobos", "start", 1e-3, 0.0, "exponential"),
    ("fobos", "start", 1e-3, 1e-3, "invscaling"),
])
@pytest.mark.parametrize("dataset", list(DATASETS), indirect=True)
def test_batches_bit_identical_to_one_batch(dataset, request, update, origin, l1, l2, schedule):
    X, y = dataset
    name = request.node.callspec.params["dataset"]
    bounds = BOUNDS_A9A if name == "a9a" else BOUNDS_RCV1
    assert bounds[-1] == X.shape[0]
    options = dict(loss="log", update=update, origin=origin, l1=l1, l2=l2,
                   eta0=DATASETS[name]["eta0"], schedule=schedule, decay_steps=300.0,
                   fit_intercept=True)
    check_cut_into_batches(X, y, bounds, options, eager_fit)


def check_cut_into_batches(X, y, bounds, options, reference, check_model=None):
    """The rows learned as one batch and cut at ``bounds`` give bit-identical
    models, equal to ``reference`` (an eager_fit), batch losses included."""
    rng = np.random.default_rng(7)
    s = rng.uniform(0.5, 1.5, size=X.shape[0])
    whole = Learner(**options)
    whole_loss = whole.learn(Batch.from_csr(X, y, s)).loss

    pieces = Learner(**options)
    piece_losses = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        piece_losses.append((b - a, pieces.learn(Batch.from_csr(X[a:b], y[a:b], s[a:b])).loss))

    k1, w1 = whole.weights()
    k2, w2 = pieces.weights()
    assert np.array_equal(k1, k2)
    assert np.array_equal(w1, w2)
    assert whole.intercept == pieces.intercept
    assert pieces.examples_seen == whole.examples_seen == X.shape[0]

    # and both agree with the reference, example by example where one row
    # was a batch
    w_ref, b_ref, losses = reference(X, y, weights=s, **options)
    if check_model is not None:
        check_model(w_ref)
    assert_same_model(learner_dense(pieces, X.shape[1]), w_ref)
    assert_close(pieces.intercept, b_ref, "intercept")
    assert_close(whole_loss, weighted_mean_loss(losses, s), "progressive loss")
    for (a, b), (n, loss) in zip(zip(bounds[:-1], bounds[1:]), piece_losses):
        if n == 0:
            assert np.isnan(loss)
        else:
            assert_close(loss, weighted_mean_loss(losses[a:b], s[a:b]),
                         f"progressive loss of rows {a}:{b}")


# ------------------------------------------------------- duplicated keys

@pytest.mark.parametrize("update,origin,l2", [
    ("plain", "start", 1e-3),
    ("subgradient", "start", 0.0),
    ("cumulative", "start", 0.0),
    ("cumulative", "first-seen", 1e-3),
    ("fobos", "start", 1e-3),
])
def test_duplicated_keys_add_up(a9a_sample, update, origin, l2):
    """docs/algorithms.md: a key twice in one example adds its values in the
    margin and the gradient step, and is penalised once.  Every a9a value
    (1.0) is split into 0.25 + 0.75 (exact in binary floating point)."""
    X, y = a9a_sample
    keys = np.repeat(X.indices.astype(np.uint64), 2)
    values = np.tile([0.25, 0.75], X.nnz)
    batch = Batch(X.indptr.astype(np.int64) * 2, keys, values, y)
    options = dict(loss="log", update=update, origin=origin,
                   l1=0.0 if update == "plain" else 2e-3, l2=l2, eta0=0.1,
                   schedule="invscaling", fit_intercept=True)
    learner = Learner(**options)
    mean_loss = learner.learn(batch).loss
    w_ref, b_ref, losses = eager_fit(X, y, **options)
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert_close(learner.intercept, b_ref, "intercept")
    assert_close(mean_loss, weighted_mean_loss(losses), "progressive loss")


# ------------------------------------------------- explicitly stored zeros

def with_explicit_zeros(X, per_row: int, seed: int):
    """X with ``per_row`` extra keys per row stored with the value 0.0."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    indptr, indices, data = [0], [], []
    for r in range(X.shape[0]):
        keys = X.indices[X.indptr[r]:X.indptr[r + 1]]
        extra = np.setdiff1d(rng.choice(X.shape[1], per_row, replace=False), keys)
        k = np.concatenate([keys, extra])
        v = np.concatenate([X.data[X.indptr[r]:X.indptr[r + 1]], np.zeros(extra.size)])
        order = np.argsort(k)
        indices.extend(k[order])
        data.extend(v[order])
        indptr.append(len(indices))
    Z = sp.csr_matrix((np.asarray(data), np.asarray(indices, dtype=np.int32),
                       np.asarray(indptr, dtype=np.int32)), shape=X.shape)
    assert Z.nnz > X.nnz   # the zeros are stored
    return Z


@pytest.mark.parametrize("update,origin", [("plain", "start"), ("subgradient", "start"),
                                           ("cumulative", "start"),
                                           ("cumulative", "first-seen"), ("fobos", "start")])
def test_explicit_zero_values_are_present(a9a_sample, update, origin):
    """A key stored with value 0 is a present feature (docs: "only its present
    keys are touched"): no gradient, but the present-step penalty (the
    subgradient's current sign, the cumulative clip) applies to it, and a new
    one does not stay in the model."""
    X, y = a9a_sample
    Z = with_explicit_zeros(X, per_row=4, seed=3)
    options = dict(loss="log", update=update, origin=origin,
                   l1=0.0 if update == "plain" else 2e-3, l2=1e-3, eta0=0.1,
                   schedule="invscaling")
    w_ref = check(Z, y, **options)
    if update in ("subgradient", "cumulative"):
        # the zeros change these rules, so the check is not vacuous
        w_without, _, _ = eager_fit(X, y, **options)
        assert rel_diff(w_ref, w_without) > 1e-4


# ------------------------------------------------------------------ numerics

NUMERICS_RULES = [("plain", "start"), ("subgradient", "start"), ("cumulative", "start"),
                  ("cumulative", "first-seen"), ("fobos", "start")]


@pytest.mark.parametrize("update,origin", NUMERICS_RULES)
def test_running_sums_rebased_often(a9a_sample, update, origin):
    """docs "Numerics": the running sums are rebased when they pass
    ``rebase_at``.  With ``rebase_at`` just above 1 the lazy clocks are
    rebased many times over the sample (l1 * sum(eta) = 5, sum(eta) = 1000),
    and the weights must not notice."""
    X, y = a9a_sample
    options = dict(loss="log", update=update, origin=origin,
                   l1=0.0 if update == "plain" else 5e-3, l2=0.0, eta0=0.5,
                   schedule="constant", fit_intercept=True)
    learner = Learner(rebase_at=1.01, **options)
    learner.learn(Batch.from_csr(X, y))
    w_ref, b_ref, _ = eager_fit(X, y, **options)
    assert X.shape[0] * options["eta0"] * options["l1"] > 4 * 1.01 or update == "plain"
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert_close(learner.intercept, b_ref, "intercept")
    if update in ("cumulative", "fobos"):
        assert_genuinely_sparse(w_ref, X)


@pytest.mark.parametrize("update,origin", NUMERICS_RULES)
def test_strong_l2_scale_reset(a9a_sample, update, origin):
    """docs "Numerics": the L2 scale is reset when it falls below 1e-9.  Here
    prod(1 - eta l2) over the sample is about 1e-13 (and FOBOS' A_t about
    1e13), so the kernel must reset / rebase, with rebase_at small as well."""
    X, y = a9a_sample
    eta0, l2 = 0.1, 0.15
    assert (1 - eta0 * l2) ** X.shape[0] < 1e-12
    options = dict(loss="log", update=update, origin=origin,
                   l1=0.0 if update == "plain" else 2e-3, l2=l2, eta0=eta0,
                   schedule="constant", fit_intercept=True)
    learner = Learner(rebase_at=1.01, **options)
    learner.learn(Batch.from_csr(X, y))
    w_ref, b_ref, _ = eager_fit(X, y, **options)
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert_close(learner.intercept, b_ref, "intercept")
    if update in ("cumulative", "fobos"):
        assert_genuinely_sparse(w_ref, X)
