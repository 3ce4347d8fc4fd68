"""scikit-learn estimators over :class:`onlinel1.Learner`:
:class:`OnlineL1Classifier` and :class:`OnlineL1Regressor`.

``pip install onlinel1[sklearn]`` (scikit-learn >= 1.6).  They take the
learner's options as parameters (``update``, ``l1``, ``l2``, ``eta0``,
``schedule``, ...; README "Python API") and add ``max_iter`` (passes over
the data in ``fit``; no early stopping), ``shuffle``, ``random_state`` and
``features`` (how X becomes feature keys).  ``fit`` starts afresh and
makes ``max_iter`` passes; ``partial_fit`` learns the rows once, in order,
going on from where the model is (the Learner's online semantics).

What X may be, and how it becomes feature keys (``features``):

* ``"columns"``: a 2-d numpy array, a scipy.sparse matrix or a numeric
  DataFrame: column j is feature key j (explicit zeros are no feature).
  ``n_features_in_`` (and ``feature_names_in_`` for a DataFrame) are set
  and checked as scikit-learn's own estimators do; ``coef_`` is dense,
  ``sparse_coef_`` a scipy CSR matrix.
* ``"names"``: a list of dicts (``Batch.from_rows``: string features
  hashed, a dict value is a namespace) or a pandas/pyarrow table
  (``Batch.from_pandas``: numeric column c -> feature ``c``, string or
  categorical column c -> feature ``c=value``).  Keys are hashes, so there
  is no ``coef_``; ``feature_weights()`` gives the weights by name.
* ``"auto"`` (default): ``"names"`` for a list of dicts and for a table
  with a string or categorical column, ``"columns"`` otherwise, decided by
  the first ``fit``/``partial_fit`` and kept (``features_``).

The classifier is binary (one learner, labels ``classes_[1]`` -> +1) or,
for more classes, one-vs-rest (one learner per class; ``predict_proba``
normalises the classes' probabilities, as SGDClassifier does).

>>> import numpy as np
>>> from onlinel1.sklearn import OnlineL1Classifier
>>> X = np.array([[1.0, 0.0], [0.0, 1.0]] * 50)
>>> y = np.array(["spam", "ham"] * 50)
>>> clf = OnlineL1Classifier(l1=1e-4, eta0=0.5, random_state=0).fit(X, y)
>>> clf.predict([[1.0, 0.0], [0.0, 1.0]]).tolist()
['spam', 'ham']
>>> clf.coef_.shape, clf.features_
((1, 2), 'columns')
>>> rows = [{"user=1": 1.0, "ad": {"id=7": 1.0}}, {"user=2": 1.0}] * 50
>>> named = OnlineL1Classifier(eta0=0.5, random_state=0).fit(rows, [1, 0] * 50)
>>> named.predict(rows[:2]).tolist(), sorted(named.feature_weights())
([1, 0], ['ad^id=7', 'user=1', 'user=2'])
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (_check_sample_weight, check_consistent_length,
                                      check_is_fitted, column_or_1d, validate_data)

from onlinel1 import dataframe
from onlinel1.batch import Batch
from onlinel1.learner import Learner
from onlinel1.options import LearnerOptions

__all__ = ["L1SGDClassifier", "L1SGDRegressor", "OnlineL1Classifier", "OnlineL1Regressor"]

FEATURES = ("auto", "columns", "names")
#: The learner's defaults (README, "Defaults"), which the classifier shares.
_D = LearnerOptions()


def _is_rows(X: Any) -> bool:
    """A list (or tuple) of dicts: rows of named features."""
    return isinstance(X, (list, tuple)) and len(X) > 0 and isinstance(X[0], Mapping)


class _L1SGD(BaseEstimator):
    """What both estimators share: the options, the vectorising of X, the
    passes over the data."""

    _loss: str   # the estimator's loss, or the name of its parameter

    def __init__(self, *, update: str = _D.update, l1: float = _D.l1, l2: float = 0.0,
                 eta0: float = _D.eta0, schedule: str = "constant", power_t: float = 0.5,
                 decay_rate: float = 0.85, decay_steps: float = 100_000.0,
                 origin: str = "first-seen", fit_intercept: bool = True,
                 truncate_every: int = 1, truncate_theta: float = math.inf,
                 adagrad_delta: float = 1e-8, ftrl_beta: float = 1.0, spred_init: float = 1.0,
                 spred_threshold: float = 1e-6, max_features: int = 0,
                 expire_after_examples: int = 0, adaptive: bool = False,
                 max_iter: int = 5, shuffle: bool = True,
                 random_state: Any = None, features: str = "auto") -> None:
        self.update = update
        self.l1 = l1
        self.l2 = l2
        self.eta0 = eta0
        self.schedule = schedule
        self.power_t = power_t
        self.decay_rate = decay_rate
        self.decay_steps = decay_steps
        self.origin = origin
        self.fit_intercept = fit_intercept
        self.truncate_every = truncate_every
        self.truncate_theta = truncate_theta
        self.adagrad_delta = adagrad_delta
        self.ftrl_beta = ftrl_beta
        self.spred_init = spred_init
        self.spred_threshold = spred_threshold
        self.max_features = max_features
        self.expire_after_examples = expire_after_examples
        self.adaptive = adaptive
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.features = features

    # ------------------------------------------------------------ options

    def _learner_loss(self) -> str:
        raise NotImplementedError

    def learner_options(self) -> LearnerOptions:
        """The :class:`LearnerOptions` of the parameters (an ``OptionError``,
        a ValueError, names a bad one)."""
        fields = {name: getattr(self, name) for name in (
            "update", "l1", "l2", "eta0", "schedule", "power_t", "decay_rate", "decay_steps",
            "origin", "fit_intercept", "truncate_every", "truncate_theta", "adagrad_delta",
            "ftrl_beta", "spred_init", "spred_threshold", "max_features",
            "expire_after_examples", "adaptive")}
        for name in ("l1", "l2", "eta0", "power_t", "decay_rate", "decay_steps",
                     "adagrad_delta", "ftrl_beta", "spred_init", "spred_threshold"):
            if isinstance(fields[name], np.floating | np.integer):
                fields[name] = float(fields[name])
        for name in ("fit_intercept", "adaptive"):
            if isinstance(fields[name], np.bool_):
                fields[name] = bool(fields[name])
        return LearnerOptions(loss=self._learner_loss(), **fields)

    def _check_params(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {', '.join(map(repr, FEATURES))}, "
                             f"got {self.features!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) \
                or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")

    # -------------------------------------------------------- vectorising

    def _mode(self, X: Any) -> str:
        if self.features != "auto":
            return self.features
        if _is_rows(X) or (dataframe.is_table(X) and not dataframe.numeric_only(X)):
            return "names"
        return "columns"

    def _rows(self, X: Any, reset: bool, learning: bool) -> Batch:
        """The examples of X as a Batch without labels; on ``reset`` (a
        first fit) X decides ``features_`` and the input checks' state.
        The names of the features of rows ``learning`` go into ``names_``."""
        mode = self._mode(X) if reset else self.features_
        if reset:
            self.features_ = mode
        if mode == "columns":
            if _is_rows(X):
                raise ValueError("X is a list of dicts but the estimator reads columns "
                                 "(features='columns'); dicts need features='names' "
                                 "or 'auto'")
            X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32],
                              reset=reset)
            return Batch.from_csr(X if sp.issparse(X) else sp.csr_matrix(X))
        if reset:
            self.names_ = {}
        names = self.names_ if learning else None
        if dataframe.is_table(X):
            validate_data(self, X, skip_check_array=True, reset=reset)
            return dataframe.from_table(X, names=names)
        if _is_rows(X):
            return Batch.from_rows(X, names=names)
        raise ValueError(f"this estimator was fitted on named features (features="
                         f"{self.features!r}): X must be a list of dicts or a pandas or "
                         f"pyarrow table, got {type(X).__name__}")

    def _examples(self, X: Any, y: Any, sample_weight: Any, reset: bool
                  ) -> tuple[Batch, np.ndarray, np.ndarray | None]:
        if y is None:
            raise ValueError(f"This {type(self).__name__} estimator requires y to be passed, "
                             f"but the target y is None.")
        rows = self._rows(X, reset, learning=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(rows.n_rows), y)
        if rows.n_rows == 0:
            raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, np.empty((rows.n_rows, 1)),
                                           dtype=np.float64)
        return rows, y, weights

    # ----------------------------------------------------------- learning

    def _new_learners(self, n: int) -> None:
        options = self.learner_options()
        self.learners_ = [Learner(options) for _ in range(n)]

    def _learn(self, rows: Batch, targets: list[np.ndarray], weights: np.ndarray | None,
               passes: int, shuffle: bool) -> None:
        """``passes`` over the rows, learner k learning ``targets[k]``."""
        rng = check_random_state(self.random_state) if shuffle else None
        for _ in range(passes):
            order = rng.permutation(rows.n_rows) if shuffle else None
            batch = rows.take(order) if shuffle else rows
            for learner, target in zip(self.learners_, targets):
                learner.learn(Batch(batch.indptr, batch.keys, batch.values,
                                    target if order is None else target[order],
                                    None if weights is None else
                                    (weights if order is None else weights[order])))
        self.n_iter_ = getattr(self, "n_iter_", 0) + passes
        self.t_ = self.learners_[0].examples_seen

    def _margins(self, X: Any, probability: bool = False) -> np.ndarray:
        """(n_rows, n_learners) margins, or the learners' probabilities
        (log loss), exactly as ``Learner.predict`` gives them."""
        check_is_fitted(self, "learners_")
        rows = self._rows(X, reset=False, learning=False)
        return np.column_stack([learner.predict(rows) if probability
                                else learner.decision_function(rows)
                                for learner in self.learners_])

    # -------------------------------------------------------------- model

    @property
    def coef_(self) -> np.ndarray:
        """The weights by column (features='columns'), as scikit-learn's
        linear models have them (dense)."""
        return self.sparse_coef_.toarray()

    @property
    def sparse_coef_(self) -> sp.csr_matrix:
        """The weights by column as a scipy CSR matrix, one row per learner
        (features='columns')."""
        check_is_fitted(self, "learners_")
        if self.features_ != "columns":
            raise AttributeError("coef_ and sparse_coef_ are for column input "
                                 "(features='columns'); with named features the keys are "
                                 "hashes: use feature_weights()")
        data, indices, indptr = [], [], [0]
        for learner in self.learners_:
            keys, weights = learner.weights()
            inside = keys < self.n_features_in_
            indices.append(keys[inside].astype(np.int64))
            data.append(weights[inside])
            indptr.append(indptr[-1] + int(inside.sum()))
        return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr),
                             shape=(len(self.learners_), self.n_features_in_))

    @property
    def intercept_(self) -> np.ndarray:
        check_is_fitted(self, "learners_")
        return np.array([learner.intercept for learner in self.learners_])

    def feature_weights(self, output: int = 0) -> dict[Any, float]:
        """The non-zero weights of learner ``output`` (a class's index in
        ``classes_`` for one-vs-rest, else 0) by feature: its name where
        the estimator knows it (named features; a DataFrame's column name),
        its key (the column index) otherwise."""
        check_is_fitted(self, "learners_")
        keys, weights = self.learners_[output].weights()
        if self.features_ == "columns":
            columns = getattr(self, "feature_names_in_", None)
            name = (lambda k: k) if columns is None else (lambda k: columns[k])
            return {name(k): w for k, w in zip(keys.tolist(), weights.tolist())
                    if k < self.n_features_in_}
        return {self.names_.get(k, k): w for k, w in zip(keys.tolist(), weights.tolist())}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        # Lists of dicts are taken (features="names"); the "categorical" and
        # "string" tags are not set: to the estimator checks they mean an
        # estimator of categorical (or string) data only.
        tags.input_tags.dict = True
        return tags


class OnlineL1Classifier(ClassifierMixin, _L1SGD):
    """A linear classifier learned by :class:`onlinel1.Learner` (lazy
    L1/L2 SGD: cumulative L1, FOBOS, FTRL, ...; see the module docstring).

    ``loss``: ``"log"`` (logistic regression; ``predict_proba``) or
    ``"hinge"`` (linear SVM).  The other parameters are the learner's
    options (README "Python API") and ``max_iter``, ``shuffle``,
    ``random_state``, ``features``.

    Attributes: ``classes_``, ``learners_`` (one :class:`Learner`, or one
    per class for more than two), ``coef_`` / ``sparse_coef_`` /
    ``intercept_``, ``n_features_in_``, ``features_``, ``names_`` (key ->
    name of the named features seen in training), ``t_`` (examples learned).
    """

    def __init__(self, loss: str = "log", *, update: str = _D.update, l1: float = _D.l1,
                 l2: float = 0.0, eta0: float = _D.eta0, schedule: str = "constant",
                 power_t: float = 0.5, decay_rate: float = 0.85, decay_steps: float = 100_000.0,
                 origin: str = "first-seen", fit_intercept: bool = True,
                 truncate_every: int = 1, truncate_theta: float = math.inf,
                 adagrad_delta: float = 1e-8, ftrl_beta: float = 1.0, spred_init: float = 1.0,
                 spred_threshold: float = 1e-6, max_features: int = 0,
                 expire_after_examples: int = 0, adaptive: bool = False,
                 max_iter: int = 5, shuffle: bool = True,
                 random_state: Any = None, features: str = "auto") -> None:
        self.loss = loss
        super().__init__(update=update, l1=l1, l2=l2, eta0=eta0, schedule=schedule,
                         power_t=power_t, decay_rate=decay_rate, decay_steps=decay_steps,
                         origin=origin, fit_intercept=fit_intercept,
                         truncate_every=truncate_every, truncate_theta=truncate_theta,
                         adagrad_delta=adagrad_delta, ftrl_beta=ftrl_beta,
                         spred_init=spred_init, spred_threshold=spred_threshold,
                         max_features=max_features, expire_after_examples=expire_after_examples,
                         adaptive=adaptive,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state,
                         features=features)

    def _learner_loss(self) -> str:
        if self.loss not in ("log", "hinge"):
            raise ValueError(f"loss must be 'log' or 'hinge', got {self.loss!r}")
        return self.loss

    def _targets(self, y: np.ndarray) -> list[np.ndarray]:
        """The +-1 labels of each learner for the class labels ``y``."""
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels not in classes_ {self.classes_.tolist()}: "
                             f"{unknown.tolist()[:5]}")
        if self.classes_.size == 2:
            return [np.where(y == self.classes_[1], 1.0, -1.0)]
        return [np.where(y == c, 1.0, -1.0) for c in self.classes_]

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "OnlineL1Classifier":
        """Learn afresh: ``max_iter`` passes over (X, y), shuffled each
        pass if ``shuffle``."""
        self._check_params()
        self._learner_loss()
        for attribute in ("learners_", "names_", "n_iter_"):
            self.__dict__.pop(attribute, None)
        rows, y, weights = self._examples(X, y, sample_weight, reset=True)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"The number of classes has to be greater than one; got "
                             f"{self.classes_.size} class")
        self._new_learners(1 if self.classes_.size == 2 else self.classes_.size)
        self._learn(rows, self._targets(y), weights, self.max_iter, self.shuffle)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None,
                    sample_weight: Any = None) -> "OnlineL1Classifier":
        """Learn the rows once, in order, going on from the current model;
        the first call needs ``classes`` (every class there will be)."""
        first = not hasattr(self, "learners_")
        if first:
            self._check_params()
            self._learner_loss()
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        rows, y, weights = self._examples(X, y, sample_weight, reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(np.asarray(classes))
            if self.classes_.size < 2:
                raise ValueError(f"The number of classes has to be greater than one; got "
                                 f"{self.classes_.size} class")
            self._new_learners(1 if self.classes_.size == 2 else self.classes_.size)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes).tolist()} are not the classes_ "
                             f"of the first call, {self.classes_.tolist()}")
        self._learn(rows, self._targets(y), weights, 1, False)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Margins: (n,) for two classes (> 0: ``classes_[1]``), else
        (n, n_classes)."""
        margins = self._margins(X)
        return margins[:, 0] if self.classes_.size == 2 else margins

    def predict(self, X: Any) -> np.ndarray:
        margins = self.decision_function(X)
        if margins.ndim == 1:
            return self.classes_[(margins > 0).astype(np.int64)]
        return self.classes_[np.argmax(margins, axis=1)]

    def _has_proba(self) -> bool:
        return self.loss == "log"

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, n_classes) probabilities (log loss only); one-vs-rest
        probabilities are normalised to sum to 1."""
        p = self._margins(X, probability=True)
        if self.classes_.size == 2:
            return np.column_stack([1.0 - p[:, 0], p[:, 0]])
        total = p.sum(axis=1, keepdims=True)
        return np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)

    @available_if(_has_proba)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X))


class OnlineL1Regressor(RegressorMixin, _L1SGD):
    """A linear regressor (squared loss) learned by :class:`onlinel1.Learner`;
    see :class:`OnlineL1Classifier` for the parameters and attributes (no
    ``loss``, no ``classes_``; ``coef_`` is (n_features,) and
    ``intercept_`` (1,), as SGDRegressor has them).

    The step size defaults are SGDRegressor's, ``eta0=0.01`` with
    ``schedule="invscaling"`` and ``power_t=0.25``: the classifier's
    constant 0.1 is too large a step for the squared loss on a few dense
    features (scikit-learn's check_regressors_train scores R^2 0.41 with
    it, 0.80 with these).
    """

    def __init__(self, *, update: str = "cumulative", l1: float = 1e-6, l2: float = 0.0,
                 eta0: float = 0.01, schedule: str = "invscaling", power_t: float = 0.25,
                 decay_rate: float = 0.85, decay_steps: float = 100_000.0,
                 origin: str = "first-seen", fit_intercept: bool = True,
                 truncate_every: int = 1, truncate_theta: float = math.inf,
                 adagrad_delta: float = 1e-8, ftrl_beta: float = 1.0, spred_init: float = 1.0,
                 spred_threshold: float = 1e-6, max_features: int = 0,
                 expire_after_examples: int = 0, adaptive: bool = False,
                 max_iter: int = 5, shuffle: bool = True,
                 random_state: Any = None, features: str = "auto") -> None:
        super().__init__(update=update, l1=l1, l2=l2, eta0=eta0, schedule=schedule,
                         power_t=power_t, decay_rate=decay_rate, decay_steps=decay_steps,
                         origin=origin, fit_intercept=fit_intercept,
                         truncate_every=truncate_every, truncate_theta=truncate_theta,
                         adagrad_delta=adagrad_delta, ftrl_beta=ftrl_beta,
                         spred_init=spred_init, spred_threshold=spred_threshold,
                         max_features=max_features, expire_after_examples=expire_after_examples,
                         adaptive=adaptive,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state,
                         features=features)

    def _learner_loss(self) -> str:
        return "squared"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "OnlineL1Regressor":
        """Learn afresh: ``max_iter`` passes over (X, y), shuffled each
        pass if ``shuffle``."""
        self._check_params()
        for attribute in ("learners_", "names_", "n_iter_"):
            self.__dict__.pop(attribute, None)
        rows, y, weights = self._examples(X, y, sample_weight, reset=True)
        y = self._numeric_target(y)
        self._new_learners(1)
        self._learn(rows, [y], weights, self.max_iter, self.shuffle)
        return self

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "OnlineL1Regressor":
        """Learn the rows once, in order, going on from the current model."""
        first = not hasattr(self, "learners_")
        if first:
            self._check_params()
        rows, y, weights = self._examples(X, y, sample_weight, reset=first)
        y = self._numeric_target(y)
        if first:
            self._new_learners(1)
        self._learn(rows, [y], weights, 1, False)
        return self

    @staticmethod
    def _numeric_target(y: np.ndarray) -> np.ndarray:
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("y must be numbers for a regressor") from None
        if not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        return y

    def predict(self, X: Any) -> np.ndarray:
        return self._margins(X)[:, 0]

    @property
    def coef_(self) -> np.ndarray:
        return super().coef_[0]


# The names of the estimators before 2026-12-03: code and pickles that use
# them go on working (they are the same classes).
L1SGDClassifier = OnlineL1Classifier
L1SGDRegressor = OnlineL1Regressor
