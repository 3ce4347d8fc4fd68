"""Eager reference of every update rule *with the memory budget and expiry*
of ``docs/algorithms.md`` ("The memory budget"), written from the spec, in
the style of ``tests/reference.py`` and ``tests/reference_more.py`` (whose
loss, step-size and weight-reading helpers it reuses).

The per-feature state is a set of dense numpy vectors over every column of
a scipy CSR matrix (column index = key), and wherever the spec says "every
i" the penalty is applied to every coordinate at every step: no lazy
clocks, no closed forms, no global scale.  On top of that the reference
keeps, explicitly, the set of features the store holds (``stored``) and
each one's clock (the number of the example that last contained it), and
applies the policy of the spec eagerly:

* a feature enters the store when it is present with a non-zero value in
  an example whose gradient ``g s`` is not 0; it leaves it when pruned (the
  rule's test of an absent feature's state), compacted (a decaying rule's
  weight that reached 0, or an expired feature, at the periodic sweep),
  expired (found in an example after ``expire_after`` examples without an
  update) or evicted;
* before the new features of an example enter a store that they would
  take past ``max_features`` N, the stored features not in the example are
  evicted in the order (clock, fmix64(key)) down to
  ``max(present, min(N - new, N - max(1, N // 8)))``;
* a feature last updated ``expire_after`` or more examples ago reads as 0
  and is, from then on, a feature never seen (its state is reset here at
  once; the store forgets it when it is found or swept);
* a feature that leaves the store in any way starts again as a feature
  never seen (its state is reset to zeros: for every rule that is the
  state of a feature never seen).

The sweep is due after example ``t`` when ``t - last_sweep >=
max(4096, n)``, ``n`` the features stored, with ``min(n, expire_after)``
in place of ``n`` under expiry; it runs only for a decaying rule (fobos,
truncated, adagrad-fobos, spred) or under expiry.

``EagerBudget(n_features, **options).learn(X, y)`` learns a batch; its
``weights()``, ``stored_keys()``, ``evicted``, ``expired`` and
``intercept`` are what the tests compare with a ``Learner``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from reference import loss_and_gradient, step_size
from reference_more import ftrl_weights, spred_read

DECAYING = ("fobos", "truncated", "adagrad-fobos", "spred")
SWEEP_MIN = 4096
_M64 = (1 << 64) - 1


def fmix64(key: int) -> int:
    """MurmurHash3's 64-bit finaliser (the store's hash of a key)."""
    k = key & _M64
    k ^= k >> 33
    k = (k * 0xff51afd7ed558ccd) & _M64
    k ^= k >> 33
    k = (k * 0xc4ceb9fe1a85ec53) & _M64
    k ^= k >> 33
    return k


class BudgetExceeded(ValueError):
    """An example with more distinct features than ``max_features``."""


class EagerBudget:
    def __init__(self, n_features: int, *, loss: str = "log", update: str = "cumulative",
                 l1: float = 0.0, l2: float = 0.0, eta0: float = 0.1,
                 schedule: str = "constant", power_t: float = 0.5, decay_rate: float = 0.85,
                 decay_steps: float = 100_000.0, origin: str = "first-seen",
                 fit_intercept: bool = False, truncate_every: int = 1,
                 truncate_theta: float = float("inf"), adagrad_delta: float = 1e-8,
                 ftrl_beta: float = 1.0, spred_init: float = 1.0,
                 spred_threshold: float = 1e-6, max_features: int = 0,
                 expire_after_examples: int = 0) -> None:
        self.o = dict(loss=loss, update=update, l1=l1, l2=l2, eta0=eta0, schedule=schedule,
                      power_t=power_t, decay_rate=decay_rate, decay_steps=decay_steps,
                      origin=origin, fit_intercept=fit_intercept, K=int(truncate_every),
                      theta=truncate_theta, delta=adagrad_delta, beta=ftrl_beta,
                      init=spred_init, thr=spred_threshold)
        self.N = int(max_features)
        self.M = int(expire_after_examples)
        n = self.n_features = n_features
        self.hash = np.array([fmix64(k) for k in range(n)], dtype=np.uint64)
        self.t = 0
        self.b = 0.0
        self.u = 0.0                      # cumulative: l1 * sum of eta
        self.w = np.zeros(n)              # the weight (plain, subgradient, cumulative,
        self.sigma = np.zeros(n)          # fobos, truncated, adagrad-fobos)
        self.q = np.zeros(n)
        self.u_origin = np.zeros(n)
        self.G = np.zeros(n)
        self.z = np.zeros(n)
        self.nn = np.zeros(n)
        self.a = np.zeros(n)
        self.bb = np.zeros(n)
        self.stored = np.zeros(n, dtype=bool)
        self.dead = np.zeros(n, dtype=bool)     # stored but expired: reads as never seen
        self.clock = np.zeros(n, dtype=np.int64)
        self.last_sweep = 0
        self.evicted = 0
        self.expired = 0
        self.evicted_keys: list[int] = []      # in eviction order
        self.losses: list[float] = []

    # -------------------------------------------------------------- reading

    def read(self, idx=slice(None)) -> np.ndarray:
        """The weights as the rule reads them now (expired ones: 0, as
        their state was reset)."""
        o = self.o
        if o["update"] == "ftrl":
            return ftrl_weights(self.z[idx], self.nn[idx], alpha=o["eta0"], beta=o["beta"],
                                l1=o["l1"], l2=o["l2"])
        if o["update"] == "spred":
            return spred_read(self.a[idx], self.bb[idx], o["thr"])
        return np.array(self.w[idx], dtype=np.float64, copy=True)

    def weights(self) -> np.ndarray:
        """The weights after the examples learned: a feature last updated
        ``expire_after`` or more examples ago reads 0."""
        w = self.read()
        if self.M > 0:
            w[self.stored & (self.t - self.clock >= self.M)] = 0.0
        return w

    @property
    def intercept(self) -> float:
        return self.b

    def stored_keys(self) -> set[int]:
        return set(np.flatnonzero(self.stored).tolist())

    # -------------------------------------------------------------- helpers

    def _reset(self, idx) -> None:
        """The state of a feature never seen."""
        for arr in (self.w, self.sigma, self.q, self.u_origin, self.G, self.z, self.nn,
                    self.a, self.bb):
            arr[idx] = 0.0

    def _drop(self, idx) -> None:
        self._reset(idx)
        self.stored[idx] = False
        self.dead[idx] = False

    def _prunable(self, idx, w_before, gs) -> np.ndarray:
        o, u = self.o, self.o["update"]
        w = self.read(idx)
        if u == "cumulative" and o["origin"] == "start":
            return (w == 0.0) & (self.q[idx] == 0.0)
        if u == "adagrad-fobos" and gs == 0.0:
            # no gradient: the kernel stores the weight caught up to the
            # example before (its proximal step is owed), and tests that
            return w_before == 0.0
        if u == "ftrl":
            return (self.z[idx] == 0.0) & (self.nn[idx] == 0.0)
        return w == 0.0

    # ------------------------------------------------------------- learning

    def learn(self, X, y, weights=None) -> None:
        X = sp.csr_matrix(X, dtype=np.float64, copy=True)
        X.sum_duplicates()
        assert X.shape[1] <= self.n_features
        y = np.asarray(y, dtype=np.float64)
        s_all = np.ones(X.shape[0]) if weights is None else np.asarray(weights, np.float64)
        for r in range(X.shape[0]):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            self._example(X.indices[lo:hi].astype(np.int64), X.data[lo:hi], y[r], s_all[r])

    def _example(self, idx, x, label, s) -> None:
        o, upd_rule = self.o, self.o["update"]
        N, M = self.N, self.M
        t = self.t + 1
        if o["loss"] in ("log", "hinge") and label == 0:
            label = -1.0
        eta = step_size(t, eta0=o["eta0"], schedule=o["schedule"], power_t=o["power_t"],
                        decay_rate=o["decay_rate"], decay_steps=o["decay_steps"])
        # Expiry: a stored feature last updated M or more examples ago is a
        # feature never seen from now on (the store forgets it when found).
        if M > 0:
            gone = self.stored & ~self.dead & (self.t - self.clock >= M)
            self._reset(gone)
            self.dead |= gone
            found = idx[self.dead[idx]]
            self.expired += found.size
            self._drop(found)
        # 1-3. margin, loss, gradient.
        w_idx = self.read(idx)
        p = self.b + float(np.dot(w_idx, x))
        value, g = loss_and_gradient(o["loss"], p, label)
        self.losses.append(value)
        upd = -eta * g * s
        gs = g * s
        # The present stored features are updated by this example.
        present = np.zeros(self.n_features, dtype=bool)
        present[idx] = True
        self.clock[idx[self.stored[idx]]] = t
        # 4. New features enter, after the budget has made room.
        if gs != 0.0:
            new = idx[~self.stored[idx] & (x != 0.0)]
            n_stored = int(self.stored.sum())
            if N > 0 and new.size and n_stored + new.size > N:
                n_present = int(self.stored[idx].sum())
                if n_present + new.size > N:
                    raise BudgetExceeded(f"example {t}: {n_present + new.size} features")
                target = max(n_present, min(N - new.size, N - max(1, N // 8)))
                cand = np.flatnonzero(self.stored & ~present)
                order = np.lexsort((self.hash[cand], self.clock[cand]))
                out = cand[order[:n_stored - target]]
                n_dead = int(self.dead[out].sum())
                self.expired += n_dead
                self.evicted += out.size - n_dead
                self.evicted_keys.extend(out[~self.dead[out]].tolist())
                self._drop(out)
            self.stored[new] = True
            self.clock[new] = t
            if upd_rule == "cumulative" and o["origin"] == "first-seen":
                self.u_origin[new] = self.u      # u before this example
        self._step(idx, x, w_idx, eta, upd, g * s * x)
        # 5. intercept; pruning of the present stored features.
        if o["fit_intercept"]:
            self.b += upd
        mine = idx[self.stored[idx]]
        self._drop(mine[self._prunable(mine, w_idx[self.stored[idx]], gs)])
        self.t = t
        # The periodic sweep (budget or expiry only).
        if (N > 0 or M > 0) and (M > 0 or upd_rule in DECAYING):
            n = int(self.stored.sum())
            period = max(SWEEP_MIN, min(n, M) if M > 0 else n)
            if t - self.last_sweep >= period:
                on = np.flatnonzero(self.stored)
                expired = (self.t - self.clock[on] >= M) if M > 0 else np.zeros(on.size, bool)
                self.expired += int(expired.sum())
                self._drop(on[expired])
                if upd_rule in DECAYING:
                    rest = on[~expired]
                    self._drop(rest[self.read(rest) == 0.0])
                self.last_sweep = t

    def _step(self, idx, x, w_idx, eta, upd, g_i) -> None:
        """The rule's step, eagerly: docs/algorithms.md, "Update rules"."""
        o, rule = self.o, self.o["update"]
        l1, l2 = o["l1"], o["l2"]
        w = self.w
        if rule == "plain":
            w *= 1.0 - eta * l2
            w[idx] += upd * x
        elif rule == "subgradient":
            w *= 1.0 - eta * l2
            absent = np.ones(self.n_features, dtype=bool)
            absent[idx] = False
            w[absent] -= eta * l1 * self.sigma[absent]
            sign_now = np.sign(w[idx])
            w[idx] = w[idx] + upd * x - eta * l1 * sign_now
            self.sigma[idx] = np.sign(w[idx])
        elif rule == "cumulative":
            w *= 1.0 - eta * l2
            w[idx] += upd * x
            self.u += eta * l1
            U = self.u - self.u_origin[idx] if o["origin"] == "first-seen" \
                else np.full(idx.size, self.u)
            z = w[idx].copy()
            q = self.q[idx]
            clipped = z.copy()
            pos, neg = z > 0, z < 0
            clipped[pos] = np.maximum(0.0, z[pos] - (U[pos] + q[pos]))
            clipped[neg] = np.minimum(0.0, z[neg] + (U[neg] - q[neg]))
            w[idx] = clipped
            self.q[idx] += clipped - z
        elif rule == "fobos":
            w[idx] += upd * x
            w[:] = np.sign(w) * np.maximum(0.0, np.abs(w) - eta * l1) / (1.0 + eta * l2)
        elif rule == "truncated":
            K = o["K"]
            w[idx] += upd * x
            if (self.t + 1) % K == 0:
                m = np.abs(w) <= o["theta"]
                w[m] = np.sign(w[m]) * np.maximum(0.0, np.abs(w[m]) - eta * l1 * K)
        elif rule == "adagrad-fobos":
            G = self.G
            G[idx[w_idx == 0.0]] = 0.0
            G[idx] += g_i * g_i
            eta_i = o["eta0"] / np.sqrt(o["delta"] + G)
            w[idx] -= eta_i[idx] * g_i
            w[:] = np.sign(w) * np.maximum(0.0, np.abs(w) - eta_i * l1) / (1.0 + eta_i * l2)
        elif rule == "ftrl":
            n = self.nn
            sigma = (np.sqrt(n[idx] + g_i * g_i) - np.sqrt(n[idx])) / o["eta0"]
            self.z[idx] += g_i - sigma * w_idx
            n[idx] += g_i * g_i
        elif rule == "spred":
            a, bb = self.a, self.bb
            fresh = idx[w_idx == 0.0]
            a[fresh] = o["init"]
            bb[fresh] = 0.0
            a_old, b_old = a[idx].copy(), bb[idx].copy()
            decay = 1.0 - eta * l1
            a *= decay
            bb *= decay
            a[idx] -= eta * g_i * b_old
            bb[idx] -= eta * g_i * a_old
        else:
            raise ValueError(f"unknown update {rule!r}")
