"""Commands that talk to a running daemon: ``send`` (its checks in
send.py), ``predict --connect``, ``stats``, ``health``, ``snapshot`` (and
``models``, in models.py).  They are thin: the protocol lives in
onlinel1/client.py, the reading of data files in onlinel1/io.  Each takes
``--model NAME`` for one of the daemon's named models; without it, the
messages carry no ``model`` field (the daemon's ``default`` model).

None waits without end: each request has its ``--timeout``, and a daemon
that is not there (or an endpoint that is the daemon's other one) is
named as such (onlinel1/link.py)."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Callable, Iterator, TextIO

import numpy as np

from onlinel1.cli import send as _send
from onlinel1.cli.common import (CommandError, Formatter, add_curve_client_arguments,
                                 add_data_arguments, add_read_ahead_argument, check_data,
                                 curve_timeout_hint, read_as_model)

TRAIN_ENDPOINT = "tcp://127.0.0.1:5555"
REQUEST_ENDPOINT = "tcp://127.0.0.1:5556"
#: Seconds ``predict --connect`` waits for each batch's reply.
PREDICT_TIMEOUT = 30.0
#: What to do next, after an error reply of these codes.
HINTS = {"unknown_model": "'onlinel1 models list' shows the daemon's models",
         "model_exists": "drop it first, or swap new weights into it with "
                         "'onlinel1 models swap'"}


def model_name(text: str) -> str:
    """The ``type`` of a ``--model NAME`` flag: a valid model name (a usage
    error otherwise, before anything is sent)."""
    from onlinel1.names import check_model_name
    try:
        return check_model_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_model_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--model", metavar="NAME", type=model_name, default=None,
                        help=f"{what} (default: the daemon's 'default' model; "
                             f"'onlinel1 models list' shows the others)")


#: Reasons of a ConnectTimeout (onlinel1/link.py) that CURVE cannot be behind.
NOT_CURVE = frozenset({"nothing", "socket_type", "no_handshake", "lost"})


def _talk(action: Callable[[], Any], args: argparse.Namespace | None = None,
          daemon_errors: bool = False, where: str = "") -> Any:
    """Run ``action``, turning the client's failures into one-line errors
    (a time-out that CURVE may explain says what to check about it, from
    ``args``' flags; ``where`` is added to a time-out's message).
    ``daemon_errors``: let DaemonError through."""
    from onlinel1.client import ClientError, DaemonError
    try:
        return action()
    except DaemonError as exc:
        if daemon_errors:
            raise
        hint = f" ({HINTS[exc.code]})" if exc.code in HINTS else ""
        raise CommandError(f"daemon replied {exc.code}: {exc.message}{hint}") from None
    except TimeoutError as exc:     # DaemonTimeout, ConnectTimeout, ProducerTimeout
        if getattr(exc, "reason", None) in NOT_CURVE:
            raise CommandError(f"{exc}{where}") from None
        raise CommandError(f"{exc}{where} ({curve_timeout_hint(args)})") from None
    except (ClientError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def _curve_keys(args: argparse.Namespace) -> dict[str, Any]:
    return {"curve_secret_key": getattr(args, "curve_secret_key", None),
            "curve_server_key": getattr(args, "curve_server_key", None)}


def _client(args: argparse.Namespace, timeout: float, endpoint: str | None = None) -> Any:
    """A Client of ``endpoint`` (default: ``--connect``) for ``--model``."""
    from onlinel1.client import Client
    if not timeout > 0:
        raise CommandError(f"--timeout must be > 0 seconds, got {timeout}")
    model = getattr(args, "model", None)
    return _talk(lambda: Client(args.connect if endpoint is None else endpoint,
                                timeout=timeout, model=model, **_curve_keys(args)))


def _ask(args: argparse.Namespace, op: str) -> Any:
    """One request (``stats``, ``health``, ...) on a client of its own (for
    ``args.model``, if given)."""
    client = _client(args, args.timeout)
    try:
        return _talk(getattr(client, op), args)
    finally:
        client.close()


# -------------------------------------------------------------------- send

class Progress:
    """One status line on stderr, rewritten in place (carriage return) at
    most ``per_second`` times a second."""

    def __init__(self, out: TextIO, enabled: bool, per_second: float = 10.0) -> None:
        self.out, self.enabled = out, enabled
        self.interval = 1.0 / per_second
        self.start = time.perf_counter()
        self.last = -math.inf      # the first update shows at once
        self.width = 0

    def update(self, examples: int, batches: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.interval:
            return
        self.last = now
        rate = examples / max(now - self.start, 1e-9)
        line = (f"sent {examples:>12,} examples  {batches:>8,} batches  "
                f"{rate:>12,.0f} examples/s  {now - self.start:>7.1f} s")
        self.out.write("\r" + line.ljust(self.width))
        self.out.flush()
        self.width = len(line)

    def finish(self) -> None:
        """Clear the status line."""
        if self.enabled and self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()
            self.width = 0


def cmd_send(args: argparse.Namespace) -> int:
    """``onlinel1 send``: send.py, given this module's client pieces."""
    enabled = args.progress if args.progress is not None else sys.stderr.isatty()
    return _send.cmd_send(
        args, progress=Progress(sys.stderr, enabled),
        client=lambda endpoint, timeout: _client(args, timeout, endpoint),
        talk=lambda action, rejected=False, where="": _talk(action, args, rejected, where),
        keys=_curve_keys(args), defaults=(TRAIN_ENDPOINT, REQUEST_ENDPOINT))


