"""The regularisation path: how sparse a model each update rule gives for
its held-out accuracy.

For every chosen rule and every ``l1`` of a grid, a fresh ``Learner`` is
trained for some passes over the training part (the same shuffled order for
every rule), then measured: non-zero weights, held-out log loss and
accuracy, progressive log loss (first pass), training objective and
examples/s.  The batch L1 optimum, scikit-learn's ``LogisticRegression``
with the L1 penalty (``fit_reference``), is the reference path.

Scales.  ``l1`` is the penalty *per example*, as everywhere in onlinel1:
every rule approaches the minimiser of the objective ::

    F(w) = (1/n) sum_i s_i log(1 + exp(-y_i (b + w.x_i))) + l1 ||w||_1

(the intercept ``b`` not penalised).  scikit-learn minimises
``C sum_i s_i loss_i + ||w||_1``; dividing by ``C n`` gives ``F`` with
``l1 = 1 / (C n)``, so the reference uses ``C = 1 / (l1 n)``, ``n`` the
number of training rows.  FTRL-Proximal's ``lambda1`` is not a per-example
share but a total over the stream (McMahan et al. 2013 minimise
``sum_t g_t.w + lambda1 ||w||_1 + ...``), so the path gives ``ftrl``
``lambda1 = l1 * T``, ``T = passes * n`` the examples it learns, which puts
its final objective on the same scale (likewise ``lambda2 = l2 * T``).  The
``penalty`` column holds the value actually given to the learner (``C``
for the reference).

>>> train = Batch.from_rows([{1: 1.0}, {2: 1.0}, {1: 1.0, 3: 1.0}, {2: 1.0}] * 25,
...                         [1, -1, 1, -1] * 25)
>>> rows = run_path(train, train, [("fobos", {}), ("cumulative", {})], [1e-3, 1e-1],
...                 LearnerOptions(eta0=0.5), passes=3, reference=False)
>>> for r in rows:
...     print(r["rule"], r["l1"], r["nnz"], r["nnz_settled"], r["test_accuracy"])
fobos 0.001 3 3 1.0
fobos 0.1 2 2 1.0
cumulative 0.001 3 3 1.0
cumulative 0.1 3 2 1.0
"""
from __future__ import annotations

import csv
import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

import numpy as np

from onlinel1.batch import Batch
from onlinel1.learner import Learner, NumericError
from onlinel1.options import UPDATES, LearnerOptions

__all__ = ["RULES", "REFERENCE", "COLUMNS", "DivergedError", "concat", "take", "holdout_split",
           "pass_orders", "geometric_grid", "parse_rules", "point_options", "log_loss", "l1_objective",
           "to_csr", "fit_reference", "settled_nnz", "train_point", "run_path",
           "representative", "markdown_table", "nnz_table", "write_csv", "read_csv", "plot"]

#: Every rule, in the order of the report.
RULES = UPDATES

#: The ``rule`` of the reference rows (the batch L1 optimum).
REFERENCE = "batch-l1"

#: The CSV columns, in order.
COLUMNS = ("rule", "update", "l1", "penalty", "passes", "examples", "nnz", "nnz_settled",
           "test_logloss",
           "test_accuracy", "progressive_logloss", "train_objective", "seconds",
           "examples_per_s", "settings")

Progress = Callable[[dict, int, int], None]


class DivergedError(ValueError):
    """Every setting tried at a point of the path diverged.

    ``rule`` is the curve's label, ``l1`` the point's penalty and
    ``errors`` the ``NumericError`` of each setting tried, in order."""

    def __init__(self, message: str, *, rule: str, l1: float,
                 errors: Sequence[NumericError]) -> None:
        super().__init__(message)
        self.rule = rule
        self.l1 = l1
        self.errors = list(errors)


# ------------------------------------------------------------------ data

