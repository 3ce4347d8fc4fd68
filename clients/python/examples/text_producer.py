#!/usr/bin/env python3
"""Stream labelled text to the onlinel1 daemon, with no vectoriser at all.

Each line is ``label<TAB>text`` (the SMS Spam Collection's layout:
``ham``/``spam``).  The text is lower-cased and split into word tokens
(and, with ``--ngrams 2``, word pairs); each token becomes a string feature
in the ``w`` namespace, valued by its count in the text.  There is no
vocabulary and no scikit-learn FeatureHasher: the Producer hashes the
names into 64-bit keys (seeded XXH64 of ``w^token``, docs/formats.md), the
same keys the daemon derives when the same row is sent row-wise, so a
prediction request can send the raw tokens too.

    python text_producer.py                                # ../shared SMS spam
    python text_producer.py mail.tsv --positive spam --ngrams 2 \\
        --train-endpoint tcp://trainer:5555 --request-endpoint tcp://trainer:5556

Labels: ``--positive`` (default ``spam``) is +1, anything else -1.  It
prints the rows sent and the rate; with ``--request-endpoint`` it then
waits until the daemon has learned them and prints its progressive loss
and accuracy.
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys
import time

from onlinel1.client import Client, ClientError, Producer

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2].parent / "shared" / "datasets" / "sms_spam" / "SMSSpamCollection"
NAMESPACE = "w"
TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str, ngrams: int = 1) -> dict[str, float]:
    """Token (and word n-gram) counts of ``text``.

    >>> tokenize("Free entry! FREE.")
    {'free': 2.0, 'entry': 1.0}
    >>> tokenize("call me now", ngrams=2)
    {'call': 1.0, 'me': 1.0, 'now': 1.0, 'call_me': 1.0, 'me_now': 1.0}
    """
    words = TOKEN.findall(text.lower())
    counts: collections.Counter[str] = collections.Counter(words)
    for n in range(2, ngrams + 1):
        counts.update("_".join(words[i:i + n]) for i in range(len(words) - n + 1))
    return {token: float(count) for token, count in counts.items()}


def row(text: str, ngrams: int = 1) -> dict:
    """A row map for ``Client.predict`` with the features the producer sends.

    >>> row("Hi there")
    {'namespaces': {'w': {'hi': 1.0, 'there': 1.0}}}
    """
    return {"namespaces": {NAMESPACE: tokenize(text, ngrams)}}


def examples(path: pathlib.Path, positive: str):
    """(text, label +1/-1) of every ``label<TAB>text`` line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            label, sep, text = line.partition("\t")
            if not sep:
                raise SystemExit(f"{path}:{line_no}: expected label<TAB>text")
            yield text, 1.0 if label.strip() == positive else -1.0


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
                        help="label<TAB>text lines")
    parser.add_argument("--train-endpoint", default="tcp://127.0.0.1:5555",
                        help="the daemon's training endpoint")
    parser.add_argument("--request-endpoint", default=None,
                        help="if given, wait until the daemon has learned everything sent "
                             "and print its progressive loss and accuracy")
    parser.add_argument("--positive", default="spam", help="the label taken as +1")
    parser.add_argument("--ngrams", type=int, default=1, help="longest word n-gram")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per message")
    parser.add_argument("--producer", default="text-producer",
                        help="the producer name the daemon's stats report")
    parser.add_argument("--limit", type=int, default=None, help="send at most this many rows")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the daemon to take a batch (and, with "
                             "--request-endpoint, to learn them all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"{args.data}: no such file (give label<TAB>text lines as an argument)")
    if args.ngrams < 1:
        raise SystemExit("--ngrams must be >= 1")
    start = time.perf_counter()
    try:
        with Producer(args.train_endpoint, batch_size=args.batch_size, producer=args.producer,
                      send_timeout=args.timeout, linger=args.timeout) as producer:
            for n, (text, label) in enumerate(examples(args.data, args.positive)):
                if args.limit is not None and n >= args.limit:
                    break
                producer.add({}, label, namespaces={NAMESPACE: tokenize(text, args.ngrams)})
    except (ClientError, ValueError) as exc:
        print(f"text_producer: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(f"sent {producer.examples_sent} rows in {producer.seq} batches in {elapsed:.3f} s "
          f"({producer.examples_sent / max(elapsed, 1e-9):,.0f} rows/s)", flush=True)
    if args.request_endpoint and producer.seq:
        try:
            stats = wait_learned(args.request_endpoint, args.producer, producer.seq, args.timeout)
        except ClientError as exc:
            print(f"text_producer: {exc}", file=sys.stderr)
            return 1
        progressive = stats["progressive"]
        print(f"daemon: {stats['examples']} examples learned, progressive loss "
              f"{progressive['loss']:.4f}, accuracy {progressive.get('accuracy', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
