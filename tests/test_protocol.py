"""The daemon's zero-copy msgpack decoder (``protocol._Walker``, used for
large messages) against msgpack's own C decoder, the oracle.

For any message msgpack can write, the walker must give the same value
(``bin`` fields as memoryviews over the frame instead of bytes); for any
cut or damaged message it must raise ``ProtocolError`` with the code
``malformed``, never another exception.
"""
from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from onlinel1.server import protocol
from onlinel1.server.protocol import ProtocolError, _Walker

scalars = (st.none() | st.booleans()
           | st.integers(-2**63, 2**64 - 1)
           | st.floats(allow_nan=False, width=64)
           | st.text(max_size=300)
           | st.binary(max_size=70_000))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=20)
                      | st.dictionaries(st.text(max_size=10) | st.integers(-5, 5), inner,
                                        max_size=20), max_leaves=60)


def plain(value):
    """The walker's value with memoryviews turned into bytes."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def walk(frame: bytes):
    walker = _Walker(memoryview(frame))
    out = walker.value()
    assert walker.pos == len(frame)
    return out


@settings(max_examples=300, deadline=None)
@given(values, st.booleans())
def test_the_walker_decodes_what_msgpack_decodes(value, single_float):
    try:
        frame = msgpack.packb(value, use_bin_type=True, use_single_float=single_float)
    except OverflowError:            # a double beyond float32's range
        assume(False)
    want = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    assert plain(walk(frame)) == want


def test_bin_fields_are_views_of_the_frame_not_copies():
    payload = np.arange(5000, dtype="<f8").tobytes()
    frame = bytearray(msgpack.packb({"v": 1, "csr": {"values": payload}}))
    got = walk(bytes(frame))["csr"]["values"]
    assert isinstance(got, memoryview) and got.tobytes() == payload
    buf = memoryview(frame)
    view = _Walker(buf).value()["csr"]["values"]
    frame[-1] ^= 0xFF                          # the view sees the frame change
    assert view[-1] == frame[-1]


@settings(max_examples=200, deadline=None)
@given(values, st.data())
def test_a_cut_message_is_malformed_never_a_crash(value, data):
    frame = msgpack.packb(value, use_bin_type=True)
    if len(frame) < 2:
        return
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError) as err:
        walk(frame[:cut])
    assert err.value.code == protocol.MALFORMED


@pytest.mark.parametrize("first", [0xC1, 0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8])
def test_unused_msgpack_types_are_refused_by_name(first):
    with pytest.raises(ProtocolError, match=f"byte 0x{first:02x} starts no msgpack type"):
        walk(bytes([first, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))


def test_nesting_is_bounded():
    frame = b"\x91" * (protocol.MAX_DEPTH + 5) + b"\x00"
    with pytest.raises(ProtocolError, match="nested deeper"):
        walk(frame)


def test_large_messages_take_the_walker_and_small_ones_msgpack_the_same_way():
    keys = np.arange(20_000, dtype="<u8")
    message = {"v": 1, "op": "train", "seq": 3, "producer": "p",
               "csr": {"indptr": np.array([0, 20_000], dtype="<i8").tobytes(),
                       "keys": keys.tobytes(), "values": np.ones(20_000).tobytes(),
                       "labels": np.array([1.0]).tobytes()}}
    frame = msgpack.packb(message)
    assert len(frame) > protocol.SMALL_MESSAGE
    big = protocol.decode_message(frame, 1 << 30)
    assert isinstance(big["csr"]["keys"], memoryview)
    batch = protocol.decode_batch(big, need_labels=True)
    assert np.array_equal(batch.keys, keys) and batch.labels.tolist() == [1.0]
    small = protocol.decode_message(msgpack.packb({**message, "csr": {
        k: v[:16] for k, v in message["csr"].items()}}), 1 << 30)
    assert isinstance(small["csr"]["keys"], bytes)
