"""Eager numpy reference of the adaptive steps (``adaptive=True``) of
docs/algorithms.md, "Adaptive steps", written from the doc alone.

Dense vectors over every column; every coordinate's L1 total ``u_i`` and
L2 decay are advanced at every step (no lazy clocks, no store, no
last-step bookkeeping), and the cumulative clip keeps the paper's signed
``q_i`` explicitly (the kernel derives it from ``u_i``).

* cumulative (origin first-seen): per-coordinate ``eta_i = eta0 /
  sqrt(delta + G_i)`` (0 while ``G_i = 0``); a present coordinate whose
  weight is exactly 0 starts afresh (``G_i = u_i = q_i = 0``); mini-batches
  of ``B`` rows (``B = 1``: the sequential rule).
* fobos: AdaGrad-FOBOS, sequential.

``eager_adaptive_fit`` returns ``(w, b, losses)`` as ``reference.eager_fit``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reference import loss_and_gradient, step_size


def _eta(G: np.ndarray, eta0: float, delta: float, zero_before_gradient: bool) -> np.ndarray:
    eta = eta0 / np.sqrt(delta + G)
    if zero_before_gradient:
        eta = np.where(G > 0, eta, 0.0)
    return eta


def eager_adaptive_fit(X, y, *, update: str = "cumulative", B: int = 1, loss: str = "log",
                       l1: float = 0.0, l2: float = 0.0, eta0: float = 0.1,
                       adagrad_delta: float = 1e-8, schedule: str = "constant",
                       power_t: float = 0.5, decay_rate: float = 0.85,
                       decay_steps: float = 100_000.0, fit_intercept: bool = False,
                       weights=None, origin: str = "first-seen"):
    if update not in ("cumulative", "fobos"):
        raise ValueError(f"no adaptive reference for {update!r}")
    if update == "fobos" and B != 1:
        raise ValueError("the fobos reference is sequential")
    if origin != "first-seen" and update == "cumulative":
        raise ValueError("cumulative adaptive runs origin first-seen only")
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()
    y = np.asarray(y, dtype=np.float64)
    n_rows, n_features = X.shape
    s_all = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.zeros(n_features)
    G = np.zeros(n_features)      # sum of squared gradients
    u = np.zeros(n_features)      # cumulative: the total penalty the coordinate could have had
    q = np.zeros(n_features)      # cumulative: the signed penalty it did receive
    b = 0.0
    losses = []
    sched = dict(eta0=eta0, schedule=schedule, power_t=power_t, decay_rate=decay_rate,
                 decay_steps=decay_steps)

    for r0 in range(0, n_rows, B):
        rows = range(r0, min(r0 + B, n_rows))
        n_b = len(rows)
        S = np.zeros(n_features)          # summed g_i = sum_b g_b s_b x_bi
        present = np.zeros(n_features, dtype=bool)
        upd_total = 0.0
        for r in rows:                     # margins from the weights at the start
            lo, hi = X.indptr[r], X.indptr[r + 1]
            idx, x = X.indices[lo:hi], X.data[lo:hi]
            label = y[r]
            if loss in ("log", "hinge") and label == 0:
                label = -1.0
            p = b + float(np.dot(w[idx], x))
            value, g = loss_and_gradient(loss, p, label)
            losses.append(value)
            eta_t = step_size(r + 1, **sched)
            upd_total += -eta_t * g * s_all[r]
            S[idx] += (g * s_all[r]) * x
            present[idx] = True
        P = np.flatnonzero(present)
        fresh = P[w[P] == 0.0]
        G[fresh] = 0.0
        u[fresh] = 0.0
        q[fresh] = 0.0
        G[P] += S[P] ** 2

        if update == "cumulative":
            eta = _eta(G, eta0, adagrad_delta, True)
            for _ in range(n_b):               # every coordinate, every step
                if l2 > 0:
                    w = w / (1.0 + eta * l2)
                u += l1 * eta
            w[P] -= eta[P] * S[P]
            z = w[P].copy()
            new = z.copy()
            pos, neg = z > 0, z < 0
            new[pos] = np.maximum(0.0, z[pos] - (u[P][pos] + q[P][pos]))
            new[neg] = np.minimum(0.0, z[neg] + (u[P][neg] - q[P][neg]))
            new[z == 0] = 0.0
            w[P] = new
            q[P] += new - z
        else:
            eta = _eta(G, eta0, adagrad_delta, False)
            w[P] -= eta[P] * S[P]
            w = np.sign(w) * np.maximum(0.0, np.abs(w) - eta * l1) / (1.0 + eta * l2)

        if fit_intercept:
            b += upd_total
    return w, b, np.asarray(losses)
