"""The exceptions of the learning core, with the fields callers read.

Callers never parse a message to learn what failed: every exception here
carries its facts as attributes (``field``, ``row``, ``reason``,
``option``).  The messages are for people; the ``reason`` codes are stable.
"""
from __future__ import annotations

from typing import Any

from onlinel1.result import LearnResult

__all__ = ["BatchError", "OptionError", "NumericError", "StoreFullError", "stopped_message"]


class BatchError(ValueError):
    """A batch failed validation; nothing of it was learned.

    ``field``: the batch array at fault, ``"indptr"``, ``"keys"``,
    ``"values"``, ``"labels"`` or ``"weights"``.
    ``row``: the index in the batch (0-based) of the offending row, or None
    when no single row is to blame (lengths that disagree, a dtype).
    ``reason``, one of:

    * ``"not_array"``: the data cannot be read as an array;
    * ``"shape"``: not one-dimensional, or lengths that disagree (labels or
      weights and rows, values and keys, the end of indptr and keys, an
      empty indptr);
    * ``"dtype"``: not numbers, or not integers where integers are needed
      (keys, indptr);
    * ``"out_of_range"``: a key that is negative or not below 2**64;
    * ``"start"``: indptr does not start at 0;
    * ``"decreasing"``: indptr decreases (``row`` is the row whose end is
      before its start);
    * ``"not_finite"``: a value, label or importance weight is nan or
      infinite;
    * ``"negative"``: an importance weight below 0;
    * ``"label_out_of_range"``: a label below 0 for the poisson loss, or a
      label other than -1/+1 (or 0/1) for a
      classification loss;
    * ``"missing"``: the labels of a batch to learn from;
    * ``"max_features"``: a row with more distinct keys than the learner's
      memory budget ``max_features`` (one example must fit in it whole).

    The message starts with the field's name (``"labels: ..."``) and names
    the row where there is one.
    """

    REASONS = ("not_array", "shape", "dtype", "out_of_range", "start", "decreasing",
               "not_finite", "negative", "label_out_of_range", "missing", "max_features")

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.row = row
        self.reason = reason


class OptionError(ValueError):
    """A learner setting (``LearnerOptions``) is refused.

    ``option``: the setting at fault, a ``LearnerOptions`` field name such
    as ``"l1"`` (for ``"unknown"``, the first unknown name, sorted).
    ``reason``, one of:

    * ``"choice"``: not one of the allowed values (loss, update, ...);
    * ``"type"``: not a number, an integer or a bool as the setting needs;
    * ``"not_finite"``: a number that is nan or infinite;
    * ``"range"``: a number outside the setting's range;
    * ``"conflict"``: a value the other settings rule out (``l1`` > 0 with
      ``update='plain'``, ``l2 * eta0 >= 1``, ...);
    * ``"unknown"``: not a setting at all.

    ``detail``: the message without the option's name in front (``"must be
    >= 0, got -1.0"``), for callers that name the option their own way (the
    command line says ``--l1``); None where the message does not start
    with the name.
    """

    REASONS = ("choice", "type", "not_finite", "range", "conflict", "unknown")

    def __init__(self, message: str, *, option: str, reason: str,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.option = option
        self.reason = reason
        self.detail = detail


_STOPPED_WHAT = {
    "margin": "the margin is not finite (feature values or importance too large?)",
    "update": "the weight update is not finite (feature values or importance too large?)",
    "store_full": "the weight store cannot grow",
    "max_features": "it has more distinct features than the memory budget (max_features)",
}


def stopped_message(reason: str | None, row: int, learned: int = 0) -> str:
    """The message of a learn call stopped at ``row`` of the batch for
    ``reason``: the batch was undone (``learned`` 0), or, from a kernel
    called without a batch, ``learned`` rows before it stay learned."""
    what = _STOPPED_WHAT.get(reason, "it could not be learned")
    if learned == 0:
        return (f"example {row} of the batch: {what}; the batch was not learned "
                f"(the model is as it was before it)")
    return (f"example {row} of the batch: {what}; it and the rest of the batch were not "
            f"learned, the {learned} before it were")


class _Stopped:
    """The fields of an exception that stopped a learn call part-way."""

    #: The reason this class stands for when none is given.
    _default_reason: str | None = None

    def _fields(self, message: str | None, learned: int, progress: Any, row: int | None,
                reason: str | None, result: LearnResult | None) -> str:
        if reason is None:
            reason = self._default_reason
        if row is None:
            row = learned     # the row of the batch when learning started at row 0
        self.learned = learned
        self.progress = tuple(progress)
        self.row = row
        self.reason = reason
        self.result = result if result is not None else LearnResult(
            learned, float(progress[0]), float(progress[1]), int(progress[2]))
        return message if message is not None else stopped_message(reason, row, learned)


class NumericError(_Stopped, FloatingPointError):
    """An example overflowed.  From ``Learner.learn`` the whole batch was
    undone (``learned`` is 0); from a batch opened with ``Learner.begin``,
    ``learned`` rows before it were learned until the caller rolls back.

    ``row``: the index in the batch of the example that overflowed.
    ``reason``: ``"margin"`` (its margin is not finite) or ``"update"``
    (its weight update is not finite).
    ``result``: the :class:`~onlinel1.LearnResult` of the rows kept
    (none, after an undone batch).  ``learned`` and ``progress`` (``result.rows`` and
    ``(loss_sum, weight_sum, correct)``) are kept for older callers.

    ``NumericError(message, learned, progress)`` with ``row`` and
    ``reason`` as keywords; a message of None is written from them.
    """

    def __init__(self, message: str | None, learned: int, progress: Any, *,
                 row: int | None = None, reason: str | None = None,
                 result: LearnResult | None = None) -> None:
        super().__init__(self._fields(message, learned, progress, row, reason, result))


class StoreFullError(_Stopped, MemoryError):
    """The store could not grow (or an example did not fit the memory
    budget); undone like :class:`NumericError`.

    The fields of :class:`NumericError`; ``reason`` is ``"store_full"``."""

    _default_reason = "store_full"

    def __init__(self, message: str | None, learned: int, progress: Any, *,
                 row: int | None = None, reason: str | None = None,
                 result: LearnResult | None = None) -> None:
        super().__init__(self._fields(message, learned, progress, row, reason, result))
