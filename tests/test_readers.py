"""The streaming readers (onlinel1.io.readers) against scikit-learn's svmlight
reader, across formats, batch sizes, block sizes and line endings, and on
malformed input (docs/formats.md is the specification)."""
from __future__ import annotations

import gzip
import io
import pathlib
import random
import struct

import numpy as np
import pytest

from conftest import SAMPLES, SHARED, shared_path
from onlinel1.batch import Batch
from onlinel1.io import ParseError, feature_key, read_batches

SVMLIGHT_SHARED = [
    "a9a/a9a.train.svm", "a9a/a9a.test.svm", "w8a/w8a.train.svm",
    "mushrooms_agaricus/agaricus.train.svm", "mushrooms_agaricus/agaricus.test.svm",
    "housing_scale_regression/housing_scale.svm",
    "vw_rcv1/rcv1_small.train.svm", "vw_rcv1/rcv1_small.test.svm",
]
if SHARED.exists():  # any svmlight file added later is checked too
    SVMLIGHT_SHARED += sorted(str(p.relative_to(SHARED)) for p in SHARED.rglob("*.svm")
                              if str(p.relative_to(SHARED)) not in SVMLIGHT_SHARED)
SAMPLE_FILES = sorted(p.name for p in SAMPLES.glob("*.svm"))


# ---------------------------------------------------------------- helpers

def collect(source, fmt, **kwargs) -> Batch:
    """All batches of a source, concatenated into one Batch."""
    batches = list(read_batches(source, fmt, **kwargs))
    return concat(batches, vw=(fmt == "vw"))


def concat(batches, vw) -> Batch:
    if not batches:
        return Batch([0], np.empty(0, np.uint64), np.empty(0), np.empty(0),
                     np.empty(0) if vw else None)
    sizes = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate([[0]] + [b.indptr[1:] + s for b, s in zip(batches, sizes)])
    weights = None
    if batches[0].weights is not None:
        weights = np.concatenate([b.weights for b in batches])
    return Batch(indptr, np.concatenate([b.keys for b in batches]),
                 np.concatenate([b.values for b in batches]),
                 np.concatenate([b.labels for b in batches]), weights)


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def assert_same(a: Batch, b: Batch, weights: bool = True) -> None:
    assert a.indptr.dtype == np.int64 and a.keys.dtype == np.uint64
    assert a.values.dtype == np.float64 and a.labels.dtype == np.float64
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(bits(a.values), bits(b.values))
    np.testing.assert_array_equal(bits(a.labels), bits(b.labels))
    if weights:
        assert (a.weights is None) == (b.weights is None)
        if a.weights is not None:
            np.testing.assert_array_equal(bits(a.weights), bits(b.weights))


def assert_matches_sklearn(path: pathlib.Path) -> None:
    from sklearn.datasets import load_svmlight_file
    X, y = load_svmlight_file(str(path), zero_based=True)
    X = X.tocsr()
    ours = collect(path, "svmlight")
    assert ours.n_rows == X.shape[0] and ours.weights is None
    np.testing.assert_array_equal(ours.indptr, X.indptr)
    np.testing.assert_array_equal(ours.keys, X.indices.astype(np.uint64))
    np.testing.assert_array_equal(bits(ours.values), bits(X.data))
    np.testing.assert_array_equal(bits(ours.labels), bits(y))


