#!/usr/bin/env python3
"""End to end from a file: `onlinel1 train FILE` beside Vowpal Wabbit and
scikit-learn, whole processes, in one run, on the same rows.

The rows are the Criteo click-log sample of ../shared/datasets
(ctr_criteo_8k/train.tsv: a click label, 13 integer and 26 categorical
fields), shuffled with a fixed seed and tiled to --rows rows, written once
as Vowpal Wabbit text (string features ``field=value`` in one namespace,
hashed by each tool) and as svmlight (the same features numbered, for
scikit-learn, which cannot hash while it reads).

Contenders, each a fresh process timed from start to exit (best of
--repeat):

* ``onlinel1 train rows.vw`` (cumulative L1, log loss, constant step);
* Vowpal Wabbit ``Workspace("-d rows.vw --l1 ... --loss_function logistic")``;
* scikit-learn ``load_svmlight_file(rows.svm)`` + ``SGDClassifier.fit``
  (penalty l1, one epoch): the reference for loading and fitting in Python.

Usage:
    python benchmarks/bench_train_file.py [--rows 485000] [--repeat 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "datasets" / "ctr_criteo_8k" / "train.tsv"


def make_files(rows: int, seed: int, directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, float]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    records = []
    for line in lines:
        fields = line.split("\t")
        feats = [f"{j}={v}" for j, v in enumerate(fields[1:], 1) if v]
        records.append((int(fields[0]), feats))
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(records))
                            for _ in range(rows // len(records) + 1)])[:rows]
    index: dict[str, int] = {}
    vw_path, svm_path = directory / "rows.vw", directory / "rows.svm"
    nnz = 0
    with open(vw_path, "w") as vw, open(svm_path, "w") as svm:
        for i in order:
            label, feats = records[i]
            nnz += len(feats)
            vw.write(f"{1 if label else -1} |c {' '.join(feats)}\n")
            ids = sorted(index.setdefault(f, len(index) + 1) for f in feats)
            svm.write(f"{1 if label else -1} {' '.join(f'{k}:1' for k in ids)}\n")
    return vw_path, svm_path, nnz / rows


def timed(cmd: list[str], repeat: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[:3]} failed:\n{proc.stderr}")
        if elapsed < best:
            best, out = elapsed, proc.stderr + proc.stdout
    return best, out


VW_SCRIPT = """
import sys, vowpalwabbit
ws = vowpalwabbit.Workspace(f"-d {sys.argv[1]} --loss_function logistic --l1 {sys.argv[2]} "
                            f"-l {sys.argv[3]} --power_t 0 -b 24 --quiet")
ws.finish()
"""

SKLEARN_SCRIPT = """
import sys, warnings
import numpy as np
from sklearn.datasets import load_svmlight_file
from sklearn.linear_model import SGDClassifier
X, y = load_svmlight_file(sys.argv[1])
X.indices = X.indices.astype(np.int32); X.indptr = X.indptr.astype(np.int32)
warnings.simplefilter("ignore")
SGDClassifier(loss="log_loss", penalty="l1", alpha=float(sys.argv[2]), learning_rate="constant",
              eta0=float(sys.argv[3]), shuffle=False, max_iter=1, tol=None).fit(X, y)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=485_000, help="rows in the file (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender; the best counts")
    parser.add_argument("--l1", type=float, default=1e-6, help="L1 penalty (default: %(default)s)")
    parser.add_argument("--eta0", type=float, default=0.1, help="step size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default: %(default)s)")
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found: this benchmark needs ../shared/datasets beside the checkout")
    with tempfile.TemporaryDirectory() as tmp:
        vw_path, svm_path, nnz = make_files(args.rows, args.seed, pathlib.Path(tmp))
        mb = vw_path.stat().st_size / 1e6
        contenders = [
            ("onlinel1 train (cumulative L1)",
             [sys.executable, "-m", "onlinel1", "train", str(vw_path), "--update", "cumulative",
              "--l1", str(args.l1), "--eta0", str(args.eta0), "--quiet"]),
            ("onlinel1 train (FOBOS)",
             [sys.executable, "-m", "onlinel1", "train", str(vw_path), "--update", "fobos",
              "--l1", str(args.l1), "--eta0", str(args.eta0), "--quiet"]),
            ("Vowpal Wabbit (--l1, logistic)",
             [sys.executable, "-c", VW_SCRIPT, str(vw_path), str(args.l1), str(args.eta0)]),
            ("scikit-learn load_svmlight_file + SGDClassifier.fit",
             [sys.executable, "-c", SKLEARN_SCRIPT, str(svm_path), str(args.l1), str(args.eta0)]),
        ]
        results = []
        for name, cmd in contenders:
            seconds, _ = timed(cmd, args.repeat)
            results.append((name, seconds))
            print(f"{name}: {seconds:.2f} s", file=sys.stderr)
    vw_seconds = dict(results)["Vowpal Wabbit (--l1, logistic)"]
    lines = [
        f"End-to-end training from a file, whole process, best of {args.repeat} "
        f"({datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}).",
        f"Rows: {args.rows:,} Criteo click-log rows (ctr_criteo_8k shuffled with seed "
        f"{args.seed} and tiled), {nnz:.1f} features a row, {mb:.0f} MB as VW text.",
        f"Command: `python benchmarks/bench_train_file.py --rows {args.rows} --repeat {args.repeat}`",
        "",
        "| contender | seconds | examples/s | vs Vowpal Wabbit |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in results:
        lines.append(f"| {name} | {seconds:.2f} | {args.rows / seconds:,.0f} | "
                     f"{vw_seconds / seconds:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
