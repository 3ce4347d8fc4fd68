"""Fuzz the svmlight/libsvm reader: ``onlinel1.io.read_batches(f, "svmlight")``
over the input bytes, as a binary stream.

Every input is read twice -- with the defaults (8192-row batches, 1 MiB
blocks, ``readinto``) and with 3-row batches from 7-byte blocks through
``read`` only, so that lines are cut at every place by the block boundary
-- and both readings must give the same rows, bit for bit, and the same
error.  Batches must be well-formed; the first few are then learned by a
tiny learner, as ``onlinel1 train`` does.

Allowed: batches, then possibly ``ParseError`` (the reader's documented
error, naming the line); and ``BatchError``/``NumericError`` from the
learner.  Anything else is a crash.

The parser is compiled (onlinel1/_kernels/parse.pyx), which atheris does
not instrument; ``text_feedback`` turns the outcome (the error chosen, what
the rows hold) into Python branches so libFuzzer still sees progress, and
fuzz/dicts/svmlight.dict gives it the grammar's tokens.
"""
from __future__ import annotations

import sys

import numpy as np  # noqa: F401  (not instrumented)

import ol1fuzz

with ol1fuzz.instrumented(__name__ == "__main__"):
    import onlinel1.io  # noqa: F401
    import onlinel1.learner  # noqa: F401

FORMAT = "svmlight"


def parser_input(data: bytes) -> bytes:
    """The bytes the reader is given for ``data``: the text itself."""
    return data


def test_one_input(data: bytes) -> None:
    default = ol1fuzz.read_text(data, FORMAT, small=False)
    small = ol1fuzz.read_text(data, FORMAT, small=True)
    ol1fuzz.same_reading(default, small)
    ol1fuzz.text_feedback(default)
    ol1fuzz.learn_text(default[0], data)


if __name__ == "__main__":
    import atheris
    ol1fuzz.text_feedback = atheris.instrument_func(ol1fuzz.text_feedback)
    ol1fuzz.main(test_one_input)
