"""The check that cumulative L1 with origin ``start`` (docs/algorithms.md)
equals scikit-learn's SGD (the same rows, in the same order, one ``fit``).

scikit-learn keeps the cumulative-penalty weights as stored (the penalty a
feature still owes is applied at its next occurrence), so the comparison is
with the learner's stored weights ``state["weights"] * scale``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier, SGDRegressor

from onlinel1 import Batch, Learner

RTOL = 1e-9


def stored_dense(learner: Learner, n_features: int) -> np.ndarray:
    state = learner.state
    dense = np.zeros(n_features)
    dense[state["keys"].astype(np.int64)] = state["weights"] * state["clocks"]["scale"]
    return dense


def sklearn_fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=1 "did not converge"
        estimator.fit(X, y)
    return estimator.coef_.ravel()


def ours(X, y, **options) -> np.ndarray:
    learner = Learner(update="cumulative", origin="start", fit_intercept=False, **options)
    learner.learn(Batch.from_csr(X, y))
    return stored_dense(learner, X.shape[1])


def assert_same_model(mine: np.ndarray, ref: np.ndarray) -> None:
    assert np.count_nonzero(ref) > 0, "the reference model is empty: the check would be vacuous"
    assert np.count_nonzero(ref) < ref.size, "no weight is zero: L1 did nothing"
    np.testing.assert_array_equal(mine != 0, ref != 0)
    err = np.abs(mine - ref).max() / np.abs(ref).max()
    assert err <= RTOL, f"max relative difference {err:.3g}"


CASES = [
    # (penalty, l1_ratio, learning_rate, alpha, eta0)
    ("l1", 1.0, "constant", 1e-4, 0.05),
    ("l1", 1.0, "invscaling", 2e-4, 0.5),
    ("elasticnet", 0.5, "constant", 2e-4, 0.05),
    ("elasticnet", 0.7, "invscaling", 1e-4, 0.5),
]


def _classifier_case(X, y, penalty, l1_ratio, schedule, alpha, eta0):
    ref = sklearn_fit(SGDClassifier(
        loss="log_loss", penalty=penalty, alpha=alpha, l1_ratio=l1_ratio,
        learning_rate=schedule, eta0=eta0, power_t=0.5, fit_intercept=False,
        shuffle=False, max_iter=1, tol=None), X, y)
    mine = ours(X, y, loss="log", l1=alpha * l1_ratio, l2=alpha * (1 - l1_ratio),
                eta0=eta0, schedule=schedule, power_t=0.5)
    assert_same_model(mine, ref)


@pytest.mark.parametrize("penalty,l1_ratio,schedule,alpha,eta0", CASES)
def test_log_loss_matches_sgdclassifier_on_a9a_sample(a9a_sample, penalty, l1_ratio,
                                                      schedule, alpha, eta0):
    _classifier_case(*a9a_sample, penalty, l1_ratio, schedule, alpha, eta0)


@pytest.mark.parametrize("penalty,l1_ratio,schedule,alpha,eta0", CASES)
def test_log_loss_matches_sgdclassifier_on_full_a9a(a9a_full, penalty, l1_ratio,
                                                    schedule, alpha, eta0):
    _classifier_case(*a9a_full, penalty, l1_ratio, schedule, alpha, eta0)


@pytest.mark.parametrize("penalty,l1_ratio,schedule,alpha,eta0",
                         [("l1", 1.0, "constant", 1e-4, 0.5),
                          ("elasticnet", 0.5, "invscaling", 1e-4, 2.0)])
def test_log_loss_matches_sgdclassifier_on_rcv1(rcv1_full, penalty, l1_ratio, schedule,
                                                alpha, eta0):
    # Real-valued tf-idf features over a 47k-key space.
    _classifier_case(*rcv1_full, penalty, l1_ratio, schedule, alpha, eta0)


def test_hinge_matches_sgdclassifier(rcv1_sample):
    X, y = rcv1_sample
    ref = sklearn_fit(SGDClassifier(
        loss="hinge", penalty="l1", alpha=1e-4, learning_rate="constant", eta0=0.5,
        fit_intercept=False, shuffle=False, max_iter=1, tol=None), X, y)
    mine = ours(X, y, loss="hinge", l1=1e-4, eta0=0.5)
    assert_same_model(mine, ref)


def test_squared_loss_matches_sgdregressor(rcv1_sample):
    X, y = rcv1_sample
    target = 2.5 * y + 0.5
    ref = sklearn_fit(SGDRegressor(
        loss="squared_error", penalty="elasticnet", alpha=2e-4, l1_ratio=0.8,
        learning_rate="invscaling", eta0=0.5, power_t=0.25, fit_intercept=False,
        shuffle=False, max_iter=1, tol=None), X, target)
    mine = ours(X, target, loss="squared", l1=2e-4 * 0.8, l2=2e-4 * 0.2, eta0=0.5,
                schedule="invscaling", power_t=0.25)
    assert_same_model(mine, ref)
