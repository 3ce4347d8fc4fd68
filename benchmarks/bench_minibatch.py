#!/usr/bin/env python3
"""The mini-batch loop's speed, ``Learner(minibatch=256)``, of one or more
checkouts side by side (each a folder with its extension modules built in
place), so that a change to the kernels is measured against the code before
it in the same run:

    python benchmarks/bench_minibatch.py /path/to/old/checkout /path/to/this/checkout

Rows: a9a's training set (../shared/datasets), and 100,000 rows of 30 keys
drawn by a power law from a seeded model of 10^7 live features (fobos,
l1 = 1e-6, eta0 = 0.05). Reported: entries learned per second, the best of
5 runs, each checkout in its own process, the checkouts alternated twice.
(2026-12-03, this command, 5ed1183 against the split of step 2 into
mb_row_factors, two rounds: a9a 187.3/193.1 M entries/s before,
187.0/181.3 after; 10^7 features 64.6/63.5 before, 62.1/62.9 after: at
most 3 % apart, within the spread of one checkout's two rounds.)
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
A9A = ROOT.parent / "shared" / "datasets" / "a9a" / "a9a.train.svm"


def measure(checkout: str) -> None:
    sys.path.insert(0, checkout)
    from onlinel1 import Batch, Learner
    from onlinel1.io import read_batches
    from onlinel1.options import LearnerOptions
    b = list(read_batches(str(A9A), "svmlight", batch_size=1 << 20))[0]
    a9a = Batch(b.indptr, b.keys, b.values, b.labels)
    rng = np.random.default_rng(1)
    features, rows = 10_000_000, 100_000
    keys = np.unique(rng.integers(1, 2 ** 63, size=int(features * 1.01), dtype=np.uint64))
    keys = keys[:features]
    ranks = np.minimum((rng.pareto(0.6, size=(rows, 30)) * 50).astype(np.int64), features - 1)
    big = Batch(np.arange(rows + 1, dtype=np.int64) * 30, keys[ranks].reshape(-1),
                np.ones(rows * 30, dtype=np.float32),
                np.where(rng.random(rows) < 0.22, 1.0, -1.0))
    options = LearnerOptions(minibatch=256, update="fobos", l1=1e-6, eta0=0.05)
    state = Learner(options).state
    state["keys"] = keys
    state["weights"] = rng.normal(0, 0.01, keys.size)
    state["columns"] = {c: np.zeros(keys.size) for c in state["columns"]}
    for name, batch, seeded in (("a9a", a9a, False), ("10^7 features", big, True)):
        best = float("inf")
        for _ in range(5):
            learner = Learner.from_state(state) if seeded else Learner(options)
            began = time.perf_counter()
            learner.learn(batch, check=False)
            learner.flush()
            best = min(best, time.perf_counter() - began)
        print(f"{checkout}: {name}: {batch.keys.size / best / 1e6:.1f} M entries/s", flush=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        measure(sys.argv[2])
        return
    checkouts = sys.argv[1:] or [str(ROOT)]
    for _ in range(2):
        for checkout in checkouts:
            subprocess.run([sys.executable, __file__, "--child", checkout], check=True)


if __name__ == "__main__":
    main()
