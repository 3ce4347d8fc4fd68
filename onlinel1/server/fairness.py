"""Where the loop's time goes, and how much of it requests may take while
training waits (``config.training_share``).

The loop's seconds of work are learning (the slices of the batches) and
answering requests.  A request's seconds go to one of three accounts:

* ``between_slices``: answered between two slices of a batch;
* ``training_waiting``: answered by the main loop while training input
  waited (a message ready on the training socket, or an acknowledged
  ``learn`` deferred behind the last batch);
* ``none_waiting``: answered while no training input waited, when
  requests rightly have the loop to themselves.

The first two are *contended*: both waited, and ``training_share`` F
promises that learning keeps at least F of learning plus contended
requests.  The nested work of a request (the slices of an acknowledged
``learn`` and the requests answered between them) is not counted twice:
a request's own seconds are its duration less what was accounted inside
it.

While training waits, requests spend a credit that learning earns:
``(1 - F) / F`` seconds per second learned, each slice as it ends.  A
turn of requests (between two slices, or in the main loop before the
next training message) goes on while the credit is positive, and answers
at least one waiting request whatever the credit, so a request never
waits more than a slice for want of credit; what that one overdraws is
repaid by the next learning.  Requests answered while no training waits
cost nothing.  The credit is bounded both ways (``CREDIT_WINDOW_S`` of
learning's worth), so a long stretch of one without the other is not
banked.  Two counters say when the floor of one request a turn, not the
credit, decided: ``requests_on_overdraft`` (contended requests answered
with no credit left) and ``overdraft_forgiven_s`` (request seconds beyond
the debt's bound, never repaid: the share was not kept by that much).
"""
from __future__ import annotations

import time
from typing import Any, Callable

BETWEEN = "between_slices"
WAITING = "training_waiting"
IDLE = "none_waiting"
WHERE = (BETWEEN, WAITING, IDLE)

#: The credit holds at most, and owes at most, what this many seconds of
#: learning earn.
CREDIT_WINDOW_S = 0.005


class LoopAccount:
    """The loop's learning seconds and request seconds by account."""

    def __init__(self, training_share: float,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.share = training_share
        #: Seconds of contended requests per second learned: F = l / (l + r).
        self.ratio = (1.0 - training_share) / training_share
        self.clock = clock
        self.learning_s = 0.0
        self.requests: dict[str, float] = dict.fromkeys(WHERE, 0.0)
        #: Seconds contended requests may still take (negative: owed).
        self.credit_s = 0.0
        self.credit_bound_s = self.ratio * CREDIT_WINDOW_S
        self.on_overdraft = 0
        self.forgiven_s = 0.0

    @property
    def requests_s(self) -> float:
        return sum(self.requests.values())

    @property
    def contended_s(self) -> float:
        """Request seconds while training waited too."""
        return self.requests[BETWEEN] + self.requests[WAITING]

    @property
    def total_s(self) -> float:
        return self.learning_s + self.requests_s

    def learned(self, seconds: float) -> None:
        self.learning_s += seconds
        self.credit_s = min(self.credit_s + self.ratio * seconds, self.credit_bound_s)

    def served(self, seconds: float, where: str) -> None:
        self.requests[where] += seconds
        if where != IDLE:
            if self.credit_s <= 0:
                self.on_overdraft += 1
            credit = self.credit_s - seconds
            if credit < -self.credit_bound_s:
                self.forgiven_s += -self.credit_bound_s - credit
                credit = -self.credit_bound_s
            self.credit_s = credit

    def may_serve(self, where: str, answered: int) -> bool:
        """Whether a turn of requests at ``where`` that has answered
        ``answered`` so far may answer one more."""
        return where == IDLE or answered == 0 or self.credit_s > 0

    def contended_share(self) -> float | None:
        """Learning's share of the time both waited (None before any)."""
        both = self.learning_s + self.contended_s
        return self.learning_s / both if both > 0 else None

    def report(self) -> dict[str, Any]:
        share = self.contended_share()
        return {"learning_s": round(self.learning_s, 6),
                "requests_s": round(self.requests_s, 6),
                "requests_between_slices_s": round(self.requests[BETWEEN], 6),
                "requests_training_waiting_s": round(self.requests[WAITING], 6),
                "requests_none_waiting_s": round(self.requests[IDLE], 6),
                "contended_share": None if share is None else round(share, 6),
                "requests_on_overdraft": self.on_overdraft,
                "overdraft_forgiven_s": round(self.forgiven_s, 6)}
