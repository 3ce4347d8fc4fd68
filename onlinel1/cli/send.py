"""``onlinel1 send DATA``: stream a data file to a daemon for training, and
say whether the daemon took it.

The training socket is fire and forget, so a send that nobody checks can
"succeed" when nothing learned a single example.  ``send`` therefore:

1. checks that the training endpoint took its connection (``Producer``'s
   connect check: nothing listens there, it is a request endpoint, CURVE
   refused... each is named);
2. asks the request endpoint (``--request-endpoint``; the default one
   when ``--connect`` is the default) for the model's ``health``,
   ``config`` and ``stats`` before the first batch: the daemon trains
   (not a predict-only replica), the model exists, its loss, and its
   interactions and ``namespaced_integers``, with which a VW file is read
   (columnar batches are not crossed by the daemon: common.read_as_model;
   svmlight data for a model with interactions is refused; without the
   ``config``, VW data is read as written, with a warning);
3. refuses, before sending it, a batch whose labels that loss cannot
   learn (labels other than -1/+1 or 0/1 for the log and hinge losses:
   regression data sent to a classifier);
4. waits until every batch is delivered (``Producer.close``), then until
   the model's counters show as many batches processed as were sent, and
   exits non-zero, naming the codes and counts, when any was rejected.

With ``--ack`` every batch is an acknowledged ``learn`` request on the
request endpoint instead: exact even while other producers train the same
model (the counters of step 4 are the model's, theirs included), and the
daemon's own message for a rejected batch; but one round trip per batch,
and no ``--producer`` sequence numbers.

Exit status: 0 when every batch was sent, delivered and (when checked)
accepted; 1 on an error (no daemon, not delivered, not confirmed, a bad
file); 3 when the daemon rejected batches, or would have (step 3).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Iterator

from onlinel1.cli.common import CommandError, check_data, read_ahead, read_as_model

#: Exit status of a send whose batches the daemon rejected (or would have).
EXIT_REJECTED = 3
#: The default ``--timeout``: seconds without progress after which a send
#: gives up (the daemon takes no batch, none of the last ones is delivered,
#: no batch is seen processed; or an acknowledged batch is not answered).
TIMEOUT = 60.0
#: The losses that learn labels -1/+1 (or 0/1) only (docs/protocol.md).
CLASSIFICATION = frozenset({"log", "hinge"})
#: What each rejection code of docs/protocol.md means for a sender.
WHY = {"bad_batch": "invalid examples (labels out of range for the loss, values that are "
                    "not finite, a row larger than the model's max_features)",
       "too_large": "a batch larger than the daemon's max_message_bytes (use a smaller "
                    "--batch-size)",
       "duplicate": "seq numbers this --producer had sent before, skipped by a daemon run "
                    "with --dedupe-seq (give another --producer name)",
       "numeric": "an example overflowed while learning (its whole batch was undone)",
       "bad_request": "a message field the daemon refused",
       "unknown_model": "the model was dropped during the send"}


class Rejected(CommandError):
    """The daemon rejected batches, or would have: exit status 3."""


def _processed(stats: dict[str, Any]) -> int:
    """Training batches the model has finished with: learned or rejected
    (a ``numeric`` one counts in both)."""
    rejected = stats.get("rejected") or {}
    return int(stats.get("batches", 0)) + sum(rejected.values()) - rejected.get("numeric", 0)


class Daemon:
    """The request endpoint's side of a send: what the model is, and its
    counters before and after."""

    def __init__(self, client: Any, talk: Any, model: str | None) -> None:
        self.client, self.talk, self.model = client, talk, model
        self.loss: str | None = None
        #: The model's learner options (``config``), None if not known;
        #: ``unknown`` says why.
        self.learner: dict[str, Any] | None = None
        self.unknown = ""
        self.before: dict[str, Any] = {}
        self.train_endpoint: str | None = None

    @property
    def name(self) -> str:
        return self.model or "default"

    def prepare(self, counters: bool = True) -> None:
        """Check that the daemon trains and has the model; learn its loss
        (and, with ``counters``, its counters now)."""
        health = self.talk(self.client.health, where=" (the request endpoint, asked to check "
                           "the batches: give the daemon's --request-endpoint, or --no-check)")
        if health.get("mode") == "predict-only":
            raise CommandError(f"the daemon at {self.client.endpoint} is a predict-only "
                               f"replica: it learns nothing (send to the trainer)")
        from onlinel1.client import DaemonError
        try:
            config = self.talk(self.client.config, rejected=True)
        except DaemonError as exc:
            if exc.code == "unknown_model":
                raise CommandError(f"daemon replied {exc.code}: {exc.message} ('onlinel1 "
                                   f"models list' shows the daemon's models)") from None
            # A daemon (or a policy in front of it) that does not answer
            # config: send anyway, the rows read as written.
            config = {}
            self.unknown = f"the daemon refused 'config' ({exc.code}: {exc.message})"
        else:
            self.learner = config.get("learner")
            if not isinstance(self.learner, dict):
                self.learner = None
                self.unknown = "the daemon's 'config' reply has no learner options"
        self.loss = (self.learner or {}).get("loss")
        self.train_endpoint = (config.get("daemon") or {}).get("train_endpoint")
        if counters:
            self.before = self.talk(self.client.stats)

    def check_labels(self, batch: Any, first: int) -> None:
        """Refuse ``batch`` (examples ``first``, ``first + 1``, ...) if the
        model's loss cannot learn its labels."""
        from onlinel1.errors import BatchError
        if self.loss not in CLASSIFICATION:
            return
        try:
            batch.check_binary_labels()
        except BatchError as exc:
            row = exc.row or 0
            raise Rejected(
                f"example {first + row:,} has the label {float(batch.labels[row]):g}, and "
                f"model {self.name} uses the {self.loss} loss, which learns labels -1/+1 "
                f"(or 0/1) only: for regression data, serve (or 'onlinel1 models create') a "
                f"model with --loss squared; nothing from example {first:,} on was "
                f"sent") from None

    def confirm(self, batches: int, timeout: float, connect: str) -> dict[str, Any]:
        """Wait until the model has processed ``batches`` more batches than
        before (while its counters move; up to ``timeout`` seconds without
        a change); the stats then."""
        start = _processed(self.before)
        seen, changed, pause = 0, time.monotonic(), 0.005
        while True:
            stats = self.talk(self.client.stats)
            done = _processed(stats) - start
            if done >= batches:
                return stats
            now = time.monotonic()
            if done != seen:
                seen, changed = done, now
            elif now - changed >= timeout:
                where = "" if self.train_endpoint is None else \
                    f"; it reports its training endpoint as {self.train_endpoint}"
                raise CommandError(
                    f"every batch was delivered to {connect}, but model {self.name} at "
                    f"{self.client.endpoint} shows only {done} of the {batches} batches "
                    f"processed, and its counters did not move for {timeout:g} s (is "
                    f"{self.client.endpoint} the request endpoint of the daemon at "
                    f"{connect}{where}?)")
            time.sleep(pause)          # the daemon is still learning: ask again soon
            pause = min(pause * 2, 0.2)

    def verdict(self, stats: dict[str, Any], batches: int) -> str:
        """What the counters say of the ``batches`` sent: the end of the
        summary line, or :class:`Rejected`."""
        before = self.before.get("rejected") or {}
        rejected = {code: n - before.get(code, 0)
                    for code, n in (stats.get("rejected") or {}).items()
                    if n > before.get(code, 0)}
        if not rejected:
            return "; the daemon rejected none"
        total = sum(rejected.values())
        codes = ", ".join(f"{n} {code}" for code, n in sorted(rejected.items()))
        alone = _processed(stats) - _processed(self.before) == batches
        head = (f"the daemon rejected {total} of the {batches} batches sent ({codes})" if alone
                else f"model {self.name} rejected {total} batches while this send ran ({codes}; "
                     f"{batches} sent by it, other senders' batches count too)")
        why = "; ".join(f"{code}: {WHY[code]}" for code in sorted(rejected) if code in WHY)
        raise Rejected(f"{head}{': ' + why if why else ''}. The daemon's log says more; "
                       f"'send --ack' reports each batch's error")


