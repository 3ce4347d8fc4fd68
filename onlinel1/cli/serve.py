"""``onlinel1 serve``: run the daemon."""
from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import signal
import sys
from typing import Any

from onlinel1.cli.common import (CommandError, Formatter, add_learner_arguments,
                                 explicit_learner_values, learner_options)
# Only the settings here: the daemon's modules (ZeroMQ, asyncio, HTTP) are
# imported by the functions that run it, so that building the command
# line's parser, which every onlinel1 command does, stays cheap.
from onlinel1.server.config import LOG_LEVELS, ConfigError, DaemonConfig, read_config_file

log = logging.getLogger("onlinel1.daemon")

#: (flag, DaemonConfig field) of the daemon settings on the command line.
DAEMON_FLAGS = (("--train-endpoint", "train_endpoint"), ("--request-endpoint", "request_endpoint"),
                ("--log-level", "log_level"), ("--max-message-bytes", "max_message_bytes"),
                ("--high-water-mark", "high_water_mark"), ("--snapshot-dir", "snapshot_dir"),
                ("--snapshot-every-seconds", "snapshot_every_seconds"),
                ("--snapshot-every-examples", "snapshot_every_examples"), ("--keep", "keep"),
                ("--resume", "resume"), ("--keep-names", "keep_names"),
                ("--training-io-nice", "training_io_nice"), ("--http-endpoint", "http_endpoint"),
                ("--dedupe-seq", "dedupe_seq"), ("--training-share", "training_share"),
                ("--curve-secret-key", "curve_secret_key"), ("--curve-allow", "curve_allow"),
                ("--insecure", "insecure"), ("--max-connections", "max_connections"))
#: The bounds of one message (docs/protocol.md, "Limits").
DAEMON_FLAGS += (("--max-request-rows", "max_request_rows"), ("--max-reply-bytes", "max_reply_bytes"),
                 ("--max-abs-value", "max_abs_value"), ("--max-importance", "max_importance"),
                 ("--max-abs-label", "max_abs_label"))


def daemon_config(args: argparse.Namespace, base: dict[str, Any]) -> DaemonConfig:
    values = dict(base)
    for _, field in DAEMON_FLAGS:
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    try:
        return DaemonConfig.from_dict(values)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def prepare(args: argparse.Namespace) -> tuple[DaemonConfig, Any, dict[str, Any], Any]:
    """The daemon's settings from the config file and flags, logging set
    up, the CURVE keys checked: (config, learner options, the config
    file's [learner] table, request metrics or None)."""
    from onlinel1.server import auth
    from onlinel1.server.metrics import RequestMetrics
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
    try:
        # The key files now, not after resuming a snapshot (or waiting for one).
        auth.load_server_keys(config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    metrics = RequestMetrics() if config.http_endpoint else None
    return config, options, learner_table, metrics


def cmd_serve(args: argparse.Namespace) -> int:
    from onlinel1.server import startup
    config, options, learner_table, metrics = prepare(args)
    stopping: list[int] = []
    try:
        if args.predict_only:
            if not args.model:
                raise CommandError("--predict-only needs --model (a snapshot file or directory)")
            if args.initial:
                raise CommandError("--initial starts a trainer; a --predict-only replica serves "
                                   "--model")
            previous = signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
            try:
                daemon = startup.replica(config, args.model, wait=not args.check,
                                         stopping=lambda: bool(stopping), metrics=metrics)
            finally:
                signal.signal(signal.SIGTERM, previous)
            if daemon is None:          # SIGTERM while waiting for a first snapshot
                return 0
        elif args.model:
            raise CommandError("--model serves a snapshot read-only: add --predict-only "
                               "(a trainer resumes from --snapshot-dir, or starts from "
                               "--initial MODEL)")
        else:
            daemon = startup.trainer(config, options, explicit_learner_values(args, learner_table),
                                     force=args.force_config, initial=args.initial,
                                     check=args.check, metrics=metrics)
    except startup.StartupError as exc:
        raise CommandError(str(exc)) from None
    serving = (f"a predict-only replica of {args.model} (no training endpoint)"
               if args.predict_only else f"training on {config.train_endpoint}")
    return run(args, config, daemon, metrics, serving)


def run(args: argparse.Namespace, config: DaemonConfig, daemon: Any, metrics: Any,
        serving: str) -> int:
    """Bind, serve until SIGTERM (or, with --check, report and exit); the
    exit status (1 if a final snapshot failed)."""
    import zmq

    from onlinel1.server.http import HttpServer, MissingDependency
    try:
        daemon.bind()
    except zmq.ZMQError as exc:
        raise CommandError(f"cannot bind {config.train_endpoint} / {config.request_endpoint}: "
                           f"{exc}") from None
    except ConfigError as exc:     # a CURVE key file changed since the check above
        raise CommandError(str(exc)) from None
    http = None
    if config.http_endpoint:
        try:
            http = HttpServer(config.http_endpoint, daemon.status_source(), metrics)
            http.start()
        except (MissingDependency, OSError, ValueError) as exc:
            daemon.close()
            raise CommandError(f"--http-endpoint: {exc}") from None
    if args.check:
        if http is not None:
            http.close()
        daemon.close()
        print(f"configuration ok: {serving}, requests on {config.request_endpoint}"
              + (f", HTTP on {config.http_endpoint}" if http is not None else ""),
              file=sys.stderr)
        print(memory_bound_text(config, daemon.policy.accepts_training), file=sys.stderr)
        return 0

    def stop(signum: int, frame: Any) -> None:
        log.info("%s: finishing the batch in hand, then stopping", signal.Signals(signum).name)
        daemon.request_stop()

    def snapshot_all(signum: int, frame: Any) -> None:
        daemon.request_snapshots(signal.Signals(signum).name)

    def reload(signum: int, frame: Any) -> None:
        reload_log_level(args.config)
        if config.curve_allow is not None:
            reload_allow_list(daemon)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, snapshot_all)
    signal.signal(signal.SIGHUP, reload)
    # Everything allocated so far (modules, the model's Python objects) lives
    # as long as the daemon: keep it out of the garbage collector's full
    # passes, which would otherwise stall requests for milliseconds.
    gc.freeze()
    try:
        ok = daemon.run()
    finally:
        if http is not None:
            http.close()
        daemon.close()
    if not ok:
        log.error("a final snapshot failed: the newest snapshot on disk is older than the model")
        return 1
    return 0


