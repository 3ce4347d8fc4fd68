"""Every crash the fuzz harnesses (fuzz/) found, as a test of the exact
input the parser was given (tests/data/fuzz/, described in its README),
beside the hand-written variants of the same fault.

Each test calls the public API directly, not a harness, so it runs without
atheris.
"""
from __future__ import annotations

import copy
import io
import math
import pathlib
import struct

import msgpack
import numpy as np
import pytest

from conftest import SAMPLES, join_model_file as join, split_model_file as split
from onlinel1 import Batch, BatchError, Learner, NumericError, OptionError, model_file
from onlinel1.io import ParseError, feature_key, read_batches
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


def _nested(levels: int) -> bytes:
    """msgpack of a list nested ``levels`` deep (msgpack's decoder takes 1024)."""
    return b"\x91" * levels + b"\x00"


@pytest.mark.parametrize("field", ["v", "op", "model", "id", "output", "csr"])
@pytest.mark.parametrize("walker", [False, True], ids=["msgpack", "walker"])
def test_a_value_nested_deeper_than_max_depth_is_malformed(monkeypatch, field, walker):
    """Found following a failure of fuzz_request's own comparison on a
    row-wise message nested hundreds deep: msgpack's decoder takes 1024
    levels where the walker stops at MAX_DEPTH, and the repr of a value
    nested ~1000 deep raises RecursionError.  decode_message quotes ``v``
    ({"v": <1000 levels>} is 1 KB), the daemon quotes an unknown ``op``
    and names.check_model_name the ``model``: the RecursionError escaped
    the daemon's loop.  Now both decoders refuse nesting beyond MAX_DEPTH
    (except inside ``rows``, which decode_rows never quotes)."""
    if walker:
        monkeypatch.setattr(protocol, "SMALL_MESSAGE", 0)
    key = msgpack.packb(field)
    head = b"\x82\xa1v\x01" if field != "v" else b"\x81"
    frame = head + key + _nested(1000)
    with pytest.raises(ProtocolError) as err:
        protocol.decode_message(memoryview(bytearray(frame)), 1 << 20)
    assert err.value.code == protocol.MALFORMED and "nested deeper" in err.value.message
    ok = head + key + _nested(protocol.MAX_DEPTH - 1)           # as deep as the walker goes
    if field == "v":
        with pytest.raises(ProtocolError, match="protocol version"):
            protocol.decode_message(ok, 1 << 20)
    else:
        assert protocol.decode_message(ok, 1 << 20)[field]


def test_rows_may_hold_deep_values_that_are_never_quoted():
    frame = (b"\x83\xa1v\x01\xa2op\xa5learn\xa4rows\x91\x82\xa5label\x01\xa3tag"
             + _nested(1000))
    msg = protocol.decode_message(frame, 1 << 20)
    assert protocol.decode_batch(msg, need_labels=True).n_rows == 1
    deep_label = b"\x83\xa1v\x01\xa2op\xa5learn\xa4rows\x91\x81\xa5label" + _nested(1000)
    with pytest.raises(ProtocolError, match="label must be a number"):
        protocol.decode_batch(protocol.decode_message(deep_label, 1 << 20), need_labels=True)


def test_the_daemon_answers_on_after_deep_requests_and_bin_keys(start_daemon):
    """The crashes above, sent to a real daemon: each gets its error, the
    loop goes on."""
    import zmq
    daemon = start_daemon()
    for field in ("v", "op", "model"):
        head = b"\x82\xa1v\x01" if field != "v" else b"\x81"
        reply = daemon.request_once(head + msgpack.packb(field) + _nested(1000))
        assert reply["error"]["code"] == "malformed", reply
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(daemon.train)
    try:
        push.send(msgpack.packb({"v": 1, b"bin key": 1, "pad": b"x" * 70_000}))   # the walker
        push.send(b"\x81\xa1v" + _nested(1000))
    finally:
        push.close()
    daemon.wait_stats(lambda stats: stats["rejected"].get("malformed", 0) == 1
                      and stats["rejected"].get("unknown_op", 0) + stats["rejected"].get(
                          "bad_request", 0) >= 1)
    assert daemon.request_once({"v": 1, "op": "health"})["ok"]
    assert daemon.proc.poll() is None


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


