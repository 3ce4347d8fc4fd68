"""onlinel1.sklearn: scikit-learn's own estimator checks, and the models
against SGDClassifier / SGDRegressor where the semantics agree (plain SGD,
with or without L2, rows in order) and against the Learner itself."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the test extra")
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import SGDClassifier, SGDRegressor  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from onlinel1 import Batch, Learner  # noqa: E402
from onlinel1.io import feature_key  # noqa: E402
from onlinel1.sklearn import OnlineL1Classifier, OnlineL1Regressor  # noqa: E402

RTOL = 1e-12

#: Checks that fail by design, each with the reason.
SAMPLE_WEIGHT_IS_NOT_REPETITION = (
    "an online learner's importance weight scales one example's step: it is not the same as "
    "seeing the example that many times (each visit takes a step of its own, and the step "
    "count drives the schedule and the penalty clocks); a weight of 0 still counts as a step. "
    "scikit-learn marks SGDClassifier and SGDRegressor the same way.")
EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": SAMPLE_WEIGHT_IS_NOT_REPETITION,
    "check_sample_weight_equivalence_on_sparse_data": SAMPLE_WEIGHT_IS_NOT_REPETITION,
}


@parametrize_with_checks([OnlineL1Classifier(), OnlineL1Regressor(),
                          OnlineL1Classifier(loss="hinge", update="fobos", l1=1e-4),
                          OnlineL1Regressor(update="ftrl", l1=1e-3, eta0=0.5, schedule="constant")],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _quiet_fit(estimator, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # max_iter without convergence
        return estimator.fit(X, y, **kwargs)


# ------------------------------------------------------ against SGD

@pytest.mark.parametrize("schedule", ["constant", "invscaling"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
@pytest.mark.parametrize("fit_intercept", [False, True])
def test_plain_sgd_is_sgdclassifier(a9a_sample, schedule, l2, fit_intercept):
    X, y = a9a_sample
    X = X.toarray()   # scipy's sparse SGD damps the intercept's step (0.01); dense does not
    ref = _quiet_fit(SGDClassifier(
        loss="log_loss", penalty="l2" if l2 else None, alpha=l2 or 1e-4,
        learning_rate=schedule, eta0=0.05, power_t=0.5, fit_intercept=fit_intercept,
        shuffle=False, max_iter=3, tol=None), X, y)
    mine = OnlineL1Classifier(update="plain", l1=0.0, l2=l2, eta0=0.05, schedule=schedule,
                           power_t=0.5, fit_intercept=fit_intercept, shuffle=False,
                           max_iter=3).fit(X, y)
    assert mine.coef_.shape == ref.coef_.shape == (1, X.shape[1])
    np.testing.assert_allclose(mine.coef_, ref.coef_, rtol=RTOL, atol=RTOL * np.abs(ref.coef_).max())
    np.testing.assert_allclose(mine.intercept_, ref.intercept_, rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(mine.decision_function(X), ref.decision_function(X),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mine.predict_proba(X), ref.predict_proba(X), rtol=1e-10)
    assert (mine.predict(X) == ref.predict(X)).all()
    assert mine.score(X, y) == ref.score(X, y)


def test_one_vs_rest_is_sgdclassifiers(rcv1_sample):
    X, y = rcv1_sample
    X = X.toarray()
    # Three classes from the RCV1 sample: the label, and its rows' length.
    classes = np.where(y > 0, "pos", np.where((X != 0).sum(axis=1) > 60, "long", "short"))
    assert len(set(classes)) == 3
    ref = _quiet_fit(SGDClassifier(loss="log_loss", penalty=None, learning_rate="constant",
                                   eta0=0.2, shuffle=False, max_iter=2, tol=None), X, classes)
    mine = OnlineL1Classifier(update="plain", l1=0.0, eta0=0.2, shuffle=False,
                           max_iter=2).fit(X, classes)
    assert mine.classes_.tolist() == ref.classes_.tolist() == ["long", "pos", "short"]
    assert len(mine.learners_) == 3
    np.testing.assert_allclose(mine.coef_, ref.coef_, rtol=RTOL,
                               atol=RTOL * np.abs(ref.coef_).max())
    np.testing.assert_allclose(mine.intercept_, ref.intercept_, rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(mine.predict_proba(X), ref.predict_proba(X), rtol=1e-9)
    assert (mine.predict(X) == ref.predict(X)).all()


def test_plain_sgd_is_sgdregressor(rcv1_sample):
    X, y = rcv1_sample
    X = X.toarray()
    target = 2.5 * y + 0.5
    ref = _quiet_fit(SGDRegressor(penalty="l2", alpha=1e-4, shuffle=False, max_iter=3,
                                  tol=None), X, target)   # invscaling, eta0 0.01, power_t 0.25
    mine = OnlineL1Regressor(update="plain", l1=0.0, l2=1e-4, shuffle=False, max_iter=3)
    mine.fit(X, target)
    assert mine.coef_.shape == ref.coef_.shape and mine.intercept_.shape == (1,)
    np.testing.assert_allclose(mine.coef_, ref.coef_, rtol=RTOL,
                               atol=RTOL * np.abs(ref.coef_).max())
    np.testing.assert_allclose(mine.intercept_, ref.intercept_, rtol=RTOL)
    np.testing.assert_allclose(mine.predict(X), ref.predict(X), rtol=1e-10)


def test_sample_weights_are_importance_weights_as_in_sgdclassifier(a9a_sample):
    X, y = a9a_sample
    X = X.toarray()
    w = np.random.default_rng(1).random(X.shape[0]) * 2
    ref = _quiet_fit(SGDClassifier(loss="log_loss", penalty=None, learning_rate="constant",
                                   eta0=0.05, shuffle=False, max_iter=1, tol=None), X, y,
                     sample_weight=w)
    mine = OnlineL1Classifier(update="plain", l1=0.0, eta0=0.05, shuffle=False, max_iter=1)
    mine.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(mine.coef_, ref.coef_, rtol=RTOL,
                               atol=RTOL * np.abs(ref.coef_).max())


# ------------------------------------------------ against the Learner

@pytest.mark.parametrize("options", [
    dict(update="cumulative", l1=3e-4, eta0=0.3, schedule="invscaling"),
    dict(update="cumulative", l1=3e-4, eta0=0.3, adaptive=True),    # the estimator takes it too
], ids=["cumulative", "cumulative-adaptive"])
def test_fit_and_partial_fit_are_the_learner(a9a_sample, options):
    X, y = a9a_sample
    learner = Learner(loss="log", **options)
    learner.learn(Batch.from_csr(X, y))
    fitted = OnlineL1Classifier(**options, max_iter=1, shuffle=False).fit(X, y)
    pieces = OnlineL1Classifier(**options)
    for lo in range(0, X.shape[0], 700):
        pieces.partial_fit(X[lo:lo + 700], y[lo:lo + 700], classes=[-1, 1])
    for estimator in (fitted, pieces):
        assert estimator.learners_[0].state["clocks"] == learner.state["clocks"]
        keys, weights = learner.weights()
        got_keys, got_weights = estimator.learners_[0].weights()
        assert keys.tobytes() == got_keys.tobytes() and weights.tobytes() == got_weights.tobytes()
        np.testing.assert_array_equal(estimator.predict_proba(X)[:, 1],
                                      learner.predict(Batch.from_csr(X)))
        assert estimator.t_ == X.shape[0]
    # L1 made the model sparse, and sparse_coef_ holds exactly its weights.
    coef = fitted.sparse_coef_
    assert sp.issparse(coef) and coef.shape == (1, X.shape[1])
    assert 0 < coef.nnz == learner.nnz < X.shape[1]
    assert coef.indices.tolist() == keys.tolist()
    assert fitted.feature_weights() == dict(zip(keys.tolist(), weights.tolist()))


def test_shuffled_passes_are_reproducible_and_differ_from_the_order(a9a_sample):
    X, y = a9a_sample
    a = OnlineL1Classifier(random_state=3).fit(X, y)
    b = OnlineL1Classifier(random_state=3).fit(X, y)
    c = OnlineL1Classifier(random_state=4).fit(X, y)
    assert (a.coef_ == b.coef_).all() and not (a.coef_ == c.coef_).all()
    assert a.n_iter_ == 5 and a.t_ == 5 * X.shape[0]


# ----------------------------------------------------- named features

def test_lists_of_dicts_are_hashed_named_features():
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for _ in range(600):
        user, ad = int(rng.integers(0, 6)), int(rng.integers(0, 4))
        rows.append({f"user={user}": 1.0, "ctx": {f"ad={ad}": 1.0}, 3: 0.5})
        labels.append("click" if (user + ad) % 3 == 0 else "skip")
    clf = OnlineL1Classifier(eta0=0.3, shuffle=False, max_iter=1).fit(rows, labels)
    assert clf.features_ == "names" and not hasattr(clf, "n_features_in_")
    # The same model as the Learner on Batch.from_rows (labels: "skip" is +1).
    learner = Learner(eta0=0.3)
    learner.learn(Batch.from_rows(rows, np.where(np.array(labels) == "skip", 1, -1)))
    np.testing.assert_array_equal(clf.decision_function(rows[:50]),
                                  learner.decision_function(Batch.from_rows(rows[:50])))
    weights = clf.feature_weights()
    assert set(weights) == {f"user={u}" for u in range(6)} | {f"ctx^ad={a}" for a in range(4)} | {3}
    assert weights["ctx^ad=1"] == learner.weights_of([feature_key("ad=1", "ctx")])[0]
    with pytest.raises(AttributeError, match="feature_weights"):
        clf.coef_
    with pytest.raises(ValueError, match="list of dicts or a pandas or pyarrow table"):
        clf.predict(np.ones((2, 3)))
    # Prediction does not add the names of features never trained on.
    clf.predict([{"user=99": 1.0}])
    assert "user=99" not in clf.names_.values()


def test_dataframes_with_strings_are_named_features_and_numeric_ones_columns():
    pd = pytest.importorskip("pandas", reason="pandas is in the test extra")
    pa = pytest.importorskip("pyarrow", reason="pyarrow is in the test extra")
    rng = np.random.default_rng(2)
    n = 500
    df = pd.DataFrame({"price": rng.normal(size=n),
                       "color": pd.Categorical(rng.choice(["red", "blue", "green"], n)),
                       "city": rng.choice(["paris", "lyon"], n)})
    y = (df["price"] + (df["color"] == "red") > 0.5).astype(int).to_numpy()
    clf = OnlineL1Classifier(eta0=0.3, shuffle=False, max_iter=1).fit(df, y)
    assert clf.features_ == "names" and clf.feature_names_in_.tolist() == list(df.columns)
    learner = Learner(eta0=0.3)
    learner.learn(Batch.from_pandas(df.assign(y=np.where(y == 1, 1, -1)), label="y"))
    np.testing.assert_array_equal(clf.decision_function(df), learner.decision_function(
        Batch.from_pandas(df)))
    np.testing.assert_array_equal(clf.decision_function(pa.Table.from_pandas(df)),
                                  clf.decision_function(df))
    assert {"price", "color=red", "city=paris"} <= set(clf.feature_weights())
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(df[["city", "color", "price"]])
    # A numeric frame is columns, as an array: the same model as its numbers.
    numeric = df[["price"]].assign(other=rng.normal(size=n))
    reg = OnlineL1Regressor(shuffle=False, max_iter=2).fit(numeric, numeric["price"] * 2)
    same = OnlineL1Regressor(shuffle=False, max_iter=2).fit(numeric.to_numpy(),
                                                         numeric["price"] * 2)
    assert reg.features_ == "columns" and (reg.coef_ == same.coef_).all()
    assert set(reg.feature_weights()) == {"price", "other"}
    # Asked for, a numeric frame is named features too.
    named = OnlineL1Regressor(features="names", shuffle=False, max_iter=2).fit(
        numeric, numeric["price"] * 2)
    assert named.features_ == "names" and set(named.feature_weights()) == {"price", "other"}


# --------------------------------------------------- pickling, cloning

def test_a_fitted_estimator_pickles_and_clones(a9a_sample):
    X, y = a9a_sample
    clf = OnlineL1Classifier(update="fobos", l1=1e-4, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    again.partial_fit(X[:100], y[:100])
    clf.partial_fit(X[:100], y[:100])
    np.testing.assert_array_equal(again.coef_, clf.coef_)
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params() and not hasattr(fresh, "learners_")


def test_bad_settings_are_refused_at_fit_naming_them(a9a_sample):
    X, y = a9a_sample
    with pytest.raises(ValueError, match="l1") as info:
        OnlineL1Classifier(update="plain", l1=1e-3).fit(X, y)
    assert info.value.option == "l1"
    with pytest.raises(ValueError, match="loss must be 'log' or 'hinge'"):
        OnlineL1Classifier(loss="squared").fit(X, y)
    with pytest.raises(ValueError, match="features must be one of"):
        OnlineL1Classifier(features="hash").fit(X, y)
    with pytest.raises(ValueError, match="classes must be passed"):
        OnlineL1Classifier().partial_fit(X, y)
    hinge = OnlineL1Classifier(loss="hinge").fit(X, y)
    assert not hasattr(hinge, "predict_proba")


def test_the_estimators_answer_to_their_old_names_too():
    import pickle
    from onlinel1 import sklearn as est
    assert est.L1SGDClassifier is est.OnlineL1Classifier
    assert est.L1SGDRegressor is est.OnlineL1Regressor
    from sklearn.datasets import make_classification
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    clf = est.L1SGDClassifier(random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    assert type(again) is est.OnlineL1Classifier
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))