def reload_log_level(config_file: str | None) -> None:
    """SIGHUP: re-read the config file's log level (the one setting that is
    safe to change in a running daemon); log what happened, never stop."""
    if not config_file:
        log.info("SIGHUP: nothing to reload (no --config); logs go to standard error, so "
                 "there is no file to reopen")
        return
    try:
        table, _ = read_config_file(config_file)
        level = DaemonConfig.from_dict({"log_level": table.get("log_level", "info")}).log_level
    except ConfigError as exc:
        log.error("SIGHUP: %s; nothing changed", exc)
        return
    logging.getLogger().setLevel(level.upper())
    log.warning("SIGHUP: log level %s from %s; other settings take effect at the next start",
                level, config_file)


def memory_bound_text(config: DaemonConfig, training: bool) -> str:
    """What ``serve --check`` says about the memory the sockets may hold."""
    from onlinel1.server import admission
    from onlinel1.server.transport import format_bytes
    b = admission.memory_bound(config, training)
    hwm, conns = config.high_water_mark, config.max_connections
    lines = [f"memory bound: queued input and unsent replies take at most "
             f"{format_bytes(b['total'])} ({b['total']} bytes):",
             f"  requests: {conns} connections x ({hwm}+1) x {admission.frame_cap(config)} "
             f"(frame cap) + {conns} x ({hwm}+1) x {config.max_message_bytes} (reply cap) + one "
             f"frame in hand = {format_bytes(b['requests_input'] + b['replies'])}"]
    if training:
        lines.append(f"  training: {conns} connections x ({hwm}+1) x "
                     f"{admission.frame_cap(config)} + one frame in hand = "
                     f"{format_bytes(b['training_input'])}")
    lines.append("  (max_connections per socket, high_water_mark, max_message_bytes; "
                 "README: Admission and memory bounds)")
    return "\n".join(lines)


