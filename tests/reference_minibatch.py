"""Eager pure-numpy reference of the mini-batch semantics of every update
rule (docs/algorithms.md, "Mini-batches").

Written from that section alone, in the style of ``tests/reference.py``
and ``tests/reference_more.py`` (whose loss, step-size, FTRL-weight and
spred-read helpers it reuses): the per-feature state is a set of dense
numpy vectors over every column of a scipy CSR matrix (column = key), and
whatever the section says happens to "every key" for each of the B steps
is applied to every coordinate, one step at a time.  No lazy clocks, no
global scale, no store, no closed forms.

For each mini-batch of ``B`` consecutive rows (the last one short):

1. every margin from the weights at the mini-batch's start (and the
   intercept at its start value); progressive losses; ``g_b``,
   ``eta_b = eta_{t0 + b}``, ``gs_b = g_b s_b``, ``update_b = -eta_b gs_b``;
2. per key the sums ``U = sum_b update_b x_b``, ``S = sum_b gs_b x_b``,
   ``H = sum_b eta_b gs_b x_b``;
3. the rule's one update (the table of the section), its penalty over the
   B steps applied eagerly, step by step, to every key;
4. ``b += sum_b update_b``.

``eager_minibatch_fit`` returns ``(w, b, losses)`` like ``eager_fit``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reference import loss_and_gradient, step_size
from reference_more import ftrl_weights, spred_read

RULES = ("plain", "subgradient", "cumulative", "fobos", "truncated", "adagrad-fobos", "ftrl",
         "spred")


def eager_minibatch_fit(X, y, minibatch: int, *, loss: str = "log", update: str = "cumulative",
                        l1: float = 0.0, l2: float = 0.0, eta0: float = 0.1,
                        schedule: str = "constant", power_t: float = 0.5,
                        decay_rate: float = 0.85, decay_steps: float = 100_000.0,
                        origin: str = "first-seen", fit_intercept: bool = False,
                        truncate_every: int = 1, truncate_theta: float = float("inf"),
                        adagrad_delta: float = 1e-8, ftrl_beta: float = 1.0,
                        spred_init: float = 1.0, spred_threshold: float = 1e-6, weights=None):
    """Learn the rows of ``X`` in mini-batches of ``minibatch`` rows, eagerly."""
    if update not in RULES:
        raise ValueError(f"unknown update {update!r}")
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    X.sum_duplicates()
    y = np.asarray(y, dtype=np.float64)
    n_rows, n = X.shape
    s_all = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64)

    w = np.zeros(n)                  # the weight, for the rules that store it
    sigma = np.zeros(n)              # subgradient: the sign kept while absent
    q = np.zeros(n)                  # cumulative
    u_origin = np.zeros(n)
    u = 0.0
    G = np.zeros(n)                  # adagrad-fobos
    z = np.zeros(n)                  # ftrl
    nn = np.zeros(n)
    a = np.zeros(n)                  # spred
    bb = np.zeros(n)
    intercept = 0.0
    losses = []

    def read() -> np.ndarray:
        if update == "ftrl":
            return ftrl_weights(z, nn, alpha=eta0, beta=ftrl_beta, l1=l1, l2=l2)
        if update == "spred":
            return spred_read(a, bb, spred_threshold)
        return w

    for r0 in range(0, n_rows, minibatch):
        r1 = min(r0 + minibatch, n_rows)
        t0 = r0
        w_start = read().copy()
        U = np.zeros(n)
        S = np.zeros(n)
        H = np.zeros(n)
        etas = []
        total_update = 0.0
        touched = np.zeros(n, dtype=bool)
        for r in range(r0, r1):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            idx, x = X.indices[lo:hi], X.data[lo:hi]
            touched[idx] = True
            label = y[r]
            if loss in ("log", "hinge") and label == 0:
                label = -1.0
            eta = step_size(r + 1, eta0=eta0, schedule=schedule, power_t=power_t,
                            decay_rate=decay_rate, decay_steps=decay_steps)
            etas.append(eta)
            p = intercept + float(np.dot(w_start[idx], x))
            value, g = loss_and_gradient(loss, p, label)
            losses.append(value)
            gs = g * s_all[r]
            upd = -eta * gs
            total_update += upd
            for i, v in zip(idx, x):      # in example order
                U[i] += upd * v
                S[i] += gs * v
                H[i] += eta * (gs * v)
        T = np.flatnonzero(touched)

        if update == "plain":
            for eta in etas:
                w *= 1.0 - eta * l2
            w += U

        elif update == "subgradient":
            sign0 = np.sign(w)
            keep = np.where(touched, sign0, sigma)   # absent keys keep their sign
            for eta in etas:
                w *= 1.0 - eta * l2
                w -= eta * l1 * keep
            w += U
            sigma[T] = np.sign(w[T])

        elif update == "cumulative":
            if origin == "first-seen":
                new = T[w[T] == 0.0]      # (re)enters the store now
                u_origin[new] = u
                q[new] = 0.0
            for eta in etas:
                w *= 1.0 - eta * l2
                u += eta * l1
            w += U
            age = u - u_origin[T] if origin == "first-seen" else np.full(T.size, u)
            zz = w[T].copy()
            clipped = zz.copy()
            pos, neg = zz > 0, zz < 0
            clipped[pos] = np.maximum(0.0, zz[pos] - (age[pos] + q[T][pos]))
            clipped[neg] = np.minimum(0.0, zz[neg] + (age[neg] - q[T][neg]))
            w[T] = clipped
            q[T] += clipped - zz

        elif update == "fobos":
            w += U
            for eta in etas:
                w[:] = np.sign(w) * np.maximum(0.0, np.abs(w) - eta * l1) / (1.0 + eta * l2)

        elif update == "truncated":
            w += U
            for b, eta in enumerate(etas, 1):
                if (t0 + b) % truncate_every == 0:
                    small = np.abs(w) <= truncate_theta
                    w[small] = np.sign(w[small]) * np.maximum(
                        0.0, np.abs(w[small]) - eta * l1 * truncate_every)

        elif update == "adagrad-fobos":
            G[T[w[T] == 0.0]] = 0.0       # a zero starts afresh
            G[T] += S[T] ** 2
            eta_i = eta0 / np.sqrt(adagrad_delta + G)
            w[T] -= eta_i[T] * S[T]
            for _ in etas:
                w[:] = np.sign(w) * np.maximum(0.0, np.abs(w) - eta_i * l1) / (1.0 + eta_i * l2)

        elif update == "ftrl":
            g_i = S[T]
            sig = (np.sqrt(nn[T] + g_i ** 2) - np.sqrt(nn[T])) / eta0
            z[T] += g_i - sig * w_start[T]
            nn[T] += g_i ** 2

        else:  # spred
            restart = T[w_start[T] == 0.0]
            a[restart] = spred_init
            bb[restart] = 0.0
            a0, b0 = a.copy(), bb.copy()
            for eta in etas:
                a *= 1.0 - eta * l1
                bb *= 1.0 - eta * l1
            a -= H * b0
            bb -= H * a0

        if fit_intercept:
            intercept += total_update

    return read().copy(), intercept, np.asarray(losses)
