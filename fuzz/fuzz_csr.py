"""Fuzz the columnar batch decoder (``protocol.decode_csr``, the zero-copy
path) with structure: the input drives an ``atheris.FuzzedDataProvider``
that builds a ``csr`` map field by field -- row counts, indptr values from
consistent to arbitrary int64, keys across the whole uint64 range, float32
or float64 values with NaN/inf/subnormals, labels and weights of the right
or the wrong length, bins cut to lengths that are not a multiple of the
item size, fields of the wrong msgpack type, unknown fields, a padding
field that moves the bins to every alignment in the frame.  Mutating
msgpack bytes (fuzz_request.py) rarely gets that far: a random change to a
bin's length byte makes the whole frame malformed.

The built map is encoded as a request frame and run through everything
fuzz_request.py does with a frame (both decoders, ``decode_batch`` both
ways, ``Learner.check``, learn/predict/save/load on a tiny learner), and
also handed to ``decode_csr`` directly with the bins as unaligned
memoryviews.

Allowed: a value, ``ProtocolError``, ``BatchError``, ``NumericError``.
"""
from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

import ol1fuzz

with ol1fuzz.instrumented(__name__ == "__main__"):
    from onlinel1.batch import Batch
    from onlinel1.server import protocol
    from onlinel1.server.protocol import ProtocolError
    import fuzz_request

import atheris  # FuzzedDataProvider (the tests skip this harness without atheris)

INT64 = (-2**63, 2**63 - 1)
SPECIAL_KEYS = [0, 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, 1e300, -1e300, 1.7976931348623157e308,
                  3.4028234663852886e38, 1e39, float("inf"), float("-inf"), float("nan")]


def _floats(fdp: Any, n: int) -> list[float]:
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        return [fdp.PickValueInList([-1.0, 0.0, 1.0]) for _ in range(n)]
    if how == 1:
        return [fdp.PickValueInList(SPECIAL_FLOATS) for _ in range(n)]
    if how == 2:
        return [fdp.ConsumeRegularFloat() for _ in range(n)]
    return [fdp.ConsumeFloat() for _ in range(n)]


def _damaged(fdp: Any, raw: bytes, itemsize: int) -> Any:
    """``raw``, or (now and then) the same field cut, grown, or of another type.

    The provider gives its minimum once the input is used up, so here as
    everywhere in ``build`` the choice 0 is the ordinary case."""
    what = fdp.ConsumeIntInRange(0, 15)
    if what == 11:
        return raw[:max(0, len(raw) - fdp.ConsumeIntInRange(1, itemsize + 1))]
    if what == 12:
        return raw + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, itemsize + 1))
    if what == 13:
        return fdp.PickValueInList([None, 0, -1, 2**64 - 1, 1.5, "", "abc", [], [1, 2], {},
                                    {"a": 1}, True])
    if what == 14:
        return raw.decode("latin-1")     # a str where a bin belongs
    if what == 15:
        return raw[itemsize:]            # one entry short
    return raw


