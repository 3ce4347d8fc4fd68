"""Fuzz the Vowpal Wabbit text reader: ``onlinel1.io.read_batches(f, "vw")``
over the input bytes, as a binary stream.

Every input is read twice -- with the defaults (8192-row batches, 1 MiB
blocks, ``readinto``) and with 3-row batches from 7-byte blocks through
``read`` only, so that lines are cut at every place by the block boundary
-- and both readings must give the same rows, bit for bit, and the same
error.  They must also be the rows of ``reference()``, the grammar of
docs/formats.md written in Python with ``float()`` (keys hashed by
``feature_key``, which tests/test_hashing.py checks against xxhash).  Batches must be well-formed; the first few are then learned by a
tiny learner, as ``onlinel1 train`` does, and the model is saved with
the feature names the reader gave and loaded back.

Allowed: batches, then possibly ``ParseError`` (the reader's documented
error, naming the line); and ``BatchError``/``NumericError`` from the
learner.  Anything else is a crash.

The parser is compiled (onlinel1/_kernels/parse.pyx), which atheris does
not instrument; ``text_feedback`` turns the outcome (the error chosen, what
the rows hold) into Python branches so libFuzzer still sees progress, and
fuzz/dicts/vw.dict gives it the grammar's tokens.
"""
from __future__ import annotations

import math
import re
import sys

import numpy as np  # noqa: F401  (not instrumented)

import ol1fuzz

with ol1fuzz.instrumented(__name__ == "__main__"):
    import onlinel1.learner  # noqa: F401
    from onlinel1.io import feature_key

FORMAT = "vw"


def parser_input(data: bytes) -> bytes:
    """The bytes the reader is given for ``data``: the text itself."""
    return data


#: docs/formats.md's number, whole token.
NUMBER = re.compile(rb"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                    rb"|inf|infinity|nan)", re.IGNORECASE)
BLANKS = re.compile(rb"[ \t]+")


def _number(token: bytes) -> float | None:
    return float(token) if NUMBER.fullmatch(token) else None


def _key(name: bytes, namespace: bytes | None) -> int:
    if name.isdigit() and int(name) < 2**64:      # ASCII digits (bytes.isdigit)
        return int(name)
    text = name if namespace is None else namespace + b"^" + name
    return feature_key(text.decode("utf-8", "surrogateescape"))


def _line(line: bytes):
    """``(label, importance, [(key, value), ...])``, None to skip, or False."""
    line = line.lstrip(b" \t")
    if not line or line.startswith(b"#"):
        return None
    bar = line.find(b"|")
    if bar < 0:
        return False
    section = line[:bar]
    tokens = [t for t in BLANKS.split(section) if t]
    if len(tokens) > 4:
        return False
    if tokens and (tokens[-1].startswith(b"'") or not section.endswith((b" ", b"\t"))):
        tokens = tokens[:-1]                       # the tag
    if not 1 <= len(tokens) <= 3:
        return False
    fields = [_number(t) for t in tokens]
    if None in fields or (len(fields) > 1 and not fields[1] >= 0):
        return False
    features = []
    for segment in line[bar + 1:].split(b"|"):
        namespace, scale = None, 1.0
        if segment and segment[:1] not in (b" ", b"\t"):
            head = BLANKS.split(segment, 1)[0]
            segment = segment[len(head):]
            namespace, colon, written = head.partition(b":")
            if not namespace:
                return False                       # |:2
            if colon:
                scale = _number(written)
                if scale is None:
                    return False
        for token in BLANKS.split(segment):
            if not token:
                continue
            name, colon, written = token.partition(b":")
            value = _number(written) if colon else 1.0
            if value is None or not name:
                return False
            features.append((_key(name, namespace), value if scale == 1.0 else value * scale))
    return fields[0], fields[1] if len(fields) > 1 else 1.0, features


def reference(data: bytes) -> tuple[list, int | None]:
    """``(rows, error_line)``: docs/formats.md's Vowpal Wabbit text, in
    Python -- each row ``(label, importance, [(key, value), ...])`` up to
    the first bad line (1-based), numbers by ``float()``."""
    rows = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if number == len(lines) and not line:
            break                                   # after the last newline
        if line.endswith(b"\r"):
            line = line[:-1]
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        row = _line(line)
        if row is False:
            return rows, number
        if row is not None:
            rows.append(row)
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
            got.append((_bits(float(batch.labels[i])), _bits(float(batch.weights[i])),
                        [(int(k), _bits(float(v))) for k, v in
                         zip(batch.keys[lo:hi], batch.values[lo:hi])]))
    rows, error_line = reference(data)
    want = [(_bits(label), _bits(weight), [(k, _bits(v)) for k, v in features])
            for label, weight, features in rows]
    assert got == want, "the rows differ from docs/formats.md's VW text (reference())"
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
