"""Counters the daemon reports through the ``stats`` operation."""
from __future__ import annotations

import collections
import time
from typing import Any

from onlinel1.learner import Learner
from onlinel1.result import LearnResult


#: A producer's name is at most this long (characters).
MAX_PRODUCER_NAME = 256
#: Producers a model tracks at most; past it the one idle longest is forgotten.
MAX_PRODUCERS = 1024


class Producers(collections.OrderedDict):
    """Each producer's last ``seq``, the least recently updated first; at
    most ``MAX_PRODUCERS`` (the oldest idle one expires, and is counted)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.expired = 0

    def record(self, producer: str, seq: int) -> None:
        self[producer] = seq
        self.move_to_end(producer)
        while len(self) > MAX_PRODUCERS:
            self.popitem(last=False)
            self.expired += 1


class Stats:
    """Examples, batches, requests and errors by kind, and the progressive
    loss over the whole run and over a recent window of examples."""

    def __init__(self, window_examples: int) -> None:
        self.started = time.monotonic()
        self.batches = 0
        self.requests: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()
        self.producers = Producers()
        #: Batches whose seq was not above their producer's last one.
        self.seq_repeats = 0
        self.last_snapshot: dict[str, Any] | None = None
        self.snapshots_failed = 0
        self.reloads = 0
        self.window_examples = window_examples
        # (examples, loss_sum, weight_sum, correct) of each recent slice.
        self._window: collections.deque[tuple[int, float, float, int]] = collections.deque()
        self._window_sums = [0, 0.0, 0.0, 0]

    def learned(self, result: LearnResult) -> None:
        """Record a slice learned: the ``LearnResult`` of ``Learner.learn``
        (or of the exception that stopped it)."""
        if result.rows <= 0:
            return
        part = (result.rows, result.loss_sum, result.weight_sum, result.correct or 0)
        self._window.append(part)
        for i, value in enumerate(part):
            self._window_sums[i] += value
        while len(self._window) > 1 and self._window_sums[0] - self._window[0][0] >= self.window_examples:
            old = self._window.popleft()
            for i, value in enumerate(old):
                self._window_sums[i] -= value

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def report(self, learner: Learner) -> dict[str, Any]:
        sums = learner.progress_sums
        classification = learner.options.classification

        def summary(examples: int, loss_sum: float, weight_sum: float, correct: int) -> dict:
            out: dict[str, Any] = {"examples": examples,
                                   "loss": loss_sum / weight_sum if weight_sum > 0 else None}
            if classification:
                out["accuracy"] = correct / examples if examples else None
            return out

        progressive = summary(sums["examples"], sums["loss_sum"], sums["weight_sum"], sums["correct"])
        del progressive["examples"]
        progressive["window"] = summary(*self._window_sums)
        return {
            "uptime_s": round(self.uptime(), 3),
            "examples": sums["examples"],
            "batches": self.batches,
            "t": learner.examples_seen,
            "progressive": progressive,
            "nnz": learner.nnz,
            "store_features": learner.store_size,
            "store_bytes": learner.memory_bytes,
            "max_features": learner.options.max_features,
            "evicted": learner.evicted,
            "expired": learner.expired,
            "learning_rate": learner.learning_rate(),
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "rejected": dict(self.rejected),
            "producers": dict(self.producers),
            "producers_expired": self.producers.expired,
            "seq_repeats": self.seq_repeats,
            "last_snapshot": self.last_snapshot,
            "snapshots_failed": self.snapshots_failed,
            "reloads": self.reloads,
        }