def build(fdp: Any) -> tuple[dict, dict]:
    """``(message, csr)``: a request whose ``csr`` map the provider chose."""
    n_rows = fdp.ConsumeIntInRange(0, 10)
    shape = fdp.ConsumeIntInRange(0, 4)
    if shape <= 1:                          # consistent: 0, cumulative row lengths
        lengths = [fdp.ConsumeIntInRange(0, 5) for _ in range(n_rows)]
        indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    elif shape == 2:                        # a start or an end off by a little
        indptr = np.array(sorted(fdp.ConsumeIntInRange(-2, 12) for _ in range(n_rows + 1)),
                          dtype=np.int64)
    else:                                   # anything at all
        indptr = np.array(fdp.ConsumeIntListInRange(n_rows + 1, *INT64), dtype=np.int64)
    nnz = int(indptr[-1]) if shape <= 1 else fdp.ConsumeIntInRange(0, 30)
    if shape == 1 and nnz:                  # consistent indptr, a key count off by one
        nnz += fdp.PickValueInList([-1, 1])
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        keys = [fdp.ConsumeIntInRange(0, 8) for _ in range(nnz)]     # repeats in a row
    elif how == 1:
        keys = [fdp.PickValueInList(SPECIAL_KEYS) for _ in range(nnz)]
    else:
        keys = fdp.ConsumeIntListInRange(nnz, 0, 2**64 - 1)
    f32 = fdp.ConsumeBool()
    values = _floats(fdp, nnz)
    with np.errstate(over="ignore"):            # doubles beyond float32: inf, as a producer's
        raw_values = np.array(values, dtype="<f4" if f32 else "<f8").tobytes()
    csr: dict[str, Any] = {
        "indptr": _damaged(fdp, indptr.astype("<i8").tobytes(), 8),
        "keys": _damaged(fdp, np.array(keys, dtype="<u8").tobytes(), 8),
        "values": _damaged(fdp, raw_values, 4 if f32 else 8),
    }
    dtype_field = fdp.ConsumeIntInRange(0, 7)
    if dtype_field <= 4:
        csr["values_dtype"] = "float32" if f32 else "float64"
    elif dtype_field == 5:
        csr["values_dtype"] = fdp.PickValueInList(["float16", "int64", "", "float", 32, None,
                                                   "float64" if f32 else "float32"])
    elif f32:                               # float32 bins without saying so
        pass
    for name in ("labels", "weights"):
        # labels: 0 valid, 1 any numbers, 2 any length, 3 none;
        # weights: 0 none, 1 valid, 2 any numbers, 3 any length.
        given = fdp.ConsumeIntInRange(0, 3)
        if (given == 3) if name == "labels" else (given == 0):
            continue
        n = n_rows if given < 2 or (name == "weights" and given == 2) else \
            fdp.ConsumeIntInRange(0, n_rows + 2)
        if name == "labels" and given == 0:
            column = [fdp.PickValueInList([-1.0, 1.0, 0.0]) for _ in range(n)]
        elif name == "weights" and given == 1:
            column = [fdp.ConsumeFloatInRange(0.0, 10.0) for _ in range(n)]
        else:
            column = _floats(fdp, n)
        csr[name] = _damaged(fdp, np.array(column, dtype="<f8").tobytes(), 8)
    for name in ("indptr", "keys", "values"):
        if fdp.ConsumeIntInRange(0, 31) == 31:
            del csr[name]
    if fdp.ConsumeIntInRange(0, 31) == 31:
        csr[fdp.PickValueInList(["extra", "nnz", "", "Keys"])] = b"\0" * 8
    msg: dict[str, Any] = {"v": 1}
    pad = fdp.ConsumeIntInRange(0, 8)       # moves every bin to another alignment
    if pad:
        msg["pad"] = "x" * pad
    msg["op"] = fdp.PickValueInList(["train", "learn", "predict"])
    if fdp.ConsumeIntInRange(0, 7) == 7:
        msg["model"] = fdp.PickValueInList(["default", "ctr", "", "a/b", 7])
    msg["csr"] = csr
    if fdp.ConsumeIntInRange(0, 31) == 31:
        msg["rows"] = []                    # both encodings: refused
    return msg, csr


def _unaligned(csr: dict) -> dict:
    """The map with every bin a memoryview at an odd address."""
    out = {}
    for name, value in csr.items():
        if isinstance(value, bytes):
            buf = bytearray(len(value) + 1)
            buf[1:] = value
            value = memoryview(buf)[1:]
        out[name] = value
    return out


def parser_input(data: bytes) -> bytes:
    """The request frame built from ``data`` (what the daemon would get)."""
    msg, _ = build(atheris.FuzzedDataProvider(data))
    return msgpack.packb(msg, use_bin_type=True)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    msg, csr = build(fdp)
    frame = msgpack.packb(msg, use_bin_type=True)
    fuzz_request.test_one_input(frame)
    for need_labels in (True, False):
        try:
            batch = protocol.decode_csr(_unaligned(csr), need_labels)
        except ProtocolError as exc:
            assert exc.code in (protocol.BAD_REQUEST, protocol.BAD_BATCH), exc.code
            continue
        assert isinstance(batch, Batch)


if __name__ == "__main__":
    ol1fuzz.main(test_one_input)
