#!/usr/bin/env python3
"""Throughput and memory of onlinel1's Learner against scikit-learn and River.

Every learner is timed in one run on the same rows, in the same order, with
the data already in memory (parsing, hashing and building the input are not
timed).  Each timing is the best of --repeats runs of time.perf_counter (after one
untimed warm-up run), each run starting from a fresh model.

What is timed, per data set:

* onlinel1  ``Learner(loss="log", update=RULE, ..., fit_intercept=False)
  .learn(batch)`` for every update rule: plain (L2 only), subgradient,
  cumulative (origin "start" and "first-seen"), fobos, truncated,
  adagrad-fobos, ftrl and spred.  ``batch`` is the
  whole data set as one ``onlinel1.Batch`` (built beforehand; the cost of
  ``Batch.from_csr`` is printed on its own line).
* scikit-learn ``SGDClassifier(loss="log_loss", penalty="l1", alpha,
  learning_rate="constant", eta0, fit_intercept=False, shuffle=False,
  max_iter=1, tol=None).fit(X, y)``: one pass of compiled SGD with the same
  lazy cumulative L1 penalty; the practical speed limit.  X is CSR with int32
  indices.
* the same model's ``partial_fit`` in batches of --partial-fit-batch rows.
* River ``linear_model.LogisticRegression(l1=alpha, optimizer=SGD(eta0),
  intercept_lr=0)`` with ``learn_one`` over dicts, on the first
  --river-rows rows only (it is slow); its rate is per example.

Rates: examples/s, and feature-updates/s = non-zeros of the rows / seconds.
"ratio to sklearn fit" is examples/s divided by that of
``SGDClassifier.fit`` on the same rows.

Memory: ``Learner.memory_bytes / Learner.store_size`` after training (bytes
the weight store allocates per stored feature: dense rows with their 1.5x
growth slack plus the uint32 index table), for every rule, and for a
synthetic run with --synthetic-keys distinct random uint64 keys (update
"plain", l1 = 0, so no key is pruned).

Data sets (under --data, default ../shared/datasets beside the checkout):

* a9a: ``a9a/a9a.train.svm`` (32,561 rows, ~14 non-zeros a row), tiled
  --a9a-repeat times;
* criteo: ``ctr_criteo_8k/train.tsv`` (7,200 rows; label, 13 integer and 26
  categorical fields).  Every present field becomes the feature
  "name=value" (I1..I13, C1..C26), hashed to a uint64 key with the first 8
  bytes of blake2b (~33 non-zeros a row).  onlinel1 learns the uint64 keys;
  scikit-learn gets the same rows with the keys renumbered 0..D-1 (a
  bijection, the same model).  The 7,200 rows are tiled to at least
  --criteo-rows rows so that timings are not dominated by noise.

The rows are shuffled with --seed after tiling (datasets/README.md: shuffle
before you stream); the seed is printed.  A check line compares the
cumulative/start weights with SGDClassifier.fit's (docs/algorithms.md) to show
that both did the same work.

Example:
    python benchmarks/bench_learner.py --out benchmarks/results/learner.md
"""
from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO))       # run from anywhere against the in-place build

A9A_FILE = "a9a/a9a.train.svm"
CRITEO_FILE = "ctr_criteo_8k/train.tsv"

RULES = [  # (label, Learner keyword arguments besides the common ones)
    ("plain (L2)", dict(update="plain", origin="start")),
    ("subgradient", dict(update="subgradient", origin="start")),
    ("cumulative, origin start", dict(update="cumulative", origin="start")),
    ("cumulative, origin first-seen", dict(update="cumulative", origin="first-seen")),
    ("fobos", dict(update="fobos", origin="start")),
    ("truncated", dict(update="truncated", origin="start")),
    ("adagrad-fobos", dict(update="adagrad-fobos", origin="start")),
    ("ftrl", dict(update="ftrl", origin="start")),
    ("spred", dict(update="spred", origin="start")),
]


# ------------------------------------------------------------------ helpers

def best_of(repeats: int, run) -> tuple[float, object]:
    """Best wall time of ``run()`` over ``repeats`` calls, and the last result.

    One untimed call first, so that first-call costs (imports, lazy
    initialisation, cold caches) are not in the figures even with
    ``--repeats 1``."""
    run()
    best, result = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            result = run()
            elapsed = time.perf_counter() - t0
        finally:
            gc.enable()
        best = min(best, elapsed)
    return best, result