def parse_error(data: bytes, fmt: str, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as info:
        collect(io.BytesIO(data), fmt, **kwargs)
    return info.value


# ------------------------------------------------- svmlight vs scikit-learn

@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_samples_match_sklearn(name):
    assert_matches_sklearn(SAMPLES / name)


@pytest.mark.parametrize("relative", SVMLIGHT_SHARED)
def test_shared_svmlight_files_match_sklearn(relative):
    assert_matches_sklearn(shared_path(relative))


def test_float_syntax_matches_python_float():
    # Every form of number the grammar admits, on both sides of the fast
    # path (<= 19 digits, mantissa <= 2**53, |exponent| <= 22) and strtod.
    numbers = [
        "1", "-1", "+1", "0", "-0", "+0.0", "-0.0e5", "0e999", ".5", "5.", "-.5e-3", "00001.5000",
        "0.1", "0.2", "0.30000000000000004", "1e22", "1e23", "1e-22", "1e-23", "1E+2",
        "9007199254740992", "9007199254740993", "9007199254740993e-5", "123456789012345678e-10",
        "1234567890123456789", "12345678901234567890", "123456789012345678901234567890",
        "0.000000000000000000000000000001", "1.7976931348623157e308", "1.8e308", "1e309",
        "-1e400", "4.9e-324", "2.4e-324", "2.5e-324", "1e-400", "2.2250738585072011e-308",
        "2.2250738585072014e-308", "6.2699720e-02", "3.3754818e-02", "0.727735", "-0.0236849",
        "inf", "-inf", "+inf", "Infinity", "-INFINITY", "nan", "-nan", "NaN", "+nan",
        "1e0000000000000000000001", "1" + "0" * 400, "0." + "0" * 400 + "1",
    ]
    data = "".join(f"{n} 1:{n} 2:{n}\n" for n in numbers).encode()
    batch = collect(io.BytesIO(data), "svmlight")
    expected = np.array([float(n) for n in numbers])
    np.testing.assert_array_equal(bits(batch.labels), bits(expected))
    np.testing.assert_array_equal(bits(batch.values[0::2]), bits(expected))
    np.testing.assert_array_equal(bits(batch.values[1::2]), bits(expected))


# ------------------------------------------------------------ VW text

def test_rcv1_vw_equals_svmlight():
    for split in ("train", "test"):
        vw = collect(shared_path(f"vw_rcv1/rcv1_small.{split}.vw"), "vw")
        svm = collect(shared_path(f"vw_rcv1/rcv1_small.{split}.svm"), "svmlight")
        assert_same(vw, svm, weights=False)
        assert svm.weights is None
        np.testing.assert_array_equal(vw.weights, np.ones(vw.n_rows))


def test_0002_regression_as_vw_documents_it():
    path = shared_path("vw_0002_regression/0002.vw")
    names: dict[int, str] = {}
    batch = collect(path, "vw", names=names)
    first = path.read_text().splitlines()[0]
    # 0.521144 1 PFF/20091028|T PFF |f t1:-0.0236849 t5:-0.10215 ...
    label_part, _, rest = first.partition("|")
    assert batch.n_rows == 1000
    assert batch.labels[0] == float(label_part.split()[0]) == 0.521144
    np.testing.assert_array_equal(batch.weights, np.ones(1000))  # importance 1 everywhere
    row = slice(batch.indptr[0], batch.indptr[1])
    features_f = rest.split("|f ")[1].split()
    expected_keys = [feature_key("PFF", "T")] + [feature_key(f.split(":")[0], "f")
                                                 for f in features_f]
    expected_values = [1.0] + [float(f.split(":")[1]) for f in features_f]
    assert batch.keys[row].tolist() == expected_keys  # the tag PFF/20091028 is no feature
    np.testing.assert_array_equal(bits(batch.values[row]), bits(np.array(expected_values)))
    assert names[feature_key("PFF", "T")] == "T^PFF"
    assert names[feature_key("t1", "f")] == "f^t1"
    assert not any("20091028" in n for n in names.values())
    # Every name hashes back to its key: 275 ticker symbols in T, 13 features in f
    # (the 288 named features of datasets/README.md); no integer names here.
    assert all(feature_key(n) == k for k, n in names.items())
    assert len(names) == len(np.unique(batch.keys)) == 288
    assert sum(n.startswith("T^") for n in names.values()) == 275
    assert sum(n.startswith("f^") for n in names.values()) == 13


def test_vw_syntax():
    data = (
        b"1 |f 3:0.5 color 4\n"                 # default importance 1; value 1 when omitted
        b"-1 2.5 'id7 |f 3:1.5\n"                # importance, quoted tag
        b"0 0.5 0.25 tag|f 3\n"                  # importance, base (ignored), attached tag
        b"1 |f:2.5 a:2 b |g:-1 a:3\n"            # namespace scales
        b"1 | a 9:2 |f 9:3\n"                    # default namespace; integer names are keys
        b"2\t3\t|ns\ta:1\tb\n"                   # tabs separate too
        b"1 |f a:1 a:2\n"                        # repeated features are kept as written
        b"1 |f\n"                                # a namespace with no features
        b"1 |\n"                                 # no features at all
        b"1 |f x:1 |f y:1||g z\n"               # repeated and empty namespaces
    )
    names: dict[int, str] = {}
    b = collect(io.BytesIO(data), "vw", names=names)
    k = feature_key
    rows = [list(zip(b.keys[b.indptr[i]:b.indptr[i + 1]].tolist(),
                     b.values[b.indptr[i]:b.indptr[i + 1]].tolist())) for i in range(b.n_rows)]
    assert b.labels.tolist() == [1, -1, 0, 1, 1, 2, 1, 1, 1, 1]
    assert b.weights.tolist() == [1, 2.5, 0.5, 1, 1, 3, 1, 1, 1, 1]
    assert rows == [
        [(3, 0.5), (k("color", "f"), 1.0), (4, 1.0)],
        [(3, 1.5)],
        [(3, 1.0)],
        [(k("a", "f"), 5.0), (k("b", "f"), 2.5), (k("a", "g"), -3.0)],
        [(k("a"), 1.0), (9, 2.0), (9, 3.0)],
        [(k("a", "ns"), 1.0), (k("b", "ns"), 1.0)],
        [(k("a", "f"), 1.0), (k("a", "f"), 2.0)],
        [],
        [],
        [(k("x", "f"), 1.0), (k("y", "f"), 1.0), (k("z", "g"), 1.0)],
    ]
    assert names == {k("color", "f"): "f^color", k("a", "f"): "f^a", k("b", "f"): "f^b",
                     k("a", "g"): "g^a", k("a"): "a", k("a", "ns"): "ns^a",
                     k("b", "ns"): "ns^b", k("x", "f"): "f^x", k("y", "f"): "f^y",
                     k("z", "g"): "g^z"}


def test_names_only_filled_for_new_keys():
    names = {feature_key("a", "f"): "kept as it was"}
    collect(io.BytesIO(b"1 |f a b\n1 |f a b c\n" * 50), "vw", names=names, batch_size=3)
    assert names == {feature_key("a", "f"): "kept as it was", feature_key("b", "f"): "f^b",
                     feature_key("c", "f"): "f^c"}
    collect(io.BytesIO(b"1 |f a\n"), "vw", names=None)  # no map, no work


def test_names_of_non_utf8_bytes_round_trip():
    names: dict[int, str] = {}
    b = collect(io.BytesIO(b"1 |f caf\xe9 \xe6\x97\xa5\n"), "vw", names=names)
    assert sorted(names.values()) == sorted(["f^caf\udce9", "f^日"])
    assert all(feature_key(n) == k for k, n in names.items())
    assert set(b.keys.tolist()) == set(names)


# ----------------------------------------- batches, blocks, line endings

def sample_sources():
    yield SAMPLES / "a9a_head2000.svm", "svmlight"
    yield SAMPLES / "rcv1_small_head300.svm", "svmlight"
    vw = SHARED / "vw_0002_regression" / "0002.vw"
    if vw.exists():
        yield vw, "vw"


@pytest.mark.parametrize("path, fmt", list(sample_sources()), ids=lambda x: str(x)[-20:])
def test_batch_size_and_block_size_invariance(path, fmt):
    reference = collect(path, fmt)
    for batch_size in (1, 7, 8192):
        batches = list(read_batches(path, fmt, batch_size=batch_size))
        assert all(b.n_rows == batch_size for b in batches[:-1])
        assert 1 <= batches[-1].n_rows <= batch_size
        assert_same(concat(batches, fmt == "vw"), reference)
    for block_size in (1, 2, 16, 100, 4093):
        assert_same(collect(path, fmt, block_size=block_size, batch_size=5), reference)


def test_crlf_no_trailing_newline_bom_and_comments():
    lf = b"1 1:0.5 7:2\n-1 3:1e-3\n\n# a comment line\n   \n0 2:4 # trailing comment\n"
    reference = collect(io.BytesIO(lf), "svmlight")
    assert reference.n_rows == 3
    variants = [
        lf.replace(b"\n", b"\r\n"),
        lf.rstrip(b"\n"),
        lf.replace(b"\n", b"\r\n").rstrip(b"\r\n"),
        b"\xef\xbb\xbf" + lf,
    ]
    for data in variants:
        for block_size in (1, 3, 16, 1 << 20):
            assert_same(collect(io.BytesIO(data), "svmlight", block_size=block_size), reference)
    vw = b"1 |f a:0.5 7:2\n-1 |f 3:1e-3\n\n# comment\n0 |g b\n"
    reference = collect(io.BytesIO(vw), "vw")
    assert reference.n_rows == 3
    for data in (vw.replace(b"\n", b"\r\n"), vw.rstrip(b"\n"), b"\xef\xbb\xbf" + vw):
        for block_size in (1, 5, 1 << 20):
            assert_same(collect(io.BytesIO(data), "vw", block_size=block_size), reference)


def test_gzip_paths_file_objects_and_empty_input(tmp_path):
    raw = (SAMPLES / "a9a_head2000.svm").read_bytes()
    reference = collect(SAMPLES / "a9a_head2000.svm", "svmlight")
    gz = tmp_path / "a9a.svm.gz"
    gz.write_bytes(gzip.compress(raw))
    assert_same(collect(gz, "svmlight"), reference)
    assert_same(collect(str(gz), "svmlight", block_size=1000), reference)
    assert_same(collect(io.BytesIO(raw), "svmlight"), reference)
    with open(SAMPLES / "a9a_head2000.svm", "rb") as f:
        assert_same(collect(f, "svmlight"), reference)
        assert not f.closed  # a file object given is left open
    with gzip.open(gz, "rb") as f:
        assert_same(collect(f, "svmlight", block_size=777), reference)
    assert list(read_batches(io.BytesIO(b""), "svmlight")) == []
    assert list(read_batches(io.BytesIO(b"\n\n# only comments\n"), "vw")) == []


def test_long_lines_beyond_the_block_size():
    row = " ".join(f"{i}:{i / 7!r}" for i in range(5000))
    data = f"1 {row}\n-1 {row}".encode()
    batch = collect(io.BytesIO(data), "svmlight", block_size=64)
    assert batch.n_rows == 2 and batch.nnz == 10000
    assert batch.values[:5000].tolist() == [i / 7 for i in range(5000)]


class ReadOnly:
    """A file object with read() but no readinto()."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(n, 5))


def test_objects_without_readinto_and_bad_sources():
    data = b"1 1:2\n0 3:4\n"
    assert_same(collect(ReadOnly(data), "svmlight"), collect(io.BytesIO(data), "svmlight"))
    with pytest.raises(TypeError, match="binary"):
        list(read_batches(io.StringIO("1 1:2\n"), "svmlight"))
    with pytest.raises(TypeError):
        list(read_batches(12, "svmlight"))
    with pytest.raises(ValueError, match="format"):
        read_batches(io.BytesIO(data), "csv")
    with pytest.raises(ValueError, match="batch_size"):
        read_batches(io.BytesIO(data), "svmlight", batch_size=0)
    with pytest.raises(ValueError, match="block_size"):
        read_batches(io.BytesIO(data), "svmlight", block_size=0)
    with pytest.raises(FileNotFoundError):
        list(read_batches("/nonexistent/file.svm", "svmlight"))


# ------------------------------------------------------------- errors

GOOD_SVM = b"1 1:1\n# comment\n\n-1 2:0.5 # note\n"  # 4 lines, 2 rows


@pytest.mark.parametrize("bad, token", [
    (b"1 abc:1", "abc:1"),
    (b"1 3", "3"),
    (b"1 3:", "3:"),
    (b"1 :3", ":3"),
    (b"1 -3:1", "-3:1"),
    (b"1 +3:1", "+3:1"),
    (b"1 3.5:1", "3.5:1"),
    (b"1 3:1x", "3:1x"),
    (b"1 3:1:2", "3:1:2"),
    (b"1 3:0x10", "3:0x10"),
    (b"1 3:1_0", "3:1_0"),
    (b"1 3:1e", "3:1e"),
    (b"1 3:.", "3:."),
    (b"1 18446744073709551616:1", "18446744073709551616:1"),
    (b"1 1:1 qid:3", "qid:3"),  # qid only right after the label
])
def test_svmlight_bad_feature(bad, token):
    err = parse_error(GOOD_SVM + bad + b"\n1 1:1\n", "svmlight")
    assert err.line == 5 and isinstance(err, ValueError)
    assert str(err) == f"<stream>:5: bad feature {token!r} (expected index:value)"


@pytest.mark.parametrize("bad, message", [
    (b"abc 1:1", "bad label 'abc' (expected a number)"),
    (b"1,2 1:1", "bad label '1,2' (expected a number)"),
    (b"1:1 2:1", "bad label '1:1' (expected a number)"),
    (b"1 qid:x 1:1", "bad query id 'qid:x' (expected qid:integer)"),
    (b"1 qid: 1:1", "bad query id 'qid:' (expected qid:integer)"),
])
def test_svmlight_bad_label_or_qid(bad, message):
    err = parse_error(GOOD_SVM + bad, "svmlight")
    assert err.line == 5
    assert str(err) == f"<stream>:5: {message}"


def test_svmlight_qid_is_ignored():
    batch = collect(io.BytesIO(b"1 qid:3 1:1\n0 qid:-4 2:1\n2 qid:17\n"), "svmlight")
    assert batch.keys.tolist() == [1, 2] and batch.labels.tolist() == [1, 0, 2]


def test_error_line_numbers_and_rows_before_the_error(tmp_path):
    lines = [f"{i % 2} {i}:1" for i in range(1, 40)]
    lines[30] = "1 bad"
    data = ("\r\n".join(lines) + "\r\n").encode()
    for batch_size in (1, 7, 8192):
        for block_size in (1, 16, 1 << 20):
            seen = []
            with pytest.raises(ParseError) as info:
                for b in read_batches(io.BytesIO(data), "svmlight", batch_size=batch_size,
                                      block_size=block_size):
                    seen.extend(b.keys.tolist())
            assert info.value.line == 31
            assert seen == list(range(1, 31))  # every good row before the error
    path = tmp_path / "data.svm"
    path.write_bytes(data)
    with pytest.raises(ParseError, match=r"data\.svm:31: bad feature 'bad'") as info:
        collect(path, "svmlight")
    assert info.value.source == str(path) and info.value.line == 31
    gz = tmp_path / "data.svm.gz"
    gz.write_bytes(gzip.compress(data))
    with pytest.raises(ParseError, match=r"data\.svm\.gz:31:"):
        collect(gz, "svmlight")


def test_error_on_the_last_line_without_newline():
    err = parse_error(b"1 1:1\n1 2:x", "svmlight", block_size=4)
    assert err.line == 2 and "'2:x'" in str(err)


def test_long_tokens_are_shortened_in_messages():
    err = parse_error(b"1 " + b"x" * 500 + b":1\n", "svmlight")
    assert len(str(err)) < 150 and "..." in str(err)


GOOD_VW = b"1 |f a b:2\n\n# comment\n-1 'tag |g c\n"  # 4 lines, 2 rows


@pytest.mark.parametrize("bad, message", [
    (b"|f a", "missing label before '|f a'"),
    (b"'tag |f a", "missing label before '|f a'"),
    (b"1|f a", "missing label: '1|' touches the '|', so it is read as a tag"),
    (b"1 2 3 4 |f a", "too many label fields '1 2 3 4 ' (expected label [importance [base]]"),
    (b"1 2 3 4 5 6|f a", "too many label fields '1 2 3 4 5 6'"),
    (b"x |f a", "bad label 'x' (expected a number)"),
    (b"1 x |f a", "bad importance 'x' (expected a number >= 0)"),
    (b"1 -2 |f a", "bad importance '-2' (expected a number >= 0)"),
    (b"1 nan |f a", "bad importance 'nan'"),
    (b"1 1 x |f a", "bad base 'x' (expected a number)"),
    (b"1 |f a:b", "bad feature 'a:b' (expected name or name:value)"),
    (b"1 |f a:1:2", "bad feature 'a:1:2'"),
    (b"1 |f :1", "bad feature ':1'"),
    (b"1 |f a:", "bad feature 'a:'"),
    (b"1 |:2 a", "bad namespace '|:2' (expected |name[:scale]"),
    (b"1 |f:x a", "bad namespace scale '|f:x'"),
    (b"1 a b", "no '|' in '1 a b'"),
    (b"1 3:1 5:1", "no '|' in '1 3:1 5:1'"),  # an svmlight line read as VW
])
def test_vw_malformed_lines(bad, message):
    err = parse_error(GOOD_VW + bad + b"\n1 |f a\n", "vw")
    assert err.line == 5, str(err)
    assert str(err).startswith(f"<stream>:5: {message}"), str(err)


# ------------------------------------------------------------ round trip

def random_value(rng: random.Random) -> float:
    kind = rng.randrange(6)
    if kind == 0:
        return float(rng.randint(-5, 5))
    if kind == 1:
        return rng.uniform(-1, 1)
    if kind == 2:
        return rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30)
    if kind == 3:  # any finite double, subnormals included
        while True:
            x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            if np.isfinite(x):
                return x
    if kind == 4:
        return round(rng.uniform(-100, 100), rng.randint(0, 6))
    return rng.choice([0.0, -0.0, 5e-324, 1.7976931348623157e308, 1e22, 1e23, 0.1])


def test_round_trip_repr_floats(tmp_path):
    rng = random.Random(42)
    n_rows = 400
    rows, labels, weights = [], [], []
    for _ in range(n_rows):
        n = rng.randrange(0, 30)
        keys = [rng.choice([rng.randrange(0, 1000), rng.getrandbits(64)]) for _ in range(n)]
        rows.append([(key, random_value(rng)) for key in keys])
        labels.append(random_value(rng))
        weights.append(abs(random_value(rng)))
    svm = "".join(f"{y!r}" + "".join(f" {k}:{v!r}" for k, v in row) + "\n"
                  for y, row in zip(labels, rows))
    vw = "".join(f"{y!r} {w!r} 'r{i} |f" + "".join(f" {k}:{v!r}" for k, v in row) + "\n"
                 for i, (y, w, row) in enumerate(zip(labels, weights, rows)))
    expected = Batch(np.cumsum([0] + [len(r) for r in rows]),
                     np.array([k for r in rows for k, _ in r], dtype=np.uint64),
                     np.array([v for r in rows for _, v in r], dtype=np.float64),
                     np.array(labels), None)
    (tmp_path / "r.svm").write_text(svm)
    (tmp_path / "r.vw").write_text(vw)
    for block_size in (7, 1 << 20):
        got_svm = collect(tmp_path / "r.svm", "svmlight", batch_size=13, block_size=block_size)
        assert_same(got_svm, expected)
        got_vw = collect(tmp_path / "r.vw", "vw", batch_size=13, block_size=block_size)
        assert_same(got_vw, expected, weights=False)
        np.testing.assert_array_equal(bits(got_vw.weights), bits(np.array(weights)))


def test_round_trip_string_features(tmp_path):
    rng = random.Random(5)
    alphabet = "abcxyz_/.-ßé日😀0123456789"
    lines, expected_rows = [], []
    for i in range(200):
        feats = []
        for _ in range(rng.randrange(1, 8)):
            name = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
            value = random_value(rng)
            ns = rng.choice(["", "a", "ns", "名"])
            feats.append((ns, name, value))
        lines.append(f"{i} " + " ".join(f"|{ns} {name}:{value!r}" for ns, name, value in feats))
        expected_rows.append([(feature_key(name, ns), value) for ns, name, value in feats])
    (tmp_path / "s.vw").write_text("\n".join(lines), encoding="utf-8")
    names: dict[int, str] = {}
    batch = collect(tmp_path / "s.vw", "vw", names=names, block_size=11, batch_size=9)
    assert batch.keys.tolist() == [k for r in expected_rows for k, _ in r]
    np.testing.assert_array_equal(bits(batch.values),
                                  bits(np.array([v for r in expected_rows for _, v in r])))
    assert batch.labels.tolist() == list(range(200))
    assert all(feature_key(n) == k for k, n in names.items())
    hashed = {k for k in batch.keys.tolist()} - set(names)
    assert all(k < 10**12 for k in hashed)  # only integer names are missing from the map


def test_garbage_never_crashes():
    # Hostile input: only rows or a ParseError, never a crash or another error,
    # and the same outcome for any block size.
    rng = random.Random(11)
    alphabet = b"0123456789 \t\r\n:|'#.-+eEinfa^\xff\x00"
    for trial in range(1500):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        for fmt in ("svmlight", "vw"):
            outcomes = []
            for block_size in (1, 7, 1 << 20):
                try:
                    outcomes.append(collect(io.BytesIO(data), fmt, block_size=block_size,
                                            batch_size=3))
                except ParseError as exc:
                    outcomes.append((exc.line, str(exc)))
            for other in outcomes[1:]:
                if isinstance(other, Batch):
                    assert isinstance(outcomes[0], Batch), data
                    assert_same(other, outcomes[0])
                else:
                    assert other == outcomes[0], data
