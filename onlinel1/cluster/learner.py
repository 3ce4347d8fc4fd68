"""``ClusterLearner``: a ``Learner`` whose weights live on the shards.

Everything the daemon and the model file read of a ``Learner`` works on
it (learn, predict, weights, state, progress), so the daemon runs it
unchanged (``onlinel1 cluster start``).  It always learns in mini-batches,
even of one row: with ``minibatch=B`` its weights are bit for bit those of
``Learner(minibatch=B)`` for B > 1 (and for B = 1, those of the mini-batch
loop with B = 1, which is the sequential rule's except for a key repeated
within one example; docs/algorithms.md, "Mini-batches").
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from onlinel1.batch import Batch
from onlinel1.cluster.kernel import ClusterKernel, Workers
from onlinel1.cluster.partition import Partitioner
from onlinel1.cluster.step import ShardCalls
from onlinel1.learner import Learner
from onlinel1.options import LearnerOptions
from onlinel1.result import LearnResult


def split_state(state: Mapping[str, Any], partitioner: Partitioner) -> list[dict[str, Any]]:
    """A learner state (``Learner.state``) cut into one per shard: each
    holds its keys' rows of every array, and the same clocks."""
    owner = partitioner.shard_of(state["keys"])
    out = []
    for s in range(partitioner.shards):
        mine = owner == s
        out.append({"keys": np.ascontiguousarray(state["keys"][mine]),
                    "weights": np.ascontiguousarray(state["weights"][mine]),
                    "columns": {c: np.ascontiguousarray(a[mine])
                                for c, a in state["columns"].items()},
                    "clocks": dict(state["clocks"])})
    return out


class ClusterLearner(Learner):
    """A learner over the shards reached by ``calls`` (see the module)."""

    # Its state is on the shards: equal only to itself, hashed by identity.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, options: LearnerOptions, partitioner: Partitioner, calls: ShardCalls,
                 workers: Workers | None = None) -> None:
        self.options = options
        self._kernel = ClusterKernel(options, partitioner, calls, workers)
        self._progress = {"examples": 0, "weight_sum": 0.0, "loss_sum": 0.0, "correct": 0}
        self._dropped = (0, 0)
        self._pending = None

    @property
    def partitioner(self) -> Partitioner:
        return self._kernel.partitioner

    def seed(self, learner: Learner | None = None, *, sources: Any = None,
             applied: int = 0, progress: Mapping[str, Any] | None = None,
             clocks: Mapping[str, Any] | None = None) -> "ClusterLearner":
        """Start the shards: empty, from a single-process ``learner``
        (its state cut by partition), or from per-shard ``sources`` (the
        shard files of a cluster snapshot, at mini-batch ``applied``)."""
        if learner is not None:
            state = learner.state
            if state["options"] != self.options.to_state_dict():
                raise ValueError("the seed's options differ from the cluster's")
            sources = split_state(state, self.partitioner)
            progress = state["progress"]
        self._kernel.start(sources, applied, dict(clocks) if clocks is not None else None)
        if progress is not None:
            self._progress = {k: progress[k] for k in self._progress}
        return self

    def swap_in(self, learner: Learner) -> "ClusterLearner":
        """The ``swap`` request: the shards start again from ``learner``'s
        weights (cut by partition); this learner, with them, is returned.
        The cluster's settings stay: a model of others is refused
        (``ValueError``), the shards having been started with these."""
        if learner.options.to_state_dict() != self.options.to_state_dict():
            raise ValueError("a cluster swaps in a model of its own settings only (start the "
                             "cluster again with the model's, and --initial)")
        self.flush()
        return self.seed(learner)

    def learn(self, batch: Batch, *, check: bool = True,
              rows: tuple[int, int] | None = None,
              wake: tuple[int, int] | None = None) -> LearnResult:
        """``Learner.learn``, always in mini-batches (``wake`` is not used)."""
        if check:
            self.check(batch, learning=True)
        start, stop = rows if rows is not None else (0, batch.n_rows)
        return self._atomic(lambda: self._learn_minibatches(batch, start, stop))

    def write_snapshot(self, path: Any, names: Mapping[int, str] | None,
                       extra: Mapping[str, Any]) -> int:
        """A cluster snapshot at ``path``: one file per shard, written by
        the shards, then the manifest (manifest.py); the bytes written."""
        from onlinel1.cluster import manifest
        return manifest.write(path, self, names, extra)

    #: What ``stats`` says of where the cluster runs (``onlinel1 cluster start``
    #: sets the Ray address and the cluster's name).
    where: dict[str, Any] = {}

    def cluster_report(self) -> dict[str, Any]:
        """The ``cluster`` field of ``stats``: shards, mini-batches, the
        replay log's length, recoveries, and each shard's counts."""
        k = self._kernel
        return {**self.where, "shards": k.shards, "minibatch": self.options.minibatch,
                "minibatches": k.n, "replay_log": len(k.log), "recoveries": k.recoveries,
                "pending_rows": self.pending_rows, "costs": dict(k.costs),
                "per_shard": [{f: i[f] for f in ("index", "applied", "features", "nnz",
                                                 "memory_bytes")}
                              for i in k.shard_info(max_age_s=1.0)]}

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a ClusterLearner is not pickled: take its state, or a snapshot")