def machine() -> str:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return (f"{cpu or platform.machine()} (platform.processor()={platform.processor()!r}), "
            f"nproc={usable} (os.cpu_count()={os.cpu_count()}), {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def write_report(lines: list[str], out) -> None:
    """Print a report and, with ``--out``, write it to that file."""
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out}")


def onlinel1_commit() -> str:
    """The checkout's commit, marked when onlinel1/ has uncommitted changes
    (shared by every benchmark report)."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "onlinel1"], capture_output=True, text=True).stdout.strip()
        commit += " (onlinel1/ modified)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return commit


def versions() -> str:
    import river
    import scipy
    import sklearn
    return (f"onlinel1 @ {onlinel1_commit()}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"scikit-learn {sklearn.__version__}, river {river.__version__}")


# ------------------------------------------------------------------ data

class Data:
    """One data set in memory, in every input form the learners take."""

    def __init__(self, name: str, description: str, X: sp.csr_matrix, y: np.ndarray,
                 keys_of_column: np.ndarray | None):
        from onlinel1 import Batch
        X = X.tocsr()
        X.sort_indices()
        X.indices = X.indices.astype(np.int32)
        X.indptr = X.indptr.astype(np.int32)
        self.name, self.description = name, description
        self.X, self.y = X, y.astype(np.float64)
        self.n_rows, self.nnz = X.shape[0], X.nnz
        # onlinel1's input: column j is feature key j (a9a) or the hashed
        # uint64 key of column j (criteo).
        t0 = time.perf_counter()
        if keys_of_column is None:
            self.batch = Batch.from_csr(X, self.y)
        else:
            self.batch = Batch(X.indptr.astype(np.int64), keys_of_column[X.indices],
                               X.data.astype(np.float64), self.y)
        self.batch_seconds = time.perf_counter() - t0
        self.keys_of_column = keys_of_column


def tile_and_shuffle(X: sp.csr_matrix, y: np.ndarray, copies: int, seed: int):
    if copies > 1:
        X = sp.vstack([X] * copies, format="csr")
        y = np.tile(y, copies)
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    return X[perm], y[perm]


def load_a9a(data_dir: pathlib.Path, copies: int, seed: int) -> Data:
    from sklearn.datasets import load_svmlight_file
    path = data_dir / A9A_FILE
    X, y = load_svmlight_file(str(path), zero_based=True)
    n0 = X.shape[0]
    X, y = tile_and_shuffle(X.tocsr(), y, copies, seed)
    return Data("a9a", f"{A9A_FILE}: {n0:,} rows x {copies} copies = {X.shape[0]:,} rows, "
                f"{X.nnz / X.shape[0]:.1f} nnz/row, {X.shape[1]} columns, "
                f"shuffled (seed {seed})", X, y, None)


def criteo_key(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


def load_criteo(data_dir: pathlib.Path, min_rows: int, seed: int) -> Data:
    path = data_dir / CRITEO_FILE
    names = [f"I{j}" for j in range(1, 14)] + [f"C{j}" for j in range(1, 27)]
    labels, row_keys = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 40:
                raise SystemExit(f"{path}: expected 40 tab-separated fields, got {len(fields)}")
            labels.append(int(fields[0]))
            row_keys.append([criteo_key(f"{n}={v}") for n, v in zip(names, fields[1:]) if v])
    flat = np.array([k for row in row_keys for k in row], dtype=np.uint64)
    indptr = np.zeros(len(row_keys) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in row_keys], out=indptr[1:])
    keys_of_column, columns = np.unique(flat, return_inverse=True)
    X = sp.csr_matrix((np.ones(flat.size), columns.astype(np.int32), indptr),
                      shape=(len(row_keys), keys_of_column.size))
    X.sum_duplicates()
    y = np.array(labels, dtype=np.float64)
    n0 = X.shape[0]
    copies = max(1, -(-min_rows // n0))
    X, y = tile_and_shuffle(X, y, copies, seed)
    return Data("criteo", f"{CRITEO_FILE}: {n0:,} rows x {copies} copies = {X.shape[0]:,} "
                f"rows (tiled so timings are not dominated by noise; every feature recurs "
                f"{copies}x), {X.nnz / X.shape[0]:.1f} nnz/row, {keys_of_column.size:,} "
                f"distinct 'field=value' features hashed to uint64 keys (blake2b, 8 bytes), "
                f"shuffled (seed {seed})", X, y, keys_of_column)


# ------------------------------------------------------------------ learners

def bench_onlinel1(data: Data, args) -> list[dict]:
    from onlinel1 import Learner
    rows = []
    for label, kw in RULES:
        opts = dict(loss="log", eta0=args.eta0, schedule="constant", fit_intercept=False,
                    l1=0.0 if kw["update"] == "plain" else args.alpha,
                    l2=args.alpha if kw["update"] == "plain" else 0.0, **kw)

        def run():
            learner = Learner(**opts)
            learner.learn(data.batch)
            return learner

        seconds, learner = best_of(args.repeats, run)
        rows.append(dict(name=f"onlinel1 {label}", seconds=seconds, n=data.n_rows,
                         nnz=data.nnz, learner=learner, opts=opts,
                         store_size=learner.store_size, nnz_w=learner.nnz,
                         memory=learner.memory_bytes))
        print(f"  {rows[-1]['name']:40s} {seconds:8.3f} s", flush=True)
    return rows


def sgd_classifier(args):
    from sklearn.linear_model import SGDClassifier
    return SGDClassifier(loss="log_loss", penalty="l1", alpha=args.alpha,
                         learning_rate="constant", eta0=args.eta0, fit_intercept=False,
                         shuffle=False, max_iter=1, tol=None)


def bench_sklearn(data: Data, args) -> list[dict]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # max_iter=1 on purpose
        seconds, model = best_of(args.repeats, lambda: sgd_classifier(args).fit(data.X, data.y))
    rows.append(dict(name="scikit-learn SGDClassifier.fit", seconds=seconds, n=data.n_rows,
                     nnz=data.nnz, model=model))
    print(f"  {rows[-1]['name']:40s} {seconds:8.3f} s", flush=True)

    b = args.partial_fit_batch
    classes = np.unique(data.y)
    chunks = [(data.X[i:i + b], data.y[i:i + b]) for i in range(0, data.n_rows, b)]

    def run_partial():
        model = sgd_classifier(args)
        for Xc, yc in chunks:
            model.partial_fit(Xc, yc, classes=classes)
        return model

    seconds, _ = best_of(args.repeats, run_partial)
    rows.append(dict(name=f"scikit-learn partial_fit, batches of {b}", seconds=seconds,
                     n=data.n_rows, nnz=data.nnz))
    print(f"  {rows[-1]['name']:40s} {seconds:8.3f} s", flush=True)
    return rows


def bench_river(data: Data, args) -> list[dict]:
    from river import linear_model, optim
    n = min(args.river_rows, data.n_rows)
    Xs = data.X[:n]
    keys = data.keys_of_column
    dicts = []
    for i in range(n):
        lo, hi = Xs.indptr[i], Xs.indptr[i + 1]
        cols = Xs.indices[lo:hi].tolist() if keys is None else keys[Xs.indices[lo:hi]].tolist()
        dicts.append(dict(zip(cols, Xs.data[lo:hi].tolist())))
    labels = (data.y[:n] > 0).tolist()
    nnz = int(Xs.nnz)

    def run():
        model = linear_model.LogisticRegression(optimizer=optim.SGD(args.eta0), l1=args.alpha,
                                                intercept_lr=0.0)
        for x, yi in zip(dicts, labels):
            model.learn_one(x, yi)
        return model

    seconds, _ = best_of(args.repeats, run)
    row = dict(name=f"River LogisticRegression.learn_one (first {n:,} rows)", seconds=seconds,
               n=n, nnz=nnz)
    print(f"  {row['name']:40s} {seconds:8.3f} s", flush=True)
    return [row]


def agreement(data: Data, onl_rows: list[dict], skl_rows: list[dict]) -> str:
    """max |w_onlinel1 - w_sklearn| for cumulative/start vs SGDClassifier.fit."""
    learner = next(r["learner"] for r in onl_rows if r["opts"]["update"] == "cumulative"
                   and r["opts"]["origin"] == "start")
    coef = skl_rows[0]["model"].coef_.ravel()
    keys, w = learner.weights()
    if data.keys_of_column is None:
        cols = keys.astype(np.int64)
    else:
        cols = np.searchsorted(data.keys_of_column, keys)
    ours = np.zeros_like(coef)
    ours[cols] = w
    diff = np.max(np.abs(ours - coef))
    scale = max(np.max(np.abs(coef)), 1e-300)
    return (f"check: onlinel1 cumulative/start vs SGDClassifier.fit weights: max |dw| = "
            f"{diff:.2e} (max |w| = {scale:.3g}; non-zeros {np.count_nonzero(ours)} vs "
            f"{np.count_nonzero(coef)})")


def bench_synthetic_memory(args) -> list[dict]:
    """Bytes per stored feature with many distinct random uint64 keys."""
    from onlinel1 import Batch, Learner
    n_keys, per_row = args.synthetic_keys, 10
    rng = np.random.default_rng(args.seed)
    keys = np.unique(rng.integers(0, 2**64, size=int(n_keys * 1.01) + 16, dtype=np.uint64,
                                  endpoint=False))
    keys = rng.permutation(keys)[:n_keys]
    n_rows = -(-keys.size // per_row)
    keys = np.concatenate([keys, keys[: n_rows * per_row - keys.size]])   # pad the last row
    indptr = np.arange(0, keys.size + 1, per_row, dtype=np.int64)
    batch = Batch(indptr, keys, np.ones(keys.size), rng.integers(0, 2, size=n_rows).astype(float))
    rows = []
    for label, kw in [("plain", dict(update="plain", l1=0.0)),
                      ("cumulative, origin first-seen", dict(update="cumulative", l1=0.0,
                                                            origin="first-seen"))]:
        def run():
            learner = Learner(loss="log", eta0=args.eta0, fit_intercept=False, **kw)
            learner.learn(batch)
            return learner

        seconds, learner = best_of(args.repeats, run)
        rows.append(dict(name=f"onlinel1 {label}, {n_keys:,} distinct random uint64 keys",
                         seconds=seconds, n=n_rows, nnz=keys.size, store_size=learner.store_size,
                         nnz_w=learner.nnz, memory=learner.memory_bytes,
                         table=learner._kernel.store.table_slots,
                         slot=learner._kernel.store.slot_size,
                         huge=learner._kernel.store.huge_pages))
        print(f"  {rows[-1]['name']:40s} {seconds:8.3f} s", flush=True)
    return rows


# ------------------------------------------------------------------ report

def table(rows: list[dict], reference: float) -> list[str]:
    out = ["| rule | examples/s | M feature-updates/s | ratio to sklearn fit | "
           "bytes/live feature |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        eps = r["n"] / r["seconds"]
        mem = f"{r['memory'] / r['store_size']:.1f}" if r.get("store_size") else "–"
        out.append(f"| {r['name']} | {eps:,.0f} | {r['nnz'] / r['seconds'] / 1e6:.2f} | "
                   f"{eps / reference:.2f} | {mem} |")
    return out


def store_table(rows: list[dict]) -> list[str]:
    out = ["| rule | stored features | non-zero weights | memory_bytes | bytes/stored | "
           "bytes/non-zero |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        per_nz = f"{r['memory'] / r['nnz_w']:.1f}" if r["nnz_w"] else "–"
        out.append(f"| {r['name']} | {r['store_size']:,} | {r['nnz_w']:,} | {r['memory']:,} | "
                   f"{r['memory'] / r['store_size']:.1f} | {per_nz} |")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                        help="the shared data sets folder (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", choices=["a9a", "criteo"],
                        default=["a9a", "criteo"], help="which data sets (default: both)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings are the best of this many runs (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=1e-5,
                        help="L1 strength per example: onlinel1 l1 (l2 for plain), "
                             "scikit-learn alpha, River l1 (default: %(default)s)")
    parser.add_argument("--eta0", type=float, default=0.1,
                        help="constant step size for everyone (default: %(default)s)")
    parser.add_argument("--a9a-repeat", type=int, default=10,
                        help="tile a9a this many times (default: %(default)s)")
    parser.add_argument("--criteo-rows", type=int, default=500_000,
                        help="tile the 7,200 Criteo rows to at least this many "
                             "(default: %(default)s)")
    parser.add_argument("--partial-fit-batch", type=int, default=1000,
                        help="rows per scikit-learn partial_fit call (default: %(default)s)")
    parser.add_argument("--river-rows", type=int, default=20_000,
                        help="River learns only this many rows (default: %(default)s)")
    parser.add_argument("--synthetic-keys", type=int, default=1_000_000,
                        help="distinct keys of the synthetic memory run; 0 skips it "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="shuffle / synthetic-key seed (default: %(default)s)")
    parser.add_argument("--no-river", action="store_true", help="skip River")
    parser.add_argument("--out", type=pathlib.Path, nargs="?",
                        const=HERE / "results" / "learner.md",
                        help="also write the report (Markdown) here; without a value: "
                             "benchmarks/results/learner.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    needed = {"a9a": A9A_FILE, "criteo": CRITEO_FILE}
    missing = [str(args.data / needed[d]) for d in args.datasets
               if not (args.data / needed[d]).is_file()]
    if missing:
        print(f"error: data set file(s) not found: {', '.join(missing)}\n"
              f"The shared data sets live in ../shared/datasets beside the checkout; "
              f"point --data at that folder.", file=sys.stderr)
        return 2
    try:
        import onlinel1  # noqa: F401
        from onlinel1._kernels import sgd  # noqa: F401
    except ImportError as exc:
        print(f"error: cannot import the onlinel1 kernels ({exc}); build them with\n"
              f"  cd {REPO} && python setup.py build_ext --inplace", file=sys.stderr)
        return 2

    command = shlex.join(["python", os.path.relpath(__file__)] + sys.argv[1:]) \
        if argv is None else shlex.join(["python", "bench_learner.py"] + list(argv))
    report = [
        "# onlinel1 Learner throughput and store memory",
        "",
        f"* date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"* machine: {machine()}",
        f"* software: {versions()}",
        f"* command: `{command}`",
        f"* settings: log loss, constant eta0={args.eta0}, alpha (l1; l2 for plain)="
        f"{args.alpha}, no intercept; best of {args.repeats} runs (time.perf_counter) after "
        f"one untimed warm-up run, each from a fresh model, data in memory; one thread",
        "",
        "examples/s and feature-updates/s (= non-zeros of the rows / seconds) cover "
        "`Learner(...).learn(batch)` for onlinel1, `fit` / `partial_fit` for scikit-learn and "
        "the `learn_one` loop for River (on a prefix of the rows; per-example rate). "
        "bytes/live feature = `Learner.memory_bytes / Learner.store_size` after training.",
    ]
    for name in args.datasets:
        print(f"[{name}] loading", flush=True)
        data = (load_a9a(args.data, args.a9a_repeat, args.seed) if name == "a9a"
                else load_criteo(args.data, args.criteo_rows, args.seed))
        print(f"[{name}] {data.description}", flush=True)
        onl = bench_onlinel1(data, args)
        skl = bench_sklearn(data, args)
        riv = [] if args.no_river else bench_river(data, args)
        reference = skl[0]["n"] / skl[0]["seconds"]
        report += ["", f"## {name}", "", f"Data: {data.description}.", ""]
        report += table(onl + skl + riv, reference)
        report += ["", agreement(data, onl, skl) + ".",
                   f"Building the onlinel1 Batch from the CSR matrix (not timed above) took "
                   f"{data.batch_seconds * 1e3:.1f} ms.", "", "Store after training:", ""]
        report += store_table(onl)
        del data, onl, skl, riv
        gc.collect()
    if args.synthetic_keys > 0:
        print("[synthetic] memory per live feature", flush=True)
        syn = bench_synthetic_memory(args)
        report += ["", "## Store memory with many keys", "",
                   f"Rows of 10 distinct random uint64 keys (value 1, random 0/1 label, seed "
                   f"{args.seed}), every key once; l1 = 0 so nothing is pruned.  One "
                   f"table of slots (the key's hash, the weight and 8 bytes per state "
                   f"column), at most 85 % full, growing by a quarter "
                   f"(docs/algorithms.md, \"The weight store\").", "",
                   "| run | examples/s | M feature-updates/s | stored features | memory_bytes "
                   "| bytes/live feature | slot bytes | home slots (load) | huge pages |",
                   "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in syn:
            report.append(
                f"| {r['name']} | {r['n'] / r['seconds']:,.0f} | "
                f"{r['nnz'] / r['seconds'] / 1e6:.2f} | {r['store_size']:,} | {r['memory']:,} | "
                f"{r['memory'] / r['store_size']:.1f} | {r['slot']} | "
                f"{r['table']:,} ({r['store_size'] / r['table']:.2f}) | "
                f"{'yes' if r['huge'] else 'no'} |")
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
