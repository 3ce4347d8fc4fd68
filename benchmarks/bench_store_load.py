"""The weight store's load against speed and memory, at real model sizes.

Learns a synthetic click-log-like stream once (every feature new to the
store), then rebuilds the table at each load given and times a second pass
over the same rows (every feature present: the steady state of a daemon
whose features recur).  Reports feature-updates/s and bytes per live
feature for each load.  The store grows past 85 % load by a quarter and
builds whole tables at 80 %; this shows what that choice costs and saves.

    python benchmarks/bench_store_load.py                   # 1 M rows, ~5.8 M features
    python benchmarks/bench_store_load.py --rows 2000000 --loads 0.5 0.8 --out results/store_load.md
"""
from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import time

import numpy as np

from onlinel1 import Batch, Learner

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_learner import machine, onlinel1_commit, write_report  # noqa: E402


def click_rows(rows: int, fields: int, seed: int) -> tuple[np.ndarray, ...]:
    """Skewed ids per field (vocabularies of 10 to 10^7), hashed to keys."""
    rng = np.random.default_rng(seed)
    vocab = np.array([10 ** (1 + 6 * i / (fields - 1)) for i in range(fields)])
    ids = np.floor(vocab * rng.random((rows, fields)) ** 2.0).astype(np.uint64)
    keys = (ids * np.uint64(0x9E3779B97F4A7C15)
            + np.arange(fields, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93))
    labels = np.where(rng.random(rows) < 0.25, 1.0, -1.0)
    indptr = np.arange(0, rows * fields + 1, fields, dtype=np.int64)
    return indptr, keys.reshape(-1), np.ones(rows * fields, np.float32), labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--fields", type=int, default=30)
    ap.add_argument("--rules", nargs="+", default=["fobos", "cumulative"])
    ap.add_argument("--loads", nargs="+", type=float, default=[0.5, 0.6, 0.7, 0.8, 0.85])
    ap.add_argument("--repeats", type=int, default=2, help="best of this many second passes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path, help="also write the report to this file")
    args = ap.parse_args()
    indptr, keys, values, labels = click_rows(args.rows, args.fields, args.seed)
    step = 100_000
    batches = [Batch(indptr[s:e + 1] - indptr[s], keys[indptr[s]:indptr[e]],
                     values[indptr[s]:indptr[e]], labels[s:e])
               for s, e in ((s, min(args.rows, s + step)) for s in range(0, args.rows, step))]
    lines = ["# Weight store: load against speed and memory", "",
             f"Date: {datetime.date.today()}. Machine: {machine()}. onlinel1 {onlinel1_commit()}.",
             f"Command: `python {' '.join(sys.argv)}`.",
             f"{args.rows:,} rows of {args.fields} skewed ids, l1 = 1e-9 (every feature stays "
             f"live), eta0 = 0.1, origin first-seen; second pass: best of {args.repeats}.", "",
             "| rule | load | M feature-updates/s (second pass) | bytes/live feature | live features |",
             "|---|---:|---:|---:|---:|"]
    for rule in args.rules:
        learner = Learner(update=rule, l1=1e-9, eta0=0.1, origin="first-seen")
        t0 = time.perf_counter()
        for b in batches:
            learner.learn(b, check=False)
        first = keys.size / (time.perf_counter() - t0) / 1e6
        lines.append(f"| {rule} | first pass (grows) | {first:.2f} | "
                     f"{learner.memory_bytes / learner.store_size:.1f} | {learner.store_size:,} |")
        for load in args.loads:
            learner._kernel.store.rebuild(load)
            best = 0.0
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for b in batches:
                    learner.learn(b, check=False)
                best = max(best, keys.size / (time.perf_counter() - t0) / 1e6)
            lines.append(f"| {rule} | {load:.2f} | {best:.2f} | "
                         f"{learner.memory_bytes / learner.store_size:.1f} | "
                         f"{learner.store_size:,} |")
            print(lines[-1], flush=True)
    write_report(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
