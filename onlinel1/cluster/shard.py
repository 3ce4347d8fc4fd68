"""One shard of a cluster's weights: the keys of its partitions, in a
``Learner``'s store (docs/scaling.md, "A mini-batch across shards").

Every shard applies every mini-batch, in the sequencer's order, with only
its own keys' entries and the factors (eta, g s, -eta g s) of every row
that a worker computed from all shards' weights; so the clocks, the L2
scale and the intercept move identically on every shard, and each key's
update is the one the single process makes.  ``applied`` counts the
mini-batches applied: a mini-batch is applied once (a repeat is skipped), in
order (a gap is refused), so a retried or replayed message cannot apply
twice.  A shard that Ray restarted comes back with ``applied = -1`` and
refuses everything until the head restores it from its last snapshot and
replays the mini-batches since.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Mapping

import numpy as np

from onlinel1 import model_file
from onlinel1.errors import NumericError, StoreFullError
from onlinel1.learner import Learner, state_columns
from onlinel1.options import LearnerOptions

#: ``applied`` of a shard that was (re)started and not yet restored.
UNRESTORED = -1


class ShardOrderError(RuntimeError):
    """A mini-batch out of order for this shard (it was restarted, or a
    message was lost): the head restores the shard and replays."""

    def __init__(self, index: int, applied: int, n: int) -> None:
        super().__init__(f"shard {index} has applied {applied} mini-batches; "
                         f"mini-batch {n} cannot be applied next")
        self.index, self.applied, self.n = index, applied, n

    def __reduce__(self) -> tuple:       # crosses process boundaries (Ray)
        return type(self), (self.index, self.applied, self.n)


class ShardState:
    """The state and operations of one shard (a Ray actor in a cluster,
    ``onlinel1.cluster.ray_backend``; a plain object in tests)."""

    def __init__(self, index: int, options: Mapping[str, Any]) -> None:
        self.index = index
        self.options = LearnerOptions.from_dict(dict(options))
        self.learner = Learner(self.options)
        self.applied = UNRESTORED
        self.incarnation = uuid.uuid4().hex
        self._saved_applied = UNRESTORED
        self._names: dict[int, str] = {}

    # ------------------------------------------------------------- status

    def info(self) -> dict[str, Any]:
        k = self.learner._kernel
        return {"index": self.index, "applied": self.applied, "pid": os.getpid(),
                "incarnation": self.incarnation, "features": len(k.store),
                "nnz": k.count_nonzero(), "memory_bytes": k.store.memory_bytes,
                "t": k.t, "in_batch": k.in_batch}

    def clocks(self) -> dict[str, Any]:
        return self.learner._kernel.get_clocks()

    # ---------------------------------------------------- restore and seed

    def restore(self, source: Any, applied: int) -> int:
        """Start again from ``source``: None (an empty model), a path of
        this shard's snapshot file, or a state dict (``Learner.state``'s
        keys, weights, columns and clocks) of this shard's keys; it holds
        ``applied`` mini-batches."""
        if self.learner._kernel.in_batch:
            self.learner._kernel.rollback()
        if source is None:
            self.learner = Learner(self.options)
        elif isinstance(source, (str, os.PathLike)):
            self.learner, self._names, _ = model_file.load(source)
        else:
            learner = Learner(self.options)
            columns = state_columns(self.options)
            learner._kernel.store.load(source["keys"], source["weights"],
                                       [source["columns"][c] for c in columns])
            learner._kernel.set_clocks(source["clocks"])
            self.learner = learner
        self.applied = applied
        return self.applied

    def names(self) -> dict[int, str]:
        """The feature names of the file it was last restored from (the
        head takes them once, when it resumes from the shards' files)."""
        names, self._names = self._names, {}
        return names

    # ------------------------------------------------------------ learning

    def pull(self, keys: np.ndarray) -> tuple[np.ndarray, dict[str, Any], int]:
        """The raw caught-up weights of ``keys`` (``SGDKernel.lookup(raw=
        True)``), this shard's clocks and ``applied``."""
        k = self.learner._kernel
        return (k.lookup(np.ascontiguousarray(keys, dtype=np.uint64), True), k.get_clocks(),
                self.applied)

    def apply(self, n: int, indptr: np.ndarray, keys: np.ndarray, values: np.ndarray,
              factors: np.ndarray) -> tuple[int, dict[str, Any], str | None]:
        """Apply mini-batch ``n`` (this shard's entries of its rows, every
        row's factors); a repeat is skipped.  Returns ``applied``, the
        clocks after it (the head checks that every shard agrees) and None,
        or, if a weight overflowed (the kernel's ``weights_finite``), the
        error's reason ("update", or "store_full"): the open batch is then
        the caller's to roll back."""
        if n <= self.applied:
            return self.applied, self.clocks(), None
        if self.applied == UNRESTORED or n != self.applied + 1:
            raise ShardOrderError(self.index, self.applied, n)
        rows = indptr.shape[0] - 1
        try:
            self.learner._kernel.learn_minibatch(indptr, keys, values, np.zeros(rows), None,
                                                 max(rows, 1), 0, rows, factors)
        except (NumericError, StoreFullError) as exc:
            return self.applied, self.clocks(), exc.reason
        self.applied = n
        return self.applied, self.clocks(), None

    def begin(self) -> int:
        self.learner._kernel.begin()
        self._saved_applied = self.applied
        return self.applied

    def commit(self) -> int:
        if self.learner._kernel.in_batch:
            self.learner._kernel.commit()
        return self.applied

    def rollback(self) -> int:
        if self.learner._kernel.in_batch:
            self.learner._kernel.rollback()
            self.applied = self._saved_applied
        return self.applied

    # ------------------------------------------------------------- reading

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        return self.learner._kernel.lookup(np.ascontiguousarray(keys, dtype=np.uint64))

    def count_nonzero(self) -> int:
        return self.learner._kernel.count_nonzero()

    def export(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        keys, w, aux = self.learner._kernel.store.export()
        return keys, w, list(aux)

    def current_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return self.learner._kernel.current_weights()

    def save(self, path: str, names: Mapping[int, str] | None,
             extra: Mapping[str, Any]) -> tuple[int, int]:
        """Write this shard's snapshot file (atomically); (size, rows)."""
        size = model_file.save(path, self.learner, names, dict(extra))
        return size, len(self.learner._kernel.store)