def request_endpoint(args: argparse.Namespace, train_default: str,
                     request_default: str) -> str | None:
    """The request endpoint a send checks with: ``--request-endpoint``,
    else the default one when ``--connect`` is the default, else None."""
    if args.request_endpoint is not None:
        return args.request_endpoint
    return request_default if args.connect == train_default else None


class Tally:
    """What a send has sent so far."""

    def __init__(self) -> None:
        self.examples = self.batches = 0

    def add(self, n_rows: int) -> None:
        self.examples += n_rows
        self.batches += 1


def stream(args: argparse.Namespace, batches: Iterator[Any], daemon: Daemon | None,
           progress: Any, talk: Any, keys: dict[str, Any], tally: Tally) -> None:
    """Push ``batches`` to the training endpoint and wait for their
    delivery (and, with ``daemon``, for the daemon to process them)."""
    from onlinel1.client import Producer
    from onlinel1.io import ParseError
    producer = talk(lambda: Producer(
        args.connect, batch_size=args.batch_size, producer=args.producer,
        send_timeout=args.timeout, linger=args.timeout, model=args.model,
        connect_timeout=args.connect_timeout, **keys))
    try:
        try:
            for batch in batches:
                if daemon is not None:
                    daemon.check_labels(batch, producer.examples_sent + 1)
                talk(lambda: producer.send_batch(batch))
                tally.examples, tally.batches = producer.examples_sent, producer.seq
                progress.update(producer.examples_sent, producer.seq)
        except (ParseError, Rejected):
            # The rows before the bad line (or batch) were sent, as train
            # would have learned them: deliver them, then report it.
            progress.finish()
            talk(producer.close)
            raise
        progress.finish()
        # Wait until everything queued has left: the daemon has it all.
        talk(producer.close)
    finally:
        progress.finish()
        if not producer.closed:
            producer.close(linger=0, flush=False)


