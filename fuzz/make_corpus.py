"""Write the seed corpora of the harnesses, fuzz/corpus/<harness>/, from the
real samples in tests/data.  Deterministic: running it again writes the
same files (the model files' ``written_at`` is fixed, the random seeds of
the structured harnesses come from a fixed generator).

    python fuzz/make_corpus.py            # rewrite fuzz/corpus/
    python fuzz/make_corpus.py --check    # exit 1 if fuzz/corpus/ is not what it would write

* request: ``train``, ``learn`` and ``predict`` messages holding real
  batches (a9a, RCV1, VW 0002 rows) in both encodings, ``rows`` (integer
  and string features, namespaces, importance, tags) and ``csr`` (float64
  and float32 values, with and without labels and weights), and the other
  requests (stats, health, config, snapshot, create, drop, list, swap).
* csr: random bytes (the harness builds its maps from any bytes).
* svmlight, vw: slices of the sample files and lines of every syntax the
  readers take (qid, comments, CRLF, a BOM, inf/nan, exponents, tags,
  namespace scales) and some they refuse.
* model_file: the v1 files of tests/data and the harness's base models
  (one per rule; a snapshot with feature names written by
  ``model_file.save``), each raw (mode byte 0) and re-digested (1), and
  random edit scripts for the structured mode (2).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import pathlib
import random
import sys
import tempfile

import msgpack
import numpy as np

import ol1fuzz

from onlinel1 import Batch, Learner, model_file
from onlinel1.client import encode_csr
from onlinel1.io import read_batches

SAMPLES = ol1fuzz.SAMPLES


def _batches(name: str, fmt: str, rows: int, names: dict | None = None) -> list[Batch]:
    return list(read_batches(SAMPLES / name, fmt, batch_size=rows, names=names))


def _rows_of(batch: Batch, labels: bool = True) -> list[dict]:
    out = []
    for i in range(batch.n_rows):
        lo, hi = batch.indptr[i], batch.indptr[i + 1]
        row: dict = {"features": {int(k): float(v) for k, v in
                                  zip(batch.keys[lo:hi], batch.values[lo:hi])}}
        if labels:
            row["label"] = float(batch.labels[i])
        if batch.weights is not None and batch.weights[i] != 1.0:
            row["importance"] = float(batch.weights[i])
        out.append(row)
    return out


def _pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def request_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    a9a = _batches("a9a_head2000.svm", "svmlight", 3)
    rcv1 = _batches("rcv1_small_head300.svm", "svmlight", 2)
    vw = _batches("vw0002_head60.vw", "vw", 2)
    one = a9a[0].slice(0, 1)
    for what, batch in (("a9a-3", a9a[0]), ("a9a-1", one), ("vw0002-2", vw[0])):
        csr = encode_csr(batch)
        seeds[f"train-csr-{what}"] = _pack({"v": 1, "op": "train", "producer": "p1", "seq": 7,
                                            "csr": csr})
        seeds[f"learn-csr-{what}"] = _pack({"v": 1, "op": "learn", "id": 1, "csr": csr})
        seeds[f"train-rows-{what}"] = _pack({"v": 1, "rows": _rows_of(batch)})
        seeds[f"predict-rows-{what}"] = _pack({"v": 1, "op": "predict", "id": "q",
                                               "rows": _rows_of(batch, labels=False),
                                               "top_k": 2})
    f32 = Batch(rcv1[0].indptr, rcv1[0].keys, rcv1[0].values.astype(np.float32),
                rcv1[0].labels, np.array([1.0, 2.5]))
    csr = encode_csr(f32)
    del csr["labels"]
    seeds["predict-csr-rcv1-float32-weights"] = _pack({"v": 1, "op": "predict", "id": 2,
                                                       "output": "margin", "csr": csr})
    seeds["learn-csr-empty"] = _pack({"v": 1, "op": "learn", "model": "ctr", "csr": encode_csr(
        Batch([0], np.empty(0, np.uint64), np.empty(0), np.empty(0)))})
    seeds["learn-rows-strings-namespaces"] = _pack({"v": 1, "op": "learn", "id": [1, 2], "rows": [
        {"label": 1, "importance": 2.0, "tag": "PFF/20091028",
         "features": {"price": 0.5, 17: 1, "0": 2.0},
         "namespaces": {"T": {"PFF": 1}, "f": {"t1": -0.0236849, "r5": 0.727735}}},
        {"label": -1, "features": {}, "namespaces": {"": {"x": 1.5}}},
        {"label": 0, "features": {2**64 - 1: 1e-300}}]})
    seeds["predict-rows-probability"] = _pack({"v": 1, "op": "predict", "output": "probability",
                                              "rows": [{"features": {"age=30": 1}}]})
    for op, fields in (("stats", {}), ("health", {}), ("config", {}), ("list", {}),
                       ("snapshot", {"model": "default"}),
                       ("create", {"model": "ctr", "options": {"update": "fobos", "l1": 1e-5}}),
                       ("drop", {"model": "ctr"}),
                       ("swap", {"model": "ctr", "path": "models/ctr-v2.ol1"})):
        seeds[f"{op}"] = _pack({"v": 1, "op": op, "id": 9, **fields})
    seeds["no-version"] = _pack({"op": "stats"})
    seeds["deep"] = _pack({"v": 1, "op": "stats", "id": [[[[[[[[1]]]]]]]]})
    deep: list = [1]
    for _ in range(990):                  # msgpack's decoder takes 1024 levels
        deep = [deep]
    seeds["deep-990"] = _pack({"v": 1, "op": "stats", "id": deep})
    return seeds


def csr_seeds() -> dict[str, bytes]:
    rng = random.Random(20261201)
    return {f"random-{i:02d}": bytes(rng.randrange(256) for _ in range(rng.choice(
        (16, 64, 128, 256, 512)))) for i in range(24)}


def _lines(name: str, starts: tuple[int, ...], n: int) -> dict[str, bytes]:
    lines = (SAMPLES / name).read_bytes().splitlines(keepends=True)
    return {f"{name.split('_')[0]}-lines-{s}-{s + n}": b"".join(lines[s:s + n]) for s in starts}


def svmlight_seeds() -> dict[str, bytes]:
    seeds = _lines("a9a_head2000.svm", (0, 500, 1990), 5)
    rcv1 = (SAMPLES / "rcv1_small_head300.svm").read_bytes().splitlines(keepends=True)
    seeds["rcv1-line-0"] = rcv1[0]
    seeds["rcv1-line-7"] = rcv1[7]
    seeds.update({
        "syntax-qid-comments": b"1 qid:3 1:0.5 7:2 # comment\n-1 qid:-4 3:1e-3\n# only\n\n",
        "syntax-crlf-bom": b"\xef\xbb\xbf+1 1:.5 2:5. 3:-0\r\n0 4:1E+2\r\n",
        "syntax-special": b"-1 1:inf 2:-Infinity 3:nan 4:NaN 5:1e400 6:1e-400 7:4.9e-324\n",
        "syntax-long-numbers": b"1 18446744073709551615:12345678901234567890123 "
                               b"0:0.000000000000000000000000001234 9:9007199254740993\n",
        "syntax-no-newline": b"2.5 1:1 2:2 3:3",
        "bad-index": b"1 18446744073709551616:1\n",
        "bad-feature": b"1 1:0.5 7\n",
        "bad-label": b"x 1:1\n",
        "bad-qid": b"1 qid:x 1:1\n",
        "bad-hex": b"1 1:0x10\n",
    })
    return seeds


def vw_seeds() -> dict[str, bytes]:
    seeds = _lines("vw0002_head60.vw", (0, 30, 57), 3)
    seeds.update({
        "syntax-all": (b"1 |f 3:0.5 color 4\n-1 2.5 'id7 |f 3:1.5\n0 0.5 0.25 tag|f 3\n"
                       b"1 |f:2.5 a:2 b |g:-1 a:3\n1 | a 9:2 |f 9:3\n2\t3\t|ns\ta:1\tb\n"
                       b"1 |f a:1 a:2\n1 |f\n1 |\n1 |f x:1 |f y:1||g z\n"),
        "syntax-crlf-bom-comment": b"\xef\xbb\xbf1 |f a:0.5 7:2\r\n# comment\r\n0 |g b\r\n",
        "syntax-utf8-names": b"1 |f caf\xe9 \xe6\x97\xa5 x^y:2\n",
        "syntax-special": b"1 0 |f a:inf b:-nan c:1e-400 d:1e400 18446744073709551615:1\n",
        "bad-no-bar": b"1 2 3\n",
        "bad-tag-only": b"tag|f a\n",
        "bad-fields": b"1 2 3 4 |f a\n",
        "bad-importance": b"1 -2 |f a\n",
        "bad-scale": b"1 |f:x a\n",
        "bad-namespace": b"1 |:2 a\n",
        "bad-feature": b"1 |f :2\n",
    })
    return seeds


def model_file_seeds() -> dict[str, bytes]:
    import fuzz_model_file
    seeds: dict[str, bytes] = {}
    for name in ("v1_a9a_fobos.ol1", "v1_vw0002_cumulative.ol1"):    # as they are
        data = (SAMPLES / name).read_bytes()
        seeds[f"raw-{name}"] = b"\x00" + data
        seeds[f"redigest-{name}"] = b"\x01" + data
    for i, data in enumerate(fuzz_model_file.BASES):
        seeds[f"raw-base-{i}"] = b"\x00" + data
        seeds[f"redigest-base-{i}"] = b"\x01" + data
    # A snapshot as the daemon writes it: model_file.save, the snapshot extra, names.
    names: dict[int, str] = {}
    vw = _batches("vw0002_head60.vw", "vw", 20, names)[0]
    learner = Learner(loss="squared", update="cumulative", origin="first-seen", l1=1e-4)
    learner.learn(vw)
    stamp, model_file._stamp = model_file._stamp, lambda: dict(fuzz_model_file.STAMP)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "snapshot-00000003.ol1"
            model_file.save(path, learner, names, {"snapshot": {
                "seq": 3, "reason": "periodic", "unix_time": 1.8e9, "producers": {"p1": 41}}})
            seeds["raw-snapshot"] = b"\x00" + path.read_bytes()
            seeds["redigest-snapshot"] = b"\x01" + path.read_bytes()
    finally:
        model_file._stamp = stamp
    rng = random.Random(20261201)
    for i in range(16):
        seeds[f"structured-{i:02d}"] = b"\x02" + bytes(rng.randrange(256) for _ in range(64))
    return seeds


SEEDS = {"request": request_seeds, "csr": csr_seeds, "svmlight": svmlight_seeds,
         "vw": vw_seeds, "model_file": model_file_seeds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with fuzz/corpus/ instead of writing")
    parser.add_argument("--out", type=pathlib.Path, default=ol1fuzz.CORPUS)
    args = parser.parse_args(argv)
    stale = []
    for harness, make in SEEDS.items():
        folder = args.out / harness
        seeds = make()
        if args.check:
            have = {p.name: p.read_bytes() for p in folder.glob("*")} if folder.is_dir() else {}
            if have != seeds:
                stale.append(harness)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.name not in seeds:
                old.unlink()
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")
    if stale:
        print(f"stale seed corpora: {', '.join(stale)} (run python fuzz/make_corpus.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
