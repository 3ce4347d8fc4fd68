"""Every crash the fuzz harnesses (fuzz/) found, as a test of the exact
input the parser was given (tests/data/fuzz/, described in its README),
beside the hand-written variants of the same fault.

Each test calls the public API directly, not a harness, so it runs without
atheris.  Crashes in the learning kernels, which are not fixed here, are
``xfail(strict=True)``: the day the kernels are fixed they pass, and the
strict marker makes that visible.
"""
from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest

from conftest import SAMPLES
from onlinel1 import Batch, BatchError, Learner, NumericError, OptionError, model_file
from onlinel1.io import feature_key, read_batches
from onlinel1.model_file import ModelFileError
from onlinel1.server import protocol
from onlinel1.server.protocol import ProtocolError

FUZZ = SAMPLES / "fuzz"
#: A batch every loaded learner must take (keys it may hold, new ones).
PROBE = Batch(indptr=[0, 3, 5, 5], keys=np.array([1, 7, 2**64 - 1, 0, 123456789], np.uint64),
              values=[1.0, -0.5, 2.0, 1.0, 0.25], labels=[1.0, -1.0, 1.0])


def read(name: str) -> bytes:
    return (FUZZ / name).read_bytes()


# ------------------------------------------------------------- requests

def test_a_bin_map_key_in_a_writable_frame_is_decoded(monkeypatch):
    """fuzz_request: the zero-copy walker hashed a bin map key as the
    memoryview it is, and a view of a writable buffer cannot be hashed:
    ``ValueError``, not ``ProtocolError``.  Training frames are writable
    (``zmq.Frame.buffer``), so one message over 64 KiB with a bin key in
    any map stopped the daemon's loop.  A bin key is now bytes, as
    msgpack's decoder gives it."""
    frame = read("request/writable-bin-key.msgpack")
    monkeypatch.setattr(protocol, "SMALL_MESSAGE", 0)       # the walker for every size
    with pytest.raises(ProtocolError) as err:               # {{...}: ...}: a map as a key
        protocol.decode_message(memoryview(bytearray(frame)), 1 << 20)
    assert err.value.code == protocol.MALFORMED


def test_a_large_training_frame_with_a_bin_key_decodes_as_msgpack_does():
    import zmq
    message = {"v": 1, "op": "train", b"bin key": 1, "pad": b"x" * 70_000,
               "nested": {b"k": [1, 2]}}
    frame = msgpack.packb(message, use_bin_type=True)
    assert len(frame) > protocol.SMALL_MESSAGE                # the walker's size
    want = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    for buffer in (zmq.Frame(frame).buffer, memoryview(bytearray(frame)), memoryview(frame)):
        got = protocol.decode_message(buffer, 1 << 30)
        assert got[b"bin key"] == 1 and got["nested"] == {b"k": [1, 2]}
        assert {k: v for k, v in got.items() if k != "pad"} == \
            {k: v for k, v in want.items() if k != "pad"}


def test_a_feature_of_the_empty_namespace_is_named_without_a_caret():
    """fuzz_request: ``namespaces: {"": {"x": 1.5}}`` is hashed as ``x`` (the
    empty namespace is no namespace) but was named ``^x``, a name that
    hashes to another key (``inspect`` and ``--export`` showed it)."""
    msg = protocol.decode_message(read("request/empty-namespace-name.msgpack"), 1 << 20)
    names: dict[int, str] = {}
    protocol.decode_batch(msg, need_labels=True, names=names)
    assert names[feature_key("x")] == "x"
    assert all(feature_key(name) == key for key, name in names.items())


# -------------------------------------------------------------- batches

def test_keys_given_as_python_ints_are_exact_above_2_53():
    """make_corpus.py: numpy reads ``[1, 2**64 - 1]`` as float64, and the key
    2**64 - 1 became 0 (``[2**53 + 1, 2**63]``: 2**53) without a word."""
    assert Batch([0, 2], [1, 2**64 - 1], [1.0, 2.0]).keys.tolist() == [1, 2**64 - 1]
    assert Batch([0, 2], [2**53 + 1, 2**63], [1.0, 2.0]).keys.tolist() == [2**53 + 1, 2**63]
    assert Batch([0, 2], [1.0, 3.0], [1.0, 2.0]).keys.tolist() == [1, 3]
    for keys in ([2.0**64], np.array([1.0, 2.0**64])):
        with pytest.raises(BatchError) as err:
            Batch([0, len(keys)], keys, [1.0] * len(keys))
        assert (err.value.field, err.value.reason) == ("keys", "out_of_range")
