"""``onlinel1 path``: the regularisation path of every rule against the
batch L1 optimum (the computation is ``onlinel1.regpath``)."""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time

from onlinel1 import regpath
from onlinel1.batch import BatchError
from onlinel1.cli.common import (CommandError, Formatter, add_data_arguments,
                                 add_learner_arguments, learner_options, read)
from onlinel1.learner import Learner

DEFAULT_HOLDOUT = 0.2

DESCRIPTION = """\
Train every chosen update rule at every L1 penalty of a grid, and measure
how sparse a model each gives for its held-out accuracy -- the question of
Tsuruoka, Tsujii & Ananiadou (2009) -- against the batch L1 optimum.

Data.  DATA is read whole.  The held-out part is --test FILE, or else the
last --holdout FRACTION of DATA in file order (default: the last 20 %).
The training part is then learned for --passes passes, each in a fresh
permutation drawn from --shuffle-seed (data files are often sorted by
label); every rule sees the same rows in the same order.

Points.  For every rule of --rules and every l1 of the grid, a fresh
learner is trained (plain: once, with l1 = 0) and measured:
  nnz                  non-zero weights (the intercept not counted)
  nnz_settled          non-zeros once every weight has paid the penalty it
                       still owes (cumulative reads its weights as stored,
                       so a feature owes the penalty since it last occurred)
  test_logloss         mean log loss on the held-out part
  test_accuracy        accuracy on the held-out part (margin > 0 is +1)
  progressive_logloss  mean loss of each example before it is learned,
                       over the first pass (Vowpal Wabbit's progressive
                       validation; later passes revisit the rows)
  train_objective      F(w) = mean log loss on the training part
                       + l1 * ||w||_1 (the intercept not penalised)
  seconds, examples_per_s   training time (learning only) and rate
The CSV also has rule, update, l1, penalty (the value given to the
learner), passes, examples and settings.  One line per finished point is
printed on stderr; at the end, a table of one representative point per
rule: the fewest non-zeros within --tolerance of the best held-out
accuracy of any online point.

Scales.  l1 is the penalty per example, as in train: every rule
approaches the minimiser of F.  ftrl's lambda1 is a total over the stream
(McMahan et al. 2013), so ftrl is given lambda1 = l1 * passes * n_train
(and lambda2 = l2 * passes * n_train), which puts it on the same scale.

Reference.  The batch L1 optimum at each l1 is scikit-learn's
LogisticRegression with the L1 penalty and C = 1 / (l1 * n_train), which
minimises C * sum of losses + ||w||_1, i.e. F after dividing by C * n_train
(solver liblinear; its intercept penalty is made negligible with
intercept_scaling=100).  It is skipped, with a note, without scikit-learn
or with --no-reference.

Plot.  --out-png draws held-out accuracy and log loss against non-zero
weights (log scale), one curve per rule, the reference dashed.  It needs
matplotlib (pip install 'onlinel1[plot]'); without it the PNG is skipped
with a note.

Step sizes.  The learner flags (--eta0, --schedule, ...) apply to every
rule.  A rule may carry its own settings, RULE:OPTION=VALUE[:...], e.g.
--rules fobos,ftrl:eta0=0.5,cumulative:origin=start (the curve is labelled
as written).  --eta0-grid tries several eta0 at every point and keeps the
one with the lowest training objective (the held-out part plays no role)."""

EPILOG = """\
examples:
  onlinel1 path a9a.train.svm --test a9a.test.svm --out-csv a9a.csv --out-png a9a.png
  onlinel1 path w8a.svm --holdout 0.2 --rules cumulative,fobos,ftrl \\
      --l1-min 1e-6 --l1-max 1e-2 --l1-steps 9 --passes 20 --schedule invscaling --eta0 1
  onlinel1 path rcv1.svm --test rcv1.test.svm --l1-grid 1e-5,1e-4,1e-3 --eta0-grid 0.3,1,3

exit status: 0 on success, 1 on an error (one line on stderr), 2 on a usage error."""


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CommandError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise CommandError(f"{flag} is empty")
    return values


