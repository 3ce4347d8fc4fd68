"""``onlinel1 models``: the named models of a running daemon.

    onlinel1 models [--connect E] [--timeout S] list [--json]
    onlinel1 models [--connect E] [--timeout S] create NAME [learner flags]
    onlinel1 models [--connect E] [--timeout S] drop NAME
    onlinel1 models [--connect E] [--timeout S] swap NAME FILE

``--connect``, ``--timeout`` and the CURVE keys (``--curve-secret-key``,
``--curve-server-key``) may come before or after the action.
``create`` sends only the learner flags given (every flag of
``onlinel1 train``'s learner group); the daemon gives the others their
defaults.  The protocol is onlinel1/client.py's (``Client.create``,
``drop``, ``list_models``, ``swap``).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from onlinel1.cli.common import (CommandError, Formatter, Parser, add_curve_client_arguments,
                                 add_learner_arguments, learner_options)
from onlinel1.cli.remote import REQUEST_ENDPOINT, _client, _talk, model_name

#: The default ``--timeout`` of each action, in seconds: ``create`` and
#: ``swap`` may write a first snapshot, ``swap`` reads a whole model file.
TIMEOUTS = {"list": 5.0, "create": 60.0, "drop": 60.0, "swap": 60.0}
#: The columns of ``models list``: (title, field of the daemon's reply).
COLUMNS = (("MODEL", "model"), ("UPDATE", "update"), ("LOSS", "loss"),
           ("EXAMPLES", "examples"), ("NNZ", "nnz"))


def _run(args: argparse.Namespace, call: Any) -> Any:
    """``call(client)`` on a client of its own, for ``args.action``."""
    timeout = TIMEOUTS[args.action] if args.timeout is None else args.timeout
    client = _client(args, timeout)
    try:
        return _talk(lambda: call(client), args)
    finally:
        client.close()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def cmd_list(args: argparse.Namespace) -> int:
    result = _run(args, lambda c: c.request("list"))
    models = result.get("models")
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise CommandError(f"the daemon at {args.connect} answered list without a list "
                           f"of models")
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True, default=repr)
        sys.stdout.write("\n")
        return 0
    rows = [[title for title, _ in COLUMNS]]
    rows += [[_cell(m.get(field)) for _, field in COLUMNS] for m in models]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    numeric = [field in ("examples", "nnz") for _, field in COLUMNS]
    for row in rows:
        cells = [cell.rjust(w) if right else cell.ljust(w)
                 for cell, w, right in zip(row, widths, numeric)]
        print("  ".join(cells).rstrip())
    return 0


def _learner_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The learner settings of the flags given on the command line, and no
    others: the daemon gives the rest their defaults."""
    learner_options(args)      # checks the values here, naming the flag at fault
    settings: dict[str, Any] = {}
    for dest in args.learner_dests:
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "no_intercept":
            settings["fit_intercept"] = not value
        else:
            settings[dest] = value
    return settings


def cmd_create(args: argparse.Namespace) -> int:
    settings = _learner_settings(args)
    result = _run(args, lambda c: c.create(args.name, settings))
    learner = result.get("learner") or {}
    shown = " ".join(f"{key}={learner[key]!r}" if isinstance(learner[key], float)
                     else f"{key}={learner[key]}"
                     for key in ("loss", "update", "l1", "l2", "eta0") if key in learner)
    print(f"created model {result.get('model', args.name)}" + (f": {shown}" if shown else ""))
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    result = _run(args, lambda c: c.drop(args.name))
    final = result.get("final_snapshot")
    kept = f"; final snapshot {final}" if final else ""
    print(f"dropped model {result.get('model', args.name)} "
          f"({result.get('examples', '?')} examples learned{kept})")
    return 0


def cmd_swap(args: argparse.Namespace) -> int:
    result = _run(args, lambda c: c.swap(args.name, args.file))
    print(f"swapped model {result.get('model', args.name)}: now {result.get('path', args.file)} "
          f"({result.get('examples', '?')} examples, {result.get('nnz', '?')} non-zero weights)")
    return 0


# ---------------------------------------------------------------- commands