def acknowledged(batches: Iterator[Any], daemon: Daemon, progress: Any, tally: Tally) -> None:
    """Send each batch as a ``learn`` request."""
    from onlinel1.client import DaemonError
    try:
        for batch in batches:
            daemon.check_labels(batch, tally.examples + 1)
            try:
                daemon.talk(lambda: daemon.client.learn(batch), rejected=True)
            except DaemonError as exc:
                raise Rejected(
                    f"the daemon rejected batch {tally.batches + 1} (examples "
                    f"{tally.examples + 1:,} to {tally.examples + batch.n_rows:,}): "
                    f"{exc.code}: {exc.message}; the {tally.batches} batches before it were "
                    f"learned") from None
            tally.add(batch.n_rows)
            progress.update(tally.examples, tally.batches)
    finally:
        progress.finish()


def cmd_send(args: argparse.Namespace, *, progress: Any, client: Any, talk: Any,
             keys: dict[str, Any], defaults: tuple[str, str]) -> int:
    """The command; remote.py gives its parts: the progress line,
    ``client(endpoint, timeout)``, ``talk(action, rejected=False,
    where="")`` (the client's failures as CommandError, ``where`` added to
    a time-out's; DaemonError through with ``rejected``), the CURVE keys,
    the default (training, request) endpoints."""
    for flag, value in (("--timeout", args.timeout), ("--connect-timeout", args.connect_timeout)):
        if not value > 0:
            raise CommandError(f"{flag} must be > 0 seconds, got {value}")
    endpoint = request_endpoint(args, *defaults)
    if args.ack and endpoint is None:
        raise CommandError("--ack sends learn requests to the daemon's request endpoint: give "
                           "--request-endpoint")
    if args.ack and args.producer is not None:
        raise CommandError("--ack sends learn requests, which carry no --producer name")
    # Checks the file and --batch-size before connecting; it is read once
    # the model's interactions are known, and the read-ahead thread starts
    # with the first batch.
    check_data(args)
    err = sys.stderr
    checker, tally, verdict, batches = None, Tally(), "", None
    try:
        if endpoint is not None and (args.ack or args.check):
            checker = Daemon(client(endpoint, args.connect_timeout), talk, args.model)
            checker.prepare(counters=not args.ack)
            if args.ack:                # each learn request: as long as its batch takes
                checker.client.timeout = args.timeout
            batches = read_ahead(args, read_as_model(args, checker.learner, checker.unknown))
        elif args.check:
            batches = read_ahead(args, read_as_model(
                args, None, "no request endpoint to ask for them: give --request-endpoint"))
        else:
            # --no-check: the file as written, nothing asked and nothing said.
            batches = read_ahead(args, read_as_model(args, None, quiet=True))
        start = time.perf_counter()
        try:
            if args.ack:
                acknowledged(batches, checker, progress, tally)
                verdict, to = "; the daemon learned every batch", f"{endpoint} (acknowledged)"
            else:
                stream(args, batches, checker, progress, talk, keys, tally)
                to = args.connect
                if checker is not None:
                    stats = checker.confirm(tally.batches, args.timeout,
                                            args.connect)
                    verdict = checker.verdict(stats, tally.batches)
        except Rejected as exc:
            if tally.batches:
                print(_summary(args, tally, args.connect if not args.ack else endpoint, start),
                      file=err)
            print(f"onlinel1: error: {exc}", file=err)
            return EXIT_REJECTED
    finally:
        if batches is not None:
            batches.close()   # stops the read-ahead thread if we stopped early
        if checker is not None:
            checker.client.close()
    print(_summary(args, tally, to, start) + verdict, file=err)
    if checker is None and args.check:
        print("onlinel1: note: whether the daemon accepted the batches was not checked: give "
              "--request-endpoint (the daemon's request endpoint), or --no-check", file=err)
    return 0


def _summary(args: argparse.Namespace, tally: Tally, to: str, start: float) -> str:
    if args.model is not None:
        to = f"model {args.model} at {to}"
    elapsed = time.perf_counter() - start
    return (f"sent {tally.examples:,} examples in {tally.batches:,} batches to {to} in "
            f"{elapsed:.3f} s ({tally.examples / max(elapsed, 1e-9):,.0f} examples/s)")