# ------------------------------------------------------ feature names

def test_a_model_with_a_feature_name_that_is_not_utf8_saves_and_loads(tmp_path):
    """fuzz_vw (save and load with the reader's names): the VW reader names
    the bytes ``caf\\xe9`` 'caf\\udce9' (surrogateescape, so that the name
    hashes back to its key) and model_file encoded names as strict UTF-8:
    ``onlinel1 train data.vw --save m.ol1`` trained, then crashed with
    UnicodeEncodeError.  Names are now stored with surrogateescape (the
    file's own bytes) and read back the same."""
    from onlinel1.cli import main
    data = FUZZ / "vw/non-utf8-name.vw"
    names: dict[int, str] = {}
    batch = next(read_batches(data, "vw", names=names))
    assert "f^caf\udce9" in names.values()
    learner = Learner(loss="squared", update="fobos", l1=1e-3)
    learner.learn(batch)
    _, loaded, _ = model_file.decode(model_file.encode(learner, names))
    assert loaded == names and all(feature_key(n) == k for k, n in loaded.items())
    assert main(["train", str(data), "--loss", "squared", "--quiet",
                 "--save", str(tmp_path / "m.ol1")]) == 0
    assert model_file.load(tmp_path / "m.ol1")[1] == names


def test_the_names_of_a_malformed_line_are_not_kept():
    """fuzz_vw (two readings must agree): the parser notes the names of a
    line's features as it parses them, and the rows before a malformed line
    took the names of that line too -- so ``names`` held f^a and f^b of the
    rejected line 4 with 8192-row batches and not with 3-row batches."""
    readings = []
    for batch_size in (8192, 3, 1):
        names: dict[int, str] = {}
        with pytest.raises(ParseError) as err:
            for _ in read_batches(FUZZ / "vw/names-of-a-bad-line.vw", "vw", batch_size,
                                  names=names):
                pass
        assert err.value.line == 4
        readings.append(names)
    assert readings[0] == readings[1] == readings[2] == {feature_key("color", "f"): "f^color"}


def test_inspect_exports_a_feature_name_that_is_not_utf8(tmp_path):
    from onlinel1.cli import main
    data = FUZZ / "vw/non-utf8-name.vw"
    assert main(["train", str(data), "--loss", "squared", "--quiet",
                 "--save", str(tmp_path / "m.ol1")]) == 0
    assert main(["inspect", str(tmp_path / "m.ol1"), "--export", str(tmp_path / "w.tsv")]) == 0
    assert b"caf\xe9" in (tmp_path / "w.tsv").read_bytes()


# ----------------------------------------------------------- model files

@pytest.mark.parametrize("name, message", [
    ("clock-t-huge-float.ol1", r"clocks\.t must be an integer"),
    ("truncate-every-2-63.ol1", r"truncate_every must be an integer from 1 to 2\^63-1"),
])
def test_fuzzed_model_files_with_impossible_contents_are_refused(name, message):
    """fuzz_model_file (structured mode, valid digest): a clock t of
    -1.55e308 and a truncate_every of 2**63 raised OverflowError from the
    kernel instead of ModelFileError."""
    data = read(f"model_file/{name}")
    with pytest.raises(ModelFileError, match=message):
        model_file.decode(data)


@pytest.mark.parametrize("name", ["fobos-huge-eta0-column-inf.ol1",
                                  "progress-inf-after-learn.ol1",
                                  "cumulative-l1-7e307.ol1",
                                  "truncated-clock-overflows.ol1"])
