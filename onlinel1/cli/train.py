"""``onlinel1 train``: learn DATA online, pass after pass, with progressive
validation and, when asked, held-out evaluation.

Where the examples of each pass come from (``TrainingData``):

* a file, in file order: read again at every pass (nothing is kept);
* ``--shuffle``: DATA is read once into memory, then each pass learns it in
  a fresh permutation (pass 1 is ``numpy.random.RandomState(seed)
  .permutation(n)``, pass 2 the next draw, ...);
* standard input with ``--passes`` N > 1: pass 1 learns the stream as it
  comes and keeps it in memory; passes 2..N learn it from there (a pipe
  cannot be read twice);
* ``--cache FILE``: pass 1 writes every example to FILE (or a cache of an
  earlier run on the same DATA and settings is read instead), and the
  passes read it, in order or shuffled, memory-mapped, not kept
  (onlinel1/io/cache.py).

Memory kept that way is bounded by ``--buffer-mb`` (16 bytes per feature
value and 40 per example; onlinel1/io/buffer.py): past it, train stops
with a message that says what to do.  ``--holdout-fraction F`` holds out
every k-th example of DATA, k = round(1/F) (examples k, 2k, ... in input
order, the same ones at every pass and whether shuffled or not: Vowpal
Wabbit's ``--holdout_period k``); they are never learned, they are kept
(within the same bound) and scored with the model at the end of every
pass, as ``--test FILE`` is.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from typing import Callable, Iterator, TextIO

import numpy as np

from onlinel1 import model_file
from onlinel1.batch import BatchError
from onlinel1.cli.common import (CommandError, EmptyInput, check_data, check_input_file,
                                 explicit_learner_values, learner_options, read, read_ahead,
                                 source_name)
from onlinel1.cli.evaluate import (batch_error, evaluate, metric_items, metric_line, print_items,
                                   stopped_error)
from onlinel1.errors import NumericError, StoreFullError
from onlinel1.io.buffer import BufferFull, ExampleBuffer, every_kth, held_out, take
from onlinel1.io.cache import CacheError, ExampleCache
from onlinel1.learner import Learner
from onlinel1.options import LearnerOptions
from onlinel1.warm_start import WarmStartError, load_initial

#: --buffer-mb by default.
DEFAULT_BUFFER_MB = 2048


class ProgressTable:
    """Vowpal Wabbit style progress: a line each time the example count
    doubles, with the loss since the previous line."""

    def __init__(self, out: TextIO, classification: bool, enabled: bool) -> None:
        self.out, self.classification, self.enabled = out, classification, enabled
        self.next_report = 1024
        self.last = (0, 0.0, 0.0)   # examples, weighted loss sum, weight sum
        self.start = time.perf_counter()
        self.header_done = False

    def update(self, learner: Learner, totals: tuple[int, float, float, int],
               final: bool = False, nnz: int | None = None) -> None:
        """A line when the count has doubled (or ``final``); ``nnz``, when
        the caller has it, saves a pass over the store."""
        examples, loss_sum, weight_sum, correct = totals
        if not self.enabled or (examples < self.next_report and not final):
            return
        while self.next_report <= examples:
            self.next_report *= 2
        if not self.header_done:
            acc = "  accuracy" if self.classification else ""
            print(f"{'examples':>12}  {'avg loss':>10}  {'since last':>10}{acc}  "
                  f"{'nnz':>10}  {'examples/s':>11}", file=self.out)
            self.header_done = True
        n0, l0, w0 = self.last
        since = (loss_sum - l0) / (weight_sum - w0) if weight_sum > w0 else math.nan
        avg = loss_sum / weight_sum if weight_sum else math.nan
        rate = examples / max(time.perf_counter() - self.start, 1e-9)
        acc = f"  {correct / examples:>8.4f}" if self.classification and examples else ""
        nnz = learner.nnz if nnz is None else nnz
        print(f"{examples:>12}  {avg:>10.6f}  {since:>10.6f}{acc}  {nnz:>10}  "
              f"{rate:>11.0f}", file=self.out, flush=True)
        self.last = (examples, loss_sum, weight_sum)


class TrainingData:
    """The batches of each pass over DATA, the held-out ones apart (see the
    module docstring)."""

    def __init__(self, args: argparse.Namespace, names: dict[int, str] | None,
                 holdout_every: int, options: LearnerOptions | None = None,
                 say: Callable[..., None] = lambda *a, **kw: None) -> None:
        self.args, self.names, self.k = args, names, holdout_every
        self.source = source_name(args.data)
        self.buffered = args.shuffle or (args.data == "-" and args.passes > 1)
        limit = args.buffer_mb << 20
        # --cache: every example of DATA goes to the file (none is kept in
        # memory); a cache an earlier run wrote for the same input and
        # settings is read instead of DATA.
        self.cache: ExampleCache | None = None        # readable
        self.writing: ExampleCache | None = None      # being written by pass 1
        if args.cache is not None:
            check_data(args)                # DATA is there before it is looked at
            identity = cache_identity(args, options, names is not None)
            if args.data != "-" and os.path.exists(args.cache):
                try:
                    self.cache = ExampleCache.open(args.cache, identity)
                    say(f"reading the examples from the cache {args.cache}", flush=True)
                except CacheError as exc:
                    say(f"{exc}: writing it again", flush=True)
            if self.cache is None:
                try:
                    self.writing = ExampleCache.create(args.cache, identity)
                except CacheError as exc:
                    raise CommandError(str(exc)) from None
        self.kept = ExampleBuffer(limit) if self.buffered and args.cache is None else None
        self.held = ExampleBuffer(limit) if holdout_every else None
        self.examples = 0           # of DATA, counted in pass 1
        self.rng = np.random.RandomState(args.seed)

    def passes(self, learner: Learner) -> Iterator[Iterator]:
        for number in range(1, self.args.passes + 1):
            yield self._cached(number, learner) if self.args.cache else self._pass(number, learner)

    def _pass(self, number: int, learner: Learner) -> Iterator:
        if number == 1 or not self.buffered:
            if not self.args.shuffle:
                yield from self._read(number == 1, learner)
                return
            for _ in self._read(True, learner):      # into memory, then shuffled below
                pass
            self._check(learner, self.kept.whole())
        order = self.rng.permutation(self.kept.n_rows) if self.args.shuffle else None
        yield from self.kept.batches(self.args.batch_size, order)

    def _cached(self, number: int, learner: Learner) -> Iterator:
        """A pass with --cache: pass 1 reads DATA into the cache as it
        learns (or, shuffled, before), or takes an earlier run's cache;
        the others read the cache."""
        if self.cache is None:
            if self.args.shuffle:
                for _ in self._read(True, learner):
                    pass
            else:
                yield from self._read(True, learner)
            try:
                self.writing.finish(self.names)
                self.cache, self.writing = ExampleCache.open(self.args.cache), None
            except CacheError as exc:
                raise CommandError(str(exc)) from None
            if not self.args.shuffle:
                return
            self._check(learner, self.cache.whole())
        elif number == 1:
            whole = self.cache.whole()
            if self.names is not None:
                self.names.update(self.cache.names)
            self.examples = self.cache.n_rows
            if self.k:
                held = np.flatnonzero(held_out(self.examples, self.k))
                self._keep(self.held, take(whole, held), "the held-out examples")
            if self.args.shuffle:
                self._check(learner, whole)
        learned = (np.flatnonzero(~held_out(self.cache.n_rows, self.k)) if self.k
                   else np.arange(self.cache.n_rows))
        order = learned[self.rng.permutation(learned.size)] if self.args.shuffle else learned
        yield from self.cache.batches(self.args.batch_size, order)

    def _check(self, learner: Learner, whole) -> None:
        try:
            # Every example checked once, so that a bad one is the first in
            # the file, not the first in the permutation.
            learner.check(whole)
        except BatchError as exc:
            raise batch_error(exc, whole, self.source, learner.options.loss) from None

    def _read(self, first: bool, learner: Learner) -> Iterator:
        seen = 0
        batches = read(self.args, self.names, options=learner.options)
        with contextlib.closing(read_ahead(self.args, batches)) as batches:
            for batch in batches:
                if first and self.writing is not None:
                    try:
                        self.writing.add(batch)     # every example, the held-out ones too
                    except CacheError as exc:
                        raise CommandError(str(exc)) from None
                if self.k:
                    batch, held = every_kth(batch, self.k, seen)
                    seen += batch.n_rows + held.n_rows
                    if first and held.n_rows:
                        self._keep(self.held, held, "the held-out examples")
                else:
                    seen += batch.n_rows
                if first and self.kept is not None:
                    self._keep(self.kept, batch, "--shuffle" if self.args.shuffle else
                               f"--passes {self.args.passes} over standard input")
                if first:
                    self.examples = seen
                yield batch

    def _keep(self, buffer: ExampleBuffer, batch, what: str) -> None:
        try:
            buffer.add(batch)
        except BufferFull:
            hint = ("give a file, --cache FILE, or a larger --buffer-mb"
                    if what.startswith("--passes")
                    else "give --cache FILE (no memory bound), or raise --buffer-mb"
                    if what == "--shuffle" else "raise --buffer-mb, or hold out less")
            raise CommandError(f"{self.source}: {what} keeps examples in memory, and they pass "
                               f"--buffer-mb {self.args.buffer_mb}: {hint}") from None


def cache_identity(args: argparse.Namespace, options: LearnerOptions | None,
                   names: bool) -> dict:
    """What a --cache file must have been written from to be read instead
    of DATA: the same file (path, size, modification time), format, and
    the settings that shape the rows (interactions, namespaced integers,
    whether names are kept)."""
    from onlinel1.cli.common import data_format
    identity: dict = {"data": args.data, "format": data_format(args), "names": names,
                      "interactions": list(options.interactions) if options else [],
                      "namespaced_integers": bool(options and options.namespaced_integers)}
    if args.data != "-":
        st = os.stat(args.data)
        identity.update(data=os.path.realpath(args.data), size=st.st_size,
                        mtime_ns=st.st_mtime_ns)
    return identity


def check_args(args: argparse.Namespace) -> int:
    """Refuse flags that cannot work, before reading anything; return k of
    the holdout (0: none)."""
    if args.passes < 1:
        raise CommandError(f"--passes must be >= 1, got {args.passes}")
    if args.buffer_mb < 1:
        raise CommandError(f"--buffer-mb must be >= 1, got {args.buffer_mb}")
    if args.test is not None:
        if args.test == "-":
            raise CommandError("--test needs a file: it is read again after every pass")
        check_input_file(args.test, "--test ")
    if args.cache is not None:
        same = [p for p in (args.data, args.test) if p not in (None, "-")
                and os.path.exists(p) and os.path.exists(args.cache)
                and os.path.samefile(p, args.cache)]
        if same:
            raise CommandError(f"--cache {args.cache} is {same[0]}: the cache would overwrite "
                               f"its input")
        if os.path.isdir(args.cache):
            raise CommandError(f"--cache {args.cache} is a directory: give a file name")
    k = 0
    if args.holdout_fraction is not None:
        f = args.holdout_fraction
        if not 0 < f <= 0.5:
            raise CommandError(f"--holdout-fraction must be in (0, 0.5], got {f}")
        k = int(round(1 / f))
    return k


def learn(learner: Learner, batch, source: str) -> None:
    try:
        # No undo journal: a failed batch ends the run, unsaved.
        learner.learn(batch, atomic=False)
    except BatchError as exc:
        raise batch_error(exc, batch, source, learner.options.loss) from None
    except (NumericError, StoreFullError) as exc:
        raise stopped_error(exc, batch, source) from None


def flush(learner: Learner, source: str) -> None:
    """Learn the learner's pending partial mini-batch (none with --minibatch 1)."""
    try:
        learner.flush()
    except (NumericError, StoreFullError) as exc:
        raise CommandError(f"{source}: the last mini-batch of the input: {exc}; the model "
                           f"was not saved") from None


