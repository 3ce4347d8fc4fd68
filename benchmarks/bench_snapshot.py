#!/usr/bin/env python3
"""Snapshot cost at 1 M and 10 M live features: the pause of learning, the
write time, and the file size against the raw bytes of the arrays.

For each size, a learner (cumulative L1, origin first-seen: two state
columns, the largest row of the rules) is filled with that many distinct
random uint64 keys.  Then, best of --repeat:

* fork (what the daemon does): the pause is the time ``os.fork`` holds the
  parent; the child encodes, checksums, writes and fsyncs the file
  (``BackgroundWriter``); the write time is the child's;
* copy-then-write (the alternative): the pause would be the time to copy
  the state out of the store (``Learner.state``); the write time is
  ``model_file.save`` in the same process.

The file size is compared with the raw bytes of the per-feature arrays
(keys + weights + state columns, 8 bytes each per feature).

Usage:
    python benchmarks/bench_snapshot.py [--sizes 1000000 10000000] [--repeat 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

from onlinel1 import Batch, Learner, model_file
from onlinel1.server.snapshots import BackgroundWriter, SnapshotDir


def filled_learner(n_features: int, seed: int = 0) -> Learner:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, size=n_features, dtype=np.uint64)
    per_row = 10
    rows = n_features // per_row
    learner = Learner(update="cumulative", origin="first-seen", l1=1e-9, eta0=0.1)
    for start in range(0, rows, 100_000):
        stop = min(rows, start + 100_000)
        part = keys[start * per_row:stop * per_row]
        learner.learn(Batch(np.arange(0, part.size + 1, per_row), part, np.ones(part.size),
                            rng.choice([-1.0, 1.0], stop - start)))
    return learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="live features (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; best counts")
    parser.add_argument("--dir", help="where to write (default: a temporary directory)")
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        snapshots = SnapshotDir(tmp, keep=1)
        for size in args.sizes:
            learner = filled_learner(size)
            live = learner.store_size
            raw = live * 8 * (2 + len(learner.state["columns"]))
            fork_pause, fork_write, copy_pause, copy_write, file_size = [], [], [], [], 0
            for _ in range(args.repeat):
                writer = BackgroundWriter(snapshots)
                record = writer.start(learner, None, {}, "benchmark")
                done = writer.poll(block=True)
                assert done is not None and done.ok, done
                fork_pause.append(record.pause_s)
                fork_write.append(done.duration_s)
                file_size = done.size
                began = time.perf_counter()
                state = learner.state
                copy_pause.append(time.perf_counter() - began)
                del state
                began = time.perf_counter()
                model_file.save(pathlib.Path(tmp) / "copy.ol1", learner)
                copy_write.append(time.perf_counter() - began)
            rows.append((size, live, raw, file_size, min(fork_pause), min(fork_write),
                         min(copy_pause), min(copy_write)))
            print(f"{live:,} live features: fork pause {1000 * min(fork_pause):.1f} ms, "
                  f"write {min(fork_write):.2f} s, {file_size / raw:.3f}x raw", flush=True)
            del learner
    lines = [
        f"Snapshot cost ({datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}), best of {args.repeat}; cumulative L1 origin "
        f"first-seen (keys, weights and 2 state columns per feature).",
        f"Command: `python benchmarks/bench_snapshot.py --sizes {' '.join(map(str, args.sizes))} "
        f"--repeat {args.repeat}`",
        "",
        "| live features | learning pause (fork) | write, in the child | pause if copy-then-write "
        "| write in-process | file size | raw array bytes | size / raw |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, live, raw, file_size, fp, fw, cp, cw in rows:
        lines.append(f"| {live:,} | {1000 * fp:.1f} ms | {fw:.2f} s | {1000 * cp:.0f} ms | "
                     f"{cw:.2f} s | {file_size / 1e6:,.1f} MB | {raw / 1e6:,.1f} MB | "
                     f"{file_size / raw:.4f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