def test_fuzzed_model_files_that_are_possible_load_learn_and_reload(tmp_path, name):
    """fuzz_model_file: files a learner can write.  FOBOS with eta0 = 1.6e308
    (a legal option) leaves a penalty clock column at -inf after one batch;
    a squared loss of a huge margin makes the progressive loss sum inf;
    cumulative L1 with l1 = 7.4e307 and eta0 = 8.9e307 (legal) makes its
    clock u inf at the first example.  The loader's checks (each of these
    was refused by a first version of them) must not refuse what the
    writer writes."""
    learner, names, extra = model_file.decode(read(f"model_file/{name}"))
    try:
        learner.learn(PROBE)
    except NumericError:
        pass
    learner.predict(PROBE)
    model_file.save(tmp_path / "again.ol1", learner, names, extra)
    again = model_file.load(tmp_path / "again.ol1")[0]
    assert again.state["keys"].tobytes() == learner.state["keys"].tobytes()


@pytest.fixture(scope="module")
def small_model() -> bytes:
    names: dict[int, str] = {}
    batch = next(read_batches(SAMPLES / "vw0002_head60.vw", "vw", batch_size=20, names=names))
    learner = Learner(loss="squared", update="cumulative", l1=1e-4)
    learner.learn(batch)
    return model_file.encode(learner, names, extra={"trained_on": "vw0002_head60.vw"})


def _edit(data: bytes, change) -> bytes:
    header, arrays = split(data)
    arrays = bytearray(arrays)
    change(header, arrays)
    return join(header, bytes(arrays))


def _layout(header: dict) -> dict[str, tuple[int, int]]:
    out, offset = {}, 0
    for entry in header["arrays"]:
        size = np.dtype(entry["dtype"]).itemsize * entry["length"]
        out[entry["name"]] = (offset, size)
        offset += size
    return out


def _set_f8(name: str, row: int, value: float):
    def change(header, arrays):
        offset, _ = _layout(header)[name]
        arrays[offset + 8 * row:offset + 8 * row + 8] = struct.pack("<d", value)
    return change


def _header(path: tuple, value):
    def change(header, arrays):
        node = header
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return change


def _entry(name: str, field: str, value):
    def change(header, arrays):
        next(e for e in header["arrays"] if e["name"] == name)[field] = value
    return change


def _shorter_column(header, arrays):
    """column:applied_penalty one entry short, the bytes moved to match."""
    offset, size = _layout(header)["column:applied_penalty"]
    del arrays[offset + size - 8:offset + size]
    _entry("column:applied_penalty", "length",
           next(e for e in header["arrays"] if e["name"] == "column:applied_penalty")
           ["length"] - 1)(header, arrays)


