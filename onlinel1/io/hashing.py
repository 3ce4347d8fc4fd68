"""Feature keys: integer features as they are, string features hashed.

docs/formats.md: keys are unsigned 64-bit integers.  A feature name that
is a plain decimal integer (ASCII digits only, no sign, no spaces, below
2**64; leading zeros allowed) *is* its key, whatever its namespace, so
Vowpal Wabbit's ``|f 9:0.06`` and svmlight's ``9:0.06`` are one feature.
Any other name is hashed with XXH64 (xxHash, 64-bit) seeded with
``HASH_SEED`` over the UTF-8 bytes of ``namespace + "^" + name``, or of
``name`` alone when there is no namespace (``None`` or ``""``, VW's default
namespace ``| ...``).  See docs/formats.md.

>>> hex(HASH_SEED)
'0x6f6e6c696e656c31'
>>> feature_key("9", "f") == feature_key("9") == 9
True
>>> feature_key("PFF", "T") == feature_key("T^PFF")
True
>>> feature_keys(["a", "17", "b"], "ns").dtype
dtype('uint64')

Strings are encoded with ``errors="surrogateescape"``, so the display
names the readers report for bytes that are not valid UTF-8 hash back to
the key read from the file.

With ``namespaced_integers=True`` (a learner setting, Vowpal Wabbit's
rule) an integer name in a named namespace is offset by the namespace's
hash instead: its key is ``(int(name) + namespace_hash(namespace)) mod
2**64``, where ``namespace_hash(ns)`` is the XXH64 of ``ns + "^"``.  So
``|user 42`` and ``|ad 42`` are two features; the default namespace adds
nothing.

>>> feature_key("42", "user", namespaced_integers=True) == 42 + namespace_hash("user")
True
>>> feature_key("42", namespaced_integers=True)
42
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from onlinel1._kernels.hashing import (FEATURE_SEED, feature_key_bytes, feature_keys_packed,
                                       xxh64_bytes)

__all__ = ["HASH_SEED", "SEPARATOR", "feature_key", "feature_keys", "namespace_hash"]

#: The XXH64 seed of every string feature: "onlinel1" in ASCII, big-endian.
HASH_SEED: int = FEATURE_SEED
#: Between the namespace and the name in the hashed text.
SEPARATOR = "^"


def _encode(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    return text.encode("utf-8", "surrogateescape")


def _prefix(namespace: str | None) -> bytes:
    if namespace is None or namespace == "":
        return b""
    return _encode(namespace, "namespace") + b"^"


def namespace_hash(namespace: str | None) -> int:
    """What ``namespaced_integers`` adds to an integer name's key in
    ``namespace``: XXH64 of ``namespace + "^"`` with ``HASH_SEED`` (0 for
    the default namespace, None or ``""``)."""
    prefix = _prefix(namespace)
    return xxh64_bytes(prefix, HASH_SEED) if prefix else 0


def feature_key(name: str, namespace: str | None = None, *,
                namespaced_integers: bool = False) -> int:
    """The uint64 key of feature ``name`` in ``namespace`` (None: no namespace).

    >>> feature_key("123", "anything")
    123
    >>> feature_key("price", "f") == feature_key("f^price")
    True
    """
    offset = namespace_hash(namespace) if namespaced_integers else 0
    return feature_key_bytes(_prefix(namespace), _encode(name, "name"), offset)


def feature_keys(names: Sequence[str], namespace: str | None = None, *,
                 namespaced_integers: bool = False) -> np.ndarray:
    """Keys of many names of one namespace, as a uint64 array, in one call
    into the compiled hash (``namespaced_integers`` as for ``feature_key``).

    >>> feature_keys(["7", "x"]).tolist() == [7, feature_key("x")]
    True
    """
    if isinstance(names, str):
        raise TypeError("names must be a sequence of str, not a single str")
    encoded = [_encode(name, "every name") for name in names]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    if encoded:
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)),
                  out=offsets[1:])
    offset = namespace_hash(namespace) if namespaced_integers else 0
    return feature_keys_packed(_prefix(namespace), b"".join(encoded), offsets, offset)
