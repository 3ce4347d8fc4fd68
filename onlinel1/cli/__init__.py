"""The ``onlinel1`` command line.

Offline (``offline.py``; the training loop in ``train.py``, what train and
predict share in ``evaluate.py``): ``train DATA``, ``predict --model MODEL
DATA``, ``inspect MODEL``.  The daemon (``serve.py``): ``serve``.  Its clients
(``remote.py``): ``send``, ``predict --connect``, ``stats``, ``health``,
``snapshot``, each with ``--model NAME`` for a named model; and
(``models.py``) ``models list|create|drop|swap``.  CURVE keys
(``keygen.py``): ``keygen PATH``.  The daemon over sharded weights on Ray
(``cluster.py``): ``cluster start|status|stop``.

Errors (a missing file, a malformed line, a corrupt model, a daemon that
does not answer) are reported as one line on stderr with a non-zero exit
status, never a traceback: 2 for a usage error (a bad flag, an input with
no example), 1 for the others.  A line of an input file is named the one
way, ``FILE:LINE`` with 1-based lines (blank and comment lines count).
"""
from __future__ import annotations

import sys
from typing import Sequence

import onlinel1
from onlinel1.cli.common import EXIT_ERROR, EXIT_USAGE, CommandError, Formatter, Parser


def build_parser() -> Parser:
    from onlinel1.cli import cluster, keygen, models, offline, path, remote, serve
    parser = Parser(
        prog="onlinel1", formatter_class=Formatter,
        description="Online learning of sparse linear models with lazily applied "
                    "L1-regularised SGD\n(cumulative L1 penalty, FOBOS), offline or as a "
                    "daemon over ZeroMQ.",
        epilog="Run 'onlinel1 COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"onlinel1 {onlinel1.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    serve.register(sub)
    cluster.register(sub)
    offline.register(sub)
    remote.register(sub)
    models.register(sub)
    path.register(sub)
    keygen.register(sub)
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
    except BrokenPipeError:
        # The reader of our output went away (``onlinel1 stats | head``):
        # not an error; keep Python from complaining while it flushes.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CommandError, ParseError, OSError, MemoryError) as exc:
        message = str(exc)
        code = getattr(exc, "exit_code", EXIT_ERROR)
    except KeyboardInterrupt:
        print("onlinel1: interrupted", file=sys.stderr)
        return 130
    print(f"onlinel1: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