def concat(batches: Iterable[Batch]) -> Batch:
    """One Batch with the rows of ``batches`` in order."""
    batches = list(batches)
    if not batches:
        return Batch([0], np.zeros(0, np.uint64), np.zeros(0))
    offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate([[0]] + [b.indptr[1:] + o for b, o in zip(batches, offsets)])
    values = np.concatenate([b.values.astype(np.float64, copy=False) for b in batches]) \
        if any(b.values.dtype != np.float32 for b in batches) \
        else np.concatenate([b.values for b in batches])
    labels = None if any(b.labels is None for b in batches) \
        else np.concatenate([b.labels for b in batches])
    weights = None
    if any(b.weights is not None for b in batches):
        weights = np.concatenate([b.weights if b.weights is not None else np.ones(b.n_rows)
                                  for b in batches])
    return Batch(indptr, np.concatenate([b.keys for b in batches]), values, labels, weights)


def take(batch: Batch, rows: np.ndarray) -> Batch:
    """The rows ``rows`` (indices, in that order) of ``batch`` as a new Batch."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = np.diff(batch.indptr)[rows]
    indptr = np.zeros(rows.size + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # Position of every entry of the new rows in the old arrays.
    starts = np.repeat(batch.indptr[rows] - indptr[:-1], lengths)
    pos = starts + np.arange(indptr[-1], dtype=np.int64)
    return Batch(indptr, batch.keys[pos], batch.values[pos],
                 None if batch.labels is None else batch.labels[rows],
                 None if batch.weights is None else batch.weights[rows])


def holdout_split(batch: Batch, fraction: float) -> tuple[Batch, Batch]:
    """(first rows, last ``fraction`` of the rows), in file order.

    The held-out part has ``round(fraction * n)`` rows; both parts must be
    non-empty."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    n = batch.n_rows
    n_test = int(round(fraction * n))
    if n_test < 1 or n_test >= n:
        raise ValueError(f"a holdout of {fraction:g} of {n} rows leaves an empty part")
    return batch.slice(0, n - n_test), batch.slice(n - n_test, n)


def pass_orders(n: int, passes: int, seed: int | None) -> list[np.ndarray | None]:
    """The row order of each pass: a fresh permutation per pass drawn from
    ``numpy.random.RandomState(seed)`` (so pass 1 is
    ``RandomState(seed).permutation(n)``), or file order (None) when
    ``seed`` is None."""
    if seed is None:
        return [None] * passes
    rng = np.random.RandomState(seed)
    return [rng.permutation(n) for _ in range(passes)]


def geometric_grid(lo: float, hi: float, steps: int,
                   names: tuple[str, str, str] = ("l1-min", "l1-max", "l1-steps")) -> list[float]:
    """``steps`` values from ``lo`` to ``hi``, evenly spaced on a log scale
    (rounded to 4 significant digits so that they print as given).

    ``names``: what a ``ValueError`` calls ``lo``, ``hi`` and ``steps``
    (the command line passes its flags)."""
    lo_name, hi_name, steps_name = names
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{lo_name}/{hi_name} must be positive and finite, got {lo!r} .. {hi!r}")
    if lo > hi:
        raise ValueError(f"{lo_name} {lo!r} is above {hi_name} {hi!r}")
    if steps < 1 or (steps == 1 and lo != hi):
        raise ValueError(f"{steps_name} must be >= 2 for a range (1 for a single value), "
                         f"got {steps}")
    if steps == 1:
        return [lo]
    return [float(f"{v:.4g}") for v in np.geomspace(lo, hi, steps)]


# ----------------------------------------------------------------- rules

