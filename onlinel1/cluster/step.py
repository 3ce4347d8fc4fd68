"""One mini-batch across the shards (docs/scaling.md, "A mini-batch
across shards"): what a worker does, with any way of calling the shards.

1. split the rows by the owner shard of each entry;
2. pull: every shard's raw caught-up weights of its keys in the
   mini-batch (one round trip per shard, all at once), with its clocks and
   ``applied``, which must be ``n - 1`` on every shard;
3. the factors of every row (eta, g s, -eta g s) from those weights, in the
   compiled kernel (``SGDKernel.minibatch_factors``: the single process's
   own step 2);
4. apply: every shard applies its entries with the factors (one round trip
   per shard, all at once).

``ShardCalls`` is how the shards are reached: ``LocalCalls`` calls
``ShardState`` objects in this process (tests, and the reference the
cluster is compared with), ``ray_backend.RayCalls`` calls actors.
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol, Sequence

import numpy as np

from onlinel1._kernels.sgd import SGDKernel
from onlinel1.cluster.partition import Partitioner, SubRows
from onlinel1.cluster.shard import ShardOrderError
from onlinel1.options import LearnerOptions


class ShardsLost(RuntimeError):
    """Shards that died, were restarted, or are not at the mini-batch the
    caller expected: the head restores them and replays (recovery.py)."""

    def __init__(self, shards: Sequence[int], why: str) -> None:
        self.shards = sorted(set(shards))
        self.why = why
        super().__init__(f"shard(s) {self.shards} lost: {why}")

    def __reduce__(self) -> tuple:       # crosses process boundaries (Ray)
        return type(self), (self.shards, self.why)


class ShardCalls(Protocol):
    shards: int

    def call(self, method: str, args: Sequence[tuple],
             only: Sequence[int] | None = None) -> list[Any]:
        """Call ``method`` on each shard (``only`` those) with its args,
        all at once; each shard's result or the exception it raised
        (``ShardsLost`` for one that is gone)."""
        ...


#: What a call returns for a shard that is gone, or not where the caller
#: expected (restarted): the head restores it and replays.
LOST = (ShardsLost, ShardOrderError)


def gather(results: Sequence[Any], shards: Sequence[int]) -> list[Any]:
    """The results, or raise: ``ShardsLost`` naming every lost shard,
    else the first other error."""
    lost = [s for s, r in zip(shards, results)
            if isinstance(r, LOST)]
    if lost:
        raise ShardsLost(lost, "; ".join(str(r) for r in results
                                          if isinstance(r, LOST)))
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)


class LocalCalls:
    """Shards that are ``ShardState`` objects of this process."""

    def __init__(self, states: list[Any]) -> None:
        self.states = states
        self.shards = len(states)

    def call(self, method: str, args: Sequence[tuple],
             only: Sequence[int] | None = None) -> list[Any]:
        out = []
        for s, a in zip(only if only is not None else range(self.shards), args):
            try:
                out.append(getattr(self.states[s], method)(*a))
            except Exception as exc:       # noqa: BLE001 - returned, as Ray returns it
                out.append(exc)
        return out


class MiniBatch(NamedTuple):
    """The rows of one mini-batch (indptr from 0)."""
    indptr: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None

    @classmethod
    def cut(cls, indptr: np.ndarray, keys: np.ndarray, values: np.ndarray,
            labels: np.ndarray, weights: np.ndarray | None, b0: int, b1: int) -> "MiniBatch":
        lo, hi = int(indptr[b0]), int(indptr[b1])
        return cls(np.ascontiguousarray(indptr[b0:b1 + 1] - lo), keys[lo:hi], values[lo:hi],
                   labels[b0:b1], None if weights is None else weights[b0:b1])


class Factors(NamedTuple):
    factors: np.ndarray         # (rows, 3): eta, g s, -eta g s
    stats: tuple                # (loss_sum, weight_sum, correct)
    keys_pulled: int            # distinct keys pulled, over all shards


def pull_entries(calls: ShardCalls, keys: np.ndarray,
                 owner: np.ndarray) -> tuple[np.ndarray, list[Any], int]:
    """The raw caught-up weight of every entry of ``keys`` (``owner``: each
    entry's shard), from one pull of its distinct keys to every shard at
    once; the shards' replies (weights, clocks, applied), and how many
    distinct keys were pulled.  Raises ``ShardsLost``."""
    distinct = [np.unique(keys[owner == s], return_inverse=True) for s in range(calls.shards)]
    replies = gather(calls.call("pull", [(d[0],) for d in distinct]), range(calls.shards))
    w = np.empty(keys.shape[0], dtype=np.float64)
    for s, ((_, inverse), (weights, _, _)) in enumerate(zip(distinct, replies)):
        w[owner == s] = weights[inverse.reshape(-1)]
    return w, replies, sum(d[0].size for d in distinct)


def _check_applied(replies: Sequence[Any], shards: Sequence[int], expected: int) -> None:
    behind = [s for s, r in zip(shards, replies) if r[-1] != expected]
    if behind:
        raise ShardsLost(behind, f"not at mini-batch {expected}")


class Stepper:
    """Steps 1-3 (``factors``) and 4 (``apply``) of mini-batches."""

    def __init__(self, options: LearnerOptions, partitioner: Partitioner) -> None:
        self.partitioner = partitioner
        self.scratch = SGDKernel(options)       # holds no keys: clocks only

    def split(self, mb: MiniBatch) -> tuple[list[SubRows], np.ndarray]:
        return self.partitioner.split_rows(mb.indptr, mb.keys, mb.values)

    def factors(self, calls: ShardCalls, n: int, mb: MiniBatch, owner: np.ndarray) -> Factors:
        """Steps 2-3 of mini-batch ``n`` (every shard must be at n - 1)."""
        w0, replies, pulled = pull_entries(calls, mb.keys, owner)
        _check_applied(replies, range(calls.shards), n - 1)
        self.scratch.set_clocks(replies[0][1])
        factors, stats = self.scratch.minibatch_factors(mb.indptr, w0, mb.values, mb.labels,
                                                         mb.weights)
        return Factors(factors, stats, pulled)

    @staticmethod
    def apply(calls: ShardCalls, n: int, subs: list[SubRows], factors: np.ndarray,
              only: Sequence[int] | None = None) -> list[Any]:
        """Step 4 on every shard (``only`` those); per shard its
        (applied, clocks) or the exception it raised."""
        shards = list(only) if only is not None else list(range(calls.shards))
        return calls.call("apply", [(n, subs[s].indptr, subs[s].keys, subs[s].values, factors)
                                    for s in shards], shards)

    def step(self, calls: ShardCalls, n: int, mb: MiniBatch) -> dict[str, Any]:
        """A whole mini-batch: its factors and stats, each shard's apply
        result, and ``lost``: the shards whose apply did not happen (the
        head replays it to them once they are restored).  Raises
        ``ShardsLost`` if the factors could not be computed (nothing was
        applied)."""
        began = time.perf_counter()
        subs, owner = self.split(mb)
        split = time.perf_counter()
        f = self.factors(calls, n, mb, owner)
        pulled = time.perf_counter()
        results = self.apply(calls, n, subs, f.factors)
        applied = time.perf_counter()
        lost = [s for s, r in enumerate(results) if isinstance(r, LOST)]
        others = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, LOST)]
        if others:
            raise others[0]
        done = [r for r in results if not isinstance(r, BaseException)]
        # What a mini-batch costs (docs/scaling.md, "Round trips and bytes"):
        # seconds of each phase, and the bytes of the arrays sent each way.
        cost = {"split_s": split - began, "pull_and_factors_s": pulled - split,
                "apply_s": applied - pulled, "round_trips": 2 * calls.shards,
                "pull_bytes": 16 * f.keys_pulled,
                "apply_bytes": sum(sub.indptr.nbytes + sub.keys.nbytes + sub.values.nbytes
                                   for sub in subs) + calls.shards * f.factors.nbytes}
        return {"factors": f.factors, "stats": f.stats, "lost": lost, "cost": cost,
                "error": next((r[2] for r in done if r[2] is not None), None),
                "clocks": [r[1] for r in done]}
