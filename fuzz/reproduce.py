"""Replay inputs through a harness, without instrumentation, and say what
happens; or write the bytes the parser saw (to check in as a regression
test's input under tests/data/fuzz/).

    python fuzz/reproduce.py model_file crash-6d1f...             # the traceback, if any
    python fuzz/reproduce.py model_file crash-6d1f... --export tests/data/fuzz/model_file/x.ol1

For request, svmlight and vw the parser's bytes are the input itself; for
csr they are the request frame the harness built from it, for model_file
the file after the mode byte's transformation (re-digested, or edited).
"""
from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import traceback

import ol1fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harness", choices=ol1fuzz.HARNESSES)
    parser.add_argument("inputs", nargs="+", type=pathlib.Path)
    parser.add_argument("--export", type=pathlib.Path,
                        help="write the parser's bytes of the (one) input here")
    args = parser.parse_args(argv)
    harness = importlib.import_module(f"fuzz_{args.harness}")
    if args.export:
        if len(args.inputs) != 1:
            parser.error("--export takes one input")
        args.export.parent.mkdir(parents=True, exist_ok=True)
        args.export.write_bytes(harness.parser_input(args.inputs[0].read_bytes()))
        print(f"wrote {args.export}")
        return 0
    failed = 0
    for path in args.inputs:
        try:
            harness.test_one_input(path.read_bytes())
        except Exception:
            failed += 1
            print(f"{path}: CRASH", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
