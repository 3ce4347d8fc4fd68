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


# ------------------------------------------------------- streaming writer

from conftest import SAMPLES  # noqa: E402
from old_model_file import header_of, old_encode  # noqa: E402

STAMP = {"written_by": "onlinel1 test", "written_at": "2026-12-01T00:00:00+00:00"}
ALL_RULES = RULES + [dict(update="truncated", l1=1e-3), dict(update="adagrad-fobos", l1=1e-3),
                     dict(update="ftrl", l1=1e-3), dict(update="spred", l1=1e-3)]
CHUNKS = (1, 7, 64, 1 << 20)


@pytest.fixture
def fixed_stamp(monkeypatch):
    """written_by and written_at as the oracle is told."""
    monkeypatch.setattr(model_file, "_stamp", lambda: dict(STAMP))


def named(learner):
    """Names for some stored keys (one non-ASCII, one empty) and for a key
    the store does not hold (to be dropped)."""
    keys = learner.state["keys"]
    names = {int(k): f"f^feature {int(k)}" for k in keys[::3]}
    names[int(keys[1])] = "T^é€𝄞"
    names[int(keys[2])] = ""
    names[2**64 - 1] = "not in the model"
    return names


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r["update"] + r.get("origin", ""))
def test_save_writes_the_bytes_of_the_in_memory_encoder(tmp_path, a9a_sample, fixed_stamp,
                                                        rule):
    X, y = a9a_sample
    learner = Learner(**rule)
    learner.learn(Batch.from_csr(X[:600], y[:600]))
    names, extra = named(learner), {"trained_on": "x.svm", "n": [1, 2.5]}
    expected = old_encode(learner, names, extra, **STAMP)
    for chunk_rows in CHUNKS:
        path = tmp_path / f"m{chunk_rows}.ol1"
        size = model_file.save(path, learner, names, extra, chunk_rows=chunk_rows)
        assert path.read_bytes() == expected, chunk_rows
        assert size == len(expected)
        assert model_file.encode(learner, names, extra, chunk_rows=chunk_rows) == expected
    assert model_file.encode(learner) == old_encode(learner, **STAMP)   # no names, no extra


def test_an_empty_model_and_names_of_no_stored_key(fixed_stamp):
    empty = Learner(update="cumulative", origin="first-seen")
    for names in (None, {}, {5: "absent"}):
        for chunk_rows in CHUNKS:
            assert model_file.encode(empty, names, chunk_rows=chunk_rows) == \
                old_encode(empty, names, **STAMP)
    data = model_file.encode(empty, {5: "absent"})
    assert [a["length"] for a in header_of(data)["arrays"]] == [0, 0, 0, 0, 0, 1, 0]
    learner, names, _ = model_file.decode(data)
    assert learner.store_size == 0 and names == {}


@pytest.mark.parametrize("name", ["v1_vw0002_cumulative.ol1", "v1_a9a_fobos.ol1"])
def test_files_of_the_old_encoder_load_and_are_rewritten_row_for_row(tmp_path, monkeypatch,
                                                                      name):
    old = (SAMPLES / name).read_bytes()
    header = header_of(old)
    learner, names, extra = model_file.load(SAMPLES / name)
    assert extra == {"trained_on": f"tests/data/{name.split('_', 2)[1]}_head"
                                   f"{'60.vw' if 'vw' in name else '2000.svm'}"}
    assert learner.store_size == header["arrays"][0]["length"] > 50
    assert len(names) == (learner.store_size if "vw" in name else 0)
    monkeypatch.setattr(model_file, "_stamp", lambda: {"written_by": header["written_by"],
                                                       "written_at": header["written_at"]})
    # The store keeps its rows in hash order (docs/algorithms.md, "The
    # weight store"), so a file written again has the old file's header and
    # the same rows bit for bit, in the store's order; every chunk size
    # writes the same bytes.
    written = set()
    for chunk_rows in CHUNKS:
        model_file.save(tmp_path / "again.ol1", learner, names, extra, chunk_rows=chunk_rows)
        written.add((tmp_path / "again.ol1").read_bytes())
    assert len(written) == 1
    again = written.pop()
    assert header_of(again) == header
    assert rows_of(again) == rows_of(old)
    assert model_file.decode(again)[1] == names