def reload_allow_list(daemon: Any) -> None:
    """SIGHUP: read ``curve_allow`` again; log the outcome, never stop."""
    try:
        count = daemon.transport.reload_allow_list()
    except ConfigError as exc:
        log.error("SIGHUP: %s; the allow list is unchanged", exc)
        return
    log.warning("SIGHUP: curve_allow read again: %d client key(s) admitted from the next "
                "handshake on (connections already in keep going)", count)


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", formatter_class=Formatter, help="run the daemon: learn from a stream, answer predictions",
        description="Run the daemon. Producers PUSH training batches to the training endpoint\n"
                    "(PULL); clients send predict, learn, stats, health and config requests to\n"
                    "the request endpoint (ROUTER). Both speak msgpack over ZeroMQ\n"
                    "(docs/protocol.md). On SIGTERM or SIGINT the daemon stops taking input,\n"
                    "finishes the batch in hand, writes the final snapshots and exits 0 (1 if\n"
                    "a final snapshot failed). SIGUSR1 takes a snapshot of every model; SIGHUP\n"
                    "re-reads the config file's log level and the --curve-allow keys.\n\n"
                    "Settings come from the built-in defaults, then --config FILE (TOML with\n"
                    "[daemon] and [learner] tables), then the flags given here.",
        epilog="examples:\n"
               "  onlinel1 serve\n"
               "  onlinel1 serve --snapshot-dir /var/lib/onlinel1 --snapshot-every-seconds 300\n"
               "  onlinel1 serve --model /var/lib/onlinel1 --predict-only "
               "--request-endpoint tcp://127.0.0.1:5566\n"
               "  onlinel1 serve --update fobos --l1 1e-5 --request-endpoint tcp://0.0.0.0:5556 \\\n"
               "      --curve-secret-key /etc/onlinel1/server.key --curve-allow /etc/onlinel1/clients\n"
               "  onlinel1 serve --config /etc/onlinel1/onlinel1.toml --log-level debug")
    add_daemon_arguments(serve, replica=True)
    add_learner_arguments(serve, with_defaults=False)
    serve.set_defaults(func=cmd_serve)


