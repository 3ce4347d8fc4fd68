"""``LearnResult``: what one ``Learner.learn`` call learned.

>>> r = LearnResult(rows=4, loss_sum=2.0, weight_sum=5.0, correct=3)
>>> r.loss, r.accuracy
(0.4, 0.75)
>>> LearnResult(0, 0.0, 0.0, 0).loss
nan
"""
from __future__ import annotations

import dataclasses
import math

__all__ = ["LearnResult"]


@dataclasses.dataclass(frozen=True, slots=True)
class LearnResult:
    """The progressive (before-update) evaluation of the rows one
    ``Learner.learn`` call learned.

    ``rows``: the examples learned (fewer than asked for when a ``wake``
    stopped the call early; see ``Learner.learn``).
    ``loss_sum``: the sum over those rows of importance x loss, each loss
    measured before the model learned from that row.
    ``weight_sum``: the sum of their importance weights (1 each without
    weights).
    ``correct``: how many of them the model predicted right before
    learning them (the sign of the margin matched the label); ``None``
    for a loss that is not a classification loss (``squared``).

    ``evicted``: features the memory budget evicted during the call
    (``max_features``); ``expired``: features dropped because they had not
    been updated for ``expire_after_examples`` examples (both 0 without a
    budget or expiry; docs/algorithms.md, "The memory budget").

    ``loss`` is the importance-weighted mean ``loss_sum / weight_sum``
    (nan when ``weight_sum`` is 0, e.g. no rows); ``accuracy`` is
    ``correct / rows``, unweighted (nan when there are no rows or
    ``correct`` is None).  These are the sums ``Learner.progress_sums``
    accumulates.
    """

    rows: int
    loss_sum: float
    weight_sum: float
    correct: int | None
    evicted: int = 0
    expired: int = 0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.weight_sum if self.weight_sum > 0 else math.nan

    @property
    def accuracy(self) -> float:
        if self.correct is None or self.rows <= 0:
            return math.nan
        return self.correct / self.rows
