#!/usr/bin/env python3
"""What atomic batches cost (docs/algorithms.md, "Atomic batches").

``Learner.learn`` journals every slot a batch changes so that a failure
undoes the whole batch.  This measures that journal's price at a model
size past the caches: a synthetic click-like stream (``--rows`` rows of 30
categorical fields, vocabularies from 10 to 40 M values drawn with a
skew, so that the store ends with more than 10^7 live features at l1 =
1e-8), learned in ``--batch-size`` row batches by

* ``atomic``: ``Learner.learn(batch)`` (begin, learn, commit: the journal);
* ``plain``: the same learner's kernel called directly, no batch open (no
  journal: what ``Learner.learn`` did before).

Fresh model each run; the two modes alternate, ``--repeats`` times, for
each of ``--rules``, in one process, so that both see the same machine.
Reported: feature-updates/s over the whole pass (median, spread), the
ratio atomic / plain, live features at the end, and the journal's peak
bytes per batch.  Results: benchmarks/results/atomic.md.

    python benchmarks/bench_atomic.py                 # about 6 minutes here
    python benchmarks/bench_atomic.py --rows 200000   # a quick look
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import time

import numpy as np

from onlinel1 import Batch, Learner

FIELDS = 30


def stream(rows: int, batch_size: int, seed: int) -> list[Batch]:
    rng = np.random.default_rng(seed)
    keys = np.empty((rows, FIELDS), dtype=np.uint64)
    for j in range(FIELDS):
        vocab = int(round(10 * 4e6 ** (j / (FIELDS - 1))))
        skew = 3.0 if vocab < 100_000 else 1.5 if vocab < 3_000_000 else 1.0
        rank = np.minimum((vocab * rng.random(rows) ** skew).astype(np.uint64), vocab - 1)
        keys[:, j] = (np.uint64(j + 1) << np.uint64(40)) + rank
    labels = rng.choice([-1.0, 1.0], rows, p=[0.78, 0.22])
    out = []
    for lo in range(0, rows, batch_size):
        hi = min(lo + batch_size, rows)
        k = keys[lo:hi].ravel()
        out.append(Batch(np.arange(0, k.size + 1, FIELDS, dtype=np.int64), k,
                         np.ones(k.size, dtype=np.float32), labels[lo:hi]))
    return out


def run(options: dict, batches: list[Batch], atomic: bool) -> tuple[float, int, int]:
    learner = Learner(**options)
    kernel = learner._kernel
    journal = 0
    began = time.perf_counter()
    for batch in batches:
        if atomic:
            learner.learn(batch, check=False)
        else:
            kernel.learn(batch.indptr, batch.keys, batch.values, batch.labels, batch.weights)
    took = time.perf_counter() - began
    if atomic:   # the journal of one more batch (it is given back at commit)
        learner.begin()
        learner.learn(batches[-1], check=False)
        journal = kernel.store.journal_bytes
        learner.rollback()
    nnz = sum(int(b.keys.size) for b in batches)
    return nnz / took, learner.store_size, journal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rules", default="fobos,cumulative")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    batches = stream(args.rows, args.batch_size, args.seed)
    print(f"# bench_atomic.py, {datetime.date.today()}: {args.rows:,} rows x {FIELDS} fields, "
          f"batches of {args.batch_size:,} rows, {args.repeats} repeats\n")
    print("| rule | plain M upd/s | atomic M upd/s | atomic / plain | live features | "
          "journal per batch |")
    print("|---|---:|---:|---:|---:|---:|")
    for rule in args.rules.split(","):
        options = dict(update=rule, l1=1e-8, eta0=0.01)
        if rule == "cumulative":
            options["origin"] = "first-seen"
        rates = {True: [], False: []}
        live = journal = 0
        for _ in range(args.repeats):
            for atomic in (False, True):
                rate, live, j = run(options, batches, atomic)
                rates[atomic].append(rate)
                journal = max(journal, j)
        plain, atomic = statistics.median(rates[False]), statistics.median(rates[True])
        ratios = [a / p for a, p in zip(rates[True], rates[False])]
        print(f"| {rule} | {plain / 1e6:.2f} ({min(rates[False]) / 1e6:.2f}-"
              f"{max(rates[False]) / 1e6:.2f}) | {atomic / 1e6:.2f} ({min(rates[True]) / 1e6:.2f}-"
              f"{max(rates[True]) / 1e6:.2f}) | {atomic / plain:.3f} (pairs {min(ratios):.3f}-"
              f"{max(ratios):.3f}) | {live:,} | {journal / 2**20:.1f} MiB |", flush=True)


if __name__ == "__main__":
    main()
