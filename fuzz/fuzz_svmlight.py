"""Fuzz the svmlight/libsvm reader: ``onlinel1.io.read_batches(f, "svmlight")``
over the input bytes, as a binary stream.

Every input is read twice -- with the defaults (8192-row batches, 1 MiB
blocks, ``readinto``) and with 3-row batches from 7-byte blocks through
``read`` only, so that lines are cut at every place by the block boundary
-- and both readings must give the same rows, bit for bit, and the same
error.  They must also be the rows of ``reference()``, the grammar of
docs/formats.md written in Python with ``float()`` (the oracle the tests
use is scikit-learn's reader, which is too slow to call per input).  Batches must be well-formed; the first few are then learned by a
tiny learner, as ``onlinel1 train`` does, and the model is saved with
the feature names the reader gave and loaded back.

Allowed: batches, then possibly ``ParseError`` (the reader's documented
error, naming the line); and ``BatchError``/``NumericError`` from the
learner.  Anything else is a crash.

The parser is compiled (onlinel1/_kernels/parse.pyx), which atheris does
not instrument; ``text_feedback`` turns the outcome (the error chosen, what
the rows hold) into Python branches so libFuzzer still sees progress, and
fuzz/dicts/svmlight.dict gives it the grammar's tokens.
"""
from __future__ import annotations

import math
import re
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


#: docs/formats.md's number, whole token.
NUMBER = re.compile(rb"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                    rb"|inf|infinity|nan)", re.IGNORECASE)
QID = re.compile(rb"qid:-?[0-9]+")
INDEX = re.compile(rb"[0-9]+")


def reference(data: bytes) -> tuple[list, int | None]:
    """``(rows, error_line)``: docs/formats.md's svmlight, in Python -- each
    row ``(label, [(key, value), ...])`` up to the first bad line (1-based),
    numbers by ``float()``, which is correctly rounded like the parser."""
    rows = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if number == len(lines) and not line:
            break                                   # after the last newline
        if line.endswith(b"\r"):
            line = line[:-1]
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        tokens = line.split(b"#", 1)[0].split()     # bytes.split(): \t \n \v \f \r space
        if not tokens:
            continue
        if not NUMBER.fullmatch(tokens[0]):
            return rows, number
        features = []
        for i, token in enumerate(tokens[1:]):
            if i == 0 and token.startswith(b"qid:"):
                if not QID.fullmatch(token):
                    return rows, number
                continue
            index, colon, value = token.partition(b":")
            if not (INDEX.fullmatch(index) and int(index) < 2**64 and colon
                    and NUMBER.fullmatch(value)):
                return rows, number
            features.append((int(index), float(value)))
        rows.append((float(tokens[0]), features))
    return rows, None


def _bits(x: float) -> tuple:
    return ("nan", math.copysign(1.0, x)) if math.isnan(x) else (x, math.copysign(1.0, x))


def same_as_reference(reading: tuple, data: bytes) -> None:
    """The reader's rows and error line are the reference's, bit for bit."""
    batches, error, _ = reading
    got = []
    for batch in batches:
        for i in range(batch.n_rows):
            lo, hi = batch.indptr[i], batch.indptr[i + 1]
            got.append((_bits(float(batch.labels[i])),
                        [(int(k), _bits(float(v))) for k, v in
                         zip(batch.keys[lo:hi], batch.values[lo:hi])]))
    rows, error_line = reference(data)
    want = [(_bits(label), [(k, _bits(v)) for k, v in features]) for label, features in rows]
    assert got == want, "the rows differ from docs/formats.md's svmlight (reference())"
    assert (None if error is None else error.line) == error_line, (error, error_line)


def test_one_input(data: bytes) -> None:
    default = ol1fuzz.read_text(data, FORMAT, small=False)
    small = ol1fuzz.read_text(data, FORMAT, small=True)
    ol1fuzz.same_reading(default, small)
    same_as_reference(default, data)
    ol1fuzz.text_feedback(default)
    ol1fuzz.learn_text(default, data)


if __name__ == "__main__":
    import atheris
    ol1fuzz.text_feedback = atheris.instrument_func(ol1fuzz.text_feedback)
    ol1fuzz.main(test_one_input)
