#!/usr/bin/env python3
"""The cost model of ``onlinel1 cluster`` (docs/scaling.md, "N machines"):
a closed form, and a simulation that charges every message its costs.

A mini-batch of B rows, E entries and K distinct keys, over S shards, is
(step.py): head -> worker (the rows), the worker's split, a pull from
every shard (keys out, weights back), the factors, an apply on every shard
(its entries and every row's factors), worker -> head (the stats).
Mini-batches run one after another: the next one's margins need this
one's updates, so nothing overlaps them.  A message costs its sender
``msg_s`` of CPU (Ray's serialisation and bookkeeping: half of a no-op
actor call's round trip, measured), its bytes / ``bandwidth`` on the
sender's link, and ``latency_s`` in flight (0 on one machine, where the
measured call cost holds it).  A worker sends its S requests one after
another; the shards work in parallel.  So

    T(B) = glue_s + 2 msg_s + 2 latency_s          head -> worker -> head
         + (16 E + 56 B) / bandwidth                the rows, the factors back
         + (split_s + factors_s) E                  the worker
         + R(8 K, pull_s K, 8 K)                    the pull
         + R(16 E + 32 B S, apply_s E, 0)           the apply
    R(out, work, back) = S msg_s + out / bandwidth  the S requests, one after another
         + max(S msg_s,                             taking the S replies, or
               2 latency_s + (work + back / bandwidth) / S + msg_s)   the last one's trip
    rows/s = B / T(B)

(bytes: 16 an entry to the worker and again to the shards, 8 a distinct
key each way, 32 a row to every shard (its factors and offset), 32 a row
to the worker (label, importance, offset) and 24 back to the head.)  The
closed form takes every shard's E_s = E / S; the simulation walks real mini-batches split by the
real partition hash, message by message, and, when actors share fewer
cores than they are (this 2-core machine), serialises their compute.

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
    """Per-message, per-entry and per-mini-batch costs (seconds; bytes/s)."""
    msg_s: float                # CPU of one message at its sender
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


def closed_form(c: Costs, B: int, E: float, K: float, S: int) -> float:
    """Rows/s of the formula above."""
    def round_trip(out_bytes: float, work: float, back_bytes: float) -> float:
        return (S * c.msg_s + out_bytes / c.bandwidth
                + max(S * c.msg_s, 2 * c.latency_s + work / S + back_bytes / S / c.bandwidth
                      + c.msg_s))
    t = (c.glue_s + 2 * c.msg_s + 2 * c.latency_s + (16 * E + 56 * B) / c.bandwidth
         + (c.split_s + c.factors_s) * E
         + round_trip(8 * K, c.pull_s * K, 8 * K)
         + round_trip(16 * E + 32 * B * S, c.apply_s * E, 0.0))
    return B / t


def simulate(c: Costs, minibatches: Sequence[tuple[int, np.ndarray, np.ndarray]], S: int,
             cores: float = math.inf) -> float:
    """Rows/s of stepping through ``minibatches``, each (B, entries per
    shard, distinct keys per shard), message by message.  ``cores``: the
    cores the shards share (inf: a machine each)."""
    clock = 0.0
    rows = 0
    for B, entries, keys in minibatches:
        E, K = float(entries.sum()), float(keys.sum())
        rows += B
        clock += c.glue_s
        # head -> worker: the rows; the worker splits them.
        clock += c.msg_s + (16 * E + 32 * B) / c.bandwidth + c.latency_s + c.split_s * E
        # pull: the worker sends S requests one after another; each shard
        # looks its keys up when its request lands and replies; the worker
        # takes the replies in turn.
        clock = _round(c, clock, 8 * keys, c.pull_s * keys, 8 * keys, cores)
        clock += c.factors_s * E
        # apply: each shard's entries and every row's factors.
        clock = _round(c, clock, 16 * entries + 32 * B, c.apply_s * entries,
                       np.zeros(S), cores)
        # worker -> head: the factors and stats.
        clock += c.msg_s + 24 * B / c.bandwidth + c.latency_s
    return rows / clock


def _round(c: Costs, start: float, out_bytes: np.ndarray, work: np.ndarray,
           back_bytes: np.ndarray, cores: float) -> float:
    """One request to every shard and its reply; when the last reply is in."""
    sent = start + np.cumsum(c.msg_s + out_bytes / c.bandwidth)
    arrive = sent + c.latency_s
    if cores >= work.size:
        ready = arrive + work
    else:   # the shards share ``cores``: their work, all together, at that rate
        ready = np.full(work.size, max(float((arrive + work).max()),
                                       float(arrive.min()) + float(work.sum()) / cores))
    ready = ready + back_bytes / c.bandwidth + c.latency_s
    done = float(sent[-1])          # the worker is busy sending until then
    for s in np.argsort(ready, kind="stable"):
        done = max(done, float(ready[s])) + c.msg_s    # a reply costs its taker a message
    return done


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
