"""The ``onlinel1`` command line."""
from __future__ import annotations

import argparse
import sys

import onlinel1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onlinel1",
        description="Online learning of sparse linear models with lazily applied "
                    "L1-regularised SGD (cumulative L1 penalty, FOBOS).")
    parser.add_argument("--version", action="version", version=f"onlinel1 {onlinel1.__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
