"""Feature names for feature keys: what ``top_k`` contributions show.

A daemon's ``predict`` with ``top_k`` answers ``[key, w * x]`` pairs with
the 64-bit keys (docs/protocol.md), and a string feature's key is its hash
(docs/formats.md).  Its name is known in two places:

* to whoever built the rows: the features of a predicted row are the ones
  its contributions are about, so ``row_names(rows)`` is every name they
  can need, computed client-side with the daemon's hash;
* to the daemon, for the string features it has seen in row maps when it
  keeps names (``serve --keep-names``, or a model file with names):
  ``names_of(trainer, keys)`` reads them from ``trainer.names``.

``with_names(contributions, names)`` puts the names in place of the keys
it knows and leaves the others as keys.

>>> from onlinel1.io import feature_key
>>> rows = [{"features": {"user=42": 1.0, 17: 0.5}, "namespaces": {"ad": {"id=7": 1.0}}}]
>>> names = row_names(rows)
>>> names == {feature_key("user=42"): "user=42", feature_key("id=7", "ad"): "ad^id=7"}
True
>>> with_names([[[feature_key("id=7", "ad"), 0.75], [17, -0.25]]], names)
[[['ad^id=7', 0.75], [17, -0.25]]]
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from onlinel1.batch import _hash_strings

__all__ = ["names_of", "row_names", "with_names"]


def row_names(rows: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """``{key: name}`` of the string features of row maps (``features``
    and ``namespaces``, as ``Client.predict`` takes them), each name as the
    daemon records it (``namespace^name``; no ``^`` without a namespace).
    Integer features have no name and are left out."""
    strings: dict[tuple[str | None, str], list[int]] = {}
    for row in rows:
        groups = [(None, row.get("features") or {})]
        groups += list((row.get("namespaces") or {}).items())
        for namespace, features in groups:
            for name in features:
                if isinstance(name, str):
                    strings.setdefault((namespace, name), [len(strings)])
    names: dict[int, str] = {}
    if strings:
        import numpy as np
        _hash_strings(strings, np.zeros(len(strings), dtype=np.uint64), names)
    return names


def names_of(trainer: Any, keys: Iterable[int]) -> list[str | int]:
    """The name of each of ``keys`` where ``trainer`` knows it (its
    ``names``, a key -> name map or None; a map itself is taken too), the
    key itself otherwise: for the daemon's ``predict`` to answer names."""
    names = trainer if isinstance(trainer, Mapping) else getattr(trainer, "names", None)
    if not names:
        return [int(k) for k in keys]
    return [names.get(int(k), int(k)) for k in keys]


def with_names(contributions: list, names: Mapping[int, str]) -> list:
    """``contributions`` of a ``predict`` reply (per row, ``[key, value]``
    pairs) with each key that ``names`` knows replaced by its name."""
    return [[[names.get(key, key), value] for key, value in row] for row in contributions]