def _value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_rules(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``"cumulative,ftrl:eta0=0.5:ftrl-beta=1"`` -> ``[("cumulative", {}),
    ("ftrl", {"eta0": 0.5, "ftrl_beta": 1})]``.

    Each item is a rule, optionally followed by ``:option=value`` settings
    that apply to that rule only (LearnerOptions fields; ``-`` may stand
    for ``_``).  ``all`` stands for every rule.  The label of a curve is
    the item as written, so one rule may appear twice with other settings.
    """
    fields = {f.name for f in dataclasses.fields(LearnerOptions)}
    out: list[tuple[str, dict[str, Any]]] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise ValueError(f"empty rule in {text!r}")
        rule, *settings = item.split(":")
        if rule == "all" and not settings:
            out.extend((r, {}) for r in RULES)
            continue
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}: expected one of {', '.join(RULES)} (or all)")
        overrides: dict[str, Any] = {}
        for setting in settings:
            name, eq, value = setting.partition("=")
            name = name.strip().replace("-", "_")
            if not eq or not value.strip():
                raise ValueError(f"{item!r}: a rule setting is option=value, got {setting!r}")
            if name not in fields or name in ("update", "l1", "rebase_at"):
                raise ValueError(f"{item!r}: {name!r} is not a learner option that a rule "
                                 f"can set")
            overrides[name] = _value(value.strip())
        out.append((rule, overrides))
    labels = [label_of(r, o) for r, o in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"rule {dup[0]!r} is given twice")
    return out


def label_of(rule: str, overrides: Mapping[str, Any]) -> str:
    """The curve label: the rule and its own settings, as parse_rules reads them."""
    return ":".join([rule] + [f"{k.replace('_', '-')}={v}" for k, v in overrides.items()])


def point_options(base: LearnerOptions, rule: str, l1: float, overrides: Mapping[str, Any],
                  examples: int) -> LearnerOptions:
    """The options of one point: ``base`` with the rule, its overrides and
    the penalty ``l1`` (per example), given to ``ftrl`` as ``l1 * examples``
    (and its ``l2`` as ``l2 * examples``) since FTRL's penalties are totals.
    ``plain`` takes ``l1 = 0``.  Raises ``ValueError`` for a bad setting."""
    values = base.to_dict()
    values.update(overrides)
    values["update"] = rule
    values["l1"] = 0.0 if rule == "plain" else l1
    if rule == "ftrl":
        values["l1"] = values["l1"] * examples
        values["l2"] = float(values.get("l2", 0.0)) * examples
    return LearnerOptions.from_dict(values)


def _settings(o: LearnerOptions) -> str:
    """The settings that matter for the rule, as ``name=value`` words."""
    keys = ["loss", "eta0"]
    if o.update not in ("adagrad-fobos", "ftrl"):
        keys.append("schedule")
        keys += {"invscaling": ["power_t"], "exponential": ["decay_rate", "decay_steps"]
                 }.get(o.schedule, [])
    keys += {"cumulative": ["origin"], "truncated": ["truncate_every", "truncate_theta"],
             "adagrad-fobos": ["adagrad_delta"], "ftrl": ["ftrl_beta"],
             "spred": ["spred_init", "spred_threshold"]}.get(o.update, [])
    if o.l2:
        keys.append("l2")
    keys.append("fit_intercept")
    return " ".join(f"{k}={getattr(o, k):g}" if isinstance(getattr(o, k), float)
                    else f"{k}={getattr(o, k)}" for k in keys)


# --------------------------------------------------------------- measures

def _labels(batch: Batch) -> np.ndarray:
    return np.where(batch.labels > 0, 1.0, -1.0)


def log_loss(margins: np.ndarray, labels: np.ndarray,
             weights: np.ndarray | None = None) -> float:
    """The (importance-weighted) mean of ``log(1 + exp(-y p))``, y = +-1
    (labels <= 0 are -1)."""
    y = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    losses = np.logaddexp(0.0, -y * margins)
    return float(np.average(losses, weights=weights)) if losses.size else math.nan


def _accuracy(margins: np.ndarray, labels: np.ndarray) -> float:
    y = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    return float(np.mean(np.where(margins > 0, 1.0, -1.0) == y)) if y.size else math.nan


def l1_objective(margins: np.ndarray, labels: np.ndarray, w: np.ndarray, l1: float,
                 weights: np.ndarray | None = None) -> float:
    """``(1/n) sum_i s_i log(1 + exp(-y_i p_i)) + l1 ||w||_1``: the objective
    that the rules approach with penalty ``l1`` per example (``w`` the
    weights without the intercept, ``p`` the margins with it)."""
    y = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    losses = np.logaddexp(0.0, -y * margins)
    if weights is not None:
        losses = losses * weights
    return float(losses.mean() + l1 * np.abs(w).sum())


def to_csr(batch: Batch, columns: np.ndarray):
    """``batch`` as a scipy CSR matrix whose column j is key ``columns[j]``
    (``columns`` sorted; keys not in it are dropped, duplicates add up)."""
    import scipy.sparse as sp
    n = batch.n_rows
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(batch.indptr))
    pos = np.searchsorted(columns, batch.keys)
    pos[pos >= columns.size] = 0
    found = columns[pos] == batch.keys if columns.size else np.zeros(batch.nnz, bool)
    X = sp.coo_matrix((batch.values[found].astype(np.float64), (rows[found], pos[found])),
                      shape=(n, columns.size)).tocsr()
    X.sum_duplicates()
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
    return X


def fit_reference(X, y: np.ndarray, l1: float, *, fit_intercept: bool = True,
                  sample_weight: np.ndarray | None = None, solver: str = "liblinear",
                  tol: float = 1e-4, intercept_scaling: float = 100.0, max_iter: int = 10_000):
    """The batch L1 optimum: scikit-learn's ``LogisticRegression`` with the
    L1 penalty and ``C = 1 / (l1 * n)``, n = rows of ``X`` (see the module
    docstring for the equivalence).

    ``liblinear`` (the default) penalises the intercept as a weight on a
    constant column of value ``intercept_scaling``, i.e. by ``l1 |b| /
    intercept_scaling`` in the scale of ``F``: with the default 100 that is
    negligible, as it must be (the learner never penalises ``b``).
    ``saga`` does not penalise it at all, but it is 10-100 times slower
    to converge here.  Measured on a9a, liblinear with ``tol=1e-4`` is
    within 2e-5 (relative) of the optimum's objective.  Returns the fitted
    estimator."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    if l1 <= 0:
        raise ValueError(f"the batch L1 reference needs l1 > 0, got {l1!r}")
    n = X.shape[0]
    kwargs: dict[str, Any] = {"l1_ratio": 1.0} if _has_l1_ratio_only() else {"penalty": "l1"}
    if solver == "liblinear":
        kwargs["intercept_scaling"] = intercept_scaling
    # liblinear visits the coordinates in a random order: seed it so that a
    # rerun gives the same model (its non-zero count at small l1 is not
    # unique anyway: a9a's one-hot groups are collinear).
    estimator = LogisticRegression(C=1.0 / (l1 * n), solver=solver, tol=tol,
                                   max_iter=max_iter, fit_intercept=fit_intercept,
                                   random_state=0, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y, sample_weight=sample_weight)
    return estimator


def _has_l1_ratio_only() -> bool:
    """scikit-learn >= 1.8 deprecates ``penalty="l1"`` for ``l1_ratio=1``."""
    import sklearn
    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    return (major, minor) >= (1, 8)


# ------------------------------------------------------------------ path

def settled_nnz(learner: Learner) -> int:
    """Non-zero weights once every weight has received the penalty it still
    owes: those of a copy of ``learner`` after one more example in which
    every stored feature occurs with value 0 (no gradient, one step of
    penalty).  The rules that read their weights caught up (subgradient,
    fobos, truncated, adagrad-fobos) change by that one step only; ftrl and
    plain not at all; ``cumulative`` reads its weights *as stored*, so a
    feature still owes the penalty of every example since it last occurred
    (docs/algorithms.md), and this is what paying it leaves."""
    state = learner.state
    keys = state["keys"]
    if keys.size == 0:
        return 0
    copy = Learner.from_state(state)
    copy.learn(Batch(np.array([0, keys.size]), keys, np.zeros(keys.size), np.array([1.0])),
               check=False)
    return copy.nnz


def train_point(passes: Sequence[Batch], test: Batch, options: LearnerOptions,
                label: str | None = None, l1: float | None = None,
                train: Batch | None = None) -> tuple[dict, Learner]:
    """Train a fresh learner on the batches of ``passes`` (one per pass, the
    rows already in that pass's order, already checked) and measure it on
    ``test`` (and its objective on ``train``, the training part, if given).
    Returns (the CSV row, the learner)."""
    learner = Learner(options)
    start = time.perf_counter()
    first = math.nan
    for i, batch in enumerate(passes):
        result = learner.learn(batch, check=False)
        if i == 0:
            first = result.loss
    seconds = time.perf_counter() - start
    examples = sum(b.n_rows for b in passes)
    margins = learner.decision_function(test)
    l1 = options.l1 if l1 is None else l1
    row = {
        "rule": label or options.update, "update": options.update, "l1": l1,
        "penalty": options.l1, "passes": len(passes), "examples": examples,
        "nnz": learner.nnz, "nnz_settled": settled_nnz(learner),
        "test_logloss": log_loss(margins, test.labels, test.weights),
        "test_accuracy": _accuracy(margins, test.labels),
        "progressive_logloss": first,
        "train_objective": math.nan, "seconds": seconds,
        "examples_per_s": examples / seconds if seconds > 0 else math.nan,
        "settings": _settings(options),
    }
    if train is not None:
        _, w = learner.weights()
        row["train_objective"] = l1_objective(learner.decision_function(train), train.labels,
                                              w, l1 if options.update != "plain" else 0.0,
                                              train.weights)
    return row, learner


def reference_row(train: Batch, test: Batch, l1: float, fit_intercept: bool,
                  columns: np.ndarray | None = None, Xtr=None, Xte=None,
                  solver: str = "liblinear") -> dict:
    """The batch L1 optimum at ``l1`` as a CSV row (``passes`` empty)."""
    if columns is None:
        columns = np.unique(train.keys)
    Xtr = to_csr(train, columns) if Xtr is None else Xtr
    Xte = to_csr(test, columns) if Xte is None else Xte
    ytr = _labels(train)
    if np.unique(ytr).size < 2:
        raise ValueError("the training part has a single class: no logistic reference")
    start = time.perf_counter()
    est = fit_reference(Xtr, ytr, l1, fit_intercept=fit_intercept,
                        sample_weight=train.weights, solver=solver)
    seconds = time.perf_counter() - start
    coef = est.coef_.ravel()
    b = float(est.intercept_[0]) if fit_intercept else 0.0
    mte = Xte @ coef + b
    return {
        "rule": REFERENCE, "update": "", "l1": l1, "penalty": 1.0 / (l1 * Xtr.shape[0]),
        "passes": "", "examples": "", "nnz": int(np.count_nonzero(coef)),
        "nnz_settled": int(np.count_nonzero(coef)),
        "test_logloss": log_loss(mte, test.labels, test.weights),
        "test_accuracy": _accuracy(mte, test.labels),
        "progressive_logloss": math.nan,
        "train_objective": l1_objective(Xtr @ coef + b, train.labels, coef, l1, train.weights),
        "seconds": seconds, "examples_per_s": math.nan,
        "settings": f"scikit-learn LogisticRegression solver={est.solver} C=1/(l1*n) "
                    f"n={Xtr.shape[0]} tol={est.tol:g} fit_intercept={fit_intercept}"
                    + (f" intercept_scaling={est.intercept_scaling:g}"
                       if fit_intercept and est.solver == "liblinear" else ""),
    }


def run_path(train: Batch, test: Batch, rules: Sequence[tuple[str, Mapping[str, Any]]],
             grid: Sequence[float], base: LearnerOptions | None = None, *, passes: int = 10,
             seed: int | None = 0, reference: bool = True,
             tune: Sequence[Mapping[str, Any]] | None = None,
             progress: Progress | None = None) -> list[dict]:
    """Every rule at every ``l1`` of ``grid`` (``plain`` once, at 0), then
    the reference path (``reference=True``; needs scikit-learn).  Returns
    the CSV rows, rule by rule in the order given, ``l1`` ascending.

    Every learner sees the same rows in the same order: pass ``k`` is the
    training part in the ``k``-th permutation of ``pass_orders(n, passes,
    seed)``.

    ``tune``: step settings to try at every point (e.g. ``[{"eta0": 0.1},
    {"eta0": 1.0}]``), each laid over ``base`` and under the rule's own
    settings (options that come out identical run once).  The point keeps
    the one with the lowest *training* objective ``F`` -- the quantity the
    rule minimises; the held-out part plays no role in the choice.  Its
    ``settings`` then end with ``(best of k by train objective)`` and its
    ``seconds`` are those of the kept run.

    ``progress(row, done, total)`` is called after each point.  Raises
    ``ValueError`` for bad settings before anything is trained,
    :class:`DivergedError` (a ``ValueError``) for a point whose every
    setting diverged (``NumericError``), and ``BatchError`` for data a
    learner cannot take.
    """
    base = base or LearnerOptions()
    if base.loss != "log":
        raise ValueError(f"the path measures log loss against the L1-logistic optimum: loss "
                         f"must be 'log', got {base.loss!r}")
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if train.n_rows < 1 or test.n_rows < 1:
        raise ValueError("the training and the held-out part must both have rows")
    grid = sorted(float(v) for v in grid)
    if not grid or any(not (v > 0 and math.isfinite(v)) for v in grid):
        raise ValueError(f"the l1 grid must be positive finite values, got {grid!r}")
    examples = passes * train.n_rows
    tune = [dict(t) for t in tune] if tune else [{}]
    points = []
    for rule, overrides in rules:
        label = label_of(rule, overrides)
        for l1 in ([0.0] if rule == "plain" else grid):
            candidates: list[tuple[Any, LearnerOptions]] = []
            for setting in tune:
                try:
                    options = point_options(base, rule, l1, {**setting, **overrides}, examples)
                except ValueError as exc:
                    raise ValueError(f"{label} at l1={l1:g}: {exc}") from None
                # Settings a rule does not use (the schedule of ftrl) make no new run.
                key = (options.update, _settings(options), options.l1, options.l2)
                if key not in [k for k, _ in candidates]:
                    candidates.append((key, options))
            points.append((label, l1, [o for _, o in candidates]))
    Learner(base).check(train)
    Learner(base).check(test)
    orders = pass_orders(train.n_rows, passes, seed)
    batches = [train if order is None else take(train, order) for order in orders]
    total = len(points) + (len(grid) if reference else 0)
    rows: list[dict] = []
    def score(r: dict) -> float:
        f = r["train_objective"]
        return f if math.isfinite(f) else math.inf

    for label, l1, candidates in points:
        row, failures = None, []
        for options in candidates:
            try:
                tried, _ = train_point(batches, test, options, label=label, l1=l1, train=train)
            except NumericError as exc:   # a step too large for the data: not a candidate
                failures.append((options.eta0, exc))
                continue
            if row is None or score(tried) < score(row):
                row = tried
        if row is None:
            raise DivergedError(f"{label} at l1={l1:g}: training diverged "
                                f"({'; '.join(f'eta0={e:g}: {exc}' for e, exc in failures)})",
                                rule=label, l1=l1, errors=[exc for _, exc in failures])
        if len(candidates) > 1:
            row["settings"] += f" (best of {len(candidates)} by train objective" + (
                f"; {len(failures)} diverged)" if failures else ")")
        rows.append(row)
        if progress:
            progress(row, len(rows), total)
    if reference:
        columns = np.unique(train.keys)
        Xtr, Xte = to_csr(train, columns), to_csr(test, columns)
        done = len(rows)
        for l1 in sorted(grid, reverse=True):   # sparse first: the quick fits
            row = reference_row(train, test, l1, base.fit_intercept, columns, Xtr, Xte)
            rows.append(row)
            if progress:
                progress(row, len(rows), total)
        rows[done:] = rows[done:][::-1]
    return rows


# ----------------------------------------------------------------- report

def representative(rows: Sequence[Mapping], tolerance: float = 0.005) -> dict[str, dict]:
    """Per rule (and the reference), the point with the fewest non-zeros
    among those whose held-out accuracy is within ``tolerance`` (absolute:
    0.005 = half a percentage point) of the best held-out accuracy of any
    online point; ties go to the higher accuracy, then the smaller ``l1``.
    A rule with no point that close gets its most accurate point, marked
    ``within = False``.  Returns ``{rule: row + {"within": bool, "target":
    best - tolerance}}`` in the order of the rows."""
    online = [r for r in rows if r["rule"] != REFERENCE]
    best = max(float(r["test_accuracy"]) for r in (online or rows))
    target = best - tolerance
    out: dict[str, dict] = {}
    for rule in dict.fromkeys(r["rule"] for r in rows):
        mine = [r for r in rows if r["rule"] == rule]
        close = [r for r in mine if float(r["test_accuracy"]) >= target - 1e-12]
        if close:
            pick = min(close, key=lambda r: (int(r["nnz"]), -float(r["test_accuracy"]),
                                             float(r["l1"])))
        else:
            pick = max(mine, key=lambda r: (float(r["test_accuracy"]), -int(r["nnz"])))
        out[rule] = {**pick, "within": bool(close), "target": target}
    return out


def _num(v: Any, fmt: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(f) else format(f, fmt)


def markdown_table(rows: Sequence[Mapping], tolerance: float = 0.005) -> str:
    """The Tsuruoka et al. (2009, Table 1) style table of the representative
    points (see ``representative``): rule, l1, non-zeros (as read, and
    settled: see ``settled_nnz``), held-out accuracy
    and log loss, training objective and its excess over the batch optimum
    at the same l1 (when the reference was run), passes, training time.
    A ``*`` marks a rule with no point within ``tolerance``."""
    picks = representative(rows, tolerance)
    optimum = {float(r["l1"]): float(r["train_objective"]) for r in rows
               if r["rule"] == REFERENCE}
    lines = ["| rule | l1 | non-zero weights | settled | held-out accuracy | held-out log loss | "
             "train objective F | F above batch optimum | passes | time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rule, r in picks.items():
        mark = "" if r["within"] else " *"
        name = f"{rule} (scikit-learn)" if rule == REFERENCE else rule
        best = optimum.get(float(r["l1"]))
        gap = ""
        if best and rule != REFERENCE and r["update"] != "plain":
            gap = f"{(float(r['train_objective']) / best - 1) * 100:+.2f} %"
        lines.append(f"| {name}{mark} | {_num(r['l1'], 'g')} | {int(r['nnz']):,} | "
                     f"{int(r['nnz_settled']):,} | "
                     f"{_num(r['test_accuracy'], '.4f')} | {_num(r['test_logloss'], '.4f')} | "
                     f"{_num(r['train_objective'], '.5f')} | {gap} | {r['passes'] or '–'} | "
                     f"{_num(r['seconds'], '.3f')} |")
    return "\n".join(lines) + "\n"


def nnz_table(rows: Sequence[Mapping], l1s: Sequence[float] | None = None) -> str:
    """Non-zero weights of every rule at each of ``l1s`` (default: every l1
    of the rows), with the training objective's excess over the batch
    optimum at that l1 where the reference was run: ``86 (+0.06 %)``."""
    grid = sorted({float(r["l1"]) for r in rows if r["update"] != "plain"}) \
        if l1s is None else [float(v) for v in l1s]
    optimum = {float(r["l1"]): float(r["train_objective"]) for r in rows
               if r["rule"] == REFERENCE}
    lines = ["| rule | " + " | ".join(f"l1 = {v:g}" for v in grid) + " |",
             "|---|" + "---:|" * len(grid)]
    for rule in dict.fromkeys(r["rule"] for r in rows):
        mine = {float(r["l1"]): r for r in rows if r["rule"] == rule}
        if len(mine) == 1 and 0.0 in mine:
            continue   # plain: l1 = 0 only
        cells = []
        for v in grid:
            r = next((r for l1, r in mine.items() if math.isclose(l1, v, rel_tol=1e-9)), None)
            if r is None:
                cells.append("")
                continue
            cell = f"{int(r['nnz']):,}"
            best = next((f for l1, f in optimum.items() if math.isclose(l1, v, rel_tol=1e-9)),
                        None)
            if best and rule != REFERENCE:
                cell += f" ({(float(r['train_objective']) / best - 1) * 100:+.2f} %)"
            cells.append(cell)
        name = f"{rule} (scikit-learn)" if rule == REFERENCE else rule
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[Mapping], out: str | TextIO) -> None:
    """The rows with the columns ``COLUMNS`` (floats as repr, NaN empty)."""
    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return "" if math.isnan(v) else repr(v)
        return v

    f = open(out, "w", newline="", encoding="utf-8") if isinstance(out, str) else out
    try:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow([cell(row[c]) for c in COLUMNS])
    finally:
        if f is not out:
            f.close()


def read_csv(path: str) -> list[dict]:
    """Rows written by ``write_csv`` (numbers as float, nnz as int)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for c in ("l1", "penalty", "test_logloss", "test_accuracy", "progressive_logloss",
                  "train_objective", "seconds", "examples_per_s"):
            r[c] = float(r[c]) if r[c] != "" else math.nan
        r["nnz"], r["nnz_settled"] = int(r["nnz"]), int(r["nnz_settled"])
        r["passes"] = int(r["passes"]) if r["passes"] else ""
    return rows


def plot(rows: Sequence[Mapping], path: str, title: str = "") -> None:
    """A PNG: held-out accuracy (left) and log loss (right) against the
    number of non-zero weights (log scale), one curve per rule, the batch
    L1 optimum dashed in black.  Raises ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), constrained_layout=True)
    markers = "osD^v<>ph*"
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    for ax, column, name in ((axes[0], "test_accuracy", "held-out accuracy"),
                             (axes[1], "test_logloss", "held-out log loss")):
        for i, rule in enumerate(rules):
            mine = sorted((r for r in rows if r["rule"] == rule), key=lambda r: float(r["l1"]))
            x = [max(int(r["nnz"]), 0.8) for r in mine]   # 0 non-zeros drawn at 0.8
            y = [float(r[column]) for r in mine]
            if rule == REFERENCE:
                ax.plot(x, y, "k--", marker=".", lw=1.6, label="batch L1 optimum (scikit-learn)",
                        zorder=5)
            elif len(mine) == 1:
                ax.plot(x, y, linestyle="none", marker="*", ms=12, label=f"{rule} (l1=0)")
            else:
                ax.plot(x, y, marker=markers[i % len(markers)], ms=4, lw=1.2, label=rule,
                        alpha=0.85, linestyle=("-", "--", "-.", ":")[i % 4])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        lo, hi = ax.get_xlim()
        if hi / lo < 100:      # under two decades: label 2, 3, 5 times the powers of ten too
            ax.xaxis.set_minor_formatter(ticker.FuncFormatter(
                lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v) + 1e-9))
                in (2, 3, 5) else ""))
        else:
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("non-zero weights")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    # Accuracy: zoom on the useful band (near-empty models would flatten it).
    accs = [float(r["test_accuracy"]) for r in rows]
    best = max(accs)
    lo = max(min(accs), best - 0.06)
    axes[0].set_ylim(lo - 0.005, best + 0.005)
    losses = [float(r["test_logloss"]) for r in rows]
    axes[1].set_ylim(min(losses) - 0.005, min(max(losses), min(losses) + 0.25) + 0.005)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
