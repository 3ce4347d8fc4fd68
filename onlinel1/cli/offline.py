"""Offline commands: ``train`` (its loop is onlinel1/cli/train.py),
``predict --model``, ``inspect``."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Any, TextIO

import numpy as np

from onlinel1 import model_file
from onlinel1.cli.common import (CommandError, EmptyInput, Formatter, add_curve_client_arguments,
                                 add_data_arguments, add_learner_arguments, add_read_ahead_argument,
                                 read, source_name)
from onlinel1.batch import BatchError
from onlinel1.cli.evaluate import batch_error, check_labels, features_only, metric_items, print_items
from onlinel1.cli.train import ProgressTable, cmd_train, register_flags
from onlinel1.evaluation import Evaluation
from onlinel1.learner import Learner

__all__ = ["ProgressTable", "budget_line", "cmd_inspect", "cmd_predict", "cmd_train", "export",
           "load_model", "register", "write_numbers"]


# ----------------------------------------------------------------- predict

def load_model(path: str) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """A model file, a snapshot, or the newest valid snapshot of a snapshot
    directory (one model's, or a daemon's with one model folder), as
    ``serve --predict-only --model`` takes them."""
    if not os.path.exists(path):
        raise CommandError(f"{path}: no such file")
    if os.path.isdir(path):
        return load_newest_snapshot(path)
    try:
        return model_file.load(path)
    except model_file.ModelFileError as exc:
        raise CommandError(str(exc)) from None


def load_newest_snapshot(path: str) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    from onlinel1.server.layout import replica_sources
    from onlinel1.server.snapshots import SnapshotDir
    sources = replica_sources(path)
    if len(sources) > 1:
        folders = ", ".join(sorted(sources))
        raise CommandError(f"{path}: a snapshot directory of several models ({folders}): give "
                           f"the folder of one, e.g. {os.path.join(path, sorted(sources)[0])}")
    where = next(iter(sources.values()), pathlib.Path(path))
    loaded, problems = SnapshotDir(where, 1).load_newest_valid()
    for problem in problems:
        print(f"onlinel1: warning: {where}: {problem}", file=sys.stderr)
    if loaded is None:
        raise CommandError(f"{path}: a directory with no valid snapshot (a model file or a "
                           f"snapshot directory is expected)")
    return loaded.learner, loaded.names, loaded.extra


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
        if args.strict or args.quiet:
            args.parser.error("--strict and --quiet go with --model FILE, not --connect")
        return predict_remote(args)
    if args.curve_secret_key or args.curve_server_key:
        args.parser.error("--curve-secret-key and --curve-server-key go with --connect")
    if args.model is None:
        args.parser.error("one of the arguments --model --connect is required")
    learner, _, _ = load_model(args.model)
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w")
    try:
        ev, matched = predict_file(args, learner, out)
    finally:
        if out is not sys.stdout:
            out.close()
    if not matched:
        say_unmatched(args, learner, ev)
    if ev.labelled and not args.quiet:
        result = ev.evaluation.result()
        items = [("examples", f"{ev.examples}")]
        if ev.labelled < ev.examples:
            items.append(("labelled", f"{ev.labelled} (the metrics are theirs)"))
        items += [item for item in metric_items(result) if item[0] != "examples"]
        print_items(items, sys.stderr)
    return 0


class Predicted:
    """What ``predict`` saw: examples, labelled ones, their metrics."""

    def __init__(self, loss: str, quantile_tau: float = 0.5) -> None:
        self.examples = self.labelled = 0
        self.evaluation = Evaluation(loss, quantile_tau)


def predict_file(args: argparse.Namespace, learner: Learner,
                 out: TextIO) -> tuple[Predicted, bool]:
    """Write a prediction per example of DATA to ``out`` and evaluate the
    labelled ones (none with ``--no-labels``); also say whether any feature
    of DATA has a weight in the model.  With ``--strict`` the predictions
    are held back until one does, so that nothing is written when none
    does."""
    source = source_name(args.data)
    loss = learner.options.loss
    seen = Predicted(loss, learner.options.quantile_tau)
    matched = False
    held: list[np.ndarray] = []
    for batch in read(args, options=learner.options):
        features = features_only(batch)
        try:
            learner.check(features, learning=False)
        except BatchError as exc:
            raise batch_error(exc, batch, source, loss) from None
        predictions = learner.predict(features, check=False)
        seen.examples += batch.n_rows
        # --no-labels: every label is taken as absent (NaN), so none is
        # checked against the loss or evaluated.
        labelled = (np.zeros(batch.n_rows, dtype=bool) if args.no_labels
                    else np.isfinite(batch.labels))
        if labelled.any():
            check_labels(batch, labelled, source, loss)
            m = learner.decision_function(features, check=False)
            seen.labelled += int(labelled.sum())
            seen.evaluation.add(m[labelled], batch.labels[labelled],
                                None if batch.weights is None else batch.weights[labelled])
        if not matched:
            # Looked up until the first hit only (the store's hash lookup).
            matched = bool(batch.keys.size) and bool(np.any(learner.weights_of(batch.keys)))
            if args.strict and not matched:
                held.append(predictions)
                continue
            for earlier in held:
                write_numbers(earlier, out)
            held.clear()
        write_numbers(predictions, out)
    if seen.examples == 0:
        raise EmptyInput(f"{source}: no examples (the input is empty, or only blank and "
                         f"comment lines)")
    return seen, matched


def say_unmatched(args: argparse.Namespace, learner: Learner, seen: Predicted) -> None:
    """No feature of DATA has a weight in the model: every prediction is
    the intercept's alone.  A warning, or with --strict an error."""
    source = source_name(args.data)
    if learner.nnz == 0:
        what = f"the model {args.model} has no non-zero weight"
    else:
        what = (f"no feature of {source} has a weight in the model {args.model} (was it "
                f"trained on features of the same kind: svmlight indices, or VW names?)")
    what += f": all {seen.examples} predictions are the intercept's alone"
    if args.strict:
        raise CommandError(f"{what}; nothing was written (--strict)")
    print(f"onlinel1: warning: {what} (--strict makes this an error)", file=sys.stderr)


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
    if o.adaptive or o.minibatch > 1:
        print(f"steps             adaptive={o.adaptive} minibatch={o.minibatch}", file=out)
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
    if isinstance(snapshot, dict):
        print(f"snapshot          {snapshot_line(snapshot)}", file=out)
        for producer, seq in sorted(snapshot.get("producers", {}).items()):
            print(f"producer          {shown(producer)}: last batch seq {seq}", file=out)
    if args.top > 0 and keys.size:
        order = np.argsort(-np.abs(weights), kind="stable")[:args.top]
        print(f"\ntop {len(order)} weights by magnitude:", file=out)
        for i in order:
            key = int(keys[i])
            name = f"  {shown(names[key])}" if key in names else ""
            print(f"  {key:>20}  {float(weights[i])!r:>24}{name}", file=out)
    if args.export:
        export(args.export, keys, weights, names)
    return 0


