#!/usr/bin/env python3
"""The cost model of ``onlinel1 cluster`` (docs/scaling.md, "N machines"):
a closed form and a simulation that charges per-message costs.

A mini-batch of B rows and E entries (K distinct keys) goes through
(step.py): head -> worker (the rows), the worker's split, a pull from
every shard (keys out, weights back), the factors, an apply on every shard
(its entries and all B rows' factors), worker -> head (a small reply).
Mini-batches run one after another: the next one's margins need this
one's updates, so nothing overlaps them.  With message latency L (one
way), per-byte cost 1/BW, and the compute rates measured on this machine:

    T(B) = 4 L + [16E + 24B]/BW                      head -> worker, reply
         + c_split E + c_factors E                  worker
         + [16K + 16E + 32 B S]/BW_worker          the worker's NIC, pull + apply
         + max_s c_apply E_s                       the shards, in parallel
    throughput = B / T(B)

(16 bytes an entry: its key and value; 8 a key each way for a pull; 32 a
row for its factors and offset, sent to every shard.)  The closed form
takes E_s = E / S; the simulation walks real mini-batches, split by the real
partition hash, message by message, charging each its latency and bytes on
the sending machine's link and each shard its own entries, and, when the
machines are fewer than the actors (this 2-core machine), serialising the
compute of actors that share a core.

``python benchmarks/cluster_model.py --costs FILE`` prints the predictions
for N = 1..64 shard machines at 10 and 100 Gb/s from the costs measured by
bench_cluster.py (its --costs-out).
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
    """Per-message and per-entry costs, in seconds (and bytes/s)."""
    latency_s: float            # one way, per message (Ray: the call's fixed cost / 2)
    bandwidth: float            # bytes/s of one machine's link (or serialisation, on one host)
    split_s: float              # per entry, the worker's split by shard
    factors_s: float            # per entry, the worker's margins and factors
    apply_s: float              # per entry, a shard's update
    pull_s: float               # per distinct key, a shard's lookup

    @classmethod
    def from_dict(cls, d: dict) -> "Costs":
        return cls(**{f.name: float(d[f.name]) for f in dataclasses.fields(cls)})


def closed_form(costs: Costs, B: int, E: float, K: float, S: int) -> float:
    """Rows/s of the formula above (every actor on its own machine)."""
    c = costs
    t = (4 * c.latency_s + (16 * E + 24 * B) / c.bandwidth
         + (c.split_s + c.factors_s) * E
         + 2 * c.latency_s + (16 * K + 16 * E + 32 * B * S) / c.bandwidth
         + c.pull_s * K / S + c.apply_s * E / S)
    return B / t


def simulate(costs: Costs, minibatches: Sequence[tuple[int, np.ndarray, np.ndarray]], S: int,
             cores: float = math.inf) -> float:
    """Rows/s of stepping through ``minibatches`` — each (B, entries per
    shard, distinct keys per shard) — message by message.  ``cores``: the
    cores the actors share (inf: a machine each)."""
    c = costs
    clock = 0.0
    rows = 0
    for B, entries, keys in minibatches:
        E = int(entries.sum())
        rows += B
        # head -> worker: one message with the rows; the worker splits them.
        clock += c.latency_s + (16 * E + 24 * B) / c.bandwidth + c.split_s * E
        # pull: S requests leave the worker's link one after another, each
        # shard looks up its keys when its request lands, the replies
        # return over the worker's link.
        sent = np.cumsum(8 * keys / c.bandwidth)
        ready = sent + c.latency_s + _shared(c.pull_s * keys, cores) + c.latency_s
        arrived = 0.0           # the replies queue on the worker's link
        for s in np.argsort(ready, kind="stable"):
            arrived = max(arrived, float(ready[s])) + 8 * float(keys[s]) / c.bandwidth
        clock += arrived
        clock += c.factors_s * E
        # apply: each shard's entries and every row's factors.
        sent = np.cumsum((16 * entries + 32 * B) / c.bandwidth)
        work = c.apply_s * entries
        done = sent + c.latency_s + _shared(work, cores) + c.latency_s
        clock += float(done.max())
        # worker -> head: the stats.
        clock += c.latency_s
    return rows / clock


def _shared(work: np.ndarray, cores: float) -> np.ndarray:
    """Each actor's finish time when they start together on ``cores``
    cores (all of it at once if each has a core)."""
    if cores >= work.size:
        return work
    return np.full(work.size, max(float(work.max()), float(work.sum()) / cores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--costs", required=True, help="the JSON bench_cluster.py --costs-out wrote")
    ap.add_argument("--minibatch", type=int, default=1024)
    ap.add_argument("--entries-per-row", type=float, default=31.0)
    ap.add_argument("--distinct-share", type=float, default=0.6,
                    help="distinct keys / entries of a mini-batch")
    args = ap.parse_args()
    measured = Costs.from_dict(json.load(open(args.costs)))
    B = args.minibatch
    E = B * args.entries_per_row
    K = E * args.distinct_share
    print(f"B = {B}, E = {E:.0f}, K = {K:.0f}; compute costs measured here, "
          f"latency 50 us one way")
    print(f"{'shards':>6} {'10 Gb/s rows/s':>15} {'100 Gb/s rows/s':>16}")
    for S in (1, 2, 4, 8, 16, 32, 64):
        out = []
        for gbps in (10, 100):
            c = dataclasses.replace(measured, latency_s=50e-6, bandwidth=gbps * 1e9 / 8)
            out.append(closed_form(c, B, E, K, S))
        print(f"{S:>6} {out[0]:>15,.0f} {out[1]:>16,.0f}")


if __name__ == "__main__":
    main()
