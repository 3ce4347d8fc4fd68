"""Fuzz the model/snapshot loader, ``model_file.load``, on arbitrary files.

The first byte of an input picks the mode, the rest is the payload:

* ``0`` raw: the payload is the file, as it is.  The BLAKE2b-256 digest at
  the end makes almost every mutation fail early (checksum mismatch), so
  this mode fuzzes the prefix checks and the digest itself.
* ``1`` re-digested: the payload is the file with its last 32 bytes
  replaced by the digest of the bytes before them, so a mutated body
  reaches the checks behind the checksum (the header, the array layout,
  sizes, clocks, dtypes, finiteness).
* ``2`` structured: the payload drives an ``atheris.FuzzedDataProvider``
  that takes one of the base files (``BASES``: tests/data/v1_*.ol1 and
  small models of the rules, built here deterministically), decodes its header,
  applies a few edits -- a header value replaced by a nasty one (2**63, -1,
  NaN, inf, the wrong type), a key dropped or added, an array entry's
  length or dtype changed, an array element set to NaN/inf/a duplicate key,
  bytes cut or added -- and writes the file back with a correct digest.

Every file's header is read unverified (``model_file.read_header``, and
``snapshots.recorded_seq`` as the daemon recognises its snapshots): a map
or ``ModelFileError``, a sequence number or None.  Every file is loaded
with ``model_file.load`` (from a file, as the daemon and the CLI do) and
with ``model_file.decode`` (from bytes); both must give
a learner or ``ModelFileError``, the same one.  A loaded learner must then
work: ``onlinel1 inspect`` prints it, a daemon's resume takes its extra,
it learns a small batch (``NumericError``, or ``BatchError`` for a row
wider than a memory budget, allowed), predicts, and is saved and loaded
back to the same state.  Anything else is a crash.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import hashlib
import io
import math
import os
import pathlib
import struct
import sys
import tempfile
from typing import Any

import msgpack
import numpy as np

import ol1fuzz

with ol1fuzz.instrumented(__name__ == "__main__"):
    from onlinel1 import Batch, BatchError, Learner, NumericError
    from onlinel1 import model_file
    from onlinel1.io import read_batches
    from onlinel1.cli.offline import cmd_inspect
    from onlinel1.model_file import ModelFileError
    from onlinel1.server.config import DaemonConfig
    from onlinel1.server.snapshots import recorded_seq
    from onlinel1.server.trainer import Trainer

DIGEST = model_file.DIGEST_SIZE
PREFIX = struct.Struct("<8sII")
STAMP = {"written_by": "onlinel1 fuzz", "written_at": "2026-12-01T00:00:00+00:00"}

#: A batch every loaded learner must take: keys it may hold and new ones
#: (labels -1/+1, which every loss takes but poisson's).
PROBE = Batch(indptr=[0, 3, 5, 5], keys=np.array([1, 7, 2**64 - 1, 0, 123456789], np.uint64),
              values=[1.0, -0.5, 2.0, 1.0, 0.25], labels=[1.0, -1.0, 1.0])
#: The same rows with counts for labels, for the poisson loss.
COUNTS_PROBE = Batch(PROBE.indptr, PROBE.keys, PROBE.values, labels=[1.0, 0.0, 3.0])



def _scratch() -> str:
    """The folder of the files written for ``load``: fuzz/run.py's work
    folder (ONLINEL1_FUZZ_TMP), else one per user in memory (/dev/shm)
    where there is one.  libFuzzer ends the process without Python's exit
    handlers, so files are named by process and those of processes gone
    are removed here."""
    folder = os.environ.get("ONLINEL1_FUZZ_TMP") or os.path.join(
        "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
        f"ol1fuzz-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        pid = name.split("-")[-1].split(".")[0]
        if name.startswith("model-") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            os.unlink(os.path.join(folder, name))
    return folder


_TMP = _scratch()
_PATH = os.path.join(_TMP, f"model-in-{os.getpid()}.ol1")
_SAVED = os.path.join(_TMP, f"model-saved-{os.getpid()}.ol1")
atexit.register(lambda: [os.unlink(p) for p in (_PATH, _SAVED) if os.path.exists(p)])


# ------------------------------------------------------------ the files

def split(data: bytes) -> tuple[dict, bytes]:
    """``(header, arrays)`` of a valid model file."""
    _, _, head_len = PREFIX.unpack_from(data)
    header = msgpack.unpackb(data[PREFIX.size:PREFIX.size + head_len], raw=False)
    return header, data[PREFIX.size + head_len:-DIGEST]


def join(header: Any, arrays: bytes, version: int = model_file.FORMAT_VERSION) -> bytes:
    """A model file of ``header`` and ``arrays`` with its digest."""
    head = msgpack.packb(header, use_bin_type=True)
    return redigest(PREFIX.pack(model_file.MAGIC, version, len(head)) + head + arrays
                    + b"\0" * DIGEST)


def redigest(data: bytes) -> bytes:
    """``data`` with its last 32 bytes replaced by the digest of the rest."""
    if len(data) < DIGEST:
        return data
    body = data[:-DIGEST]
    return body + hashlib.blake2b(body, digest_size=DIGEST).digest()


def _base_models() -> list[bytes]:
    """The base files of the structured mode, always the same bytes: the
    v1 files of tests/data, then a small model of every rule (20 rows of
    a9a; some with expiry, one with a memory budget that evicted; a VW one
    with feature names)."""
    out = [(ol1fuzz.SAMPLES / name).read_bytes()
           for name in ("v1_a9a_fobos.ol1", "v1_vw0002_cumulative.ol1")]
    a9a = next(read_batches(ol1fuzz.SAMPLES / "a9a_head2000.svm", "svmlight", batch_size=20))
    for config in ol1fuzz.learner_configs()[::3] + [
            dict(update="fobos", l1=1e-3, max_features=30, expire_after_examples=15)]:
        learner = Learner(**config)
        learner.learn(a9a)
        out.append(model_file.encode(learner, extra={"trained_on": "a9a_head2000.svm"}))
    names: dict[int, str] = {}
    vw = next(read_batches(ol1fuzz.SAMPLES / "vw0002_head60.vw", "vw", batch_size=12,
                           names=names))
    learner = Learner(loss="squared", update="ftrl", l1=1e-3)
    learner.learn(vw)
    out.append(model_file.encode(learner, names, extra={"snapshot": {
        "seq": 3, "reason": "periodic", "unix_time": 1.8e9, "producers": {"p": 9}}}))
    fixed = []
    for data in out:                 # written_at is the clock: fix it
        header, arrays = split(data)
        header.update(STAMP)
        fixed.append(join(header, arrays))
    return fixed


BASES = _base_models()

NASTY = [2**63, 2**63 - 1, 2**64 - 1, 2**64, -1, -2**63, -2**63 - 1, 0, 1, 2, 2**53 + 1,
         -0.0, 0.5, -1.5, 1e308, -1e308, 5e-324, float("nan"), float("-nan"), float("inf"),
         float("-inf"), True, False, None, "", "x", "<f8", ">f8", "<u8", "|u1", "<f4", "O",
         "V8", "<i8", "keys", "weights", b"", b"\0" * 8, [], [1], ["a"], {}, {"a": 1},
         {"name": "keys", "dtype": "<u8", "length": 1}]


def _nasty(fdp: Any) -> Any:
    how = fdp.ConsumeIntInRange(0, 5)
    if how == 0:
        return fdp.ConsumeInt(9)
    if how == 1:
        return fdp.ConsumeFloat()
    if how == 2:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    return copy.deepcopy(fdp.PickValueInList(NASTY))   # never share (or change) NASTY's


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a decoded header: the paths to its maps, lists, leaves."""
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, path + (i,))
    return out