def _grid(args: argparse.Namespace) -> list[float]:
    ranged = (args.l1_min, args.l1_max, args.l1_steps)
    if args.l1_grid is not None:
        if any(v is not None for v in ranged):
            raise CommandError("give either --l1-grid or --l1-min/--l1-max/--l1-steps, not both")
        grid = _floats(args.l1_grid, "--l1-grid")
        bad = [v for v in grid if not (v > 0 and math.isfinite(v))]
        if bad:
            raise CommandError(f"--l1-grid values must be > 0 and finite, got {bad[0]!r}")
        return sorted(set(grid))
    lo = 1e-7 if args.l1_min is None else args.l1_min
    hi = 1e-2 if args.l1_max is None else args.l1_max
    steps = 11 if args.l1_steps is None else args.l1_steps
    try:
        return regpath.geometric_grid(lo, hi, steps, names=("--l1-min", "--l1-max", "--l1-steps"))
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _read_all(args: argparse.Namespace, path: str):
    sub = copy.copy(args)
    sub.data = path
    return regpath.concat(read(sub))


def _check_output(path: str | None, flag: str) -> None:
    if path in (None, "-"):
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"{flag} {path}: no such directory {folder}")


def _progress_line(row: dict, done: int, total: int) -> str:
    width = len(str(total))
    head = f"[{done:>{width}}/{total}] {row['rule']} l1={row['l1']:g}:"
    body = (f"{int(row['nnz']):,} non-zeros, held-out accuracy {row['test_accuracy']:.4f}, "
            f"log loss {row['test_logloss']:.4f}, objective {row['train_objective']:.5f}")
    if row["rule"] == regpath.REFERENCE:
        return f"{head} {body}, fit {row['seconds']:.2f} s"
    return f"{head} {body}, {row['examples_per_s']:,.0f} examples/s"


