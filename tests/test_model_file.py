"""Model files: exact round trips, atomic writes, corruption detected."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from onlinel1 import Batch, Learner
from onlinel1 import model_file
from onlinel1.model_file import ModelFileError

RULES = [dict(update="plain", l1=0.0, l2=1e-3), dict(update="subgradient", l1=1e-3),
         dict(update="cumulative", l1=1e-3, origin="start"),
         dict(update="cumulative", l1=1e-3, origin="first-seen"),
         dict(update="fobos", l1=1e-3, l2=1e-3)]


@pytest.fixture
def trained(a9a_sample):
    X, y = a9a_sample
    learner = Learner(update="fobos", l1=1e-3)
    learner.learn(Batch.from_csr(X[:1000], y[:1000]))
    return learner


@pytest.mark.parametrize("rule", RULES)
def test_save_load_continues_bit_identically(tmp_path, a9a_sample, rule):
    X, y = a9a_sample
    straight = Learner(**rule)
    straight.learn(Batch.from_csr(X, y))
    first = Learner(**rule)
    first.learn(Batch.from_csr(X[:700], y[:700]))
    path = tmp_path / "m.ol1"
    model_file.save(path, first)
    resumed, names, extra = model_file.load(path)
    assert names == {} and extra == {}
    resumed.learn(Batch.from_csr(X[700:], y[700:]))
    for a, b in zip(straight.weights(), resumed.weights()):
        np.testing.assert_array_equal(a, b)
    assert straight.state["clocks"] == resumed.state["clocks"]
    assert straight.progress == pytest.approx(resumed.progress, rel=1e-14)


def test_names_and_extra_round_trip(tmp_path, trained):
    keys, _ = trained.weights()
    names = {int(k): f"f^feature {int(k)} é" for k in keys[:5]}
    names[2**64 - 1] = "not in the model"   # not stored: dropped
    path = tmp_path / "m.ol1"
    model_file.save(path, trained, names, extra={"trained_on": "x.svm"})
    _, got, extra = model_file.load(path)
    assert got == {k: v for k, v in names.items() if k != 2**64 - 1}
    assert extra == {"trained_on": "x.svm"}


def test_atomic_write_leaves_no_temporary_file(tmp_path, trained):
    path = tmp_path / "m.ol1"
    model_file.save(path, trained)
    model_file.save(path, trained)
    assert sorted(os.listdir(tmp_path)) == ["m.ol1"]


def corrupt_variants(data: bytes):
    yield "empty", b"", "not an onlinel1 model file"
    yield "not ours", b"PK\x03\x04" + data[4:], "not an onlinel1 model file"
    yield "truncated header", data[:12], "truncated"
    yield "truncated", data[:-100], "checksum mismatch"
    yield "one byte short", data[:-1], "checksum mismatch"
    for pos in (20, len(data) // 2, len(data) - 5):
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        yield f"flipped byte {pos}", bytes(flipped), "checksum mismatch"
    version = bytearray(data)
    struct.pack_into("<I", version, 8, 2)
    yield "wrong version", bytes(version), "model format version 2 is not supported"


def test_every_kind_of_damage_is_detected(tmp_path, trained):
    path = tmp_path / "m.ol1"
    model_file.save(path, trained)
    data = path.read_bytes()
    for what, damaged, message in corrupt_variants(data):
        bad = tmp_path / "bad.ol1"
        bad.write_bytes(damaged)
        with pytest.raises(ModelFileError, match=message):
            model_file.load(bad)
