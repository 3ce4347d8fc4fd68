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

Each ``onlinel1 train`` row is also run with ``--no-read-ahead`` (parsing
in the learning thread, one core) beside the default (the next block
parsed in a second thread).  The contenders take turns, one run each per
round, so that a noisy neighbour slows them alike; ``--only-onlinel1``
leaves out Vowpal Wabbit and scikit-learn.

Usage:
    python benchmarks/bench_train_file.py [--rows 485000] [--repeat 3] [--only-onlinel1]
                                          [--out FILE]
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import resource
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


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of ``cmd``.
    CPU above wall means two cores at work; wall well above CPU for a
    one-core run means the machine was busy with something else."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


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


def cpu_split(path: pathlib.Path, update: str, l1: float, eta0: float) -> tuple[float, float, float]:
    """In this process, ``train``'s loop with read-ahead: (wall seconds, CPU
    seconds of the parsing thread, CPU seconds of the learning thread).
    On an idle machine the loop can take no less than the larger CPU figure;
    plain reading takes about their sum."""
    from onlinel1 import Learner
    from onlinel1.io import read_ahead, read_batches
    parse_cpu = []

    def parsed():
        start = time.thread_time()
        try:
            yield from read_batches(path, "vw", names={})
        finally:
            parse_cpu.append(time.thread_time() - start)

    learner = Learner(update=update, l1=l1, eta0=eta0)
    wall, cpu = time.perf_counter(), time.thread_time()
    for batch in read_ahead(parsed()):
        learner.learn(batch)
    return time.perf_counter() - wall, parse_cpu[0], time.thread_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=485_000, help="rows in the file (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender; the best counts")
    parser.add_argument("--l1", type=float, default=1e-6, help="L1 penalty (default: %(default)s)")
    parser.add_argument("--eta0", type=float, default=0.1, help="step size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default: %(default)s)")
    parser.add_argument("--only-onlinel1", action="store_true",
                        help="only the onlinel1 rows (with and without read-ahead)")
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found: this benchmark needs ../shared/datasets beside the checkout")
    with tempfile.TemporaryDirectory() as tmp:
        vw_path, svm_path, nnz = make_files(args.rows, args.seed, pathlib.Path(tmp))
        mb = vw_path.stat().st_size / 1e6
        train = [sys.executable, "-m", "onlinel1", "train", str(vw_path), "--l1", str(args.l1),
                 "--eta0", str(args.eta0), "--quiet"]
        contenders = []
        for rule, name in (("cumulative", "cumulative L1"), ("fobos", "FOBOS")):
            contenders += [
                (f"onlinel1 train ({name})", [*train, "--update", rule]),
                (f"onlinel1 train ({name}, --no-read-ahead)",
                 [*train, "--update", rule, "--no-read-ahead"]),
            ]
        if not args.only_onlinel1:
            contenders += [
                ("Vowpal Wabbit (--l1, logistic)",
                 [sys.executable, "-c", VW_SCRIPT, str(vw_path), str(args.l1), str(args.eta0)]),
                ("scikit-learn load_svmlight_file + SGDClassifier.fit",
                 [sys.executable, "-c", SKLEARN_SCRIPT, str(svm_path), str(args.l1),
                  str(args.eta0)]),
            ]
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in contenders}
        for round_ in range(args.repeat):
            for name, cmd in contenders:
                runs[name].append(timed(cmd))
                wall, cpu = runs[name][-1]
                print(f"round {round_ + 1}: {name}: {wall:.2f} s ({cpu:.2f} s CPU)",
                      file=sys.stderr)
        # (name, best wall, its CPU, slowest wall)
        results = [(name, *min(runs[name]), max(runs[name])[0]) for name, _ in contenders]
        splits = {name: cpu_split(vw_path, rule, args.l1, args.eta0)
                  for rule, name in (("cumulative", "cumulative L1"), ("fobos", "FOBOS"))}
        load = os.getloadavg()
    reference = dict((name, best) for name, best, _, _ in results)
    vw_seconds = reference.get("Vowpal Wabbit (--l1, logistic)")
    command = f"python benchmarks/bench_train_file.py --rows {args.rows} --repeat {args.repeat}"
    if args.only_onlinel1:
        command += " --only-onlinel1"
    lines = [
        f"End-to-end training from a file, whole process, best of {args.repeat} "
        f"({datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}).",
        f"Rows: {args.rows:,} Criteo click-log rows (ctr_criteo_8k shuffled with seed "
        f"{args.seed} and tiled), {nnz:.1f} features a row, {mb:.0f} MB as VW text.",
        f"Command: `{command}`",
        f"Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.",
        "",
        "| contender | seconds (best) | CPU s of that run | slowest | examples/s "
        "| vs Vowpal Wabbit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, seconds, cpu, slowest in results:
        versus = f"{vw_seconds / seconds:.2f}x" if vw_seconds else "-"
        lines.append(f"| {name} | {seconds:.2f} | {cpu:.2f} | {slowest:.2f} | "
                     f"{args.rows / seconds:,.0f} | {versus} |")
    lines.append("")
    for rule in ("cumulative L1", "FOBOS"):
        ahead = reference[f"onlinel1 train ({rule})"]
        plain = reference[f"onlinel1 train ({rule}, --no-read-ahead)"]
        wall, parse, learn = splits[rule]
        lines.append(f"Read-ahead, {rule}: {plain:.2f} s without, {ahead:.2f} s with "
                     f"({plain / ahead:.2f}x faster); in process, the loop's parsing thread "
                     f"used {parse:.2f} s of CPU and its learning thread {learn:.2f} s "
                     f"({wall:.2f} s wall).  ")
    table = "\n".join(lines)
    print(table)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
