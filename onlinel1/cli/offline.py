"""Offline commands: ``train``, ``predict --model``, ``inspect``."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from typing import Any, TextIO

import numpy as np

from onlinel1 import model_file
from onlinel1.batch import BatchError
from onlinel1.cli.common import (CommandError, Formatter, add_curve_client_arguments,
                                 add_data_arguments, add_learner_arguments, add_read_ahead_argument,
                                 explicit_learner_values, learner_options, read, read_ahead)
from onlinel1.learner import Learner, NumericError
from onlinel1.warm_start import WarmStartError, load_initial


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
    names: dict[int, str] | None = None if args.no_names else {}
    if args.initial:
        try:
            learner, initial_names = load_initial(args.initial, explicit_learner_values(args, {}),
                                                  options, args.force_config)
        except WarmStartError as exc:
            raise CommandError(str(exc)) from None
        if names is not None:
            names.update(initial_names)
        options = learner.options
    else:
        if args.force_config:
            raise CommandError("--force-config goes with --initial")
        learner = Learner(options)
    err = sys.stderr
    table = ProgressTable(err, options.classification, not args.quiet)
    totals = [0, 0.0, 0.0, 0]
    start = time.perf_counter()
    for _ in range(args.passes):
        # With read-ahead, the reader fills ``names`` in its own thread: it
        # is only read (by the save below) once every pass is over and the
        # thread joined.
        with contextlib.closing(read_ahead(args, read(args, names, options))) as batches:
            for batch in batches:
                try:
                    learner.learn(batch)
                except BatchError as exc:
                    where = "" if exc.row is None else f"example {totals[0] + exc.row + 1}: "
                    raise CommandError(f"{args.data}: {where}{exc}") from None
                except NumericError as exc:
                    raise CommandError(f"{args.data}: example {totals[0] + exc.row + 1}: "
                                       f"{exc}") from None
                sums = learner.progress_sums
                totals = [sums["examples"], sums["loss_sum"], sums["weight_sum"],
                          sums["correct"]]
                table.update(learner, tuple(totals))
    elapsed = time.perf_counter() - start
    table.update(learner, tuple(totals), final=True)
    summary = learner.progress
    lines = [("examples", f"{summary['examples']}"),
             ("passes", f"{args.passes}"),
             ("progressive loss", f"{summary['loss']:.6f}")]
    if options.classification:
        lines.append(("accuracy", f"{summary['accuracy']:.4f}"))
    lines += [("non-zero weights", f"{learner.nnz}")]
    if options.budgeted:
        lines.append(("budget", budget_line(learner)))
    lines += [("time", f"{elapsed:.3f} s ({summary['examples'] / max(elapsed, 1e-9):,.0f} "
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
    # --model is the daemon's model name with --connect, a model file without.
    if args.connect:
        from onlinel1.cli.remote import predict_remote
        if args.model is not None:
            from onlinel1.names import check_model_name
            try:
                check_model_name(args.model)
            except ValueError as exc:
                args.parser.error(f"with --connect, --model names one of the daemon's "
                                  f"models: {exc}")
        return predict_remote(args)
    if args.curve_secret_key or args.curve_server_key:
        args.parser.error("--curve-secret-key and --curve-server-key go with --connect")
    if args.model is None:
        args.parser.error("one of the arguments --model --connect is required")
    learner, _, _ = load_model(args.model)
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w")
    try:
        for batch in read(args, options=learner.options):
            write_numbers(learner.predict(batch), out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# ----------------------------------------------------------------- inspect

def budget_line(learner: Learner) -> str:
    """The memory budget of a learner and what it dropped (docs/algorithms.md,
    "The memory budget")."""
    o = learner.options
    return (f"max_features={o.max_features} expire_after_examples={o.expire_after_examples} "
            f"({learner.store_size} stored, {learner.evicted} evicted, "
            f"{learner.expired} expired)")


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
    if o.interactions or o.namespaced_integers:
        print(f"features          interactions={','.join(o.interactions) or '-'} "
              f"namespaced_integers={o.namespaced_integers}", file=out)
    print(f"examples          {learner.examples_seen}", file=out)
    print(f"progressive loss  {progress['loss']:.6f}", file=out)
    if "accuracy" in progress:
        print(f"accuracy          {progress['accuracy']:.4f}", file=out)
    print(f"non-zero weights  {keys.size}", file=out)
    if o.budgeted:
        print(f"budget            {budget_line(learner)}", file=out)
    print(f"intercept         {learner.intercept!r}", file=out)
    if extra.get("trained_on"):
        print(f"trained on        {extra['trained_on']}", file=out)
    snapshot = extra.get("snapshot")
    if snapshot:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(snapshot["unix_time"]))
        print(f"snapshot          #{snapshot['seq']} ({snapshot['reason']}, {when})", file=out)
        for producer, seq in sorted(snapshot["producers"].items()):
            print(f"producer          {producer}: last batch seq {seq}", file=out)
    if args.top > 0 and keys.size:
        order = np.argsort(-np.abs(weights), kind="stable")[:args.top]
        print(f"\ntop {len(order)} weights by magnitude:", file=out)
        for i in order:
            key = int(keys[i])
            name = f"  {names[key]}" if key in names else ""
            print(f"  {key:>20}  {float(weights[i])!r:>24}{name}", file=out)
    if args.export:
        export(args.export, keys, weights, names)
    return 0


#: Rows formatted and written at a time by ``export``.
EXPORT_CHUNK_ROWS = 1 << 16


def export(path: str, keys: np.ndarray, weights: np.ndarray, names: dict[int, str], *,
           chunk_rows: int = EXPORT_CHUNK_ROWS) -> None:
    """Non-zero weights sorted by key: TSV ``key<TAB>weight[<TAB>name]`` (the
    name where known, no header) or, for ``*.json``, a JSON list.  Rows are
    formatted ``chunk_rows`` at a time, so that the text of a large model
    never sits in memory whole; the output is that of one ``json.dump`` of
    the whole list."""
    as_json = path.endswith(".json")
    with open(path, "w", encoding="utf-8") as f:
        if as_json:
            f.write("[")
        for start in range(0, keys.size, chunk_rows):
            rows = zip(keys[start:start + chunk_rows].tolist(),
                       weights[start:start + chunk_rows].tolist())
            if as_json:
                text = json.dumps([{"key": k, "weight": w,
                                    **({"name": names[k]} if k in names else {})}
                                   for k, w in rows])[1:-1]
                f.write(text if start == 0 else ", " + text)
                continue
            lines = []
            for key, weight in rows:
                name = names.get(key)
                lines.append(f"{key}\t{weight!r}\t{name}\n" if name is not None
                             else f"{key}\t{weight!r}\n")
            f.write("".join(lines))
        if as_json:
            f.write("]\n")


# ---------------------------------------------------------------- commands

def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train", formatter_class=Formatter, help="learn a data file online",
        description="Learn DATA one example at a time, as the daemon would, printing\n"
                    "progressive validation (each example's loss before the model learns\n"
                    "from it) each time the example count doubles, and a summary at the end.",
        epilog="examples:\n  onlinel1 train a9a.train.svm --update fobos --l1 1e-4 --save a9a.model\n"
               "  onlinel1 train day2.svm --initial a9a.model --save a9a-day2.model")
    add_data_arguments(train)
    # Unset flags stay None, so that --initial can tell the settings given
    # from the defaults (learner_options fills those in).
    add_learner_arguments(train, with_defaults=False)
    train.add_argument("--passes", type=int, default=1, metavar="N",
                       help="passes over DATA (default: %(default)s)")
    train.add_argument("--save", metavar="MODEL", help="write the model to this file")
    train.add_argument("--initial", metavar="MODEL",
                       help="start from this model file or snapshot instead of from zero (Vowpal "
                            "Wabbit's -i): its weights, state and settings carry on; a setting "
                            "given that contradicts it is refused")
    train.add_argument("--force-config", action="store_true",
                       help="with --initial: carry its weights over to the settings given even "
                            "where they differ")
    train.add_argument("--no-names", action="store_true",
                       help="do not keep the names of string features for inspect")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    add_read_ahead_argument(train, "learned")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser(
        "predict", formatter_class=Formatter, help="predict a data file with a model",
        description="Write one prediction per example of DATA: the probability of the\n"
                    "positive class for the log loss, the margin b + sum w_i x_i otherwise,\n"
                    "from a model file (--model FILE) or a running daemon (--connect),\n"
                    "whose model --model NAME names (the daemon's 'default' model without\n"
                    "it).",
        epilog="examples:\n"
               "  onlinel1 predict --model a9a.model a9a.test.svm > predictions.txt\n"
               "  onlinel1 predict --connect tcp://127.0.0.1:5556 a9a.test.svm\n"
               "  onlinel1 predict --connect tcp://127.0.0.1:5556 --model ctr ctr.test.svm")
    predict.add_argument("--model", metavar="FILE|NAME",
                         help="without --connect: a model file written by train --save (or "
                              "a snapshot); with --connect: the name of one of the daemon's "
                              "models (default: its 'default' model)")
    predict.add_argument("--connect", metavar="ENDPOINT",
                         help="ask a running daemon at its request endpoint instead, "
                              "e.g. tcp://127.0.0.1:5556")
    add_curve_client_arguments(predict)
    add_data_arguments(predict)
    predict.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    predict.set_defaults(func=cmd_predict, parser=predict)

    inspect = sub.add_parser(
        "inspect", formatter_class=Formatter, help="summarise or export a model",
        description="Print a model's settings, counters and largest weights; export its\n"
                    "non-zero weights.",
        epilog="example:\n  onlinel1 inspect a9a.model --top 20 --export weights.tsv")
    inspect.add_argument("model", metavar="MODEL", help="a model file")
    inspect.add_argument("--top", type=int, default=10, metavar="N",
                         help="show the N largest weights by magnitude (default: %(default)s)")
    inspect.add_argument("--export", metavar="FILE",
                         help="write every non-zero weight, sorted by key: one "
                              "'key<TAB>weight[<TAB>name]' line each (JSON if FILE ends in .json)")
    inspect.set_defaults(func=cmd_inspect)