def add_daemon_arguments(parser: argparse.ArgumentParser, replica: bool) -> None:
    """The daemon's flags (``serve``; ``cluster start``, without the
    replica's ``replica=False``)."""
    # The defaults, without DaemonConfig()'s checks: those import the CURVE
    # code (ZeroMQ), for the parser that every command builds.
    d = argparse.Namespace(**{f.name: f.default for f in dataclasses.fields(DaemonConfig)})
    g = parser.add_argument_group("daemon")
    g.add_argument("--train-endpoint", metavar="E",
                   help=f"where producers push training batches (default: {d.train_endpoint})")
    g.add_argument("--request-endpoint", metavar="E",
                   help=f"where clients send requests (default: {d.request_endpoint})")
    g.add_argument("--config", metavar="FILE", help="a TOML config file")
    g.add_argument("--log-level", choices=LOG_LEVELS, help=f"(default: {d.log_level})")
    g.add_argument("--max-message-bytes", type=int, metavar="N",
                   help=f"largest message accepted (default: {d.max_message_bytes})")
    g.add_argument("--high-water-mark", type=int, metavar="N",
                   help=f"messages queued per connection, each way, before its peer is held "
                        f"back; a reply past it is dropped and counted "
                        f"(default: {d.high_water_mark})")
    g.add_argument("--max-connections", type=int, metavar="N",
                   help=f"connections each socket holds at most; past it a handshake is "
                        f"refused (counted) and the peer retries. With --high-water-mark and "
                        f"--max-message-bytes it bounds the memory the sockets can hold "
                        f"(--check prints the figure) (default: {d.max_connections})")
    g.add_argument("--training-io-nice", type=int, metavar="N",
                   help=f"nice value (0-19) of the thread that reads the training stream: "
                        f"when the cores are busy, replies to requests go before it; 0 leaves "
                        f"it at the daemon's priority (default: {d.training_io_nice})")
    g.add_argument("--http-endpoint", metavar="HOST:PORT",
                   help="serve /metrics (Prometheus), /healthz, /readyz and a live status page "
                        "over HTTP here; a bare PORT binds 127.0.0.1 (default: off; needs "
                        "pip install 'onlinel1[http]')")
    g.add_argument("--check", action="store_true",
                   help="validate the configuration, bind the endpoints, and exit without serving")
    g.add_argument("--training-share", type=float, metavar="F",
                   help=f"share of the time training keeps when requests and training both "
                        f"wait (0.05-0.95): requests spend a credit of (1-F)/F seconds per "
                        f"second learned, at least one request between slices "
                        f"(default: {d.training_share})")
    g.add_argument("--dedupe-seq", action="store_const", const=True, default=None,
                   help="skip a training batch whose seq is not above its producer's last one "
                        "(a resend); without it such batches are learned, counted (stats "
                        "seq_repeats) and logged")
    g.add_argument("--keep-names", action="store_const", const=True, default=None,
                   help="remember the names of string features sent row-wise, for inspect")
    sec = parser.add_argument_group(
        "authentication (CURVE)",
        "Both ZeroMQ sockets become CURVE servers: every connection is encrypted, and only\n"
        "clients whose public key is in --curve-allow get in ('onlinel1 keygen' writes\n"
        "the keys). An endpoint off loopback (127.0.0.0/8, ::1, localhost; ipc:// is local)\n"
        "is refused without CURVE unless --insecure; so is --http-endpoint off loopback,\n"
        "CURVE or not (HTTP has no authentication).")
    sec.add_argument("--curve-secret-key", metavar="FILE",
                     help="the daemon's secret key file (PATH.key of 'onlinel1 keygen PATH'; "
                          "mode 0600); give clients its PATH.pub as --curve-server-key")
    sec.add_argument("--curve-allow", metavar="DIR_OR_FILE",
                     help="the clients' public keys admitted: a folder of *.pub files, or one "
                          ".pub file; read at start and again on SIGHUP")
    sec.add_argument("--insecure", action="store_const", const=True, default=None,
                     help="allow endpoints off loopback without CURVE (and HTTP off loopback), "
                          "for a network you trust, such as a pod or a container's own; "
                          "logged as a WARNING at every start")
    snap = parser.add_argument_group(
        "snapshots", "The model on disk: periodic, on request (onlinel1 snapshot) and at "
                     "shutdown; atomic; resumed at start (docs/snapshot-format.md).")
    snap.add_argument("--snapshot-dir", metavar="DIR", help="where snapshots are written")
    snap.add_argument("--snapshot-every-seconds", type=float, metavar="N",
                      help="take a snapshot every N seconds (default: 0, off)")
    snap.add_argument("--snapshot-every-examples", type=int, metavar="M",
                      help="take a snapshot every M examples learned (default: 0, off)")
    snap.add_argument("--keep", type=int, metavar="K",
                      help=f"snapshots kept; older ones are deleted (default: {d.keep})")
    snap.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                      help="start from the newest valid snapshot in --snapshot-dir "
                           "(default: when it has any)")
    snap.add_argument("--force-config", action="store_true",
                      help="resume even where the learner settings differ from the snapshot's: "
                           "its weights continue under the new settings")
    snap.add_argument("--initial", metavar="MODEL",
                      help="start the default model from this model file or snapshot (Vowpal "
                           "Wabbit's -i) instead of from zero; settings given that contradict "
                           "it are refused (see --force-config)")
    if replica:
        snap.add_argument("--model", metavar="SNAPSHOT",
                          help="with --predict-only: serve this snapshot file, or the newest "
                               "snapshot of this directory, reloading when a newer one appears")
        snap.add_argument("--predict-only", action="store_true",
                          help="a read-only replica: no training endpoint; learn and snapshot "
                               "requests are refused")
    bounds = parser.add_argument_group(
        "bounds of one message",
        "What one train, learn or predict message may cost and carry (docs/protocol.md,\n"
        "\"Limits\"). A batch beyond a magnitude is refused whole (bad_batch, naming the row\n"
        "and the bound) before any row is learned; inf leaves only the finite check.")
    bounds.add_argument("--max-request-rows", type=int, metavar="N",
                        help=f"rows one message may hold (default: {d.max_request_rows})")
    bounds.add_argument("--max-reply-bytes", type=int, metavar="N",
                        help=f"largest reply; a larger predict reply is a too_large error "
                             f"(default: {d.max_reply_bytes})")
    bounds.add_argument("--max-abs-value", type=float, metavar="X",
                        help=f"largest |feature value| of a training or prediction batch "
                             f"(default: {d.max_abs_value:g})")
    bounds.add_argument("--max-importance", type=float, metavar="X",
                        help=f"largest importance of a training example (at least 1; default: "
                             f"{d.max_importance:g})")
    bounds.add_argument("--max-abs-label", type=float, metavar="X",
                        help=f"largest |label| of a training example, for the squared loss "
                             f"(at least 1; default: {d.max_abs_label:g})")