# ----------------------------------------------------------------- predict

def predict_remote(args: argparse.Namespace) -> int:
    """``onlinel1 predict --connect ENDPOINT [--model NAME] DATA``: the
    daemon's predictions (of its model NAME, else of its default model),
    one per line, written exactly as the offline ``predict`` writes them.
    DATA is read with the model's interactions and namespaced_integers,
    asked of the daemon (``config``) first, as ``predict --model`` reads it
    with the model file's (common.read_as_model)."""
    from onlinel1.cli.offline import write_numbers
    timeout = getattr(args, "timeout", None) or PREDICT_TIMEOUT
    check_data(args)
    client = _client(args, timeout)
    out = None
    try:
        batches = read_as_model(args, *_learner_of(client, args))
        out = sys.stdout if args.output in (None, "-") else open(args.output, "w")
        for batch in batches:
            result = _talk(lambda: client.predict(batch), args)
            predictions = np.asarray(result.get("predictions"), dtype=np.float64)
            if predictions.shape != (batch.n_rows,):
                raise CommandError(f"the daemon returned {predictions.size} predictions "
                                   f"for {batch.n_rows} examples")
            write_numbers(predictions, out)
    finally:
        client.close()
        if out is not None and out is not sys.stdout:
            out.close()
    return 0


def _learner_of(client: Any, args: argparse.Namespace) -> tuple[dict[str, Any] | None, str]:
    """The model's learner options from its ``config`` (None if the daemon
    refuses it), and why they are not known."""
    from onlinel1.client import DaemonError
    try:
        config = _talk(client.config, args, daemon_errors=True)
    except DaemonError as exc:
        if exc.code == "unknown_model":        # nothing to predict with: say so now
            raise CommandError(f"daemon replied {exc.code}: {exc.message} "
                               f"({HINTS[exc.code]})") from None
        return None, f"the daemon refused 'config' ({exc.code}: {exc.message})"
    learner = config.get("learner")
    if not isinstance(learner, dict):
        return None, "the daemon's 'config' reply has no learner options"
    return learner, ""


# ------------------------------------------------------------ stats, health

