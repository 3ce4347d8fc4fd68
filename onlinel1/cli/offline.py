"""The ``onlinel1`` command line.

Subcommands (``onlinel1 COMMAND --help`` for each):

* ``train DATA``: learn a file (svmlight or Vowpal Wabbit text) online,
  printing progressive validation as it goes; ``--save MODEL`` keeps it.
* ``predict --model MODEL DATA``: one prediction a line.
* ``inspect MODEL``: summary, largest weights, ``--export`` of the weights.

Errors (a missing file, a malformed line, a corrupt model) are reported as
one line on stderr with a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Iterator, Sequence, TextIO

import numpy as np

import onlinel1
from onlinel1 import model_file
from onlinel1.batch import Batch, BatchError
from onlinel1.learner import Learner, NumericError
from onlinel1.options import LOSSES, ORIGINS, SCHEDULES, UPDATES, LearnerOptions

FORMATS = ("svmlight", "vw")
EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure to report as one line on stderr."""


# ----------------------------------------------------------------- options

def add_learner_arguments(parser: argparse.ArgumentParser) -> None:
    """The learner's settings, shared by every command that builds one."""
    d = LearnerOptions()
    g = parser.add_argument_group(
        "learner", "The model and its update rule (docs/algorithms.md has the exact rules).")
    g.add_argument("--loss", choices=LOSSES, default=d.loss,
                   help="log (logistic; labels -1/+1 or 0/1), squared (regression) or "
                        "hinge (linear SVM) (default: %(default)s)")
    g.add_argument("--update", choices=UPDATES, default=d.update,
                   help="plain SGD, naive subgradient L1, cumulative L1 penalty "
                        "(Tsuruoka et al. 2009) or FOBOS (Duchi & Singer 2009) "
                        "(default: %(default)s)")
    g.add_argument("--l1", type=float, default=d.l1, metavar="X",
                   help="L1 penalty per example (default: %(default)s)")
    g.add_argument("--l2", type=float, default=d.l2, metavar="X",
                   help="L2 penalty per example; with --l1, the elastic net (default: %(default)s)")
    g.add_argument("--eta0", type=float, default=d.eta0, metavar="X",
                   help="initial step size (default: %(default)s)")
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="step size: eta0, eta0/t^power_t, or eta0*decay_rate^(t/decay_steps) "
                        "(default: %(default)s)")
    g.add_argument("--power-t", type=float, default=d.power_t, metavar="X",
                   help="exponent of the invscaling schedule (default: %(default)s)")
    g.add_argument("--decay-rate", type=float, default=d.decay_rate, metavar="X",
                   help="base of the exponential schedule (default: %(default)s)")
    g.add_argument("--decay-steps", type=float, default=d.decay_steps, metavar="N",
                   help="examples per decay_rate factor in the exponential schedule "
                        "(default: %(default)s)")
    g.add_argument("--origin", choices=ORIGINS, default=d.origin,
                   help="where a new feature's cumulative L1 penalty starts: start "
                        "(as in the paper) or first-seen (for endless streams) "
                        "(default: %(default)s)")
    g.add_argument("--no-intercept", action="store_true",
                   help="do not learn a bias term")


def learner_options(args: argparse.Namespace) -> LearnerOptions:
    try:
        return LearnerOptions(
            loss=args.loss, update=args.update, l1=args.l1, l2=args.l2, eta0=args.eta0,
            schedule=args.schedule, power_t=args.power_t, decay_rate=args.decay_rate,
            decay_steps=args.decay_steps, origin=args.origin,
            fit_intercept=not args.no_intercept)
    except ValueError as exc:
        # Name the flag, not the Python argument: "l2 must be..." -> "--l2 must be...".
        message = str(exc)
        name = message.split(" ", 1)[0]
        if name in LearnerOptions.__dataclass_fields__:
            message = f"--{name.replace('_', '-')}{message[len(name):]}"
        raise CommandError(message) from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA",
                        help="examples in svmlight/libsvm or Vowpal Wabbit text format "
                             "(.gz is read transparently; - for standard input)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="input format (default: vw for *.vw[.gz], svmlight otherwise)")
    parser.add_argument("--batch-size", type=int, default=8192, metavar="N",
                        help="rows parsed and learned at a time (default: %(default)s)")


def data_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    name = args.data[:-3] if args.data.endswith(".gz") else args.data
    return "vw" if name.endswith(".vw") else "svmlight"


def read(args: argparse.Namespace, names: dict[int, str] | None = None) -> Iterator[Batch]:
    from onlinel1.io import read_batches
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    source: Any = sys.stdin.buffer if args.data == "-" else args.data
    if source is not sys.stdin.buffer and not os.path.exists(source):
        raise CommandError(f"{args.data}: no such file")
    return read_batches(source, data_format(args), batch_size=args.batch_size, names=names)


