#!/usr/bin/env python3
"""The sparsity-against-accuracy report of the README: every update rule
over a grid of L1 penalties on real data, against the batch L1 optimum.

One command writes everything into a folder of its own (``--out DIR``; by
default a new folder under the system's temporary directory, named at the
end), so that a run never touches the committed figures::

    python benchmarks/path_report.py --out /tmp/path
    python benchmarks/path_report.py --update-committed   # rewrite benchmarks/results/path

* ``<out>/<dataset>.csv``: every point (the columns of ``onlinel1 path``,
  see ``onlinel1/regpath.py``);
* ``<out>/<dataset>.png``: held-out accuracy and log loss against non-zero
  weights, one curve per rule, the batch optimum dashed;
* ``<out>/report.md``: the set-up; every data set at one l1 (--summary-l1);
  per data set, the table in the manner of Tsuruoka et al. (2009, Table 1)
  and the non-zeros of every rule at each decade of l1.

``--update-committed`` writes ``benchmarks/results/path``, whose figures
the README quotes: only for a run meant to replace them.

What is run, per data set (``regpath.run_path``):

* the 8 rules (plain once, at l1 = 0) at every l1 of a log grid (--l1-min,
  --l1-max, --l1-steps: 1e-6 .. 1e-2, 3 values per decade), log loss, an
  unpenalised intercept, 10 passes over the training part (30 for rcv1's
  1,000 rows; --passes sets one number for all), each pass
  in a fresh permutation drawn from --seed (the same rows in the same order
  for every rule);
* step sizes: at every point each candidate of TUNE is tried and the one
  with the lowest *training* objective F = mean log loss + l1 ||w||_1 is
  kept (the quantity the rules minimise; the held-out part plays no role).
  The SGD rules try invscaling (eta0 / sqrt(t)) with eta0 in {0.3, 1, 3,
  10, 30} and Tsuruoka et al.'s exponential decay (eta0 * 0.85 ** pass)
  with eta0 in {0.1, 0.3, 1, 3, 10}; adagrad-fobos and ftrl, whose steps
  are per coordinate, try every eta0 of those lists (alpha of ftrl);
* the batch L1 optimum: scikit-learn ``LogisticRegression`` (liblinear, L1,
  C = 1 / (l1 n_train), see ``regpath.fit_reference``).

The representative point of a rule (the table) is its point with the
fewest non-zero weights among those whose held-out accuracy is within
--tolerance (absolute; 0.005 = half a percentage point) of the best
held-out accuracy of any online point on that data set.  Note that the
choice looks at held-out accuracy, as Tsuruoka et al.'s table does (the
same accuracy, how many features?); the CSV has every point.

Data sets (under --data, default ../shared/datasets beside the checkout;
the splits of its baseline_sklearn.py):

* a9a: a9a.train.svm (32,561 rows) / the official test a9a.test.svm (16,281);
* w8a: w8a.train.svm shuffled with numpy.random.RandomState(0), the first
  40,000 rows / the other 9,749 (the file is label-ordered);
* rcv1: Vowpal Wabbit's RCV1 subset, rcv1_small.train.svm (1,000 documents,
  tf-idf values, 47k-term index space) / rcv1_small.test.svm (500).

How long it takes depends on what else runs on the machine (it uses one
core), so the report states the wall-clock and the CPU time of its run.
The committed run (2026-11-25) took 155 s on the idle 2-core VM.  On
2026-12-02 the same command took 1,418 s of wall-clock time and 479 s of
CPU time (``/usr/bin/time -v python benchmarks/path_report.py --out DIR
--quiet``) while other jobs kept both cores busy (load average 7 to 9).
Needs scikit-learn and matplotlib (``pip install -e '.[bench,plot]'``).
"""
from __future__ import annotations

import argparse
import datetime
import math
import pathlib
import shlex
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "datasets"
#: Where --update-committed writes: the figures the README quotes.
COMMITTED_OUT = HERE / "results" / "path"
sys.path.insert(0, str(REPO))       # run from anywhere against the in-place build
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))    # bench_learner