def _at(node: Any, path: tuple) -> Any:
    for step in path:
        node = node[step]
    return node


def _set(header: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _at(header, path[:-1])[path[-1]] = value
    return header


def _layout(header: dict) -> list[tuple[str, np.dtype, int, int]]:
    """``(name, dtype, offset, length)`` of the arrays of an unedited header."""
    out, offset = [], 0
    for entry in header["arrays"]:
        dtype = np.dtype(entry["dtype"])
        out.append((entry["name"], dtype, offset, entry["length"]))
        offset += dtype.itemsize * entry["length"]
    return out


def structured(data: bytes) -> bytes:
    import atheris
    fdp = atheris.FuzzedDataProvider(data)
    header, arrays = split(BASES[fdp.ConsumeIntInRange(0, len(BASES) - 1)])
    layout = _layout(header)
    arrays = bytearray(arrays)
    version = model_file.FORMAT_VERSION
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        edit = fdp.ConsumeIntInRange(0, 9)
        if edit <= 2:                  # a value anywhere in the header
            paths = _paths(header)
            header = _set(header, paths[fdp.ConsumeIntInRange(0, len(paths) - 1)], _nasty(fdp))
        elif edit == 3:                # a clock, a progress counter, an array length
            field = fdp.PickValueInList(["clocks", "progress", "arrays"])
            place = header.get(field) if isinstance(header, dict) else None
            if isinstance(place, dict) and place:
                place[fdp.PickValueInList(sorted(place, key=str))] = _nasty(fdp)
            elif isinstance(place, list) and place:
                entry = place[fdp.ConsumeIntInRange(0, len(place) - 1)]
                if isinstance(entry, dict):
                    entry[fdp.PickValueInList(["length", "dtype", "name"])] = _nasty(fdp)
        elif edit == 4:                # drop a key
            maps = [p for p in _paths(header) if isinstance(_at(header, p), dict)
                    and _at(header, p)]
            if maps:
                node = _at(header, maps[fdp.ConsumeIntInRange(0, len(maps) - 1)])
                del node[fdp.PickValueInList(sorted(node, key=str))]
        elif edit == 5:                # add a key
            maps = [p for p in _paths(header) if isinstance(_at(header, p), dict)]
            if maps:
                node = _at(header, maps[fdp.ConsumeIntInRange(0, len(maps) - 1)])
                node[fdp.PickValueInList(["extra", "t", "keys", "columns", "x", "length",
                                          "rebase_at", "arrays", "names:keys"])] = _nasty(fdp)
        elif edit <= 7 and layout:     # an element of an array
            name, dtype, offset, length = layout[fdp.ConsumeIntInRange(0, len(layout) - 1)]
            if length:
                i = fdp.ConsumeIntInRange(0, length - 1)
                if dtype.kind == "f":
                    raw = np.array([fdp.PickValueInList(
                        [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324,
                         0.0, -0.0, 1e-300]) if fdp.ConsumeBool() else fdp.ConsumeFloat()],
                        dtype=dtype).tobytes()
                elif dtype.kind == "u" and dtype.itemsize == 8:
                    j = fdp.ConsumeIntInRange(0, length - 1)
                    other = int.from_bytes(arrays[offset + 8 * j:offset + 8 * j + 8], "little")
                    raw = np.array([fdp.PickValueInList([other, 0, 2**64 - 1, 2**63, length,
                                                         length + 1]) if fdp.ConsumeBool()
                                    else fdp.ConsumeIntInRange(0, 2**64 - 1)],
                                   dtype=dtype).tobytes()
                else:
                    raw = bytes([fdp.ConsumeIntInRange(0, 255)])
                at = offset + i * dtype.itemsize
                arrays[at:at + len(raw)] = raw
        elif edit == 8:                # bytes cut from or added to the arrays
            n = fdp.ConsumeIntInRange(1, 16)
            if fdp.ConsumeBool():
                del arrays[len(arrays) - min(n, len(arrays)):]
            else:
                arrays += fdp.ConsumeBytes(n)
        else:
            version = fdp.PickValueInList([0, 2, 2**32 - 1, version])
    try:
        return join(header, bytes(arrays), version)
    except (TypeError, ValueError, OverflowError):   # msgpack cannot write it: keep the base
        return join(*split(BASES[0]))


# -------------------------------------------------------------- outcomes

def _load_both(data: bytes):
    """The outcome of ``load`` (from a file) and of ``decode``; they must agree."""
    with open(_PATH, "wb") as f:
        f.write(data)
    # How the daemon recognises its snapshots: the header, unverified.
    try:
        assert isinstance(model_file.read_header(_PATH), dict)
    except ModelFileError:
        pass
    seq = recorded_seq(pathlib.Path(_PATH))
    assert seq is None or (isinstance(seq, int) and not isinstance(seq, bool)), seq
    outcomes = []
    for load in (lambda: model_file.load(_PATH), lambda: model_file.decode(data, _PATH)):
        try:
            outcomes.append(load())
        except ModelFileError as exc:
            outcomes.append(str(exc))
    from_file, from_bytes = outcomes
    if isinstance(from_file, str) or isinstance(from_bytes, str):
        assert from_file == from_bytes, (from_file, from_bytes)
        return None
    return from_file


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def check_learner(learner: Any, names: Any, extra: Any) -> None:
    """A loaded learner must work: read, learn, predict, save, load."""
    assert isinstance(learner, Learner)
    assert isinstance(names, dict) and all(
        isinstance(k, int) and isinstance(v, str) for k, v in names.items())
    assert isinstance(extra, dict), type(extra)
    # What `onlinel1 inspect` reads and prints (the command itself), what
    # `stats` reads, and what a daemon resuming from a snapshot takes from
    # its extra (onlinel1/server/startup.py).
    keys, weights = learner.weights()
    assert keys.shape == weights.shape
    learner.progress, learner.nnz, learner.intercept, learner.examples_seen
    learner.learning_rate()
    repr(learner)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cmd_inspect(argparse.Namespace(model=_PATH, top=5, export=None)) == 0
    producers = extra.get("snapshot", {}).get("producers", {})
    Trainer("default", learner, DaemonConfig(), names=names, producers=producers)
    state = learner.state
    for name in ["weights"] + list(state["columns"]):
        column = state["weights"] if name == "weights" else state["columns"][name]
        assert not np.isnan(column).any(), f"{name}: NaN loaded"
    before = learner.state
    model_file.save(_SAVED, learner, names, extra)
    again, again_names, again_extra = model_file.load(_SAVED)
    after = again.state
    assert np.array_equal(before["keys"], after["keys"])
    assert before["weights"].tobytes() == after["weights"].tobytes()
    assert all(_same(before["clocks"][k], after["clocks"][k]) for k in before["clocks"])
    stored = set(before["keys"].tolist())     # names of keys not stored are not written
    assert again_names == {k: v for k, v in names.items() if k in stored}
    # Then it learns and predicts.
    probe = COUNTS_PROBE if learner.options.loss == "poisson" else PROBE
    clocks_finite = all(math.isfinite(after["clocks"][k]) for k in ("clock", "clock_scale"))
    try:
        learner.learn(probe)
    except NumericError as exc:
        assert exc.reason in ("margin", "update"), exc.reason
    except BatchError as exc:              # a row wider than the memory budget
        assert exc.reason == "max_features", exc.reason
    assert learner.predict(probe).shape == (3,)
    learner.decision_function(probe)
    ol1fuzz.assert_learning_left_finite(learner, clocks=clocks_finite)
    model_file.decode(model_file.encode(learner, names, extra))


def parser_input(data: bytes) -> bytes:
    """The model file the loader is given for ``data`` (per the mode byte)."""
    mode, payload = data[0] % 3, data[1:]
    if mode == 1:
        return redigest(payload)
    if mode == 2:
        return structured(payload)
    return payload


def test_one_input(data: bytes) -> None:
    if not data:
        return
    loaded = _load_both(parser_input(data))
    if loaded is not None:
        check_learner(*loaded)


if __name__ == "__main__":
    ol1fuzz.main(test_one_input)