def cmd_train(args: argparse.Namespace) -> int:
    options = learner_options(args)
    k = check_args(args)
    names: dict[int, str] | None = None if args.no_names else {}
    if args.initial:
        try:
            learner, initial_names = load_initial(args.initial, explicit_learner_values(args, {}),
                                                  options, args.force_config)
        except WarmStartError as exc:
            raise CommandError(str(exc)) from None
        if names is not None:
            names.update(initial_names)
        options = learner.options
    else:
        if args.force_config:
            raise CommandError("--force-config goes with --initial")
        learner = Learner(options)
    err = sys.stderr
    say = (lambda *a, **kw: None) if args.quiet else (lambda *a, **kw: print(*a, file=err, **kw))
    table = ProgressTable(err, options.classification, not args.quiet)
    data = TrainingData(args, names, k, options, say)
    totals = (0, 0.0, 0.0, 0)
    held = test = None
    start = time.perf_counter()
    for number, batches in enumerate(data.passes(learner), 1):
        # With read-ahead, the reader fills ``names`` in its own thread: it
        # is only read (by the save below) once every pass is over and the
        # thread joined.
        for batch in batches:
            learn(learner, batch, data.source)
            sums = learner.progress_sums
            totals = (sums["examples"], sums["loss_sum"], sums["weight_sum"], sums["correct"])
            table.update(learner, totals)
        if number == args.passes:
            # The end of the input: a partial mini-batch is learned as a
            # short one (--minibatch; docs/algorithms.md, "Mini-batches").
            flush(learner, data.source)
            sums = learner.progress_sums
            totals = (sums["examples"], sums["loss_sum"], sums["weight_sum"], sums["correct"])
        if number == 1 and data.examples == 0:
            raise EmptyInput(f"{data.source}: no examples (the input is empty, or only blank "
                             f"and comment lines)")
        if data.held is not None:
            if data.held.n_rows == 0:
                raise EmptyInput(f"--holdout-fraction {args.holdout_fraction:g} holds out 1 "
                                 f"example in {k}, and {data.source} has only {data.examples}")
            held = evaluate(learner, data.held.batches(args.batch_size), data.source).result()
            if args.passes > 1:
                say(f"pass {number}  holdout  {metric_line(held)}", flush=True)
        if args.test is not None:
            test = evaluate(learner, read(args, path=args.test, options=learner.options),
                            args.test).result()
            if test["examples"] == 0:
                raise EmptyInput(f"--test {args.test}: no examples")
            if args.passes > 1:
                say(f"pass {number}  test     {metric_line(test)}", flush=True)
    elapsed = time.perf_counter() - start
    nnz = learner.nnz           # one pass over the store, for both lines
    table.update(learner, totals, final=True, nnz=nnz)
    summary = learner.progress
    lines = [("examples", f"{summary['examples']}"),
             ("passes", f"{args.passes}" + (" (shuffled)" if args.shuffle else "")),
             ("progressive loss", f"{summary['loss']:.6f}")]
    if options.classification:
        lines.append(("accuracy", f"{summary['accuracy']:.4f}"))
    if held is not None:
        lines += metric_items(held, "holdout ")
    if test is not None:
        lines += metric_items(test, "test ")
    lines += [("non-zero weights", f"{nnz}")]
    if options.budgeted:
        from onlinel1.cli.offline import budget_line
        lines.append(("budget", budget_line(learner)))
    lines += [("time", f"{elapsed:.3f} s ({summary['examples'] / max(elapsed, 1e-9):,.0f} "
                       f"examples/s)")]
    if args.save:
        size = model_file.save(args.save, learner, names, extra={"trained_on": args.data})
        lines.append(("model", f"{args.save} ({size:,} bytes)"))
    if not args.quiet:
        print_items(lines, err)
    return 0