# ------------------------------------------------------------------- train

class ProgressTable:
    """Vowpal Wabbit style progress: a line each time the example count
    doubles, with the loss since the previous line."""

    def __init__(self, out: TextIO, classification: bool, enabled: bool) -> None:
        self.out, self.classification, self.enabled = out, classification, enabled
        self.next_report = 1024
        self.last = (0, 0.0, 0.0)   # examples, weighted loss sum, weight sum
        self.start = time.perf_counter()
        self.header_done = False

    def update(self, learner: Learner, totals: tuple[int, float, float, int],
               final: bool = False) -> None:
        examples, loss_sum, weight_sum, correct = totals
        if not self.enabled or (examples < self.next_report and not final):
            return
        while self.next_report <= examples:
            self.next_report *= 2
        if not self.header_done:
            acc = "  accuracy" if self.classification else ""
            print(f"{'examples':>12}  {'avg loss':>10}  {'since last':>10}{acc}  "
                  f"{'nnz':>10}  {'examples/s':>11}", file=self.out)
            self.header_done = True
        n0, l0, w0 = self.last
        since = (loss_sum - l0) / (weight_sum - w0) if weight_sum > w0 else math.nan
        avg = loss_sum / weight_sum if weight_sum else math.nan
        rate = examples / max(time.perf_counter() - self.start, 1e-9)
        acc = f"  {correct / examples:>8.4f}" if self.classification and examples else ""
        print(f"{examples:>12}  {avg:>10.6f}  {since:>10.6f}{acc}  {learner.nnz:>10}  "
              f"{rate:>11.0f}", file=self.out, flush=True)
        self.last = (examples, loss_sum, weight_sum)