def _short_offsets(header, arrays):
    """names:offsets one entry short: the loader indexed past its end."""
    offset, size = _layout(header)["names:offsets"]
    del arrays[offset + size - 8:offset + size]
    _entry("names:offsets", "length", size // 8 - 1)(header, arrays)


IMPOSSIBLE = [
    # (what, edit, message); the comment says what the loader did before.
    ("clock t of 2**63", _header(("clocks", "t"), 2**63), r"clocks\.t"),         # OverflowError
    ("clock t of -1", _header(("clocks", "t"), -1), r"clocks\.t"),               # loaded
    ("clock t a float", _header(("clocks", "t"), 20.5), r"clocks\.t"),           # loaded
    ("last compaction after t", _header(("clocks", "last_compact_t"), 10**6),
     "last_compact_t"),                                                        # loaded
    ("scale 0", _header(("clocks", "scale"), 0.0), r"clocks\.scale"),            # loaded (1)
    ("scale NaN", _header(("clocks", "scale"), float("nan")), r"clocks\.scale"),  # loaded (1)
    ("intercept inf", _header(("clocks", "intercept"), float("inf")),
     "intercept"),                                                             # loaded (1)
    ("clock NaN", _header(("clocks", "clock"), float("nan")), r"clocks\.clock"),  # loaded
    ("clocks a list", _header(("clocks",), [1, 2]), "clocks must be a map"),   # refused
    ("a clock missing", lambda h, a: h["clocks"].pop("clock"),
     "clocks must be a map"),                                                  # refused
    ("examples a string", _header(("progress", "examples"), "x"),
     r"progress\.examples"),                                                   # loaded (2)
    ("more correct than examples", _header(("progress", "correct"), 10**6),
     "correct"),                                                               # loaded
    ("negative loss sum", _header(("progress", "loss_sum"), -1.0), "loss_sum"),  # loaded
    ("options a list", _header(("options",), ["loss"]), "options must be a map"),  # refused
    ("extra a list", _header(("extra",), [1, 2]), "extra must be a map"),      # loaded (3)
    ("snapshot extra a list", _header(("extra", "snapshot"), [1]),
     "extra.snapshot must be a map"),                                          # loaded (4)
    ("snapshot time 1e300", _header(("extra", "snapshot"), {
        "seq": 1, "reason": "periodic", "unix_time": 1e300, "producers": {}}),
     "unix_time"),                                                             # loaded (5)
    ("snapshot producers a list", _header(("extra", "snapshot"), {
        "seq": 1, "reason": "periodic", "unix_time": 1.0, "producers": [1]}),
     "producers"),                                                             # loaded (4)
    ("negative length", _entry("weights", "length", -1), "length"),            # refused
    ("length a float", _entry("keys", "length", 2.5), "length"),               # refused
    ("keys of dtype int64", _entry("keys", "dtype", "<i8"), "dtype"),          # loaded
    ("weights of dtype float32", _entry("weights", "dtype", "<f4"), "dtype"),  # refused
    ("an object dtype", _entry("names:utf8", "dtype", "O"), "dtype"),          # refused
    ("an array given twice",
     lambda h, a: h["arrays"].append(dict(h["arrays"][0], length=0)), "given twice"),  # refused
    ("NaN weight", _set_f8("weights", 3, float("nan")), "'weights': nan at row 3"),  # loaded
    ("infinite weight", _set_f8("weights", 0, float("-inf")), "'weights': -inf"),    # loaded
    ("NaN state", _set_f8("column:applied_penalty", 1, float("nan")),
     "applied_penalty"),                                                       # loaded
    ("a column shorter than the keys", _shorter_column, "entries for"),        # refused
    ("names:offsets one short", _short_offsets, "names:offsets"),              # IndexError
    ("names without offsets", lambda h, a: h["arrays"].__setitem__(
        -2, dict(h["arrays"][-2], name="names:other")), "names need"),         # refused
]
# (1) and every example that reads the intercept or a weight: NumericError.
# (2) and the first learn: TypeError.  (3) and the next save: TypeError.
# (4) and inspect raised TypeError/AttributeError, a daemon resuming from it
# AttributeError/TypeError.  (5) and inspect raised OverflowError (gmtime).


@pytest.mark.parametrize("what, change, message", IMPOSSIBLE, ids=[c[0] for c in IMPOSSIBLE])
def test_a_valid_digest_over_impossible_contents_is_refused(tmp_path, small_model, what,
                                                            change, message):
    """What fuzz_model_file's re-digested and structured modes reach behind
    the checksum: every variant is refused as ModelFileError (before, some
    raised OverflowError or IndexError, and some loaded a learner that
    failed on first use or could not be saved again)."""
    data = _edit(small_model, change)
    path = tmp_path / "m.ol1"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=message) as from_file:
        model_file.load(path)
    assert "malformed model file" in str(from_file.value)
    with pytest.raises(ModelFileError, match=message):
        model_file.decode(data)


@pytest.fixture(scope="module")
def budget_model() -> bytes:
    learner = Learner(update="fobos", l1=1e-3, max_features=30, expire_after_examples=15)
    learner.learn(_a9a(20))
    return model_file.encode(learner)


