#!/usr/bin/env python3
"""A prediction service without HTTP: JSON lines in, JSON lines out.

Each input line is one example as a JSON object, the row map of
docs/protocol.md (``label``, ``importance`` and ``tag`` are ignored)::

    {"id": "u17", "features": {"price": 0.5, "17": 1}, "namespaces": {"w": {"free": 2}}}

and each output line answers it, in order, with the same ``id`` (if any)::

    {"id": "u17", "prediction": 0.93}
    {"id": "u17", "prediction": 0.93, "contributions": [[17, 1.25], ...]}   # --top-k 3

Up to ``--batch-size`` lines that are already waiting on stdin go to the
daemon in one ``predict`` request (``Client.predict``); a line is never
held back waiting for more.  (A batch the daemon refuses is retried line
by line, so one bad line does not fail its neighbours.)  Failures do not stop the service: a line that
is not a JSON object, a row the daemon refuses (``DaemonError``) or a
daemon that does not answer in ``--timeout`` seconds (``DaemonTimeout``;
the client reconnects by itself) each give an error line instead::

    {"id": "u17", "error": {"code": "timeout", "message": "no answer from ..."}}

Codes: the daemon's own (``bad_batch``, ``bad_request``, ...), ``timeout``,
``bad_json``, ``bad_row`` (rejected before sending) and ``client``.

    python prediction_service.py --connect tcp://127.0.0.1:5556 < examples.jsonl
    some-program | python prediction_service.py --top-k 3 | another-program

Put it behind anything that speaks lines: a pipe, ``socat TCP-LISTEN:8000,fork
EXEC:...``, a systemd socket unit with ``Accept=yes``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import select
import sys
from typing import IO, Any, Iterator

from onlinel1.client import Client, ClientError, DaemonError, DaemonTimeout, encode_rows


def error(code: str, message: str, request_id: Any = None) -> dict:
    out: dict[str, Any] = {} if request_id is None else {"id": request_id}
    out["error"] = {"code": code, "message": message}
    return out


def parse(line: str) -> tuple[Any, dict | None, dict | None]:
    """(id, row, error) of one input line: the row to predict, or an error line.

    >>> parse('{"id": 1, "features": {"a": 1}}')
    (1, {'features': {'a': 1}}, None)
    >>> parse('[1, 2]')[2]["error"]["code"]
    'bad_json'
    """
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return None, None, error("bad_json", f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return None, None, error("bad_json", "each line must be a JSON object (a row map)")
    request_id = obj.pop("id", None)
    for ignored in ("label", "importance", "tag"):   # no part in a prediction
        obj.pop(ignored, None)
    try:
        encode_rows([obj])          # the client's own checks, before anything is sent
    except (TypeError, ValueError) as exc:
        return request_id, None, error("bad_row", str(exc).replace("row 0: ", ""), request_id)
    return request_id, obj, None


def answers(client: Client, lines: list[str], output: str, top_k: int) -> list[dict]:
    """One answer per input line, in order."""
    parsed = [parse(line) for line in lines]
    rows = [row for _, row, _ in parsed if row is not None]
    predictions: list[float] = []
    contributions: list[Any] = []
    failure = None
    if rows:
        try:
            result = client.predict(rows, output=output, top_k=top_k)
            predictions = result["predictions"]
            contributions = result.get("contributions", [])
        except DaemonTimeout as exc:
            failure = ("timeout", str(exc))
        except DaemonError as exc:
            if len(rows) > 1:
                # The daemon refuses a batch whole: ask row by row, so that
                # only the offending lines get the error.
                return [answer for line in lines
                        for answer in answers(client, [line], output, top_k)]
            failure = (exc.code, exc.message)
        except ClientError as exc:
            failure = ("client", str(exc))
    out, i = [], 0
    for request_id, row, err in parsed:
        if row is None:
            out.append(err)
            continue
        if failure is not None:
            out.append(error(*failure, request_id))
            continue
        answer: dict[str, Any] = {} if request_id is None else {"id": request_id}
        answer["prediction"] = predictions[i]
        if top_k:
            answer["contributions"] = contributions[i]
        out.append(answer)
        i += 1
    return out


def batches(stream: IO[str], batch_size: int) -> Iterator[list[str]]:
    """Lists of non-blank lines: the next line, plus the lines already
    waiting behind it (at most ``batch_size`` in all).  A line is never
    held back waiting for more input."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:              # a file-like object in memory: nothing blocks
        lines = [line for line in stream if line.strip()]
        for i in range(0, len(lines), batch_size):
            yield lines[i:i + batch_size]
        return
    pending = b""
    while True:
        # Wait for at least one whole line (or the end of the input).
        while b"\n" not in pending:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                if pending.strip():
                    yield [pending.decode("utf-8", errors="replace")]
                return
            pending += chunk
        # Then take what else is already there, without waiting.
        while pending.count(b"\n") < batch_size and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            pending += chunk
        *complete, pending = pending.split(b"\n")
        lines = [line.decode("utf-8", errors="replace") for line in complete if line.strip()]
        for i in range(0, len(lines), batch_size):
            yield lines[i:i + batch_size]


def _json(value: Any) -> Any:
    """NaN and infinities as null: the output stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def serve(client: Client, stdin: IO[str], stdout: IO[str], output: str = "auto",
          top_k: int = 0, batch_size: int = 100) -> int:
    """Answer every line of ``stdin`` on ``stdout``; the number of lines answered."""
    count = 0
    for lines in batches(stdin, batch_size):
        for answer in answers(client, lines, output, top_k):
            if "prediction" in answer:
                answer["prediction"] = _json(answer["prediction"])
            stdout.write(json.dumps(answer, allow_nan=False) + "\n")
            count += 1
        stdout.flush()
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--connect", default="tcp://127.0.0.1:5556",
                        help="the daemon's (or a predict-only replica's) request endpoint")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for each answer")
    parser.add_argument("--output", choices=("auto", "probability", "margin"), default="auto",
                        help="probabilities (log loss) or margins")
    parser.add_argument("--top-k", type=int, default=0,
                        help="also return the k features contributing most")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="most lines sent in one request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.top_k < 0 or not args.timeout > 0:
        raise SystemExit("--batch-size must be >= 1, --top-k >= 0 and --timeout > 0")
    try:
        client = Client(args.connect, timeout=args.timeout)
    except ValueError as exc:
        raise SystemExit(f"prediction_service: {exc}")
    with client:
        try:
            serve(client, sys.stdin, sys.stdout, args.output, args.top_k, args.batch_size)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