def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):     # a list of maps: cluster.per_shard.0.nnz
            yield from _flatten(item, f"{prefix}.{index}")
    else:
        yield prefix, value


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "-"        # an empty map: no requests, no errors, ...
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_text, value))
    return str(value)


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _ask(args, "stats")
    if args.json:
        json.dump(stats, sys.stdout, indent=2, sort_keys=True, default=repr)
        sys.stdout.write("\n")
        return 0
    rows = list(_flatten(stats))
    width = max((len(key) for key, _ in rows), default=0)
    for key, value in rows:
        print(f"{key:<{width}}  {_text(value)}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    health = _ask(args, "health")
    status = health.get("status")
    if status != "ok":
        problems = "; ".join(health.get("problems") or [])
        raise CommandError(f"the daemon at {args.connect} reports status {status!r}"
                           + (f": {problems}" if problems else ""))
    details = [f"{key}={_text(health[key])}" for key in ("mode", "uptime_s", "examples")
               if key in health]
    if args.model is not None:
        details.insert(0, f"model={args.model}")
    print(" ".join(["ok", args.connect, *details]))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    result = _ask(args, "snapshot")
    model = result.get("model", args.model)
    of = "" if model is None else f" of model {model}"
    print(f"snapshot {result['seq']}{of} written: {result['file']} ({result['size']} bytes, "
          f"{result['examples']} examples)")
    return 0


# ---------------------------------------------------------------- commands

def _connection_arguments(parser: argparse.ArgumentParser, timeout: float) -> None:
    parser.add_argument("--connect", metavar="ENDPOINT", default=REQUEST_ENDPOINT,
                        help="the daemon's request endpoint (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=timeout, metavar="SECONDS",
                        help="give up when the daemon has not answered within this time "
                             "(default: %(default)s)")
    add_curve_client_arguments(parser)


def register(sub: argparse._SubParsersAction) -> None:
    send = sub.add_parser(
        "send", formatter_class=Formatter, help="stream a data file to a daemon for training",
        description="Read DATA and push its examples, in columnar batches of --batch-size\n"
                    "rows, to the training endpoint of a running daemon, which learns them\n"
                    "in order. When the daemon falls behind, sending waits (nothing is\n"
                    "dropped). The command returns once every batch has been delivered,\n"
                    "then prints the number of examples sent and the rate.\n\n"
                    "It checks that the daemon takes them: the training endpoint must take\n"
                    "the connection within --connect-timeout; the request endpoint\n"
                    "(--request-endpoint; the default one with the default --connect) is\n"
                    "asked for the model's loss and counters first, batches with labels the\n"
                    "loss cannot learn are not sent, and after the last batch the model's\n"
                    "counters must show every batch processed and none rejected.\n\n"
                    "A VW file is read with the model's interactions (-q) and\n"
                    "--namespaced-integers, asked of the request endpoint, since the daemon\n"
                    "cannot cross columnar batches; svmlight data for a model with\n"
                    "interactions is refused.\n\n"
                    "Exit status: 0 when all was sent, delivered and accepted; 1 on an error\n"
                    "(no daemon, not delivered, a bad file); 3 when the daemon rejected\n"
                    "batches (or would have: their labels).",
        epilog="examples:\n"
               "  onlinel1 serve &\n"
               "  onlinel1 send a9a.train.svm --connect tcp://127.0.0.1:5555 "
               "--producer loader-1\n"
               "  onlinel1 stats\n"
               "  onlinel1 models create ctr --update fobos --l1 1e-5\n"
               "  onlinel1 send ctr.train.svm --model ctr\n"
               "  onlinel1 send x.svm --connect tcp://10.0.0.7:5555 "
               "--request-endpoint tcp://10.0.0.7:5556\n"
               "  onlinel1 send x.svm --ack --request-endpoint tcp://10.0.0.7:5556")
    add_data_arguments(send)
    send.set_defaults(batch_size=1000)
    send.add_argument("--connect", metavar="ENDPOINT", default=TRAIN_ENDPOINT,
                      help="the daemon's training endpoint (default: %(default)s)")
    send.add_argument("--producer", metavar="NAME",
                      help="name this sender; the daemon's stats show the last batch "
                           "number received from each name")
    add_model_argument(send, "the daemon's model that learns the examples")
    send.add_argument("--request-endpoint", metavar="E", default=None,
                      help=f"the daemon's request endpoint, asked to check the batches "
                           f"(default: {REQUEST_ENDPOINT} when --connect is the default, "
                           f"none otherwise)")
    send.add_argument("--timeout", type=float, default=_send.TIMEOUT, metavar="SECONDS",
                      help="give up when the daemon has made no progress for this long: taken "
                           "no batch, or (at the end) none delivered or seen processed; with "
                           "--ack, the longest wait for each batch's reply (default: "
                           "%(default)s)")
    send.add_argument("--connect-timeout", type=float, default=5.0, metavar="SECONDS",
                      help="give up when no daemon has taken the connection for this long, "
                           "at the start or after losing it (default: %(default)s)")
    checked = send.add_mutually_exclusive_group()
    checked.add_argument("--no-check", dest="check", action="store_false",
                         help="do not ask the request endpoint (no check of the labels, nor "
                              "of the batches' acceptance; a VW file is read without the "
                              "model's -q and --namespaced-integers, as written)")
    checked.add_argument("--ack", action="store_true",
                         help="send each batch as an acknowledged learn request to the "
                              "request endpoint (not --connect): exact, with the daemon's "
                              "error for a rejected batch, but one round trip per batch and "
                              "no --producer")
    add_curve_client_arguments(send)
    shown = send.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress", action="store_const", const=True,
                       default=None, help="show the progress line even when stderr is not "
                                          "a terminal")
    shown.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                       help="no progress line (the default when stderr is not a terminal)")
    add_read_ahead_argument(send, "sent")
    send.set_defaults(func=cmd_send)

    stats = sub.add_parser(
        "stats", formatter_class=Formatter, help="show a daemon's counters",
        description="Ask a running daemon for its counters: examples learned, progressive\n"
                    "loss and accuracy (overall and over a recent window), model size,\n"
                    "requests and errors by kind, rejected batches, the last batch number\n"
                    "of each producer. A table by default, the daemon's map with --json.",
        epilog="examples:\n  onlinel1 stats\n"
               "  onlinel1 stats --connect tcp://10.0.0.7:5556 --json | jq .progressive\n"
               "  onlinel1 stats --model ctr")
    _connection_arguments(stats, 5.0)
    add_model_argument(stats, "show the counters of the daemon's model of this name")
    stats.add_argument("--json", action="store_true", help="print the stats as JSON")
    stats.set_defaults(func=cmd_stats)

    health = sub.add_parser(
        "health", formatter_class=Formatter, help="check that a daemon answers",
        description="Ask a running daemon whether it is healthy. Prints 'ok' and the\n"
                    "daemon's mode, uptime and examples learned, and exits with status 0;\n"
                    "exits with status 1 and one line on stderr when the daemon does not\n"
                    "answer in time or reports a problem. For scripts and probes.",
        epilog="example:\n  onlinel1 health --connect tcp://127.0.0.1:5556 --timeout 1 "
               "|| restart-daemon")
    _connection_arguments(health, 2.0)
    add_model_argument(health, "also check that the daemon has a model of this name, and "
                                "report its examples")
    health.set_defaults(func=cmd_health)

    snapshot = sub.add_parser(
        "snapshot", formatter_class=Formatter, help="make a daemon write a snapshot now",
        description="Ask a running daemon to write a snapshot of its model to its snapshot\n"
                    "directory, and wait until it is on disk. Prints the file's name and\n"
                    "sequence number. The daemon chooses the path (--snapshot-dir).",
        epilog="examples:\n  onlinel1 snapshot --connect tcp://127.0.0.1:5556 --timeout 60\n"
               "  onlinel1 snapshot --model ctr")
    _connection_arguments(snapshot, 60.0)
    add_model_argument(snapshot, "snapshot the daemon's model of this name")
    snapshot.set_defaults(func=cmd_snapshot)