IMPOSSIBLE_WITH_A_BUDGET = [
    ("evicted negative", _header(("clocks", "evicted"), -1), r"clocks\.evicted"),
    ("expired missing", lambda h, a: h["clocks"].pop("expired"), "clocks must be a map"),
    ("last update after t", _set_f8("column:last_update", 2, 1e6), "last_update"),
    ("last update negative", _set_f8("column:last_update", 0, -1.0), "last_update"),
    ("last update not whole", _set_f8("column:last_update", 1, 2.5), "last_update"),
]


@pytest.mark.parametrize("what, change, message", IMPOSSIBLE_WITH_A_BUDGET,
                         ids=[c[0] for c in IMPOSSIBLE_WITH_A_BUDGET])
def test_a_budget_model_with_impossible_clocks_is_refused(budget_model, what, change, message):
    """docs/model-format.md, "The memory budget": the clocks evicted and
    expired, and last_update, the example count of a feature's last update."""
    model_file.decode(budget_model)
    with pytest.raises(ModelFileError, match=message):
        model_file.decode(_edit(budget_model, change))


def test_the_variants_start_from_a_file_that_loads(small_model):
    learner, names, extra = model_file.decode(small_model)
    assert learner.state["columns"].keys() == {"applied_penalty", "penalty_origin"}
    assert names and extra == {"trained_on": "vw0002_head60.vw"}
    for what, change in (("+inf state", _set_f8("column:applied_penalty", 1, float("inf"))),
                         ("+inf clock", _header(("clocks", "clock"), float("inf"))),
                         ("NaN loss sum", _header(("progress", "loss_sum"), float("nan"))),
                         ("inf weight sum", _header(("progress", "weight_sum"), float("inf")))):
        model_file.decode(_edit(small_model, change))    # possible: loaded


def test_a_snapshot_without_every_field_loads(tmp_path):
    """fuzz_model_file (structured; inspect now run on every loaded file):
    a snapshot's extra without ``producers``.  The loader takes it (only the
    fields that are there are checked: tests/test_snapshots.py writes such
    snapshots), and a daemon resuming from it reads no producers."""
    learner, names, extra = model_file.decode(read("model_file/snapshot-without-producers.ol1"))
    assert extra["snapshot"] == {"seq": 3, "reason": "periodic", "unix_time": 1.8e9}


def test_inspect_reads_a_snapshot_without_every_field(tmp_path, capsys):
    from onlinel1.cli import main
    path = tmp_path / "snapshot.ol1"
    path.write_bytes(read("model_file/snapshot-without-producers.ol1"))
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "snapshot          #3 (periodic, 2027-01-15" in out and "producer" not in out


# ------------------------------------------------------------ the kernels

def test_importance_0_with_an_infinite_loss_keeps_the_model_loadable(tmp_path):
    """fuzz_csr: a squared-loss label of -1.5e308 with importance 0 makes
    the progressive loss sum NaN (0 * inf, in the kernel); the loader takes
    that file (the sums are statistics)."""
    msg = protocol.decode_message(read("csr/importance-0-infinite-loss.msgpack"), 1 << 20)
    batch = protocol.decode_batch(msg, need_labels=True)
    learner = Learner(loss="squared", update="subgradient", l1=1e-3, schedule="invscaling")
    learner.check(batch)
    learner.learn(batch, check=False)
    model_file.decode(model_file.encode(learner))


def test_importance_0_adds_nothing_to_the_progressive_loss():
    """The progressive loss added importance * loss, and 0 * inf is NaN."""
    msg = protocol.decode_message(read("csr/importance-0-infinite-loss.msgpack"), 1 << 20)
    batch = protocol.decode_batch(msg, need_labels=True)
    learner = Learner(loss="squared", update="subgradient", l1=1e-3)
    learner.learn(batch)
    assert not np.isnan(learner.progress_sums["loss_sum"])


def _a9a(rows: int, scale: float = 1.0) -> Batch:
    batch = next(read_batches(SAMPLES / "a9a_head2000.svm", "svmlight", batch_size=rows))
    return Batch(batch.indptr, batch.keys, batch.values * scale, batch.labels)


