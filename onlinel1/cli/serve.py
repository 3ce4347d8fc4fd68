"""``onlinel1 serve``: run the daemon."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import zmq

from onlinel1.cli.common import CommandError, Formatter, add_learner_arguments, learner_options
from onlinel1.learner import Learner
from onlinel1.server import ConfigError, Daemon, DaemonConfig, read_config_file
from onlinel1.server.config import LOG_LEVELS

#: (flag, DaemonConfig field) of the daemon settings on the command line.
DAEMON_FLAGS = (("--train-endpoint", "train_endpoint"), ("--request-endpoint", "request_endpoint"),
                ("--log-level", "log_level"), ("--max-message-bytes", "max_message_bytes"),
                ("--high-water-mark", "high_water_mark"))


def daemon_config(args: argparse.Namespace, base: dict[str, Any]) -> DaemonConfig:
    values = dict(base)
    for _, field in DAEMON_FLAGS:
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    try:
        return DaemonConfig.from_dict(values)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    daemon_table: dict[str, Any] = {}
    learner_table: dict[str, Any] = {}
    if args.config:
        try:
            daemon_table, learner_table = read_config_file(args.config)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
    config = daemon_config(args, daemon_table)
    options = learner_options(args, learner_table)
    logging.basicConfig(stream=sys.stderr, level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    daemon = Daemon(Learner(options), config)
    try:
        daemon.bind()
    except zmq.ZMQError as exc:
        raise CommandError(f"cannot bind {config.train_endpoint} / {config.request_endpoint}: "
                           f"{exc}") from None
    if args.check:
        daemon.close()
        print(f"configuration ok: training on {config.train_endpoint}, requests on "
              f"{config.request_endpoint}", file=sys.stderr)
        return 0

    def stop(signum: int, frame: Any) -> None:
        logging.getLogger("onlinel1.daemon").info(
            "%s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        daemon.run()
    finally:
        daemon.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    d = DaemonConfig()
    serve = sub.add_parser(
        "serve", formatter_class=Formatter, help="run the daemon: learn from a stream, answer predictions",
        description="Run the daemon. Producers PUSH training batches to the training endpoint\n"
                    "(PULL); clients send predict, learn, stats, health and config requests to\n"
                    "the request endpoint (ROUTER). Both speak msgpack over ZeroMQ\n"
                    "(docs/protocol.md). On SIGTERM or SIGINT the daemon stops taking input,\n"
                    "finishes the batch in hand and exits 0.\n\n"
                    "Settings come from the built-in defaults, then --config FILE (TOML with\n"
                    "[daemon] and [learner] tables), then the flags given here.",
        epilog="examples:\n"
               "  onlinel1 serve\n"
               "  onlinel1 serve --update fobos --l1 1e-5 --request-endpoint tcp://0.0.0.0:5556\n"
               "  onlinel1 serve --config /etc/onlinel1/onlinel1.toml --log-level debug")
    g = serve.add_argument_group("daemon")
    g.add_argument("--train-endpoint", metavar="E",
                   help=f"where producers push training batches (default: {d.train_endpoint})")
    g.add_argument("--request-endpoint", metavar="E",
                   help=f"where clients send requests (default: {d.request_endpoint})")
    g.add_argument("--config", metavar="FILE", help="a TOML config file")
    g.add_argument("--log-level", choices=LOG_LEVELS, help=f"(default: {d.log_level})")
    g.add_argument("--max-message-bytes", type=int, metavar="N",
                   help=f"largest message accepted (default: {d.max_message_bytes})")
    g.add_argument("--high-water-mark", type=int, metavar="N",
                   help=f"messages queued per socket before producers are held back "
                        f"(default: {d.high_water_mark})")
    g.add_argument("--check", action="store_true",
                   help="validate the configuration, bind the endpoints, and exit without serving")
    add_learner_arguments(serve, with_defaults=False)
    serve.set_defaults(func=cmd_serve)
