"""The four newer update rules of the lazy Cython learner (``truncated``,
``adagrad-fobos``, ``ftrl``, ``spred``) against the eager numpy reference
of ``tests/reference_more.py`` (written from docs/algorithms.md alone).

Same contract as ``test_rules_vs_reference.py``: on the real a9a and RCV1
samples the learner and the reference give the same weights to 1e-12
relative (max |diff| / max |ref|), the same set of non-zero weights, the same
intercept and the same progressive loss.  Every comparison also asserts that
it is not vacuous: the models are neither empty nor fully dense where
sparsity is the point, and the documented detail a test is about (theta, K,
the AdaGrad restart, the spred threshold, importances...) changes the model.

Readings of the spec chosen where it is ambiguous (see reference_more.py):
the intercept of adagrad-fobos and ftrl moves with ``eta_t`` of the schedule
(``test_intercept_of_per_coordinate_rules_follows_the_schedule``), and
spred's gradient step is the simultaneous SGD step from the ``(a, b)`` of
before the decay.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from onlinel1 import Batch, Learner
from reference import eager_fit, weighted_mean_loss
from reference_more import eager_fit_more
from test_rules_vs_reference import (
    RTOL, assert_close, assert_genuinely_sparse, assert_same_model, check_cut_into_batches,
    learner_dense, rel_diff, seen_features, with_explicit_zeros)

INF = float("inf")

SCHEDULES = {
    "constant": {"schedule": "constant"},
    "invscaling": {"schedule": "invscaling", "power_t": 0.5},
    # decay_steps comparable to the sample length, so that eta really decays
    "exponential": {"schedule": "exponential", "decay_rate": 0.85, "decay_steps": 300.0},
}

#: Per data set and rule, the options that give a model keeping between 5 %
#: and 95 % of the features seen (checked by every test that uses them).
CONFIG = {
    "a9a": {
        "truncated": dict(eta0=0.1, l1=2e-3, theta=0.2),
        "adagrad-fobos": dict(eta0=0.1, l1=1e-2, l2=1e-2),
        "ftrl": dict(eta0=0.1, l1=1.0, l2=1.0),
        "spred": dict(eta0=0.1, l1=2e-2, threshold=3e-3),
    },
    "rcv1": {
        "truncated": dict(eta0=0.5, l1=5e-4, theta=0.05),
        "adagrad-fobos": dict(eta0=0.1, l1=1e-3, l2=1e-2),
        "ftrl": dict(eta0=0.5, l1=0.1, l2=1.0),
        "spred": dict(eta0=0.5, l1=2e-2, threshold=3e-3),
    },
}


def rule_options(name: str, update: str, **overrides) -> dict:
    """The Learner options of ``update`` on data set ``name`` (CONFIG)."""
    c = CONFIG[name][update]
    o = dict(loss="log", update=update, eta0=c["eta0"], l1=c["l1"])
    if update in ("adagrad-fobos", "ftrl"):
        o["l2"] = c["l2"]
    if update == "truncated":
        o["truncate_every"] = 3
        o["truncate_theta"] = c["theta"]
    if update == "spred":
        o["spred_threshold"] = c["threshold"]
    o.update(overrides)
    return o


# ------------------------------------------------------------------ helpers

def fit_both(X, y, weights=None, **options):
    """(learner, reference (w, b, losses, state), learner's mean progressive loss)."""
    options.setdefault("fit_intercept", False)
    learner = Learner(**options)
    mean_loss = learner.learn(Batch.from_csr(X, y, weights)).loss
    ref = eager_fit_more(X, y, weights=weights, return_state=True, **options)
    return learner, ref, mean_loss


def check(X, y, weights=None, **options):
    """Fit both, compare weights, intercept and progressive loss; return the
    reference ``(w, b, losses, state)`` and the learner."""
    learner, ref, mean_loss = fit_both(X, y, weights, **options)
    w_ref, b_ref, losses, _ = ref
    assert learner.examples_seen == X.shape[0]
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert_close(learner.intercept, b_ref, "intercept")
    assert_close(mean_loss, weighted_mean_loss(losses, weights), "progressive loss")
    assert_same_margins(learner, X, w_ref, b_ref)
    return ref, learner


def assert_same_margins(learner: Learner, X, w_ref, b_ref) -> None:
    """``decision_function`` reads the weights as the rule does (spred: |w|
    at or below the threshold is 0): the margins of the reference model, to
    the precision the weights are compared with."""
    mine = learner.decision_function(Batch.from_csr(X))
    ref = X @ w_ref + b_ref
    bound = RTOL * (np.abs(w_ref).max() * np.abs(X).sum(axis=1).max() + abs(b_ref))
    assert np.abs(mine - ref).max() <= bound, "margins differ"


def ref_only(X, y, weights=None, **options):
    options.setdefault("fit_intercept", False)
    return eager_fit_more(X, y, weights=weights, **options)[0]


def assert_differs(w_a, w_b, what: str, at_least: float = 1e-6) -> None:
    """Two readings / settings give models far apart (relative to RTOL), so a
    comparison at RTOL tells them apart."""
    d = rel_diff(w_a, w_b)
    assert d > at_least, f"{what}: the models differ by only {d:.3g} (the check would be vacuous)"


@pytest.fixture
def dataset(request, a9a_sample, rcv1_sample):
    return {"a9a": a9a_sample, "rcv1": rcv1_sample}[request.param]


DATASETS = ["a9a", "rcv1"]


# ---------------------------------------------------------------- truncated

TRUNCATED_SETTINGS = [   # (id, truncate_every, finite theta?)
    ("K1", 1, False),
    ("K5", 5, False),
    ("K3-theta", 3, True),
]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("setting,every,finite_theta", TRUNCATED_SETTINGS,
                         ids=[s[0] for s in TRUNCATED_SETTINGS])
@pytest.mark.parametrize("dataset", DATASETS, indirect=True)
def test_truncated_matches_eager_reference(dataset, request, setting, every, finite_theta,
                                           schedule):
    X, y = dataset
    name = request.node.callspec.params["dataset"]
    theta = CONFIG[name]["truncated"]["theta"] if finite_theta else INF
    options = rule_options(name, "truncated", truncate_every=every, truncate_theta=theta,
                           **SCHEDULES[schedule])
    (w_ref, *_), _ = check(X, y, **options)
    assert_genuinely_sparse(w_ref, X)
    if finite_theta:
        # theta splits the model: weights above it (never truncated) and
        # non-zero ones below it, and it changes the model
        assert np.sum(np.abs(w_ref) > theta) >= 10
        assert np.sum((w_ref != 0) & (np.abs(w_ref) <= theta)) >= 10
        assert_differs(w_ref, ref_only(X, y, **dict(options, truncate_theta=INF)), "theta")
    if every > 1:
        assert_differs(w_ref, ref_only(X, y, **dict(options, truncate_every=1)), "K")


def test_truncated_k1_without_theta_is_fobos_l1(a9a_sample):
    """docs: "With K = 1 and theta infinite it is FOBOS with L1 only"."""
    X, y = a9a_sample
    common = dict(loss="log", l1=2e-3, eta0=0.1, schedule="invscaling", fit_intercept=True)
    (w_trunc, *_), _ = check(X, y, update="truncated", truncate_every=1, **common)
    w_fobos, _, _ = eager_fit(X, y, update="fobos", **common)
    assert rel_diff(w_trunc, w_fobos) <= RTOL
    fobos = Learner(update="fobos", **common)
    fobos.learn(Batch.from_csr(X, y))
    assert_same_model(learner_dense(fobos, X.shape[1]), w_trunc)


def test_truncated_clock_rebased_often(a9a_sample):
    """docs "Numerics": the truncation clock T (sum of eta K) is rebased when
    it passes ``rebase_at``; with rebase_at just above 1 that happens ~300
    times over the sample, and the weights must not notice."""
    X, y = a9a_sample
    options = dict(loss="log", update="truncated", l1=5e-3, eta0=0.5, schedule="constant",
                   truncate_every=3, truncate_theta=0.3, fit_intercept=True)
    assert X.shape[0] * options["eta0"] > 100 * 1.01
    learner = Learner(rebase_at=1.01, **options)
    learner.learn(Batch.from_csr(X, y))
    w_ref, b_ref, _ = eager_fit_more(X, y, **options)
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert_close(learner.intercept, b_ref, "intercept")
    assert_genuinely_sparse(w_ref, X)


# ------------------------------------------------------------ adagrad-fobos

PENALTY_SETTINGS = ["l1", "l1-l2", "l2"]


def penalties(name: str, update: str, setting: str) -> dict:
    c = CONFIG[name][update]
    return {"l1": dict(l1=c["l1"], l2=0.0), "l1-l2": dict(l1=c["l1"], l2=c["l2"]),
            "l2": dict(l1=0.0, l2=c["l2"])}[setting]


@pytest.mark.parametrize("fit_intercept", [False, True], ids=["no-intercept", "intercept"])
@pytest.mark.parametrize("setting", PENALTY_SETTINGS)
@pytest.mark.parametrize("dataset", DATASETS, indirect=True)
def test_adagrad_fobos_matches_eager_reference(dataset, request, setting, fit_intercept):
    X, y = dataset
    name = request.node.callspec.params["dataset"]
    options = rule_options(name, "adagrad-fobos", fit_intercept=fit_intercept,
                           **penalties(name, "adagrad-fobos", setting))
    (w_ref, b_ref, _, _), _ = check(X, y, **options)
    if fit_intercept:
        assert abs(b_ref) > 1e-3, "the intercept did not move"
    if options["l1"] > 0:
        assert_genuinely_sparse(w_ref, X)
        # the documented restart (G_i = 0 for a zero weight that comes back)
        # is observable: without it the model is another one
        assert_differs(w_ref, ref_only(X, y, **dict(options, adagrad_restart=False)),
                       "AdaGrad restart")
    else:
        # no L1: with the log loss every feature seen keeps a non-zero weight
        assert np.count_nonzero(w_ref) == seen_features(X)
    if options["l2"] > 0:
        assert_differs(w_ref, ref_only(X, y, **dict(options, l2=0.0)), "l2")


@pytest.mark.parametrize("update", ["adagrad-fobos", "ftrl"])
def test_per_coordinate_rules_ignore_the_schedule(a9a_sample, update):
    """docs: "The schedule option is not used" (without an intercept the
    schedule has no way into the model): bit-identical weights."""
    X, y = a9a_sample
    models = []
    for schedule in SCHEDULES:
        learner = Learner(**rule_options("a9a", update, fit_intercept=False,
                                         **SCHEDULES[schedule]))
        learner.learn(Batch.from_csr(X, y))
        models.append(learner.weights())
    for keys, w in models[1:]:
        assert np.array_equal(keys, models[0][0]) and np.array_equal(w, models[0][1])
    assert 0 < models[0][0].size < seen_features(X)


@pytest.mark.parametrize("update", ["adagrad-fobos", "ftrl"])
def test_intercept_of_per_coordinate_rules_follows_the_schedule(a9a_sample, update):
    """Ambiguity of docs/algorithms.md: for adagrad-fobos and ftrl "the
    schedule option is not used", but steps 3 and 5 (common to every rule)
    move the intercept by ``-eta_t g s`` with ``eta_t`` of the schedule.  The
    kernel (and this reference) read the sentence as applying to the rule's
    own weight step: the intercept still follows the schedule.  (Note:
    ``Learner.learning_rate()`` returns ``eta0`` for these rules whatever
    the schedule, which is not the step the intercept takes.)"""
    X, y = a9a_sample
    options = rule_options("a9a", update, fit_intercept=True, schedule="invscaling")
    (w_ref, b_ref, _, _), _ = check(X, y, **options)
    # the other reading (eta_t = eta0 for the intercept too) is another model
    w_alt, b_alt, _ = eager_fit_more(X, y, **dict(options, schedule="constant"))
    assert abs(b_ref - b_alt) > 1e-3 * abs(b_alt)
    assert_differs(w_ref, w_alt, "intercept step")


# --------------------------------------------------------------------- ftrl

FTRL_SETTINGS = [   # (id, penalty setting, beta)
    ("l1", "l1", 1.0),
    ("l1-l2", "l1-l2", 1.0),
    ("l2", "l2", 1.0),
    ("l1-l2-beta0.1", "l1-l2", 0.1),
]


@pytest.mark.parametrize("fit_intercept", [False, True], ids=["no-intercept", "intercept"])
@pytest.mark.parametrize("setting,penalty,beta", FTRL_SETTINGS, ids=[s[0] for s in FTRL_SETTINGS])
@pytest.mark.parametrize("dataset", DATASETS, indirect=True)
def test_ftrl_matches_eager_reference(dataset, request, setting, penalty, beta, fit_intercept):
    """McMahan et al. (2013) Algorithm 1, as docs/algorithms.md gives it."""
    X, y = dataset
    name = request.node.callspec.params["dataset"]
    options = rule_options(name, "ftrl", ftrl_beta=beta, fit_intercept=fit_intercept,
                           **penalties(name, "ftrl", penalty))
    (w_ref, b_ref, _, state), learner = check(X, y, **options)
    if fit_intercept:
        assert abs(b_ref) > 1e-3, "the intercept did not move"
    if options["l1"] > 0:
        assert_genuinely_sparse(w_ref, X)
    else:
        assert np.count_nonzero(w_ref) == seen_features(X)
    if options["l2"] > 0:
        assert_differs(w_ref, ref_only(X, y, **dict(options, l2=0.0)), "l2")
    if beta != 1.0:
        assert_differs(w_ref, ref_only(X, y, **dict(options, ftrl_beta=1.0)), "beta")
    # docs: a zero weight keeps its n_i, so the store holds every feature
    # that took a gradient (memory follows the features seen)
    assert learner.store_size == np.count_nonzero(state["n"])
    assert learner.store_size > learner.nnz or options["l1"] == 0


# -------------------------------------------------------------------- spred

@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("dataset", DATASETS, indirect=True)
def test_spred_matches_eager_reference(dataset, request, schedule):
    X, y = dataset
    name = request.node.callspec.params["dataset"]
    options = rule_options(name, "spred", fit_intercept=True, **SCHEDULES[schedule])
    (w_ref, b_ref, _, state), _ = check(X, y, **options)
    assert abs(b_ref) > 1e-3
    assert_genuinely_sparse(w_ref, X)
    # the threshold really prunes: weights a*b that are not 0 but read as 0
    thr = options["spred_threshold"]
    raw = state["raw"]
    assert np.sum((raw != 0) & (np.abs(raw) <= thr)) >= 5
    # and the restart of thresholded features changes the dynamics
    assert_differs(w_ref, ref_only(X, y, **dict(options, spred_restart=False)),
                   "spred restart")


def test_spred_gradient_from_the_old_a_b(a9a_sample):
    """Ambiguity of docs/algorithms.md: "every i: decay; present i:
    a <- a - eta s g x b(old)" is read as the simultaneous SGD step of the
    penalised objective, a_new = (1 - eta l1) a - eta s g x b with (a, b)
    from before the decay.  The other reading (gradient term decayed too)
    gives a model far outside RTOL, so the comparison pins the reading."""
    X, y = a9a_sample
    options = rule_options("a9a", "spred", schedule="invscaling")
    (w_ref, *_), _ = check(X, y, **options)
    assert_differs(w_ref, ref_only(X, y, **dict(options, spred_grad_after_decay=True)),
                   "gradient after the decay")


def test_spred_first_step(a9a_sample):
    """docs: new features start at (spred_init, 0), and "with spred_init = 1
    the first step moves w exactly as plain SGD would".  That holds for
    l1 = 0; with l1 > 0 the step also decays a (the (1 - eta l1) factor)."""
    X, y = a9a_sample
    X1, y1 = X[:1], y[:1]
    plain = Learner(update="plain", l1=0.0, eta0=0.1, fit_intercept=False)
    plain.learn(Batch.from_csr(X1, y1))
    kp, wp = plain.weights()
    spred = Learner(update="spred", l1=0.0, eta0=0.1, fit_intercept=False)
    spred.learn(Batch.from_csr(X1, y1))
    ks, ws = spred.weights()
    assert np.array_equal(kp, ks) and kp.size == X1.nnz
    np.testing.assert_allclose(ws, wp, rtol=1e-15, atol=0)
    spred = Learner(update="spred", l1=0.5, eta0=0.1, fit_intercept=False)
    spred.learn(Batch.from_csr(X1, y1))
    np.testing.assert_allclose(spred.weights()[1], (1 - 0.1 * 0.5) * wp, rtol=1e-15, atol=0)


def test_spred_scale_reset(a9a_sample):
    """A strong penalty: the decay prod(1 - eta l1) over the sample is about
    2e-9, so the kernel's global scale c of (a, b) is rescaled (more than
    once); the reference decays every a and b eagerly."""
    X, y = a9a_sample
    options = dict(loss="log", update="spred", l1=0.1, eta0=0.1, spred_threshold=1e-3,
                   schedule="constant", fit_intercept=True)
    assert (1 - 0.1 * 0.1) ** X.shape[0] < 1e-8
    (w_ref, *_), _ = check(X, y, **options)
    assert_genuinely_sparse(w_ref, X)


# ------------------------------------------------------- all four rules

RULES = ["truncated", "adagrad-fobos", "ftrl", "spred"]


@pytest.mark.parametrize("update", RULES)
def test_importance_weights(a9a_sample, update):
    X, y = a9a_sample
    rng = np.random.default_rng(20240607)
    s = rng.uniform(0.0, 3.0, size=X.shape[0])
    s[rng.random(X.shape[0]) < 0.1] = 0.0   # examples that must not move the model
    options = rule_options("a9a", update, schedule="invscaling", fit_intercept=True)
    (w_ref, *_), _ = check(X, y, weights=s, **options)
    assert_genuinely_sparse(w_ref, X)
    # the importances matter: unweighted gives another model
    assert_differs(w_ref, ref_only(X, y, **options), "importances", at_least=1e-3)


@pytest.mark.parametrize("loss", ["squared", "hinge"])
@pytest.mark.parametrize("update", RULES)
def test_other_losses(a9a_sample, update, loss):
    """Squared and hinge losses.  The hinge gradient is 0 on the examples
    with margin >= 1 (adagrad-fobos then defers that step's proximal step,
    truncated still truncates at its K-th examples, spred still decays)."""
    X, y = a9a_sample
    eta0 = CONFIG["a9a"][update]["eta0"]
    if loss == "squared" and update in ("truncated", "spred"):
        eta0 = 0.01     # a9a rows have ~14 ones: plain SGD on squared loss needs a small step
    # (invscaling, not constant: with the hinge loss, a constant step and the
    # 0/1 a9a values every weight lies on a lattice k * eta0 - m * eta0 l1 K
    # that theta = 0.2 is on, and a truncation at |w| == theta would be
    # decided by the last bit of the lazy vs the eager sum)
    options = rule_options("a9a", update, loss=loss, eta0=eta0, schedule="invscaling",
                           fit_intercept=True)
    (w_ref, _, losses, _), _ = check(X, y, **options)
    assert_genuinely_sparse(w_ref, X, lo=0.05, hi=0.98)
    assert np.all(np.isfinite(losses)) and losses[-500:].mean() < losses[:100].mean()
    if loss == "hinge":
        assert 0.1 < np.mean(losses == 0.0) < 0.9, "no (or only) zero hinge gradients"


#: Batch boundaries: single rows first (each returns one example's loss),
#: then uneven sizes, including an empty batch.
BOUNDS = {"a9a": [0, 1, 2, 3, 4, 5, 17, 17, 250, 251, 900, 1333, 2000],
          "rcv1": [0, 1, 2, 3, 40, 41, 41, 157, 299, 300]}

BATCH_SETTINGS = [   # (id, update, overrides)
    ("truncated-K3-theta", "truncated", dict(schedule="exponential")),
    ("truncated-K7", "truncated", dict(truncate_every=7, truncate_theta=INF,
                                       schedule="invscaling")),
    ("adagrad-fobos-l1-l2", "adagrad-fobos", dict()),
    ("ftrl-l1-l2", "ftrl", dict()),
    ("spred", "spred", dict(schedule="invscaling")),
]


@pytest.mark.parametrize("setting,update,overrides", BATCH_SETTINGS,
                         ids=[s[0] for s in BATCH_SETTINGS])
@pytest.mark.parametrize("dataset", DATASETS, indirect=True)
def test_batches_bit_identical_to_one_batch(dataset, request, setting, update, overrides):
    X, y = dataset
    name = request.node.callspec.params["dataset"]
    bounds = BOUNDS[name]
    assert bounds[-1] == X.shape[0]
    options = rule_options(name, update, fit_intercept=True, decay_steps=300.0, **overrides)
    check_cut_into_batches(X, y, bounds, options, eager_fit_more,
                           check_model=lambda w_ref: assert_genuinely_sparse(w_ref, X))


@pytest.mark.parametrize("update", RULES)
def test_compaction_mid_stream_is_exact(a9a_sample, update):
    """Three passes over the a9a sample (6,000 examples): the periodic
    compaction (every max(store size, 4096) examples, at the end of a
    batch) drops the rows whose weight is 0 (truncated, adagrad-fobos --
    losing G_i, which the restart makes exact -- and spred).  Cutting the
    stream so that it runs at another time changes nothing, and both agree
    with the reference."""
    X1, y1 = a9a_sample
    X = sp.vstack([X1, X1, X1], format="csr")
    y = np.concatenate([y1, y1, y1])
    options = rule_options("a9a", update, fit_intercept=True, schedule="invscaling")
    whole = Learner(**options)
    whole.learn(Batch.from_csr(X, y))
    pieces = Learner(**options)
    sizes = {}
    for a, b in [(0, 1000), (1000, 4200), (4200, 4300), (4300, X.shape[0])]:
        pieces.learn(Batch.from_csr(X[a:b], y[a:b]))
        sizes[b] = (pieces.store_size, pieces.nnz)
    k1, w1 = whole.weights()
    k2, w2 = pieces.weights()
    assert np.array_equal(k1, k2) and np.array_equal(w1, w2)
    assert whole.intercept == pieces.intercept
    w_ref, b_ref, _ = eager_fit_more(X, y, **options)
    assert_same_model(learner_dense(pieces, X.shape[1]), w_ref)
    assert_close(pieces.intercept, b_ref, "intercept")
    assert_genuinely_sparse(w_ref, X)
    if update != "ftrl":
        # compacted after the batch that passed 4096 examples
        assert sizes[4200][0] == sizes[4200][1]
    else:
        # ftrl keeps zero weights with their n_i
        assert sizes[4200][0] > sizes[4200][1]


@pytest.mark.parametrize("update", RULES)
def test_duplicated_keys_add_up(a9a_sample, update):
    """docs/algorithms.md: a key twice in one example adds its values in the
    margin and the gradient step, and is penalised once (one G_i / n_i
    update with the summed gradient for adagrad-fobos and ftrl, one (a, b)
    step for spred).  Every a9a value (1.0) is split into 0.25 + 0.75."""
    X, y = a9a_sample
    keys = np.repeat(X.indices.astype(np.uint64), 2)
    values = np.tile([0.25, 0.75], X.nnz)
    batch = Batch(X.indptr.astype(np.int64) * 2, keys, values, y)
    options = rule_options("a9a", update, schedule="invscaling", fit_intercept=True)
    learner = Learner(**options)
    mean_loss = learner.learn(batch).loss
    w_ref, b_ref, losses = eager_fit_more(X, y, **options)
    assert_genuinely_sparse(w_ref, X)
    assert_same_model(learner_dense(learner, X.shape[1]), w_ref)
    assert_close(learner.intercept, b_ref, "intercept")
    assert_close(mean_loss, weighted_mean_loss(losses), "progressive loss")


@pytest.mark.parametrize("update", RULES)
def test_explicit_zero_values_are_present(a9a_sample, update):
    """A key stored with value 0 is present but takes no gradient: it enters
    no store (features enter only with x != 0 and g != 0), and for these
    rules its presence changes nothing that the reference does not do as
    well (the restart of a zero weight, the eager penalty)."""
    X, y = a9a_sample
    Z = with_explicit_zeros(X, per_row=4, seed=3)
    options = rule_options("a9a", update, schedule="invscaling")
    (w_ref, *_), learner = check(Z, y, **options)
    assert_genuinely_sparse(w_ref, X)
    if update == "ftrl":
        assert learner.store_size == seen_features(X)
