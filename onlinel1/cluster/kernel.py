"""The cluster head's stand-in for ``SGDKernel``: the same calls, answered
by the shards (docs/scaling.md).

``ClusterLearner`` (learner.py) is a ``Learner`` whose kernel is a
``ClusterKernel``, so the mini-batch bookkeeping (pending rows, atomic
batches, progress counts) is the single process's own code.  The kernel
is the sequencer: it numbers the mini-batches, has each run by a worker
(step.py), checks that every shard ends with the same clocks, and keeps
the replay log of the mini-batches since the last snapshot so that a
restarted shard is restored and caught up (recovery, below).  A batch is
atomic across the shards: ``begin``, ``commit`` and ``rollback`` go to
every shard.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from onlinel1._kernels.sgd import SGDKernel, entry_margins
from onlinel1.cluster.partition import Partitioner
from onlinel1.cluster.step import (MiniBatch, ShardCalls, ShardsLost, Stepper, gather,
                                   pull_entries)
from onlinel1.errors import NumericError, StoreFullError
from onlinel1.options import LearnerOptions

log = logging.getLogger("onlinel1.cluster")

#: How long a lost shard may take to come back (Ray restarts it) before
#: the head gives up on the mini-batch.
RESTART_TIMEOUT_S = 120.0
#: Attempts at one call before a shard that keeps failing is an error.
MAX_ATTEMPTS = 8


class ClusterError(RuntimeError):
    """The cluster cannot go on (a shard did not come back, or the shards
    disagree)."""


class Workers(Protocol):
    def step(self, n: int, mb: MiniBatch) -> dict[str, Any]:
        ...


class LocalWorkers:
    """Mini-batches run in this process (tests; ``ray_backend`` has the
    actors)."""

    def __init__(self, stepper: Stepper, calls: ShardCalls) -> None:
        self.stepper, self.calls = stepper, calls

    def step(self, n: int, mb: MiniBatch) -> dict[str, Any]:
        return self.stepper.step(self.calls, n, mb)


class ReplayLog:
    """The mini-batches since the last snapshot cut, with their factors:
    ``committed`` ones, and those of the open batch."""

    def __init__(self) -> None:
        self.committed: list[tuple[int, MiniBatch, np.ndarray]] = []
        self.open: list[tuple[int, MiniBatch, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.committed) + len(self.open)

    def entries_after(self, applied: int) -> Iterator[tuple[int, MiniBatch, np.ndarray]]:
        return (e for e in self.committed if e[0] > applied)

    def trim(self, cut: int) -> None:
        self.committed = [e for e in self.committed if e[0] > cut]


class ClusterStore:
    """What ``Learner`` reads of ``SGDKernel.store``, summed over the shards."""

    def __init__(self, kernel: "ClusterKernel") -> None:
        self.kernel = kernel

    def __len__(self) -> int:
        return sum(i["features"] for i in self.kernel.shard_info())

    @property
    def memory_bytes(self) -> int:
        return sum(i["memory_bytes"] for i in self.kernel.shard_info())

    def export(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        parts = self.kernel.call_all("export", [()] * self.kernel.shards)
        keys = np.concatenate([p[0] for p in parts])
        w = np.concatenate([p[1] for p in parts])
        aux = [np.concatenate([p[2][i] for p in parts]) for i in range(len(parts[0][2]))]
        return keys, w, aux

    def column_chunks(self, column: int, chunk_rows: int = 1 << 16) -> Iterator[np.ndarray]:
        keys, w, aux = self.export()
        array = keys if column < 0 else w if column == 0 else aux[column - 1]
        for lo in range(0, array.shape[0], chunk_rows):
            yield array[lo:lo + chunk_rows]

    def load(self, keys: Any, weights: Any, aux: Any = ()) -> None:
        raise TypeError("a cluster's store is loaded by seeding (ClusterLearner.seeded)")


class ClusterKernel:
    """``SGDKernel``'s interface over S shards (see the module's text)."""

    clocked = False
    evicted = 0
    expired = 0

    def __init__(self, options: LearnerOptions, partitioner: Partitioner, calls: ShardCalls,
                 workers: Workers | None = None) -> None:
        if options.budgeted:
            raise ValueError("a cluster runs no memory budget or expiry (max_features, "
                             "expire_after_examples): every shard must apply every mini-batch "
                             "alike")
        self.options = options
        self.partitioner = partitioner
        self.calls = calls
        self.shards = calls.shards
        if partitioner.shards != self.shards:
            raise ValueError(f"{partitioner.shards} shards in the partition table, "
                             f"{self.shards} to call")
        self.stepper = Stepper(options, partitioner)
        self.workers = workers if workers is not None else LocalWorkers(self.stepper, calls)
        self.store = ClusterStore(self)
        self.n = 0                       # mini-batches applied (the sequencer's number)
        self._clocks = SGDKernel(options).get_clocks()
        self.log = ReplayLog()
        #: Per shard: (source, applied) to restore it from (shard.restore).
        self.sources: list[tuple[Any, int]] = [(None, 0)] * self.shards
        self.recoveries = 0
        #: The summed costs of the mini-batches (step.Stepper.step's "cost").
        self.costs: dict[str, float] = {}
        self._in_batch = False
        self._saved: tuple[int, dict] = (0, dict(self._clocks))
        self._info: tuple[float, list[dict]] | None = None

    # ------------------------------------------------------------- setup

    def start(self, sources: Sequence[Any] | None = None, applied: int = 0,
              clocks: dict | None = None) -> None:
        """Restore every shard from ``sources`` (one per shard: None, a
        shard snapshot path or a state dict), at mini-batch ``applied``."""
        sources = list(sources) if sources is not None else [None] * self.shards
        self.sources = [(s, applied) for s in sources]
        self.n = applied
        self.call_all("restore", [(s, applied) for s in sources])
        self._clocks = dict(clocks) if clocks is not None else \
            self.call_all("clocks", [()], only=[0])[0]
        self.log = ReplayLog()

    def cut(self, files: Sequence[str], n: int) -> None:
        """A snapshot of every shard at mini-batch ``n`` is on disk: a lost
        shard restores from its file from now on, and the log forgets the
        mini-batches up to ``n``."""
        self.sources = [(f, n) for f in files]
        self.log.trim(n)

    # --------------------------------------------------------- calling

    def call_all(self, method: str, args: Sequence[tuple],
                 only: Sequence[int] | None = None) -> list[Any]:
        """``method`` on every shard (``only`` those), restoring and
        retrying a lost one."""
        shards = list(only) if only is not None else list(range(self.shards))
        if len(args) == 1 and len(shards) > 1:
            args = list(args) * len(shards)
        results: dict[int, Any] = {}
        todo = list(zip(shards, args))
        for _ in range(MAX_ATTEMPTS):
            replies = self.calls.call(method, [a for _, a in todo], [s for s, _ in todo])
            try:
                for (s, _), r in zip(todo, gather(replies, [s for s, _ in todo])):
                    results[s] = r
                return [results[s] for s in shards]
            except ShardsLost as exc:
                for (s, _), r in zip(todo, replies):
                    if s not in exc.shards:
                        results[s] = r
                self.recover(exc.shards)
                todo = [(s, a) for s, a in todo if s in exc.shards]
        raise ClusterError(f"{method}: shards {[s for s, _ in todo]} keep failing")

    def shard_info(self, max_age_s: float = 0.0) -> list[dict]:
        now = time.monotonic()
        if self._info is None or now - self._info[0] > max_age_s:
            self._info = (now, self.call_all("info", [()]))
        return self._info[1]

    # ----------------------------------------------------------- recovery

    def recover(self, lost: Sequence[int]) -> None:
        """Bring lost shards back: wait until each answers (Ray restarts
        it), restore it from its last snapshot (or its seed), replay the
        committed mini-batches since, and, inside a batch, open the batch
        on it and replay that batch's mini-batches too."""
        for s in sorted(set(lost)):
            deadline = time.monotonic() + RESTART_TIMEOUT_S
            while True:
                reply = self.calls.call("info", [()], [s])[0]
                if not isinstance(reply, BaseException):
                    break
                if time.monotonic() > deadline:
                    raise ClusterError(f"shard {s} did not come back within "
                                       f"{RESTART_TIMEOUT_S:.0f} s: {reply}")
                time.sleep(0.2)
            source, applied = self.sources[s]
            log.warning("shard %d lost (now pid %s): restoring it at mini-batch %d and "
                        "replaying %d", s, reply.get("pid"), applied, self.n - applied)
            gather(self.calls.call("restore", [(source, applied)], [s]), [s])
            self._replay(s, self.log.entries_after(applied))
            if self._in_batch:
                gather(self.calls.call("begin", [()], [s]), [s])
                self._replay(s, iter(self.log.open))
            self.recoveries += 1

    def _replay(self, s: int, entries: Iterator[tuple[int, MiniBatch, np.ndarray]]) -> None:
        for n, mb, factors in entries:
            subs, _ = self.stepper.split(mb)
            reply = gather(self.stepper.apply(self.calls, n, subs, factors, only=[s]), [s])[0]
            if reply[2] is not None:
                raise ClusterError(f"shard {s}: replaying mini-batch {n} failed ({reply[2]})")

    # ----------------------------------------------------------- batches

    @property
    def in_batch(self) -> bool:
        return self._in_batch

    def begin(self) -> None:
        self.call_all("begin", [()])
        self._in_batch = True
        self._saved = (self.n, dict(self._clocks))

    def commit(self) -> None:
        self.call_all("commit", [()])
        self._in_batch = False
        self.log.committed.extend(self.log.open)
        self.log.open = []

    def rollback(self) -> None:
        self.call_all("rollback", [()])
        self._in_batch = False
        self.log.open = []
        self.n, self._clocks = self._saved[0], dict(self._saved[1])

    # ---------------------------------------------------------- learning

    def learn(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a cluster learns in mini-batches (learn_minibatch)")

    def learn_minibatch(self, indptr: np.ndarray, keys: np.ndarray, values: np.ndarray,
                        labels: np.ndarray, weights: np.ndarray | None, minibatch: int,
                        start: int = 0, stop: int = -1) -> tuple:
        """``SGDKernel.learn_minibatch`` across the shards: the same
        return value and errors."""
        stop = indptr.shape[0] - 1 if stop < 0 else stop
        loss_sum, weight_sum, correct, b0 = 0.0, 0.0, 0, start
        while b0 < stop:
            b1 = min(b0 + minibatch, stop)
            mb = MiniBatch.cut(indptr, keys, values, labels, weights, b0, b1)
            try:
                stats = self._step(mb)
            except (NumericError, StoreFullError) as exc:
                raise type(exc)(None, b0 - start, (loss_sum, weight_sum, correct),
                                row=b0 + (exc.row or 0), reason=exc.reason) from None
            loss_sum += stats[0]
            weight_sum += stats[1]
            correct += stats[2]
            b0 = b1
        return loss_sum, weight_sum, correct, b0 - start

    def _step(self, mb: MiniBatch) -> tuple:
        n = self.n + 1
        for _ in range(MAX_ATTEMPTS):
            try:
                result = self.workers.step(n, mb)
                break
            except ShardsLost as exc:
                self.recover(exc.shards)
        else:
            raise ClusterError(f"mini-batch {n}: the shards keep failing")
        if result["error"] is not None:
            # A weight the update made infinite on some shard: the batch is
            # undone (the Learner rolls back), as in the single process.
            error = StoreFullError if result["error"] == "store_full" else NumericError
            raise error(None, 0, (0.0, 0.0, 0), row=0, reason=result["error"])
        for name, value in result["cost"].items():
            self.costs[name] = self.costs.get(name, 0) + value
        self.log.open.append((n, mb, result["factors"]))
        self.n = n
        clocks = result["clocks"]
        if result["lost"]:
            self.recover(result["lost"])
            clocks = clocks + self.call_all("clocks", [()], only=result["lost"])
        if any(c != clocks[0] for c in clocks):
            raise ClusterError(f"mini-batch {n}: the shards' clocks disagree: {clocks}")
        self._clocks = dict(clocks[0])
        self._info = None
        return result["stats"]

    # ----------------------------------------------------------- reading

    @property
    def t(self) -> int:
        return self._clocks["t"]

    @property
    def intercept(self) -> float:
        return self._clocks["intercept"]

    @property
    def scale(self) -> float:
        return self._clocks["scale"]

    def get_clocks(self) -> dict:
        return dict(self._clocks)

    def set_clocks(self, clocks: dict) -> None:
        raise TypeError("a cluster's clocks are set by seeding (ClusterLearner.seeded)")

    def enforce_budget(self) -> None:
        pass

    def _pull(self, keys: np.ndarray) -> tuple[np.ndarray, dict]:
        """The raw weights of ``keys`` (one round trip to each shard) and
        the clocks; a lost shard is restored and the pull made again."""
        keys = np.asarray(keys, dtype=np.uint64)
        owner = self.partitioner.shard_of(keys)
        for _ in range(MAX_ATTEMPTS):
            try:
                w, replies, _ = pull_entries(self.calls, keys, owner)
                return w, replies[0][1]
            except ShardsLost as exc:
                self.recover(exc.shards)
        raise ClusterError("pull: the shards keep failing")

    def margins(self, indptr: np.ndarray, keys: np.ndarray, values: np.ndarray,
                probability: bool = False) -> np.ndarray:
        w, clocks = self._pull(keys)
        return entry_margins(np.ascontiguousarray(indptr, dtype=np.int64) - indptr[0], w,
                             values, clocks["scale"], clocks["intercept"], probability)

    def lookup(self, keys: np.ndarray, raw: bool = False) -> np.ndarray:
        w, clocks = self._pull(keys)
        return w if raw else w * clocks["scale"]

    def count_nonzero(self) -> int:
        return sum(self.call_all("count_nonzero", [()]))

    def current_weights(self) -> tuple[np.ndarray, np.ndarray]:
        parts = self.call_all("current_weights", [()])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