def rows_of(data: bytes) -> dict:
    """key -> the bytes of its stored weight and state columns."""
    learner, _, _ = model_file.decode(data)
    state = learner.state
    columns = [state["weights"], *state["columns"].values()]
    return {int(k): b"".join(c[i].tobytes() for c in columns)
            for i, k in enumerate(state["keys"].tolist())}


def test_bad_chunk_rows_is_refused(trained):
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        model_file.encode(trained, chunk_rows=0)


class _Store:
    """A store whose key column comes out one chunk short or one chunk long,
    as if the store changed while it was being written."""

    def __init__(self, store, change):
        self.store, self.change = store, change

    def __len__(self):
        return len(self.store)

    def column_chunks(self, column, chunk_rows=1 << 16):
        chunks = list(self.store.column_chunks(column, chunk_rows))
        if column == -1:
            chunks = chunks[:-1] if self.change == "shrinks" else chunks + chunks[-1:]
        return iter(chunks)


class _Kernel:
    def __init__(self, kernel, store):
        self.kernel, self.store = kernel, store

    def get_clocks(self):
        return self.kernel.get_clocks()


@pytest.mark.parametrize("change, message", [("shrinks", "'keys': 1000 entries where the "
                                                         "header says 1001"),
                                             ("grows", "'keys': more entries")])
def test_a_store_that_changes_during_the_write_fails_and_keeps_the_old_file(
        tmp_path, a9a_sample, change, message):
    learner = Learner(update="fobos", l1=1e-6)
    rng = np.random.default_rng(3)
    keys = rng.choice(2**40, size=1001, replace=False).astype(np.uint64)
    learner.learn(Batch(np.arange(0, 1002, 1001), keys, np.ones(1001), [1.0]))
    assert learner.store_size == 1001
    path = tmp_path / "m.ol1"
    model_file.save(path, learner)
    before = path.read_bytes()
    fake = Learner.__new__(Learner)
    fake.options, fake._progress = learner.options, learner.progress_sums
    fake._kernel = _Kernel(learner._kernel, _Store(learner._kernel.store, change))
    with pytest.raises(RuntimeError, match=message):
        model_file.save(path, fake, chunk_rows=100)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.ol1"]


# ------------------------------------------------------------------ loading

def test_load_hands_the_store_aligned_views_of_one_buffer(tmp_path, trained, monkeypatch):
    """Whatever the header's length (all 8 alignments), the arrays given to
    from_state are aligned views, not copies, and the learner is restored
    bit for bit."""
    seen = []
    from_state = Learner.from_state.__func__

    def spy(cls, state):
        seen.append([state["keys"], state["weights"], *state["columns"].values()])
        return from_state(cls, state)

    monkeypatch.setattr(Learner, "from_state", classmethod(spy))
    expected = trained.state
    shifts = set()
    for pad in range(8):
        path = tmp_path / f"m{pad}.ol1"
        model_file.save(path, trained, extra={"pad": "x" * pad})
        shifts.add((16 + len(msgpack_header(path))) % 8)
        learner, _, extra = model_file.load(path)
        assert extra == {"pad": "x" * pad}
        arrays = seen.pop()
        for array in arrays:
            assert array.flags.aligned and not array.flags.owndata
            assert array.base is not None
        got = learner.state
        for a, b in zip([expected["keys"], expected["weights"], *expected["columns"].values()],
                        [got["keys"], got["weights"], *got["columns"].values()]):
            assert a.tobytes() == b.tobytes()
        assert got["clocks"] == expected["clocks"] and got["progress"] == expected["progress"]
    assert shifts == set(range(8))


def msgpack_header(path) -> bytes:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return data[16:16 + length]


def redigest(body: bytes) -> bytes:
    import hashlib
    return body + hashlib.blake2b(body, digest_size=32).digest()