from onlinel1 import LearnerOptions, regpath  # noqa: E402
from onlinel1.io import read_batches  # noqa: E402
from bench_learner import machine, onlinel1_commit  # noqa: E402

DATASETS = ("a9a", "w8a", "rcv1")
#: Passes per data set (--passes overrides): rcv1 has 1,000 rows and needs more.
PASSES = {"a9a": 10, "w8a": 10, "rcv1": 30}


def load(name: str, data: pathlib.Path):
    """(train, test, description) of a data set."""
    def read(rel: str):
        path = data / rel
        if not path.exists():
            sys.exit(f"path_report: {path} is missing (--data points at ../shared/datasets)")
        return regpath.concat(read_batches(str(path), "svmlight"))

    if name == "a9a":
        return (read("a9a/a9a.train.svm"), read("a9a/a9a.test.svm"),
                "a9a (UCI Adult): a9a.train.svm / the official test a9a.test.svm")
    if name == "w8a":
        rows = read("w8a/w8a.train.svm")
        perm = np.random.RandomState(0).permutation(rows.n_rows)
        return (regpath.take(rows, perm[:40000]), regpath.take(rows, perm[40000:]),
                "w8a: w8a.train.svm shuffled with RandomState(0), first 40,000 rows / the rest "
                "(baseline_sklearn.py's split)")
    if name == "rcv1":
        return (read("vw_rcv1/rcv1_small.train.svm"), read("vw_rcv1/rcv1_small.test.svm"),
                "rcv1: Vowpal Wabbit's RCV1 subset (tf-idf), rcv1_small.train.svm / "
                "rcv1_small.test.svm")
    raise ValueError(name)


def tune_candidates(n_train: int) -> list[dict]:
    """The step settings tried at every point (see the module docstring)."""
    inv = [{"schedule": "invscaling", "power_t": 0.5, "eta0": e}
           for e in (0.3, 1.0, 3.0, 10.0, 30.0)]
    exp = [{"schedule": "exponential", "decay_rate": 0.85, "decay_steps": float(n_train),
            "eta0": e} for e in (0.1, 0.3, 1.0, 3.0, 10.0)]
    return inv + exp


