"""The exceptions of the learning core, with the fields callers read.

Callers never parse a message to learn what failed: every exception here
carries its facts as attributes.
"""
from __future__ import annotations

__all__ = ["NumericError", "StoreFullError"]


class NumericError(FloatingPointError):
    """An example overflowed; the examples before it were learned.

    ``learned`` counts them; ``progress`` is their (loss_sum, weight_sum,
    n_correct)."""

    def __init__(self, message, learned, progress):
        super().__init__(message)
        self.learned = learned
        self.progress = progress


class StoreFullError(MemoryError):
    """The store could not grow; the examples before it were learned."""

    def __init__(self, message, learned, progress):
        super().__init__(message)
        self.learned = learned
        self.progress = progress
