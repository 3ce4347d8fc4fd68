"""Eager pure-numpy reference of the four newer update rules of
``docs/algorithms.md``: ``truncated``, ``adagrad-fobos``, ``ftrl``, ``spred``.

Written from the spec alone, in the style of ``tests/reference.py`` (whose
loss / gradient and step-size helpers it reuses): the per-feature state is a
set of dense numpy vectors over every column of a scipy CSR matrix (column
index = feature key) and wherever the spec says "every i" the operation is
applied to every coordinate at every step.  No lazy clocks, no closed forms,
no global scale, no store.

* truncated:      gradient on the present weights; at every K-th example
                  (``t % K == 0``) every weight with ``|w| <= theta`` is
                  shrunk by ``eta_t * l1 * K`` towards 0 (and stops there).
* adagrad-fobos:  ``G_i += g_i^2`` and ``w_i -= eta_i g_i`` on the present
                  coordinates, then the FOBOS proximal step with each
                  coordinate's *own* ``eta_i = eta0 / sqrt(delta + G_i)``
                  applied to every coordinate, one step at a time (the
                  closed form of the spec is not used).  A present
                  coordinate whose weight is exactly 0 at the start of its
                  step starts afresh (``G_i = 0``).
* ftrl:           McMahan et al. (KDD 2013) Algorithm 1 as the spec gives
                  it: per coordinate ``z_i``, ``n_i``; the weights of the
                  present coordinates are computed from ``(z, n)`` for the
                  margin, then ``sigma``, ``z``, ``n`` are updated.  Absent
                  coordinates do not change, so nothing is eager here.
* spred:          ``w = a * b``; every step every ``a`` and ``b`` is
                  multiplied by ``1 - eta_t l1`` (no global scale), and the
                  present ones take the simultaneous gradient step computed
                  from ``(a, b)`` as they were *before* this step (plain SGD
                  on the objective ``loss + (l1/2)(a^2 + b^2)``).  A weight
                  with ``|a b| <= spred_threshold`` reads as 0 everywhere
                  (margin and result), and a present feature whose weight
                  reads as 0 at the start of its step restarts at
                  ``(a, b) = (spred_init, 0)`` (a never-seen feature has
                  ``a = b = 0``, so it starts there too).

Readings of the spec that had to be chosen (see the report in the tests):

* The intercept (step 5, ``b += update`` with ``update = -eta_t g s``) uses
  ``eta_t`` of the schedule for every rule, also for ``adagrad-fobos`` and
  ``ftrl`` whose sections say "the schedule option is not used": that
  sentence is read as applying to the rule's own (per-coordinate) weight
  step.
* spred: "a_i <- a_i - eta s g x_i b_i(old)" after the decay line is read
  as the simultaneous SGD step of the penalised objective, i.e.
  ``a_new = (1 - eta l1) a_old - eta s g x b_old`` (``b_old``: before this
  step's decay too).  ``spred_grad_after_decay=True`` gives the other
  reading (the gradient term scaled by ``1 - eta l1`` as well), used by the
  tests only to show that they tell the two apart.

``eager_fit_more`` returns ``(w, b, losses)`` like ``reference.eager_fit``;
with ``return_state=True`` a dict of the final per-feature state is appended.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reference import loss_and_gradient, step_size

NEW_RULES = ("truncated", "adagrad-fobos", "ftrl", "spred")


def ftrl_weights(z: np.ndarray, n: np.ndarray, *, alpha: float, beta: float, l1: float,
                 l2: float) -> np.ndarray:
    """McMahan et al.'s closed-form weight of ``(z, n)``:
    0 if ``|z| <= lambda1``, else
    ``-(z - sign(z) lambda1) / ((beta + sqrt(n)) / alpha + lambda2)``."""
    z = np.asarray(z, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    w = np.zeros_like(z)
    on = np.abs(z) > l1
    w[on] = -(z[on] - np.sign(z[on]) * l1) / ((beta + np.sqrt(n[on])) / alpha + l2)
    return w


def spred_read(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """``w = a b``, with ``|w| <= threshold`` read as 0."""
    w = a * b
    w[np.abs(w) <= threshold] = 0.0
    return w


def eager_fit_more(X, y, *, loss: str = "log", update: str = "truncated", l1: float = 0.0,
                   l2: float = 0.0, eta0: float = 0.1, schedule: str = "constant",
                   power_t: float = 0.5, decay_rate: float = 0.85,
                   decay_steps: float = 100_000.0, fit_intercept: bool = False, weights=None,
                   truncate_every: int = 1, truncate_theta: float = float("inf"),
                   adagrad_delta: float = 1e-8, ftrl_beta: float = 1.0,
                   spred_init: float = 1.0, spred_threshold: float = 1e-6,
                   origin: str = "first-seen", adagrad_restart: bool = True,
                   spred_restart: bool = True, spred_grad_after_decay: bool = False,
                   return_state: bool = False):
    """Learn the rows of ``X`` (scipy sparse, column = key) in order, eagerly,
    with one of the rules ``truncated``, ``adagrad-fobos``, ``ftrl``, ``spred``.

    Returns ``(w, b, losses)``: the dense weight vector (as the rule reads it)
    over all columns, the intercept and the progressive loss of each example.
    ``origin`` is accepted (and ignored: none of these rules has one) so that
    the options of a ``Learner`` can be passed through.  ``adagrad_restart=False``
    (G_i is never reset), ``spred_restart=False`` (only a never-seen feature
    starts at ``(spred_init, 0)``, a thresholded one keeps its ``(a, b)``)
    and ``spred_grad_after_decay=True`` change a documented detail; the tests
    use them only to show that the comparison is sensitive to that detail.
    """
    if update not in NEW_RULES:
        raise ValueError(f"unknown update {update!r}")
    if update in ("truncated", "spred") and l2 != 0.0:
        raise ValueError(f"l2 must be 0 with update={update!r}")
    K = int(truncate_every)
    if K < 1:
        raise ValueError("truncate_every must be >= 1")
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()          # a key twice in one example: its values add up
    y = np.asarray(y, dtype=np.float64)
    n_rows, n_features = X.shape
    s_all = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64)

    w = np.zeros(n_features)    # truncated, adagrad-fobos: the weights
    G = np.zeros(n_features)    # adagrad-fobos: sum of squared gradients
    z = np.zeros(n_features)    # ftrl
    n = np.zeros(n_features)    # ftrl
    a = np.zeros(n_features)    # spred: w = a * bb (never seen: a = bb = 0)
    bb = np.zeros(n_features)   # spred
    b = 0.0                     # the intercept
    losses = []

    for r in range(n_rows):
        t = r + 1
        lo, hi = X.indptr[r], X.indptr[r + 1]
        idx = X.indices[lo:hi]
        x = X.data[lo:hi]
        label = y[r]
        if loss in ("log", "hinge") and label == 0:
            label = -1.0
        s = s_all[r]
        eta = step_size(t, eta0=eta0, schedule=schedule, power_t=power_t,
                        decay_rate=decay_rate, decay_steps=decay_steps)

        # 1. the margin, with every weight as the rule reads it now.
        if update == "ftrl":
            w_idx = ftrl_weights(z[idx], n[idx], alpha=eta0, beta=ftrl_beta, l1=l1, l2=l2)
        elif update == "spred":
            w_idx = spred_read(a[idx], bb[idx], spred_threshold)
        else:
            w_idx = w[idx].copy()
        p = b + float(np.dot(w_idx, x))
        # 2. progressive loss and gradient; 3. the update.
        value, g = loss_and_gradient(loss, p, label)
        losses.append(value)
        upd = -eta * g * s
        g_i = g * s * x             # per-coordinate gradients s g x_i

        # 4. the rule.
        if update == "truncated":
            w[idx] += upd * x
            if t % K == 0:
                m = np.abs(w) <= truncate_theta
                w[m] = np.sign(w[m]) * np.maximum(0.0, np.abs(w[m]) - eta * l1 * K)

        elif update == "adagrad-fobos":
            if adagrad_restart:
                # a present coordinate whose weight is exactly 0 starts afresh
                G[idx[w_idx == 0.0]] = 0.0
            G[idx] += g_i * g_i
            eta_i = eta0 / np.sqrt(adagrad_delta + G)      # every coordinate's own step
            w[idx] -= eta_i[idx] * g_i
            w[:] = np.sign(w) * np.maximum(0.0, np.abs(w) - eta_i * l1) / (1.0 + eta_i * l2)

        elif update == "ftrl":
            sigma = (np.sqrt(n[idx] + g_i * g_i) - np.sqrt(n[idx])) / eta0
            z[idx] += g_i - sigma * w_idx
            n[idx] += g_i * g_i

        else:  # spred
            if spred_restart:
                # a present feature whose weight reads as 0 (never seen,
                # thresholded, or decayed below the threshold) restarts
                fresh = idx[w_idx == 0.0]
            else:
                # (variant, for the tests only) only a never-seen feature
                # starts at (init, 0); a thresholded one keeps its (a, b)
                fresh = idx[(a[idx] == 0.0) & (bb[idx] == 0.0)]
            a[fresh] = spred_init
            bb[fresh] = 0.0
            a_old = a[idx].copy()
            b_old = bb[idx].copy()
            decay = 1.0 - eta * l1
            a *= decay
            bb *= decay
            if spred_grad_after_decay:
                a_old *= decay
                b_old *= decay
            a[idx] -= eta * g_i * b_old
            bb[idx] -= eta * g_i * a_old

        # 5. the intercept, never penalised.
        if fit_intercept:
            b += upd

    if update == "ftrl":
        w = ftrl_weights(z, n, alpha=eta0, beta=ftrl_beta, l1=l1, l2=l2)
    elif update == "spred":
        w = spred_read(a, bb, spred_threshold)
    result = (w, b, np.asarray(losses))
    if return_state:
        state = {"truncated": {}, "adagrad-fobos": {"G": G}, "ftrl": {"z": z, "n": n},
                 "spred": {"a": a, "b": bb, "raw": a * bb}}[update]
        result = result + (state,)
    return result
