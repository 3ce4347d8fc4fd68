"""``onlinel1 keygen PATH``: a CURVE key pair for the daemon or a client.

Writes ``PATH.key`` (the secret certificate, mode 0600) and ``PATH.pub``
(the public one) in ZeroMQ's certificate format (onlinel1/curve.py), which
pyzmq's ``zmq.auth.load_certificate`` and czmq's ``zcert`` read too.  An
existing file is never overwritten (O_EXCL).
"""
from __future__ import annotations

import argparse
import os
import sys

from onlinel1.cli.common import CommandError, Formatter


def cmd_keygen(args: argparse.Namespace) -> int:
    from onlinel1.curve import generate
    import zmq
    if not zmq.has("curve"):
        raise CommandError("this libzmq was built without CURVE support: no keys can be made")
    base = args.path
    folder = os.path.dirname(base) or "."
    if not base or base.endswith(os.sep) or os.path.isdir(base):
        raise CommandError(f"{base!r}: give a PATH without extension (keygen writes PATH.key "
                           f"and PATH.pub), not a folder")
    if not os.path.isdir(folder):
        raise CommandError(f"{folder}: no such folder")
    try:
        secret, public, key = generate(base)
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {secret} (the secret key: keep it private, mode 0600) and {public} "
          f"(the public key: {key.decode('ascii')})", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    keygen = sub.add_parser(
        "keygen", formatter_class=Formatter, help="make a CURVE key pair (daemon or client)",
        description="Write a new CURVE key pair: PATH.key, the secret certificate (mode 0600,\n"
                    "never overwritten), and PATH.pub, the public certificate, in ZeroMQ's\n"
                    "certificate format (pyzmq's zmq.auth and czmq read them too).\n\n"
                    "The daemon takes its own PATH.key as --curve-secret-key and the clients'\n"
                    ".pub files in its --curve-allow folder; a client takes its own PATH.key\n"
                    "as --curve-secret-key and the daemon's .pub as --curve-server-key.",
        epilog="examples:\n"
               "  onlinel1 keygen /etc/onlinel1/server             # server.key, server.pub\n"
               "  onlinel1 keygen ~/.onlinel1/loader-1\n"
               "  cp ~/.onlinel1/loader-1.pub /etc/onlinel1/clients/\n"
               "  onlinel1 serve --train-endpoint tcp://0.0.0.0:5555 "
               "--request-endpoint tcp://0.0.0.0:5556 \\\n"
               "      --curve-secret-key /etc/onlinel1/server.key --curve-allow /etc/onlinel1/clients\n"
               "  onlinel1 send data.svm --connect tcp://10.0.0.7:5555 \\\n"
               "      --curve-secret-key ~/.onlinel1/loader-1.key "
               "--curve-server-key server.pub")
    keygen.add_argument("path", metavar="PATH",
                        help="where to write: PATH.key and PATH.pub (neither may exist)")
    keygen.set_defaults(func=cmd_keygen)