def malformed_variants(data: bytes):
    """Files whose digest matches but whose contents are wrong."""
    import msgpack
    header = header_of(data)
    (length,) = struct.unpack_from("<I", data, 12)
    arrays = data[16 + length:-32]

    def rebuilt(head: dict, tail: bytes = arrays) -> bytes:
        packed = msgpack.packb(head, use_bin_type=True)
        return redigest(struct.pack("<8sII", b"OL1MODEL", 1, len(packed)) + packed + tail)

    longer = dict(header, arrays=[dict(a) for a in header["arrays"]])
    longer["arrays"][-1]["length"] += 1
    yield "runs past the end", rebuilt(longer), "array 'column:last_clock' runs past the end"
    yield "trailing bytes", rebuilt(header, arrays + b"\0" * 8), \
        "8 unexpected bytes after the arrays"
    no_keys = dict(header, arrays=[a for a in header["arrays"] if a["name"] != "keys"])
    yield "no keys", rebuilt(no_keys, arrays[8 * header["arrays"][0]["length"]:]), \
        "malformed model file"
    yield "header not msgpack", redigest(data[:16] + b"\xc1" * length + arrays), \
        "malformed model file"
    huge = bytearray(data[:32])
    struct.pack_into("<I", huge, 12, 2**31)
    yield "header length past the end", bytes(huge), r"truncated \(32 bytes\)"


def test_damage_gives_the_same_errors_from_a_file_and_from_bytes(tmp_path, trained):
    data = model_file.encode(trained)
    variants = list(corrupt_variants(data)) + list(malformed_variants(data))
    assert len(variants) == 14
    for what, damaged, message in variants:
        bad = tmp_path / "bad.ol1"
        bad.write_bytes(damaged)
        with pytest.raises(ModelFileError, match=message) as from_file:
            model_file.load(bad)
        assert str(from_file.value).startswith(f"{bad}: "), what
        with pytest.raises(ModelFileError, match=message) as from_bytes:
            model_file.decode(damaged, source=str(bad))
        assert str(from_bytes.value) == str(from_file.value), what


def test_load_reads_in_chunks_smaller_than_the_file(tmp_path, trained, monkeypatch):
    """Reads of a few bytes (header, arrays and digest each split across
    reads) give the same learner, and damage in any read is still caught."""
    path = tmp_path / "m.ol1"
    model_file.save(path, trained)
    data = path.read_bytes()
    expected = model_file.load(path)[0].state
    for chunk in (1, 5, 1000, len(data) - 1):
        monkeypatch.setattr(model_file, "READ_CHUNK", chunk)
        got = model_file.load(path)[0].state
        assert got["keys"].tobytes() == expected["keys"].tobytes()
        assert got["weights"].tobytes() == expected["weights"].tobytes()
        flipped = bytearray(data)
        flipped[len(data) - 33] ^= 0x80   # the last byte the digest covers
        (tmp_path / "bad.ol1").write_bytes(bytes(flipped))
        with pytest.raises(ModelFileError, match="checksum mismatch"):
            model_file.load(tmp_path / "bad.ol1")


def test_the_header_says_who_wrote_it_and_when(trained):
    import datetime
    import onlinel1
    header = header_of(model_file.encode(trained))
    assert list(header) == ["state_format", "state_version", "options", "clocks", "progress",
                            "columns", "arrays", "extra", "written_by", "written_at"]
    assert header["written_by"] == f"onlinel1 {onlinel1.__version__}"
    when = datetime.datetime.fromisoformat(header["written_at"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert when.utcoffset() == datetime.timedelta(0)
    assert abs((now - when).total_seconds()) < 600


def test_an_array_in_another_byte_order_is_converted(trained):
    """The format writes little-endian; a reader still honours the dtype a
    header gives (here big-endian weights, byte-swapped to match)."""
    import msgpack
    data = model_file.encode(trained)
    header = header_of(data)
    (length,) = struct.unpack_from("<I", data, 12)
    n = header["arrays"][0]["length"]
    start = 16 + length + 8 * n
    weights = np.frombuffer(data, dtype="<f8", count=n, offset=start)
    header["arrays"][1]["dtype"] = ">f8"
    packed = msgpack.packb(header, use_bin_type=True)
    body = (struct.pack("<8sII", b"OL1MODEL", 1, len(packed)) + packed
            + data[16 + length:start] + weights.astype(">f8").tobytes()
            + data[start + 8 * n:-32])
    learner, _, _ = model_file.decode(redigest(body))
    assert learner.state["weights"].tobytes() == trained.state["weights"].tobytes()