def register_flags(train: argparse.ArgumentParser) -> None:
    """The flags of passes and evaluation."""
    g = train.add_argument_group(
        "passes and evaluation",
        "Each example's loss before the model learns from it (progressive validation)\n"
        "is always reported; --test and --holdout-fraction score the model after every\n"
        "pass on examples it never learns.")
    g.add_argument("--passes", type=int, default=1, metavar="N",
                   help="passes over DATA (default: %(default)s); over standard input, "
                        "the examples are kept in memory after the first (see --buffer-mb)")
    g.add_argument("--shuffle", action="store_true",
                   help="learn each pass in a fresh random order drawn from --seed: DATA is "
                        "kept in memory (see --buffer-mb), or in the --cache file")
    g.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of --shuffle: pass 1 is numpy.random.RandomState(N)"
                        ".permutation(n), pass 2 the next draw (default: %(default)s)")
    g.add_argument("--test", metavar="FILE",
                   help="after every pass, score the model on FILE's examples (its format by "
                        "its name, or --format)")
    g.add_argument("--holdout-fraction", type=float, metavar="F",
                   help="hold out every k-th example of DATA, k = round(1/F), F in (0, 0.5] "
                        "(examples k, 2k, ... in input order, as Vowpal Wabbit's "
                        "--holdout_period k): never learned, scored after every pass")
    g.add_argument("--cache", metavar="FILE",
                   help="keep the examples of DATA in FILE (written by pass 1, as Vowpal "
                        "Wabbit's -c): later passes, --shuffle among them, read it instead of "
                        "the text, with no memory bound, and a later run on the same DATA and "
                        "settings reads it instead of DATA")
    g.add_argument("--buffer-mb", type=int, default=DEFAULT_BUFFER_MB, metavar="N",
                   help="most memory for the examples kept by --shuffle or --passes over "
                        "standard input, and for the held-out ones (each): 16 bytes per "
                        "feature value, 40 per example (default: %(default)s)")