def versions() -> str:
    import matplotlib
    import scipy
    import sklearn
    return (f"onlinel1 @ {onlinel1_commit()}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"scikit-learn {sklearn.__version__}, matplotlib {matplotlib.__version__}")


def chosen_steps(rows: list[dict]) -> str:
    """How often each step setting won, per rule (from the settings column)."""
    out = []
    for rule in dict.fromkeys(r["rule"] for r in rows if r["rule"] != regpath.REFERENCE):
        counts: dict[str, int] = {}
        for r in rows:
            if r["rule"] != rule:
                continue
            words = dict(w.split("=", 1) for w in r["settings"].split(" (")[0].split())
            step = f"eta0={words['eta0']}"
            if "schedule" in words:
                step = f"{words['schedule']} {step}"
            counts[step] = counts.get(step, 0) + 1
        out.append(f"{rule}: " + ", ".join(f"{k} ({v})" for k, v in counts.items()))
    return "; ".join(out)


def summary_table(results: dict[str, list[dict]], l1: float) -> str:
    """Every data set at one l1: non-zeros (settled, where different) and
    the training objective's excess over the batch optimum."""
    def at(rows: list[dict], rule: str) -> dict | None:
        return next((r for r in rows if r["rule"] == rule
                     and math.isclose(float(r["l1"]), l1, rel_tol=1e-9)), None)

    head = "| rule | " + " | ".join(f"{d}: non-zeros (settled) | F above optimum"
                                    for d in results) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(results)]
    for rule in [r for r in regpath.RULES if r != "plain"] + [regpath.REFERENCE]:
        cells = []
        for rows in results.values():
            r, best = at(rows, rule), at(rows, regpath.REFERENCE)
            if r is None:
                cells += ["", ""]
                continue
            n = f"{int(r['nnz']):,}"
            if int(r["nnz_settled"]) != int(r["nnz"]):
                n += f" ({int(r['nnz_settled']):,})"
            gap = "" if rule == regpath.REFERENCE or best is None else \
                f"{(float(r['train_objective']) / float(best['train_objective']) - 1) * 100:+.2f} %"
            cells += [n, gap]
        name = "batch L1 optimum (scikit-learn)" if rule == regpath.REFERENCE else rule
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def output_folder(args: argparse.Namespace) -> pathlib.Path:
    """The folder a run writes: --out, the committed one with
    --update-committed, else a new temporary folder (made here)."""
    if args.update_committed:
        out = COMMITTED_OUT
    elif args.out is not None:
        out = args.out
    else:
        return pathlib.Path(tempfile.mkdtemp(prefix="path_report-"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                   help="the shared data sets (default: %(default)s)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", type=pathlib.Path, default=None,
                       help="output folder (default: a new folder under the temporary "
                            "directory)")
    where.add_argument("--update-committed", action="store_true",
                       help="write benchmarks/results/path, the committed figures the README "
                            "quotes")
    p.add_argument("--datasets", default=",".join(DATASETS),
                   help="comma-separated, of %(default)s")
    p.add_argument("--passes", type=int, default=None,
                   help="passes over every data set (default: a9a 10, w8a 10, rcv1 30)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default: %(default)s)")
    p.add_argument("--l1-min", type=float, default=1e-6)
    p.add_argument("--l1-max", type=float, default=1e-2)
    p.add_argument("--l1-steps", type=int, default=13)
    p.add_argument("--tolerance", type=float, default=0.005,
                   help="accuracy band of the representative points (default: %(default)s)")
    p.add_argument("--summary-l1", type=float, default=1e-3,
                   help="the l1 of the summary table across data sets (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no line per point")
    args = p.parse_args(argv)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        p.error(f"unknown data set {unknown[0]!r}: expected some of {', '.join(DATASETS)}")
    args.out = output_folder(args)
    print(f"path_report: writing into {args.out}", file=sys.stderr, flush=True)
    grid = regpath.geometric_grid(args.l1_min, args.l1_max, args.l1_steps)
    rules = [(r, {}) for r in regpath.RULES]
    base = LearnerOptions(loss="log", update="fobos", l1=0.0, fit_intercept=True)
    command = "python benchmarks/path_report.py" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:]) else "")
    started, cpu_started = time.perf_counter(), time.process_time()
    sections = []
    results: dict[str, list[dict]] = {}
    for name in names:
        train, test, description = load(name, args.data)
        tune = tune_candidates(train.n_rows)
        passes = args.passes or PASSES[name]
        print(f"== {name}: {train.n_rows:,} training rows, {test.n_rows:,} held-out rows, "
              f"{len(grid)} l1 values, {passes} passes", file=sys.stderr, flush=True)
        t0 = time.perf_counter()

        def progress(row: dict, done: int, total: int) -> None:
            if not args.quiet:
                print(f"  [{done:>3}/{total}] {row['rule']:<14} l1={row['l1']:<8g} "
                      f"nnz {int(row['nnz']):>6,}  acc {row['test_accuracy']:.4f}  "
                      f"F {row['train_objective']:.5f}", file=sys.stderr, flush=True)

        rows = regpath.run_path(train, test, rules, grid, base, passes=passes,
                                seed=args.seed, reference=True, tune=tune, progress=progress)
        seconds = time.perf_counter() - t0
        results[name] = rows
        csv_path, png_path = args.out / f"{name}.csv", args.out / f"{name}.png"
        regpath.write_csv(rows, str(csv_path))
        regpath.plot(rows, str(png_path),
                     title=f"{name}: held-out part of {test.n_rows:,} rows, {passes} passes "
                           f"over {train.n_rows:,}")
        features = int(np.unique(train.keys).size)
        best = max(float(r["test_accuracy"]) for r in rows if r["rule"] != regpath.REFERENCE)
        sections.append(
            f"## {name}\n\n"
            f"Data: {description}. {train.n_rows:,} training rows ({features:,} distinct "
            f"features), {test.n_rows:,} held-out rows; {passes} passes.\n\n"
            f"![{name}]({png_path.name})\n\n"
            f"Representative point of each rule: the fewest non-zero weights among its points "
            f"within {args.tolerance:g} of the best held-out accuracy of any online point "
            f"({best:.4f}, so at least {best - args.tolerance:.4f}); `*`: no point of the rule "
            f"is that accurate, its most accurate point is shown. \"settled\": the non-zeros "
            f"once every weight has paid the penalty it still owes (only cumulative, which "
            f"reads its weights as stored, differs by more than one step). F is the training "
            f"objective at the point's l1; \"above batch optimum\" compares it with "
            f"scikit-learn's at the same l1. Time: training only, the kept step setting.\n\n"
            + regpath.markdown_table(rows, args.tolerance)
            + "\nNon-zero weights of every rule at the same l1 (each decade of the grid), "
            "with the training objective's excess over the batch optimum at that l1:\n\n"
            + regpath.nnz_table(rows, [v for v in grid if math.isclose(
                math.log10(v), round(math.log10(v)), abs_tol=1e-9)])
            + f"\nStep settings kept (points): {chosen_steps(rows)}.\n\n"
            f"Every point: [{csv_path.name}]({csv_path.name}). This data set took "
            f"{seconds:.0f} s.\n")
        print(f"   {name}: {len(rows)} points in {seconds:.1f} s -> {csv_path}, {png_path}",
              file=sys.stderr, flush=True)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    header = (
        "# Sparsity against held-out accuracy: the regularisation path of every rule\n\n"
        f"* date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}\n"
        f"* machine: {machine()}\n"
        f"* software: {versions()}\n"
        f"* command: `{command}` ({total:.0f} s in all, {cpu:.0f} s of CPU)\n"
        f"* grid: l1 = {', '.join(f'{v:g}' for v in grid)} (per example; ftrl gets "
        f"lambda1 = l1 x passes x n_train)\n"
        f"* training: log loss, unpenalised intercept, "
        f"{'%d passes' % args.passes if args.passes else 'passes: a9a 10, w8a 10, rcv1 30'}, a fresh "
        f"permutation per pass (numpy RandomState({args.seed})), the same for every rule; "
        f"at every point the step setting with the lowest training objective among "
        f"invscaling eta0/sqrt(t), eta0 in {{0.3, 1, 3, 10, 30}}, and exponential "
        f"eta0 * 0.85^pass, eta0 in {{0.1, 0.3, 1, 3, 10}} (adagrad-fobos and ftrl: eta0 in "
        f"{{0.1, 0.3, 1, 3, 10, 30}}); other options at their defaults (truncated: K = 1, "
        f"theta = inf; spred: init 1, threshold 1e-6; cumulative: origin first-seen)\n"
        f"* reference: scikit-learn LogisticRegression, L1, liblinear, C = 1 / (l1 n_train), "
        f"tol 1e-4, intercept_scaling 100\n\n")
    report = args.out / "report.md"
    on_grid = any(math.isclose(v, args.summary_l1, rel_tol=1e-9) for v in grid)
    summary = "" if not on_grid else (f"## Every data set at l1 = {args.summary_l1:g}\n\n"
               f"Non-zero weights as read (and settled, where different: every weight has "
               f"paid the penalty it still owes) and the training objective F's excess over "
               f"the batch optimum's at the same l1.\n\n"
               + summary_table(results, args.summary_l1) + "\n")
    report.write_text(header + summary + "\n".join(sections))
    print(f"wrote {report} ({total:.0f} s, {cpu:.0f} s of CPU)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