def _intercept_only(label: float, rows: int = 40) -> Batch:
    return Batch(np.zeros(rows + 1, np.int64), np.empty(0, np.uint64), np.empty(0),
                 np.full(rows, label), weights=np.full(rows, 1e296))


@pytest.mark.parametrize("options, batch", [
    (dict(update="adagrad-fobos", l1=1e-3, eta0=1e308), lambda: _a9a(50)),
    (dict(update="ftrl", l1=1e-3, loss="squared"), lambda: _a9a(50, 1e150)),
    (dict(update="spred", l1=1e-3, loss="squared"), lambda: _a9a(50, 1e150)),
    (dict(update="plain", l1=0.0, loss="squared"), lambda: _intercept_only(1.7e308)),
], ids=["adagrad-fobos-eta0-1e308", "ftrl-values-1e150", "spred-values-1e150",
        "intercept-squared-label-1.7e308"])
def test_learning_leaves_finite_weights(options, batch):
    """fuzz_request / fuzz_csr (their save-and-load check): values, labels
    and importances that pass validation, a legal eta0.  A finite update
    that made a weight or the intercept infinite was stored; NumericError
    came only at the next example that read it, and the model could not be
    saved and loaded again.  Now that example is refused, its batch undone."""
    learner = Learner(**options)
    try:
        learner.learn(batch())
    except NumericError:
        pass
    assert np.all(np.isfinite(learner.state["weights"])) and np.isfinite(learner.intercept)
    model_file.decode(model_file.encode(learner))


@pytest.mark.parametrize("options", [
    dict(loss="log", update="truncated", eta0=9.4e307, truncate_every=2, l1=1e-3,
         expire_after_examples=2),
    dict(loss="log", update="truncated", eta0=9.4e307, truncate_every=2, l1=1e-3),
    dict(loss="log", update="cumulative", eta0=8.9e307, l1=7.4e307),
    dict(loss="log", update="truncated", eta0=9.4e307, truncate_every=2, l1=1e-3,
         minibatch=2),
], ids=["truncated-expiry", "truncated", "cumulative", "truncated-minibatch"])
def test_a_step_that_overflows_a_clock_is_refused(options):
    """fuzz_model_file (CI's bounded run on 2026-12-03, fourth;
    tests/data/fuzz/model_file/truncated-clock-overflows.ol1): a legal
    eta0 of 9.4e307 times truncate_every 2 made truncated gradient's
    clock inf; the rebase that follows subtracted it from every stored
    clock (-inf, and NaN for the rows stepped at inf), and the learner's
    own model file no longer loaded.  The example whose step leaves a
    clock infinite is refused like an infinite weight, its batch undone."""
    learner = Learner(**options)
    before = copy.deepcopy(learner)
    with pytest.raises(NumericError) as caught:
        learner.learn(PROBE)
    assert caught.value.reason == "update"
    assert learner == before
    clocks = learner.state["clocks"]
    assert math.isfinite(clocks["clock"]) and math.isfinite(clocks["clock_scale"])
    model_file.decode(model_file.encode(learner))


def test_truncate_every_beyond_int64_is_an_option_error():
    """fuzz_model_file found it in a file (now refused there as malformed);
    LearnerOptions and the daemon's ``create`` take the option too.  It
    was not bounded, and the kernel's int64 overflowed (OverflowError)."""
    with pytest.raises(OptionError) as info:
        Learner(update="truncated", l1=1e-3, truncate_every=2**63)
    assert (info.value.option, info.value.reason) == ("truncate_every", "range")
    assert Learner(update="truncated", l1=1e-3, truncate_every=2**63 - 1).options.truncate_every \
        == 2**63 - 1


@pytest.mark.parametrize("name, fmt", [("svmlight/gzip-magic-then-junk.svm", "svmlight"),
                                       ("vw/gzip-magic-truncated.vw", "vw")])
