"""Feature hashing: our XXH64 against the reference implementation (the
``xxhash`` package, the test oracle) and the documented key rule
(docs/formats.md): integer names are keys, other names XXH64 of
``namespace^name`` with the seed "onlinel1"."""
from __future__ import annotations

import random

import numpy as np
import pytest

from onlinel1._kernels.hashing import xxh64_bytes
from onlinel1.io import HASH_SEED, feature_key, feature_keys

xxhash = pytest.importorskip("xxhash", reason="the xxhash package is the test oracle "
                                              "(pip install xxhash)")

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz0123456789_-/.",
    "äöüßéèçñ€漢字かなДЖ😀\u0301",  # 2-, 3- and 4-byte UTF-8, a combining mark
    "".join(chr(c) for c in range(32, 127)),
]


def oracle(text: str, namespace: str | None = None) -> int:
    data = text if not namespace else f"{namespace}^{text}"
    return xxhash.xxh64_intdigest(data.encode("utf-8"), seed=HASH_SEED)


def random_text(rng: random.Random, length: int) -> str:
    alphabet = rng.choice(ALPHABETS)
    return "".join(rng.choice(alphabet) for _ in range(length))


def test_seed_is_onlinel1_in_ascii():
    assert HASH_SEED == int.from_bytes(b"onlinel1", "big") == 0x6F6E6C696E656C31


def test_known_vector_empty_input():
    # The specification's test vector: XXH64 of no bytes with seed 0.
    assert xxh64_bytes(b"", 0) == 0xEF46DB3751D8E999
    assert xxh64_bytes(b"") == xxhash.xxh64_intdigest(b"")


@pytest.mark.parametrize("length", range(0, 101))
def test_xxh64_every_length_and_tail_path(length):
    # Lengths 0..100 cover the < 32-byte path and the stripe loop, each with
    # every combination of 8-byte, 4-byte and 1-byte tails.
    rng = random.Random(length)
    for seed in (0, 1, HASH_SEED, 2**64 - 1, rng.getrandbits(64)):
        data = bytes(rng.getrandbits(8) for _ in range(length))
        assert xxh64_bytes(data, seed) == xxhash.xxh64_intdigest(data, seed=seed), (length, seed)


def test_xxh64_long_input():
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    assert xxh64_bytes(data, HASH_SEED) == xxhash.xxh64_intdigest(data, seed=HASH_SEED)


def test_string_features_hash_utf8_of_namespace_caret_name():
    rng = random.Random(7)
    for length in range(0, 101):
        name = random_text(rng, length)
        if name.isascii() and name.isdigit():
            continue
        assert feature_key(name) == oracle(name)
        ns = random_text(rng, rng.randrange(0, 12))
        assert feature_key(name, ns) == oracle(name, ns), (name, ns)


def test_non_ascii_names():
    for name in ["café", "naïve", "日本語", "😀", "Ж", "e\u0301"]:
        assert feature_key(name) == oracle(name)
        assert feature_key(name, "ns") == oracle(name, "ns")
        assert feature_key(name, "名") == oracle(name, "名")


def test_empty_name_and_empty_namespace():
    assert feature_key("") == xxhash.xxh64_intdigest(b"", seed=HASH_SEED)
    assert feature_key("", "ns") == xxhash.xxh64_intdigest(b"ns^", seed=HASH_SEED)
    # "" is the default namespace (VW's "| a"), the same as no namespace.
    assert feature_key("word", "") == feature_key("word") == oracle("word")


def test_namespace_changes_string_keys():
    assert feature_key("PFF", "T") != feature_key("PFF")
    assert feature_key("PFF", "T") != feature_key("PFF", "f")
    # The hashed text is exactly namespace + "^" + name.
    assert feature_key("PFF", "T") == feature_key("T^PFF")


@pytest.mark.parametrize("name, key", [
    ("0", 0), ("9", 9), ("123", 123), ("0123", 123), ("000", 0),
    ("18446744073709551615", 2**64 - 1),
])
def test_integer_names_are_keys_in_any_namespace(name, key):
    assert feature_key(name) == key
    assert feature_key(name, "f") == key
    assert feature_key(name, "another namespace") == key


@pytest.mark.parametrize("name", [
    "18446744073709551616",  # 2**64: does not fit, hashed as a string
    "99999999999999999999999", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "1_000",
    "١٢٣",  # Arabic-Indic digits: str.isdigit() is True, but not ASCII
    "１２",  # full-width digits
])
def test_names_that_are_not_plain_integers_are_hashed(name):
    assert feature_key(name) == oracle(name)
    assert feature_key(name, "f") == oracle(name, "f")


def test_pinned_values():
    # These keys are part of the file format: models store them.  If this
    # test fails, saved models and name maps no longer match their data.
    assert feature_key("PFF", "T") == 16722331165665449960
    assert feature_key("t1", "f") == 15895572313384580091
    assert feature_key("price") == xxhash.xxh64_intdigest(b"price", seed=0x6F6E6C696E656C31)


def test_vectorised_equals_one_by_one():
    rng = random.Random(3)
    names = [random_text(rng, rng.randrange(0, 40)) for _ in range(500)]
    names += ["0", "42", "18446744073709551615", "18446744073709551616", "", "-5"]
    for ns in (None, "", "f", "名前"):
        keys = feature_keys(names, ns)
        assert keys.dtype == np.uint64 and keys.shape == (len(names),)
        assert keys.tolist() == [feature_key(n, ns) for n in names]


def test_vectorised_empty_and_types():
    assert feature_keys([]).dtype == np.uint64
    assert feature_keys([]).size == 0
    assert feature_keys(("a", "b")).tolist() == [feature_key("a"), feature_key("b")]
    with pytest.raises(TypeError):
        feature_keys("abc")
    with pytest.raises(TypeError):
        feature_keys(["a", 1])
    with pytest.raises(TypeError):
        feature_key(12)
    with pytest.raises(TypeError):
        feature_key("a", 3)


def test_surrogate_escaped_names_round_trip():
    # The readers report names of invalid UTF-8 bytes with surrogateescape;
    # hashing such a name gives back the key of the raw bytes.
    raw = b"caf\xe9"
    name = raw.decode("utf-8", "surrogateescape")
    assert feature_key(name) == xxhash.xxh64_intdigest(raw, seed=HASH_SEED)
