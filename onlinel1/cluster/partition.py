"""Keys to virtual partitions to shards (docs/scaling.md, "Partitions").

A key's partition is a seeded hash of it modulo P = 1024; a partition's
shard is a table lookup.  Resharding moves whole partitions (the table
changes), never re-hashes keys, and the same seed gives the same
partitions on every machine and in every process.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Virtual partitions (docs/scaling.md): more than any shard count in use,
#: so partitions spread evenly; a power of two, so a mask takes the rest.
PARTITIONS = 1024
#: The default seed of the partition hash.
DEFAULT_SEED = 0x6F6C31

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = 0x9E3779B97F4A7C15


def _fmix64(k: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, elementwise (uint64 arithmetic wraps)."""
    k = k ^ (k >> np.uint64(33))
    k = k * _M1
    k = k ^ (k >> np.uint64(33))
    k = k * _M2
    return k ^ (k >> np.uint64(33))


class SubRows(NamedTuple):
    """One shard's part of a mini-batch: every row (maybe empty), with only
    the entries of the shard's keys, in their order."""
    indptr: np.ndarray
    keys: np.ndarray
    values: np.ndarray


class Partitioner:
    """``shards`` shards over ``PARTITIONS`` partitions (round robin unless
    ``table`` maps each partition to its shard), by the hash of ``seed``."""

    def __init__(self, shards: int, seed: int = DEFAULT_SEED,
                 table: np.ndarray | list[int] | None = None) -> None:
        if not 1 <= shards <= PARTITIONS:
            raise ValueError(f"shards must be from 1 to {PARTITIONS}, got {shards}")
        if not 0 <= seed < 2 ** 64:
            raise ValueError(f"the partition seed must be in [0, 2**64), got {seed}")
        self.shards = shards
        self.seed = seed
        self._mix = np.uint64((seed * _GOLDEN) % 2 ** 64)
        if table is None:
            table = np.arange(PARTITIONS) % shards
        self.table = np.asarray(table, dtype=np.int64)
        if self.table.shape != (PARTITIONS,) or self.table.min() < 0 \
                or self.table.max() >= shards:
            raise ValueError(f"the partition table must map {PARTITIONS} partitions to "
                             f"shards 0..{shards - 1}")

    def to_dict(self) -> dict:
        return {"shards": self.shards, "seed": self.seed, "partitions": PARTITIONS,
                "table": self.table.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Partitioner":
        if d.get("partitions") != PARTITIONS:
            raise ValueError(f"a cluster of {d.get('partitions')!r} partitions (this build "
                             f"has {PARTITIONS})")
        return cls(int(d["shards"]), int(d["seed"]), d["table"])

    def partition_of(self, keys: np.ndarray) -> np.ndarray:
        k = np.asarray(keys, dtype=np.uint64)
        return (_fmix64(k ^ self._mix) & np.uint64(PARTITIONS - 1)).astype(np.int64)

    def shard_of(self, keys: np.ndarray) -> np.ndarray:
        return self.table[self.partition_of(keys)]

    def split_keys(self, keys: np.ndarray) -> list[np.ndarray]:
        """``keys`` (distinct or not) by shard, each in their order."""
        keys = np.asarray(keys, dtype=np.uint64)
        owner = self.shard_of(keys)
        return [keys[owner == s] for s in range(self.shards)]

    def split_rows(self, indptr: np.ndarray, keys: np.ndarray,
                   values: np.ndarray) -> tuple[list[SubRows], np.ndarray]:
        """Each shard's ``SubRows`` of a CSR block (indptr from 0), and the
        owner shard of every entry."""
        n = indptr.shape[0] - 1
        owner = self.shard_of(keys)
        row_of = np.repeat(np.arange(n), np.diff(indptr))
        out = []
        for s in range(self.shards):
            mine = owner == s
            counts = np.bincount(row_of[mine], minlength=n)
            sub_indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(counts, out=sub_indptr[1:])
            out.append(SubRows(sub_indptr, np.ascontiguousarray(keys[mine]),
                               np.ascontiguousarray(values[mine])))
        return out, owner