def cmd_path(args: argparse.Namespace) -> int:
    err = sys.stderr
    if args.update is not None:
        raise CommandError("path takes the rules from --rules, not --update")
    if args.l1 is not None:
        raise CommandError("path takes the penalties from --l1-grid or --l1-min/--l1-max/"
                           "--l1-steps, not --l1")
    # fobos accepts every shared setting; each point sets its own rule and l1.
    base = learner_options(args, {"update": "fobos", "l1": 0.0})
    if base.loss != "log":
        raise CommandError(f"--loss must be log: the path measures held-out log loss against "
                           f"the L1-logistic optimum (got {base.loss})")
    try:
        rules = regpath.parse_rules(args.rules)
    except ValueError as exc:
        raise CommandError(f"--rules: {exc}") from None
    grid = _grid(args)
    tune = None
    if args.eta0_grid is not None:
        etas = _floats(args.eta0_grid, "--eta0-grid")
        if any(not (v > 0 and math.isfinite(v)) for v in etas):
            raise CommandError("--eta0-grid values must be > 0 and finite")
        tune = [{"eta0": v} for v in etas]
    if args.passes < 1:
        raise CommandError(f"--passes must be >= 1, got {args.passes}")
    seed: int | None
    if args.shuffle_seed.lower() == "none":
        seed = None
    else:
        try:
            seed = int(args.shuffle_seed)
        except ValueError:
            raise CommandError(f"--shuffle-seed must be an integer >= 0 or 'none', "
                               f"got {args.shuffle_seed!r}") from None
        if not 0 <= seed < 2**32:
            raise CommandError(f"--shuffle-seed must be in [0, 2^32), got {seed}")
    if args.holdout is not None and not 0 < args.holdout < 1:
        raise CommandError(f"--holdout must be in (0, 1), got {args.holdout}")
    _check_output(args.out_csv, "--out-csv")
    _check_output(args.out_png, "--out-png")

    reference = not args.no_reference
    if reference:
        try:
            import scipy.sparse  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            print("onlinel1 path: note: scikit-learn is not installed, so the batch L1 "
                  "reference is skipped (pip install scikit-learn)", file=err)
            reference = False

    data = _read_all(args, args.data)
    if args.test is not None:
        if not os.path.exists(args.test):
            raise CommandError(f"{args.test}: no such file")
        train, test, where = data, _read_all(args, args.test), args.test
    else:
        fraction = DEFAULT_HOLDOUT if args.holdout is None else args.holdout
        try:
            train, test = regpath.holdout_split(data, fraction)
        except ValueError as exc:
            raise CommandError(f"{args.data}: {exc}") from None
        where = f"the last {fraction:g} of {args.data}"
    for part, name, offset in ((train, args.data, 0),
                               (test, args.test or args.data,
                                0 if args.test is not None else train.n_rows)):
        try:
            Learner(base).check(part)
        except BatchError as exc:
            at = "" if exc.row is None else f"example {offset + exc.row + 1}: "
            raise CommandError(f"{name}: {at}{exc}") from None
    n_points = sum(1 if r == "plain" else len(grid) for r, _ in rules)
    if not args.quiet:
        print(f"onlinel1 path: {train.n_rows:,} training rows, {test.n_rows:,} held-out rows "
              f"({where}); {len(rules)} rule(s), {len(grid)} l1 value(s): {n_points} points"
              f"{' x ' + str(len(tune)) + ' eta0' if tune else ''}, {args.passes} pass(es), "
              f"shuffle seed {seed if seed is not None else 'none (file order)'}", file=err)

    def progress(row: dict, done: int, total: int) -> None:
        if not args.quiet:
            print(_progress_line(row, done, total), file=err, flush=True)

    start = time.perf_counter()
    try:
        rows = regpath.run_path(train, test, rules, grid, base, passes=args.passes, seed=seed,
                                reference=reference, tune=tune, progress=progress)
    except regpath.DivergedError as exc:
        raise CommandError(f"{exc} (try a smaller --eta0)") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    elapsed = time.perf_counter() - start

    if args.out_csv in (None, "-"):
        regpath.write_csv(rows, sys.stdout)
        sys.stdout.flush()
    else:
        regpath.write_csv(rows, args.out_csv)
    if args.out_png:
        try:
            regpath.plot(rows, args.out_png, title=os.path.basename(args.data))
        except ImportError:
            print(f"onlinel1 path: note: matplotlib is not installed, so {args.out_png} was "
                  f"not written (pip install 'onlinel1[plot]')", file=err)
    if not args.quiet:
        print(f"\nrepresentative points (fewest non-zeros within {args.tolerance:g} of the best "
              f"held-out accuracy; * = none that close):\n", file=err)
        print(regpath.markdown_table(rows, args.tolerance), file=err)
        written = [p for p in (args.out_csv, args.out_png) if p not in (None, "-")
                   and os.path.exists(p)]
        print(f"{len(rows)} rows in {elapsed:.1f} s"
              + (f"; wrote {', '.join(written)}" if written else ""), file=err)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("path", formatter_class=Formatter, description=DESCRIPTION,
                       epilog=EPILOG,
                       help="sparsity against held-out accuracy for every rule and l1")
    add_data_arguments(p)
    held = p.add_argument_group("held-out part").add_mutually_exclusive_group()
    held.add_argument("--test", metavar="FILE",
                      help="held-out examples (same format as DATA)")
    held.add_argument("--holdout", type=float, metavar="FRACTION",
                      help=f"hold out the last FRACTION of DATA, in file order "
                           f"(default without --test: {DEFAULT_HOLDOUT})")
    g = p.add_argument_group("path")
    g.add_argument("--rules", default="all", metavar="R1,R2,...",
                   help=f"rules to run, each optionally RULE:OPTION=VALUE[:...]; all = "
                        f"{','.join(regpath.RULES)} (default: all)")
    g.add_argument("--l1-grid", metavar="V1,V2,...", help="the l1 values (per example)")
    g.add_argument("--l1-min", type=float, metavar="X",
                   help="smallest l1 of a log-spaced grid (default: 1e-7)")
    g.add_argument("--l1-max", type=float, metavar="X",
                   help="largest l1 of a log-spaced grid (default: 1e-2)")
    g.add_argument("--l1-steps", type=int, metavar="N",
                   help="number of l1 values from --l1-min to --l1-max (default: 11)")
    g.add_argument("--passes", type=int, default=10, metavar="N",
                   help="passes over the training part (default: %(default)s)")
    g.add_argument("--shuffle-seed", default="0", metavar="S",
                   help="seed of the per-pass permutations; none keeps file order "
                        "(default: %(default)s)")
    g.add_argument("--eta0-grid", metavar="V1,V2,...",
                   help="try each eta0 at every point, keep the lowest training objective")
    g.add_argument("--no-reference", action="store_true",
                   help="do not fit the batch L1 optimum (scikit-learn)")
    g.add_argument("--tolerance", type=float, default=0.005, metavar="X",
                   help="accuracy band of the representative points (default: %(default)s)")
    o = p.add_argument_group("output")
    o.add_argument("--out-csv", metavar="FILE",
                   help="write the CSV here (default: standard output)")
    o.add_argument("--out-png", metavar="FILE",
                   help="draw the plot here (needs matplotlib)")
    o.add_argument("--quiet", action="store_true",
                   help="no progress lines and no summary table on stderr")
    add_learner_arguments(p)
    # The rule and the penalty of each point come from --rules and the grid.
    for action in p._actions:
        if action.dest in ("update", "l1"):
            action.help = argparse.SUPPRESS
        elif action.dest == "loss":
            action.help = "log only: the path compares with the L1-logistic optimum (default: log)"
    p.set_defaults(func=cmd_path, update=None, l1=None)