def snapshot_line(snapshot: dict[str, Any]) -> str:
    """``#seq (reason, time)`` of a snapshot's record, with what it has
    (every field is optional to a reader: docs/snapshot-format.md)."""
    seq = f"#{snapshot['seq']}" if "seq" in snapshot else "(no seq)"
    details = [str(snapshot["reason"])] if "reason" in snapshot else []
    if isinstance(snapshot.get("unix_time"), (int, float)):
        details.append(time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                     time.gmtime(snapshot["unix_time"])))
    return seq + (f" ({', '.join(details)})" if details else "")


def shown(name: str) -> str:
    """A feature name as printed: the bytes of a name that is not UTF-8
    (kept with surrogateescape) as backslash escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


#: Rows formatted and written at a time by ``export``.
EXPORT_CHUNK_ROWS = 1 << 16


def export(path: str, keys: np.ndarray, weights: np.ndarray, names: dict[int, str], *,
           chunk_rows: int = EXPORT_CHUNK_ROWS) -> None:
    """Non-zero weights sorted by key: TSV ``key<TAB>weight[<TAB>name]`` (the
    name where known, no header) or, for ``*.json``, a JSON list.  Rows are
    formatted ``chunk_rows`` at a time, so that the text of a large model
    never sits in memory whole; the output is that of one ``json.dump`` of
    the whole list.  A name that is not UTF-8 (the readers keep its bytes
    with surrogateescape) is written as its bytes in the TSV, and as
    ``\\udcXX`` escapes in the JSON."""
    as_json = path.endswith(".json")
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
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
                    "from it) each time the example count doubles, and a summary at the end;\n"
                    "with --test or --holdout-fraction, the metrics of examples it never\n"
                    "learns after every pass. An input with no example is an error (exit 2).",
        epilog="examples:\n  onlinel1 train a9a.train.svm --update fobos --l1 1e-4 --save a9a.model\n"
               "  onlinel1 train a9a.train.svm --passes 5 --shuffle --test a9a.test.svm\n"
               "  onlinel1 train a9a.train.svm --passes 5 --holdout-fraction 0.1\n"
               "  zcat day2.svm.gz | onlinel1 train - --passes 2 --initial a9a.model "
               "--save a9a-day2.model")
    add_data_arguments(train)
    # Unset flags stay None, so that --initial can tell the settings given
    # from the defaults (learner_options fills those in).
    add_learner_arguments(train, with_defaults=False)
    register_flags(train)
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
    train.add_argument("--quiet", action="store_true",
                       help="print nothing but errors (no progress, no summary)")
    add_read_ahead_argument(train, "learned")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser(
        "predict", formatter_class=Formatter, help="predict a data file with a model",
        description="Write one prediction per example of DATA: the probability of the\n"
                    "positive class for the log loss, the margin b + sum w_i x_i otherwise,\n"
                    "from a model file (--model FILE) or a running daemon (--connect),\n"
                    "whose model --model NAME names (the daemon's 'default' model without\n"
                    "it). Labels are optional (a line without one is predicted all the\n"
                    "same). With --model FILE, when DATA has labels, the metrics go to\n"
                    "stderr: log loss, accuracy and AUC for a classification model, RMSE\n"
                    "and MAE for --loss squared (--no-labels: none, every label ignored);\n"
                    "and if no feature of DATA has a weight in the model, a warning says\n"
                    "so (--strict: an error).",
        epilog="examples:\n"
               "  onlinel1 predict --model a9a.model a9a.test.svm > predictions.txt\n"
               "  onlinel1 predict --model /var/lib/onlinel1 --strict new.svm\n"
               "  onlinel1 predict --connect tcp://127.0.0.1:5556 a9a.test.svm\n"
               "  onlinel1 predict --connect tcp://127.0.0.1:5556 --model ctr ctr.test.svm")
    predict.add_argument("--model", metavar="FILE|NAME",
                         help="without --connect: a model file written by train --save, a "
                              "snapshot, or a snapshot directory (its newest valid snapshot); "
                              "with --connect: the name of one of the daemon's models "
                              "(default: its 'default' model)")
    predict.add_argument("--connect", metavar="ENDPOINT",
                         help="ask a running daemon at its request endpoint instead, "
                              "e.g. tcp://127.0.0.1:5556")
    add_curve_client_arguments(predict)
    add_data_arguments(predict)
    predict.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    predict.add_argument("--strict", action="store_true",
                         help="with --model FILE: an error (exit 1, no prediction written) when "
                              "no feature of DATA has a weight in the model; the predictions are "
                              "held back until one does")
    predict.add_argument("--quiet", action="store_true",
                         help="with --model FILE: no metrics (warnings and errors still)")
    predict.add_argument("--no-labels", action="store_true",
                         help="ignore the label of every line that has one, as if it had "
                              "none (Vowpal Wabbit's -t on labels not to be trusted): no "
                              "metrics, and no label is checked against the model's loss "
                              "(e.g. 0.25 or 7 with the log loss); the predictions are the "
                              "same. predict --connect sends no labels anyway")
    predict.set_defaults(func=cmd_predict, parser=predict, optional_labels=True)

    inspect = sub.add_parser(
        "inspect", formatter_class=Formatter, help="summarise or export a model",
        description="Print a model's settings, counters and largest weights; export its\n"
                    "non-zero weights.",
        epilog="example:\n  onlinel1 inspect a9a.model --top 20 --export weights.tsv")
    inspect.add_argument("model", metavar="MODEL",
                         help="a model file, a snapshot, or a snapshot directory (its newest "
                              "valid snapshot)")
    inspect.add_argument("--top", type=int, default=10, metavar="N",
                         help="show the N largest weights by magnitude (default: %(default)s)")
    inspect.add_argument("--export", metavar="FILE",
                         help="write every non-zero weight, sorted by key: one "
                              "'key<TAB>weight[<TAB>name]' line each (JSON if FILE ends in .json)")
    inspect.set_defaults(func=cmd_inspect)