def test_damaged_gzip_is_a_parse_error(name, fmt):
    """fuzz_svmlight / fuzz_vw: input that starts with the gzip magic and
    is no gzip stream raised BadGzipFile or EOFError out of the reader."""
    with pytest.raises(ParseError, match="damaged gzip data") as info:
        for _ in read_batches(FUZZ / name, fmt):
            pass
    assert info.value.source == str(FUZZ / name) and info.value.line == 1


@pytest.mark.parametrize("name, fmt", [("vw/gzip-damaged-after-a-bad-line.vw", "vw"),
                                       ("svmlight/gzip-damaged-inside-one-read.svm", "svmlight")])
def test_a_damaged_gzip_stream_reads_as_the_fuzzers_read_it(name, fmt):
    """The fuzzers' own check on their files: the same rows, names and
    error with the default reads and 3-row batches from 7-byte ``read``s."""
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fuzz"))
    import ol1fuzz
    data = read(name)
    ol1fuzz.same_reading(ol1fuzz.read_text(data, fmt, small=False),
                         ol1fuzz.read_text(data, fmt, small=True))


def test_gzip_is_read_the_same_whatever_the_sizes_of_the_reads(monkeypatch):
    """fuzz_svmlight (CI's bounded run, 2026-12-03, second): the stream's
    damage came within one compressed read of ``GzipFile.read1``, whose
    decompressed bytes before the damage were lost with large reads and not
    with small ones (default blocks: damaged gzip data; 7-byte blocks: the
    bad label before it). The reader now feeds zlib fixed amounts whatever
    the caller asks, and of a failing feed keeps what came before the
    damage, byte by byte: the text passed on is then the same for every
    feed and read size."""
    import gzip
    import random
    import zlib
    from onlinel1.io import readers

    def gunzip(data: bytes, read_size: int) -> tuple[bytes, str | None]:
        g, out, buf = readers._Gunzip(io.BytesIO(data)), bytearray(), bytearray(read_size)
        try:
            while n := g.readinto(memoryview(buf)):
                out += buf[:n]
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            return bytes(out), type(exc).__name__
        return bytes(out), None

    text = b"".join(b"%d 1:%d 2:%.3f\n" % (i % 2, i, i / 7) for i in range(30_000))
    whole = gzip.compress(text)
    members = gzip.compress(text[:1000]) + b"\0\0" + gzip.compress(text[1000:])
    cases = {whole: (text, None), members: (text, None), gzip.compress(b""): (b"", None),
             whole[:-3]: None, members + b"junk": (text, "BadGzipFile")}
    rng = random.Random(7)
    for _ in range(30):
        damaged = bytearray(whole)
        damaged[rng.randrange(20, len(damaged) - 8)] ^= 1 << rng.randrange(8)
        cases[bytes(damaged)] = None
    for data, expected in cases.items():
        seen = set()
        for feed in (1, 113, 64 * 1024):
            monkeypatch.setattr(readers._Gunzip, "FEED", feed)
            for read_size in (7, 1 << 20):
                seen.add(gunzip(data, read_size))
        assert len(seen) == 1, [(len(out), error) for out, error in seen]
        out, error = seen.pop()
        if expected is not None:
            assert (out, error) == expected
        else:               # damage decodes to other text until zlib or the CRC sees it
            assert error is not None


def test_a_damaged_gzip_stream_reads_the_same_in_any_block_size():
    """fuzz_vw (CI's bounded run on 2026-12-03): a gzip stream whose
    decompressed text is a malformed line, then damage. One large read lost
    the decompressed bytes and reported the damage; 7-byte reads reported
    the malformed line. Every byte before the damage is read now, so both
    report the line."""
    data = (FUZZ / "vw/gzip-damaged-after-a-bad-line.vw").read_bytes()
    errors = []
    for kwargs in ({}, {"block_size": 7, "batch_size": 3}):
        with pytest.raises(ParseError) as info:
            for _ in read_batches(io.BytesIO(data), "vw", **kwargs):
                pass
        errors.append((info.value.line, str(info.value)))
    assert errors[0] == errors[1]
    assert "no '|'" in errors[0][1]
