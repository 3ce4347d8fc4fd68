"""Eager pure-numpy reference of every update rule of ``docs/algorithms.md``.

Written from the spec alone, independently of the Cython kernels: the
weights are a dense numpy vector over every column of a scipy CSR matrix
(column index = feature key), and wherever the spec says "for every i" the
penalty is applied to every weight at every step.  There are no lazy
clocks, no global L2 scale, no catch-up sums and no store: this is the
slow, obvious version that the lazy kernels must agree with.

* plain:        every weight is multiplied by ``1 - eta*l2`` each step.
* subgradient:  every weight is multiplied by ``1 - eta*l2``; present
                weights take the gradient and ``-eta*l1*sign(w)`` (sign before
                the gradient), absent weights take ``-eta*l1*sigma`` with
                ``sigma`` the sign frozen after their last present step.
* cumulative:   every weight is multiplied by ``1 - eta*l2``; the paper's clip
                touches the present weights only, with dense ``q`` and (for
                origin ``first-seen``) dense ``u_origin``.
* fobos:        gradient on the present weights, then the proximal step of
                L1 / L2^2 on every weight.

``eager_fit`` returns the final dense weights, the intercept and the
progressive (before-update) loss of every example.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

MAX_DLOSS = 1e12


# ---------------------------------------------------------------- losses

def loss_and_gradient(loss: str, p: float, y: float) -> tuple[float, float]:
    """``(l(p, y), dl/dp)`` of docs/algorithms.md, the gradient clipped to
    ``[-1e12, 1e12]``.  For log and hinge ``y`` is already -1/+1."""
    if loss == "log":
        z = y * p
        # log(1 + exp(-z)) and -y / (1 + exp(z)), never exponentiating a
        # large positive number.
        if z > 0:
            value = math.log1p(math.exp(-z))
            e = math.exp(-z)
            g = -y * e / (1.0 + e)
        else:
            value = -z + math.log1p(math.exp(z))
            g = -y / (1.0 + math.exp(z))
    elif loss == "squared":
        value = 0.5 * (p - y) ** 2
        g = p - y
    elif loss == "hinge":
        value = max(0.0, 1.0 - y * p)
        g = -y if y * p < 1.0 else 0.0
    else:
        raise ValueError(f"unknown loss {loss!r}")
    g = min(max(g, -MAX_DLOSS), MAX_DLOSS)
    return value, g


def step_size(t: int, *, eta0: float, schedule: str, power_t: float,
              decay_rate: float, decay_steps: float) -> float:
    """``eta_t`` for ``t = 1, 2, ...``."""
    if schedule == "constant":
        return eta0
    if schedule == "invscaling":
        return eta0 / float(t) ** power_t
    if schedule == "exponential":
        return eta0 * decay_rate ** (t / decay_steps)
    raise ValueError(f"unknown schedule {schedule!r}")


# ---------------------------------------------------------------- learner

def eager_fit(X, y, *, loss: str = "log", update: str = "cumulative", l1: float = 0.0,
              l2: float = 0.0, eta0: float = 0.1, schedule: str = "constant",
              power_t: float = 0.5, decay_rate: float = 0.85, decay_steps: float = 100_000.0,
              origin: str = "first-seen", fit_intercept: bool = False, weights=None):
    """Learn the rows of ``X`` (scipy sparse, column = key) in order, eagerly.

    Returns ``(w, b, losses)``: the dense weight vector over all columns, the
    intercept and the progressive loss of each example (before its update).
    """
    if update not in ("plain", "subgradient", "cumulative", "fobos"):
        raise ValueError(f"unknown update {update!r}")
    if origin not in ("start", "first-seen"):
        raise ValueError(f"unknown origin {origin!r}")
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()          # a key twice in one example: its values add up
    y = np.asarray(y, dtype=np.float64)
    n_rows, n_features = X.shape
    s_all = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64)

    w = np.zeros(n_features)          # the weights as the rule reads them
    b = 0.0
    sigma = np.zeros(n_features)      # subgradient: sign after the last present step
    q = np.zeros(n_features)          # cumulative: signed total penalty received
    u_origin = np.zeros(n_features)   # cumulative first-seen: u when the feature entered
    u = 0.0                           # cumulative: l1 * sum of eta so far
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

        # 1-2. margin with the weights as they are now; progressive loss.
        p = b + float(np.dot(w[idx], x))
        value, g = loss_and_gradient(loss, p, label)
        losses.append(value)
        # 3.
        upd = -eta * g * s

        # 4. the rule.
        if update == "plain":
            w *= 1.0 - eta * l2
            w[idx] += upd * x

        elif update == "subgradient":
            w *= 1.0 - eta * l2
            absent = np.ones(n_features, dtype=bool)
            absent[idx] = False
            # absent: the frozen sign of their last present step
            w[absent] -= eta * l1 * sigma[absent]
            # present: the sign now, before this step's gradient
            sign_now = np.sign(w[idx])
            w[idx] = w[idx] + upd * x - eta * l1 * sign_now
            sigma[idx] = np.sign(w[idx])

        elif update == "cumulative":
            if origin == "first-seen":
                # A present feature whose weight is 0 is not in the store
                # (never seen, or clipped to 0 and forgotten): it (re)enters
                # now, as a new feature, with its clock at u before this example.
                new = idx[w[idx] == 0.0]
                u_origin[new] = u
                q[new] = 0.0
            w *= 1.0 - eta * l2
            w[idx] += upd * x
            u += eta * l1
            U = u - u_origin[idx] if origin == "first-seen" else np.full(idx.size, u)
            z = w[idx].copy()
            clipped = z.copy()
            pos = z > 0
            neg = z < 0
            clipped[pos] = np.maximum(0.0, z[pos] - (U[pos] + q[idx][pos]))
            clipped[neg] = np.minimum(0.0, z[neg] + (U[neg] - q[idx][neg]))
            w[idx] = clipped
            q[idx] += clipped - z

        else:  # fobos
            w[idx] += upd * x
            w[:] = np.sign(w) * np.maximum(0.0, np.abs(w) - eta * l1) / (1.0 + eta * l2)

        # 5. the intercept, never penalised.
        if fit_intercept:
            b += upd

    return w, b, np.asarray(losses)


def weighted_mean_loss(losses, weights=None) -> float:
    """``sum(s * loss) / sum(s)``: what ``Learner.learn`` returns."""
    losses = np.asarray(losses, dtype=np.float64)
    s = np.ones_like(losses) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(np.sum(s * losses) / np.sum(s))
