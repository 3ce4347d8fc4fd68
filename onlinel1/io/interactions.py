"""Interactions (Vowpal Wabbit's ``-q ab``) for batches whose features
still carry their namespaces.

The VW reader crosses as it parses (``read_batches(..., interactions=...)``,
in compiled code, line by line).  A batch built elsewhere, such as the
daemon's row-wise messages, is crossed here: give the namespace id of each
feature (``namespace_id``: the first byte of the namespace's name, ``' '``
for the default namespace) beside the CSR arrays.  The rule (docs/formats.md,
"Interactions") and the compiled loop are in
``onlinel1/_kernels/interactions.pyx``; the crossed features of a row follow
its own features.

>>> import numpy as np
>>> from onlinel1 import Batch
>>> batch = Batch([0, 3], [1, 2, 3], [1.0, 2.0, 3.0], [1])
>>> crossed = cross_batch(batch, namespace_ids(["a", "a", "b"]), ["ab"])
>>> crossed.indptr.tolist(), crossed.values.tolist()
([0, 5], [1.0, 2.0, 3.0, 3.0, 6.0])
>>> int(crossed.keys[3]) == cross_keys(1, 3)
True

The daemon crosses row-wise messages so (``onlinel1/server/protocol.py``,
``decode_rows`` with the model's options): the wire decoder (``wire.convert`` with
``with_namespace_ids``) writes ``namespace_id`` of each feature's
namespace beside the CSR arrays, in the same pass, and applies the model's
``namespaced_integers`` to integer names; if the model's
``options.interactions`` is not empty, ``cross_arrays`` then crosses the
batch, bounded per row and per batch (``InteractionLimitError``, a
``bad_batch`` reply).  docs/protocol.md, "Interactions and namespaced
integers".
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from onlinel1._kernels.interactions import (CROSS_SEED, MAX_CROSSED_PER_ROW, Crosser,
                                            InteractionLimitError, cross_csr)
from onlinel1._kernels.interactions import cross as cross_keys
from onlinel1.batch import Batch
from onlinel1.options import normalise_interactions

__all__ = ["CROSS_SEED", "DEFAULT_NAMESPACE_ID", "MAX_CROSSED_PER_ROW", "InteractionLimitError",
           "cross_arrays", "cross_batch", "cross_keys", "namespace_id", "namespace_ids"]

#: The id of the default namespace (no name), as Vowpal Wabbit has it.
DEFAULT_NAMESPACE_ID = ord(" ")


def namespace_id(namespace: str | bytes | None) -> int:
    """The id interactions know a namespace by: the first byte of its name
    (UTF-8, with surrogateescape as the readers decode names), or
    ``DEFAULT_NAMESPACE_ID`` for the default namespace (None or empty)."""
    if not namespace:
        return DEFAULT_NAMESPACE_ID
    if isinstance(namespace, str):
        namespace = namespace.encode("utf-8", "surrogateescape")
    return namespace[0]


def namespace_ids(namespaces: Iterable[str | bytes | None]) -> np.ndarray:
    """``namespace_id`` of each of ``namespaces``, as a uint8 array."""
    return np.fromiter((namespace_id(ns) for ns in namespaces), dtype=np.uint8)


def cross_arrays(indptr: Any, keys: Any, values: Any, namespaces: Any, interactions: Any, *,
                 max_nnz: int | None = None,
                 max_row: int = MAX_CROSSED_PER_ROW) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, keys, values)`` of a CSR batch (int64, uint64, float64)
    with every row's crossed features after its own.  ``namespaces``: the
    namespace id of each feature (uint8).  ``interactions``: as
    ``LearnerOptions.interactions`` takes them (normalised here).  A row
    that would give more than ``max_row`` crossed features, or a batch of
    more than ``max_nnz`` features in all, raises ``InteractionLimitError``
    (a ``ValueError``) before anything is allocated."""
    terms = normalise_interactions(interactions)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    namespaces = np.ascontiguousarray(namespaces, dtype=np.uint8)
    if not terms:
        return indptr, keys, values
    limit = -1 if max_nnz is None else int(max_nnz)
    return cross_csr(Crosser(terms, max_row), indptr, keys, values, namespaces, limit)


def cross_batch(batch: Batch, namespaces: Any, interactions: Any, *,
                max_nnz: int | None = None) -> Batch:
    """``batch`` with the crossed features of ``interactions``
    (``cross_arrays``); labels and importance weights as they were
    (``batch`` itself when there are none)."""
    if not normalise_interactions(interactions):
        return batch
    indptr, keys, values = cross_arrays(batch.indptr, batch.keys, batch.values, namespaces,
                                        interactions, max_nnz=max_nnz)
    return Batch(indptr, keys, values, batch.labels, batch.weights)