def _connection(parser: argparse.ArgumentParser, top: bool) -> None:
    """``--connect`` and ``--timeout``: on ``models`` itself with their
    defaults, and on each action without (``SUPPRESS``), so that they may
    come after the action too without resetting what came before."""
    parser.add_argument("--connect", metavar="ENDPOINT",
                        default=REQUEST_ENDPOINT if top else argparse.SUPPRESS,
                        help=f"the daemon's request endpoint (default: {REQUEST_ENDPOINT})")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        default=None if top else argparse.SUPPRESS,
                        help="give up when the daemon has not answered within this time "
                             "(default: 5 for list, 60 for create, drop and swap)")
    add_curve_client_arguments(parser, suppress=not top)


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser(
        "models", formatter_class=Formatter, help="list, create, drop or swap a daemon's models",
        description="Manage the named models of a running daemon. Each model has its own\n"
                    "learner settings, weights, counters and snapshots; a message without a\n"
                    "model name goes to the model called 'default'. Other commands pick a\n"
                    "model with --model NAME (send, predict --connect, stats, snapshot).\n\n"
                    "  list          the models, sorted by name: update rule, loss, examples\n"
                    "                learned and non-zero weights (--json: the daemon's map)\n"
                    "  create NAME   a new, empty model; the learner flags given (those of\n"
                    "                'onlinel1 train') set it up, the others take their\n"
                    "                defaults\n"
                    "  drop NAME     remove a model from the daemon\n"
                    "  swap NAME FILE\n"
                    "                replace a model's weights at once by those of a model file\n"
                    "                or snapshot. FILE is read by the daemon, on the daemon's\n"
                    "                host; a relative FILE is made absolute here first.\n\n"
                    "A name is 1-64 letters, digits, '_' or '-', starting with a letter or a\n"
                    "digit. Exit status: 0; 1 when the daemon refuses (unknown_model,\n"
                    "model_exists, ...) or does not answer in time; 2 for bad usage.",
        epilog="examples:\n"
               "  onlinel1 models list\n"
               "  onlinel1 models --connect tcp://10.0.0.7:5556 list --json\n"
               "  onlinel1 models create ctr --update fobos --l1 1e-5\n"
               "  onlinel1 send ctr.train.svm --model ctr\n"
               "  onlinel1 predict --connect tcp://127.0.0.1:5556 --model ctr ctr.test.svm\n"
               "  onlinel1 models swap ctr /srv/models/ctr-v2.ol1\n"
               "  onlinel1 models drop ctr")
    _connection(models, top=True)
    actions = models.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser,
                                    required=True)

    listing = actions.add_parser(
        "list", formatter_class=Formatter, help="the daemon's models",
        description="The daemon's models, sorted by name: a table, or with --json the\n"
                    "daemon's reply as it is ({\"models\": [...]}).",
        epilog="examples:\n  onlinel1 models list\n"
               "  onlinel1 models list --json | jq -r '.models[].model'")
    _connection(listing, top=False)
    listing.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")
    listing.set_defaults(func=cmd_list)

    create = actions.add_parser(
        "create", formatter_class=Formatter, help="create a new model",
        description="Create the model NAME, empty, with the learner settings of the flags\n"
                    "given; only those are sent, and the daemon gives every other setting\n"
                    "its default. Prints the new model's main settings.",
        epilog="examples:\n  onlinel1 models create ctr --update fobos --l1 1e-5\n"
               "  onlinel1 models create ranker --loss squared --no-intercept")
    _connection(create, top=False)
    create.add_argument("name", metavar="NAME", type=model_name, help="the new model's name")
    before = list(create._actions)
    add_learner_arguments(create, with_defaults=False)
    # Every learner flag, including ones added to common.py later.
    create.set_defaults(func=cmd_create,
                        learner_dests=[a.dest for a in create._actions if a not in before])

    drop = actions.add_parser(
        "drop", formatter_class=Formatter, help="remove a model",
        description="Remove the model NAME from the daemon. Prints the examples it had\n"
                    "learned.",
        epilog="example:\n  onlinel1 models drop ctr")
    _connection(drop, top=False)
    drop.add_argument("name", metavar="NAME", type=model_name, help="the model's name")
    drop.set_defaults(func=cmd_drop)

    swap = actions.add_parser(
        "swap", formatter_class=Formatter, help="replace a model's weights by a file's",
        description="Replace the weights (and settings) of the model NAME, at once, by those\n"
                    "of FILE: a model file written by 'onlinel1 train --save', a snapshot,\n"
                    "or a snapshot directory (its newest valid snapshot). Every prediction\n"
                    "is answered wholly by the old weights or wholly by the new.\n\n"
                    "FILE is read by the daemon, on the daemon's host, not by this command:\n"
                    "a relative FILE is made absolute against this directory, which is right\n"
                    "when the daemon runs on this machine; for a remote daemon, give the path\n"
                    "as the daemon's host sees it.",
        epilog="examples:\n  onlinel1 models swap ctr ctr-v2.ol1\n"
               "  onlinel1 models --connect tcp://10.0.0.7:5556 swap ctr /srv/models/ctr-v2.ol1")
    _connection(swap, top=False)
    swap.add_argument("name", metavar="NAME", type=model_name, help="the model's name")
    swap.add_argument("file", metavar="FILE",
                      help="a model file or snapshot (or snapshot directory) on the daemon's "
                           "host")
    swap.set_defaults(func=cmd_swap)