def cmd_train(args: argparse.Namespace) -> int:
    options = learner_options(args)
    if args.passes < 1:
        raise CommandError(f"--passes must be >= 1, got {args.passes}")
    learner = Learner(options)
    names: dict[int, str] | None = None if args.no_names else {}
    err = sys.stderr
    table = ProgressTable(err, options.classification, not args.quiet)
    totals = [0, 0.0, 0.0, 0]
    start = time.perf_counter()
    for _ in range(args.passes):
        for batch in read(args, names):
            try:
                learner.learn(batch)
            except BatchError as exc:
                where = "" if exc.row is None else f"example {totals[0] + exc.row + 1}: "
                raise CommandError(f"{args.data}: {where}{exc}") from None
            except NumericError as exc:
                raise CommandError(f"{args.data}: example {totals[0] + exc.learned + 1}: "
                                   f"{exc}") from None
            sums = learner.progress_sums
            totals = [sums["examples"], sums["loss_sum"], sums["weight_sum"], sums["correct"]]
            table.update(learner, tuple(totals))
    elapsed = time.perf_counter() - start
    table.update(learner, tuple(totals), final=True)
    summary = learner.progress
    lines = [("examples", f"{summary['examples']}"),
             ("passes", f"{args.passes}"),
             ("progressive loss", f"{summary['loss']:.6f}")]
    if options.classification:
        lines.append(("accuracy", f"{summary['accuracy']:.4f}"))
    lines += [("non-zero weights", f"{learner.nnz}"),
              ("time", f"{elapsed:.3f} s ({summary['examples'] / max(elapsed, 1e-9):,.0f} "
                       f"examples/s)")]
    if args.save:
        size = model_file.save(args.save, learner, names, extra={"trained_on": args.data})
        lines.append(("model", f"{args.save} ({size:,} bytes)"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}", file=err)
    return 0


# ----------------------------------------------------------------- predict

def load_model(path: str) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    if not os.path.exists(path):
        raise CommandError(f"{path}: no such file")
    try:
        return model_file.load(path)
    except model_file.ModelFileError as exc:
        raise CommandError(str(exc)) from None


def write_numbers(values: np.ndarray, out: TextIO) -> None:
    # repr() is the shortest text that reads back to the same double.
    if values.size:
        out.write("\n".join(map(repr, values.tolist())))
        out.write("\n")


def cmd_predict(args: argparse.Namespace) -> int:
    learner, _, _ = load_model(args.model)
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w")
    try:
        for batch in read(args):
            write_numbers(learner.predict(batch), out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# ----------------------------------------------------------------- inspect

def cmd_inspect(args: argparse.Namespace) -> int:
    learner, names, extra = load_model(args.model)
    keys, weights = learner.weights()
    o = learner.options
    progress = learner.progress
    out = sys.stdout
    print(f"model             {args.model}", file=out)
    print(f"rule              loss={o.loss} update={o.update} l1={o.l1!r} l2={o.l2!r} "
          f"eta0={o.eta0!r} schedule={o.schedule} origin={o.origin} "
          f"fit_intercept={o.fit_intercept}", file=out)
    print(f"examples          {learner.examples_seen}", file=out)
    print(f"progressive loss  {progress['loss']:.6f}", file=out)
    if "accuracy" in progress:
        print(f"accuracy          {progress['accuracy']:.4f}", file=out)
    print(f"non-zero weights  {keys.size}", file=out)
    print(f"intercept         {learner.intercept!r}", file=out)
    if extra.get("trained_on"):
        print(f"trained on        {extra['trained_on']}", file=out)
    if args.top > 0 and keys.size:
        order = np.argsort(-np.abs(weights), kind="stable")[:args.top]
        print(f"\ntop {len(order)} weights by magnitude:", file=out)
        for i in order:
            key = int(keys[i])
            name = f"  {names[key]}" if key in names else ""
            print(f"  {key:>20}  {weights[i]!r:>24}{name}", file=out)
    if args.export:
        export(args.export, keys, weights, names)
    return 0


def export(path: str, keys: np.ndarray, weights: np.ndarray, names: dict[int, str]) -> None:
    """Non-zero weights sorted by key: TSV ``key<TAB>weight[<TAB>name]`` (the
    name where known, no header) or, for ``*.json``, a JSON list."""
    rows = zip(keys.tolist(), weights.tolist())
    with open(path, "w", encoding="utf-8") as f:
        if path.endswith(".json"):
            json.dump([{"key": k, "weight": w, **({"name": names[k]} if k in names else {})}
                       for k, w in rows], f)
            f.write("\n")
            return
        for key, weight in rows:
            name = names.get(key)
            f.write(f"{key}\t{weight!r}\t{name}\n" if name is not None else f"{key}\t{weight!r}\n")


# ------------------------------------------------------------------ parser

class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (``--help`` shows the usage)."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onlinel1", formatter_class=_Formatter,
        description="Online learning of sparse linear models with lazily applied "
                    "L1-regularised SGD (cumulative L1 penalty, FOBOS).",
        epilog="Run 'onlinel1 COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"onlinel1 {onlinel1.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser(
        "train", formatter_class=_Formatter, help="learn a data file online",
        description="Learn DATA one example at a time, as the daemon would, printing "
                    "progressive validation (each example's loss before the model learns "
                    "from it) each time the example count doubles, and a summary at the end.",
        epilog="example:\n  onlinel1 train a9a.train.svm --update fobos --l1 1e-4 --save a9a.model")
    add_data_arguments(train)
    add_learner_arguments(train)
    train.add_argument("--passes", type=int, default=1, metavar="N",
                       help="passes over DATA (default: %(default)s)")
    train.add_argument("--save", metavar="MODEL", help="write the model to this file")
    train.add_argument("--no-names", action="store_true",
                       help="do not keep the names of string features for inspect")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser(
        "predict", formatter_class=_Formatter, help="predict a data file with a model",
        description="Write one prediction per example of DATA: the probability of the "
                    "positive class for the log loss, the margin b + sum w_i x_i otherwise.",
        epilog="example:\n  onlinel1 predict --model a9a.model a9a.test.svm > predictions.txt")
    predict.add_argument("--model", required=True, metavar="MODEL",
                         help="a model file written by train --save (or a snapshot)")
    add_data_arguments(predict)
    predict.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    predict.set_defaults(func=cmd_predict)

    inspect = sub.add_parser(
        "inspect", formatter_class=_Formatter, help="summarise or export a model",
        description="Print a model's settings, counters and largest weights; export its "
                    "non-zero weights.",
        epilog="example:\n  onlinel1 inspect a9a.model --top 20 --export weights.tsv")
    inspect.add_argument("model", metavar="MODEL", help="a model file")
    inspect.add_argument("--top", type=int, default=10, metavar="N",
                         help="show the N largest weights by magnitude (default: %(default)s)")
    inspect.add_argument("--export", metavar="FILE",
                         help="write every non-zero weight, sorted by key: one "
                              "'key<TAB>weight[<TAB>name]' line each (JSON if FILE ends in .json)")
    inspect.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from onlinel1.io import ParseError
    try:
        return args.func(args)
    except CommandError as exc:
        message = str(exc)
    except ParseError as exc:
        message = str(exc)
    except (OSError, MemoryError) as exc:
        message = str(exc)
    except KeyboardInterrupt:
        print("onlinel1: interrupted", file=sys.stderr)
        return 130
    print(f"onlinel1: error: {message}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
