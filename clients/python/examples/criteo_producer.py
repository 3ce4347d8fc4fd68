#!/usr/bin/env python3
"""Stream a click log (CSV or TSV) to the onlinel1 daemon for training.

Each line is a label (0/1 click) followed by fields.  Every non-empty
field becomes one string feature ``name=value`` with value 1, which the
Producer hashes into a 64-bit key (exactly as the daemon would).  Integer
fields (Criteo's I1..I13) are bucketed first, so that ``I5=1382`` and
``I5=1390`` share a feature: small values are kept, larger ones become
``floor(log(v)**2)`` (the trick of the Criteo Kaggle winners).

The default layout is the Criteo Display Advertising one: no header, tab
separated, label, I1..I13 (integers), C1..C26 (hex hashes), any of them
possibly empty.  With ``--header`` the first line names the columns (the
first column is the label); ``--numeric`` says which are integers.

    python criteo_producer.py                               # ../shared Criteo sample
    python criteo_producer.py clicks.csv --header --numeric price,age \\
        --train-endpoint tcp://trainer:5555 --request-endpoint tcp://trainer:5556

It prints the rows sent and the rate.  With ``--request-endpoint`` it then
waits until the daemon has learned the last batch and prints the daemon's
progressive loss and accuracy.
"""
from __future__ import annotations

import argparse
import csv
import math
import pathlib
import sys
import time

from onlinel1.client import Client, ClientError, Producer

HERE = pathlib.Path(__file__).resolve().parent
# clients/python/examples -> the checkout -> ../shared beside it.
DEFAULT_DATA = HERE.parents[2].parent / "shared" / "datasets" / "ctr_criteo_8k" / "train.tsv"
CRITEO_COLUMNS = [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


def bucket(text: str) -> str:
    """An integer field's value as a category: small values as they are,
    larger ones by floor(log(v)^2).

    >>> [bucket(v) for v in ("-1", "0", "2", "3", "1382")]
    ['-1', '0', '2', 'b1', 'b52']
    """
    value = int(text)
    if value <= 2:
        return str(value)
    return f"b{int(math.log(value) ** 2)}"


def features(names: list[str], fields: list[str], numeric: set[str]) -> dict[str, float]:
    """``{"name=value": 1.0}`` for every non-empty field.

    >>> features(["I1", "C1"], ["5", "68fd1e64"], {"I1"})
    {'I1=b2': 1.0, 'C1=68fd1e64': 1.0}
    >>> features(["I1", "C1"], ["", ""], {"I1"})
    {}
    """
    out = {}
    for name, value in zip(names, fields):
        value = value.strip()
        if not value:
            continue
        if name in numeric:
            try:
                value = bucket(value)
            except ValueError:
                pass          # not an integer after all: keep the text
        out[f"{name}={value}"] = 1.0
    return out


def rows(path: pathlib.Path, delimiter: str, header: bool, numeric: set[str] | None):
    """(features, label) of every line of the log."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t"
                            else csv.QUOTE_MINIMAL)
        names = None
        if header:
            names = next(reader)[1:]
        for line_no, line in enumerate(reader, start=2 if header else 1):
            if not line:
                continue
            if names is None:   # no header: Criteo's names if the width fits
                names = CRITEO_COLUMNS if len(line) == 40 else \
                    [f"c{i}" for i in range(1, len(line))]
            if numeric is None:
                numeric = {n for n in names if n in CRITEO_COLUMNS[:13]}
            try:
                label = float(line[0])
            except ValueError:
                raise SystemExit(f"{path}:{line_no}: the label {line[0]!r} is not a number")
            yield features(names, line[1:], numeric), label


def wait_learned(endpoint: str, producer: str, seq: int, timeout: float) -> dict:
    """The daemon's stats once it has learned batch ``seq`` of ``producer``
    (a Producer numbers its batches from 1 each run: give each run a
    producer name of its own)."""
    deadline = time.monotonic() + timeout
    with Client(endpoint, timeout=min(5.0, timeout)) as client:
        while True:
            stats = client.stats()
            if stats.get("producers", {}).get(producer) == seq:
                return stats
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon had not learned batch {seq} of {producer!r} "
                                 f"after {timeout} s")
            time.sleep(0.05)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("data", nargs="?", type=pathlib.Path, default=DEFAULT_DATA,
                        help="the click log")
    parser.add_argument("--train-endpoint", default="tcp://127.0.0.1:5555",
                        help="the daemon's training endpoint")
    parser.add_argument("--request-endpoint", default=None,
                        help="if given, wait until the daemon has learned everything sent "
                             "and print its progressive loss and accuracy")
    parser.add_argument("--delimiter", default=None,
                        help="field separator (default: ',' for .csv files, tab otherwise)")
    parser.add_argument("--header", action="store_true",
                        help="the first line names the columns (the first is the label)")
    parser.add_argument("--numeric", default=None,
                        help="comma-separated integer columns to bucket (default: I1..I13)")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per message")
    parser.add_argument("--producer", default="criteo-producer",
                        help="the producer name the daemon's stats report")
    parser.add_argument("--limit", type=int, default=None, help="send at most this many rows")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the daemon to take a batch (and, with "
                             "--request-endpoint, to learn them all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"{args.data}: no such file (give the click log as an argument)")
    delimiter = args.delimiter or ("," if args.data.suffix == ".csv" else "\t")
    numeric = set(args.numeric.split(",")) if args.numeric is not None else None
    start = time.perf_counter()
    try:
        with Producer(args.train_endpoint, batch_size=args.batch_size, producer=args.producer,
                      send_timeout=args.timeout, linger=args.timeout) as producer:
            for n, (feats, label) in enumerate(rows(args.data, delimiter, args.header, numeric)):
                if args.limit is not None and n >= args.limit:
                    break
                producer.add(feats, label)
        # Leaving the block sent the last rows and waited for their delivery.
    except (ClientError, ValueError) as exc:
        print(f"criteo_producer: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(f"sent {producer.examples_sent} rows in {producer.seq} batches in {elapsed:.3f} s "
          f"({producer.examples_sent / max(elapsed, 1e-9):,.0f} rows/s)", flush=True)
    if args.request_endpoint and producer.seq:
        try:
            stats = wait_learned(args.request_endpoint, args.producer, producer.seq, args.timeout)
        except ClientError as exc:
            print(f"criteo_producer: {exc}", file=sys.stderr)
            return 1
        progressive = stats["progressive"]
        print(f"daemon: {stats['examples']} examples learned, progressive loss "
              f"{progressive['loss']:.4f}, accuracy {progressive.get('accuracy', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
