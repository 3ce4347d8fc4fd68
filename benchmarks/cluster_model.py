#!/usr/bin/env python3
"""The cost model of ``onlinel1 cluster`` (docs/scaling.md, "N machines"):
a closed form, and a simulation that charges every message its costs.

A mini-batch of B rows, E entries and K distinct keys, over S shards, is
(step.py): head -> worker (the rows) and back (the factors), the worker's
split, a pull from every shard (keys out, weights back), the factors, an
apply on every shard (its entries and every row's factors).  Mini-batches
run one after another: the next one's margins need this one's updates, so
nothing overlaps them.  A round of calls to S actors at once costs, besides
the actors' work, ``round_s`` (one call's fixed cost: Ray's serialisation,
scheduling and reply) plus ``extra_call_s`` for each more call in the round
(measured: rounds of 1, 2 and 4 calls of an apply's shape), 2 ``latency_s``
in flight (0 on one machine, where the measured round holds it) and its
bytes / ``bandwidth``.  The shards work in parallel, each from when its
request left.  So

    T(B) = glue_s                                    Python glue, per mini-batch
         + R1 + (16 E + 56 B) / bandwidth            head -> worker -> head
         + (split_s + factors_s) E                   the worker
         + R_S + (16 K) / bandwidth + pull_s K / S   the pull
         + R_S + (16 E + 32 B S) / bandwidth + apply_s E / S    the apply
    R_S = round_s + (S - 1) extra_call_s + 2 latency_s
    rows/s = B / T(B)

(bytes: 16 an entry to the worker and again to the shards, 8 a distinct
key each way, 32 a row to every shard (its factors and offset), 32 a row
to the worker (label, importance, offset) and 24 back to the head.)  The
closed form takes every shard's E_s = E / S; the simulation walks real
mini-batches split by the real partition hash, call by call, each shard
starting when its request left, and, when the shards share fewer cores
than they are (this 2-core machine), serialises their work.

``python benchmarks/cluster_model.py --costs FILE`` prints what the model
predicts for N shard machines from the costs bench_cluster.py measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Sequence

import numpy as np


@dataclasses.dataclass
class Costs:
    """Per-round, per-entry and per-mini-batch costs (seconds; bytes/s)."""
    round_s: float              # a round of one call (its fixed cost)
    extra_call_s: float         # each more call in the same round
    latency_s: float            # in flight, one way (0 on one machine)
    bandwidth: float            # bytes/s of a sender's link (or serialisation)
    split_s: float              # per entry, the worker's split by shard
    factors_s: float            # per entry, the worker's margins and factors
    apply_s: float              # per entry, a shard's update
    pull_s: float               # per distinct key, a shard's lookup
    glue_s: float               # per mini-batch, the head's and worker's Python

    @classmethod
    def from_dict(cls, d: dict) -> "Costs":
        return cls(**{f.name: float(d[f.name]) for f in dataclasses.fields(cls)})

    def round(self, calls: int) -> float:
        return self.round_s + (calls - 1) * self.extra_call_s + 2 * self.latency_s


def closed_form(c: Costs, B: int, E: float, K: float, S: int) -> float:
    """Rows/s of the formula above."""
    t = (c.glue_s + c.round(1) + (16 * E + 56 * B) / c.bandwidth
         + (c.split_s + c.factors_s) * E
         + c.round(S) + 16 * K / c.bandwidth + c.pull_s * K / S
         + c.round(S) + (16 * E + 32 * B * S) / c.bandwidth + c.apply_s * E / S)
    return B / t


def simulate(c: Costs, minibatches: Sequence[tuple[int, np.ndarray, np.ndarray]], S: int,
             cores: float = math.inf) -> float:
    """Rows/s of stepping through ``minibatches``, each (B, entries per
    shard, distinct keys per shard), call by call.  ``cores``: the cores the
    shards share (inf: a machine each)."""
    clock = 0.0
    rows = 0
    for B, entries, keys in minibatches:
        E = float(entries.sum())
        rows += B
        clock += c.glue_s + c.round(1) + (16 * E + 56 * B) / c.bandwidth + c.split_s * E
        clock += _round(c, 8 * keys, c.pull_s * keys, 8 * keys, cores)
        clock += c.factors_s * E
        clock += _round(c, 16 * entries + 32 * B, c.apply_s * entries, np.zeros(S), cores)
    return rows / clock


def _round(c: Costs, out_bytes: np.ndarray, work: np.ndarray, back_bytes: np.ndarray,
           cores: float) -> float:
    """A round of one call to every shard: until the last reply is in."""
    n = work.size
    left = np.arange(n) * c.extra_call_s + np.cumsum(out_bytes) / c.bandwidth
    if cores >= n:
        ready = left + work
    else:   # the shards share ``cores``: all their work, at that rate
        ready = np.full(n, max(float((left + work).max()),
                               float(left.min()) + float(work.sum()) / cores))
    return float((ready + back_bytes / c.bandwidth).max()) + c.round_s + 2 * c.latency_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--costs", required=True, help="the JSON bench_cluster.py --costs-out wrote")
    ap.add_argument("--entries-per-row", type=float, default=31.0)
    ap.add_argument("--distinct-share", type=float, default=0.6,
                    help="distinct keys / entries of a mini-batch")
    ap.add_argument("--latency-us", type=float, default=50.0)
    ap.add_argument("--gbps", type=float, default=10.0)
    args = ap.parse_args()
    measured = Costs.from_dict(json.load(open(args.costs)))
    c = dataclasses.replace(measured, latency_s=args.latency_us * 1e-6,
                            bandwidth=args.gbps * 1e9 / 8)
    print(f"rows/s predicted: costs measured here, latency {args.latency_us:g} us, "
          f"{args.gbps:g} Gb/s, {args.entries_per_row:g} entries a row")
    sizes = (256, 1024, 4096, 16384)
    print(f"{'shards':>6} " + " ".join(f"{'B=' + str(b):>10}" for b in sizes))
    for S in (1, 2, 4, 8, 16, 32, 64):
        cells = []
        for B in sizes:
            E = B * args.entries_per_row
            cells.append(f"{closed_form(c, B, E, E * args.distinct_share, S):>10,.0f}")
        print(f"{S:>6} " + " ".join(cells))


if __name__ == "__main__":
    main()
