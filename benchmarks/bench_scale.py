#!/usr/bin/env python3
"""onlinel1 at real model sizes: a synthetic click log of millions of
distinct features, `onlinel1 train` beside Vowpal Wabbit, and the
in-process learning rate at more than 10 M live features.

The rows (written once, then reused from --workdir):

* ``--rows`` rows (default 3,000,000) of 30 categorical fields each, every
  field present.  Field j has a vocabulary of round(10 * 4e6 ** (j / 29))
  values (10 ... 40 M) and draws its value's rank from a bounded power law
  (Zipf-like, exponent 1.15 for vocabularies below 100 k, 1.0 below 3 M,
  0.7 above: a few huge, nearly unique id fields, as in click logs).  The
  exact number of distinct (field, value) features is counted and printed.
* Labels from a hidden sparse logistic model: each (field, value) has a
  non-zero weight, uniform in [-1.5, 1.5], with probability 5 % (a hash of
  field and value decides, so no table is kept); the bias is solved for so
  that the mean click probability is --positive-rate (default 0.22, like
  Criteo); each label is a draw of that probability.
* One Vowpal Wabbit text file, ``1 |c a=0 b=17 ... D=3141592`` (label -1 or
  1; one namespace; string feature names, so that both tools hash them; a
  letter per field), read by both learners.

Part 1, end to end: each run is its own child process, timed by wall clock
from start to exit; peak memory is the child's ru_maxrss from os.wait4.
(Linux carries the parent's peak RSS over into a vfork/exec'd child's
ru_maxrss, so this script's own process does no heavy work and its peak is
printed as the floor; the generator and the in-process part run in child
processes too.)  The contenders, run in turn --repeats times (VW, VW -f,
fobos, fobos --save, cumulative, cumulative --save), median and spread
reported:

* ``onlinel1 train FILE --format vw --update fobos --l1 X --eta0 X``
  and the same with ``--update cumulative --origin first-seen``, each also
  with ``--save MODEL`` (other settings are train's defaults: log loss,
  constant step, an intercept);
* Vowpal Wabbit ``vowpalwabbit.Workspace("-d FILE --loss_function logistic
  -b 26 --l1 X --quiet")`` (its default adaptive, normalised, invariant
  updates, -l 0.5, power_t 0.5: VW's usual and fastest path; --vw-args adds
  to it), also with ``-f MODEL``.

Reported: examples/s, the ratio to VW of the same round, progressive loss
(train's summary; VW's sum of loss / weighted examples), onlinel1's
non-zero weights, peak RSS, peak RSS with --save / without, CPU seconds,
and how many cores other processes kept busy meanwhile (/proc/stat: the
machine is shared, so figures taken beside other work are noisy).

onlinel1's step is --eta0 0.01 by default: each row has 31 active inputs
(30 fields and the intercept), so a constant 0.1 overshoots on these rows
(a progressive loss above the base rate's).

Part 2, in process (one child process): the file is parsed once into
Batches (onlinel1.io.read_batches, --batch-size rows each), then
``Learner(update=RULE, l1=X, eta0=X).learn(batch)`` over all of them is
timed for each of --rules (fobos, cumulative first-seen, plain, truncated,
subgradient, adagrad-fobos, ftrl, spred; plain with l1 = 0; and
fobos/no-journal and cumulative/no-journal, the same two learned with
``learn(batch, atomic=False)``, without the undo journal of an atomic
batch, as ``onlinel1 train`` learns), fresh model each, the rules in turn
--repeats times.  Reported: feature-updates/s
(non-zeros learned / seconds) over the whole pass and over the batches
learned while the store already held >= --live-target features, the live
features (store size) and non-zeros at the end, and
``Learner.memory_bytes / Learner.store_size``.  The default l1 = 1e-8 is
small so that nearly every feature stays live (a real model's size).  A
check line compares the non-zero weights of fobos and cumulative with those
of the `onlinel1 train` runs (the same rows, options and batch size: the
same work).

Targets (issue 13): fobos and cumulative first-seen >= 1.5x VW's
examples/s; >= 12 M feature-updates/s at >= 10 M live features; peak RSS
with --save <= 1.15x without.

Usage:
    python benchmarks/bench_scale.py --out benchmarks/results/scale.md
    python benchmarks/bench_scale.py --quick          # 300 k rows, about a minute
    python benchmarks/bench_scale.py --rows 1000000 --repeats 1 --rules fobos
"""
from __future__ import annotations

# Only the standard library at the top: this process's peak RSS is a floor
# under every child's ru_maxrss (see above), so numpy, onlinel1 and the
# shared report helpers of bench_learner are imported in the children or
# after the last timed child.
import argparse
import datetime
import hashlib
import json
import os
import pathlib
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent

GENERATOR_VERSION = 1           # bump when the rows a seed gives change
N_FIELDS = 30
FIELD_NAMES = "abcdefghijklmnopqrstuvwxyzABCD"
NAMESPACE = "c"
ACTIVE_FRACTION = 0.05          # hidden model: share of (field, value) with a weight
WEIGHT_RANGE = 1.5              # ... uniform in [-WEIGHT_RANGE, WEIGHT_RANGE]
ENCODE_CHUNK = 100_000          # rows encoded to text at a time

# RULE/no-journal: the rule learned with atomic=False (no undo journal), as
# `onlinel1 train` learns it.
ALL_RULES = ("fobos", "cumulative", "fobos/no-journal", "cumulative/no-journal", "plain",
             "truncated", "subgradient", "adagrad-fobos", "ftrl", "spred")
RULE_LABEL = {"cumulative": "cumulative, origin first-seen",
              "fobos/no-journal": "fobos, atomic=False",
              "cumulative/no-journal": "cumulative, origin first-seen, atomic=False"}
HEADLINE_RULES = ("fobos", "cumulative")
MIB = 1024 * 1024


def fields() -> list[tuple[str, int, float]]:
    """(name, vocabulary size, power-law exponent) of each field."""
    out = []
    for j in range(N_FIELDS):
        vocab = int(round(10 * 4e6 ** (j / (N_FIELDS - 1))))
        exponent = 1.15 if vocab < 100_000 else (1.0 if vocab < 3_000_000 else 0.7)
        out.append((FIELD_NAMES[j], vocab, exponent))
    return out


# ======================================================================
# child role: the generator

def _sample_ranks(rng, n: int, vocab: int, exponent: float):
    """Ranks 0..vocab-1, P(rank r) ~ (r + 1) ** -exponent (the continuous
    bounded power law on [1, vocab + 1), floored: inverse CDF sampling)."""
    import numpy as np
    u = rng.random(n)
    if abs(exponent - 1.0) < 1e-12:
        x = np.exp(u * np.log(vocab + 1.0))
    else:
        a = 1.0 - exponent
        x = (1.0 + u * ((vocab + 1.0) ** a - 1.0)) ** (1.0 / a)
    return np.minimum(x.astype(np.int64) - 1, vocab - 1).astype(np.int32)


def _splitmix64(x):
    import numpy as np
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hidden_weights(field: int, ranks, seed: int):
    """The hidden model's weight of (field, rank): 0 for most, else uniform
    in [-WEIGHT_RANGE, WEIGHT_RANGE]; a pure function of (seed, field, rank)."""
    import numpy as np
    salt = np.uint64((seed * 1_000_003 + field + 1) << 32)
    h = _splitmix64(ranks.astype(np.uint64) ^ salt)
    active = (h & np.uint64(0xFFFF)) < np.uint64(int(ACTIVE_FRACTION * 65536))
    u = ((h >> np.uint64(16)) & np.uint64(0xFFFFFF)).astype(np.float64) / float(1 << 24)
    return np.where(active, (2.0 * u - 1.0) * WEIGHT_RANGE, 0.0)


def encode_rows(positive, ranks, prefixes: list[bytes], vocabs: list[int]):
    """VW text of rows (``1 |c a=0 b=17 ...\\n``) as a uint8 array, with
    array operations only: each row is laid out in fixed-width slots (the
    label, then per field its prefix, its widest value right-aligned and a
    separator; built column by column, transposed), unused bytes left 0,
    and the 0 bytes dropped at the end."""
    import numpy as np
    n, f = ranks.shape
    head = f"-1 |{NAMESPACE} ".encode()            # "1 |c " for a positive row: no "-"
    widths = [len(str(v - 1)) for v in vocabs]
    width = len(head) + sum(len(p) + w + 1 for p, w in zip(prefixes, widths))
    wide = np.zeros((width, n), dtype=np.uint8)    # byte k of every row is wide[k]
    for k, ch in enumerate(head):
        wide[k] = ch
    wide[0, positive] = 0
    at = len(head)
    columns = np.ascontiguousarray(ranks.T)
    for j, (prefix, w) in enumerate(zip(prefixes, widths)):
        for ch in prefix:
            wide[at] = ch
            at += 1
        value = columns[j].copy()
        for k in range(w):                           # digit k from the right
            quotient = value // 10
            digit = (value - quotient * 10).astype(np.uint8) + 48
            if k:
                digit[value == 0] = 0                # no leading zeros
            wide[at + w - 1 - k] = digit
            value = quotient
        at += w
        wide[at] = 10 if j == f - 1 else 32
        at += 1
    wide = np.ascontiguousarray(wide.T)
    return wide[wide != 0]


def generate_role(argv: list[str]) -> int:
    """Write the rows (``_generate ROWS SEED RATE PATH``) and their
    description as JSON to PATH + '.json'."""
    import numpy as np
    rows, seed, rate, path = int(argv[0]), int(argv[1]), float(argv[2]), pathlib.Path(argv[3])
    t0 = time.perf_counter()
    spec = fields()
    rng = np.random.default_rng(seed)
    ranks = np.empty((rows, len(spec)), dtype=np.int32)
    margin = np.zeros(rows)
    per_field = []
    for j, (name, vocab, exponent) in enumerate(spec):
        col = _sample_ranks(rng, rows, vocab, exponent)
        ranks[:, j] = col
        seen = np.zeros(vocab, dtype=bool)
        seen[col] = True
        distinct = int(np.count_nonzero(seen))
        del seen
        w = hidden_weights(j, col, seed)
        margin += w
        per_field.append(dict(name=name, vocab=vocab, exponent=exponent, distinct=distinct,
                              top_share=float(np.count_nonzero(col == 0)) / rows,
                              active_rows=float(np.count_nonzero(w)) / rows))
    # The bias b with mean(sigmoid(margin + b)) == rate: Newton's method
    # (the mean is increasing in b), kept inside a bracket that bisects.
    lo, hi = -40.0, 40.0
    bias = float(np.log(rate / (1 - rate)) - margin.mean())
    for _ in range(100):
        s = 1.0 / (1.0 + np.exp(-(margin + bias)))
        gap = float(s.mean()) - rate
        if abs(gap) < 1e-12:
            break
        lo, hi = (bias, hi) if gap < 0 else (lo, bias)
        slope = float(np.mean(s * (1.0 - s)))
        step = bias - gap / slope if slope > 0 else lo - 1.0
        bias = step if lo < step < hi else 0.5 * (lo + hi)
    p = 1.0 / (1.0 + np.exp(-(margin + bias)))
    positive = rng.random(rows) < p
    # The hidden model's own log loss (the Bayes rate) and that of the base rate.
    eps = 1e-15
    bayes = float(-np.mean(np.where(positive, np.log(p + eps), np.log(1 - p + eps))))
    base = float(positive.mean())
    base_loss = float(-(base * np.log(base) + (1 - base) * np.log(1 - base)))
    t_sampled = time.perf_counter() - t0
    prefixes = [f"{name}=".encode() for name, _, _ in spec]
    vocabs = [vocab for _, vocab, _ in spec]
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        for start in range(0, rows, ENCODE_CHUNK):
            stop = min(rows, start + ENCODE_CHUNK)
            f.write(encode_rows(positive[start:stop], ranks[start:stop], prefixes,
                                 vocabs).data)
    os.replace(tmp, path)
    meta = dict(generator_version=GENERATOR_VERSION, rows=rows, seed=seed,
                positive_rate_target=rate, positive_rate=base, bias=bias,
                distinct=sum(x["distinct"] for x in per_field), nnz=rows * len(spec),
                fields=per_field, bytes=path.stat().st_size, bayes_loss=bayes,
                base_rate_loss=base_loss, active_fraction=ACTIVE_FRACTION,
                weight_range=WEIGHT_RANGE, sample_seconds=t_sampled,
                seconds=time.perf_counter() - t0)
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=1) + "\n")
    return 0


# ======================================================================
# child role: in-process learning rates

def inprocess_role(argv: list[str]) -> int:
    """``_inprocess FILE JSON_SETTINGS RESULT``: parse FILE once, then time
    Learner.learn over all batches for each rule; write RESULT as JSON."""
    import gc

    import numpy as np

    from onlinel1 import Learner
    from onlinel1.io import read_batches
    path, settings, result_path = argv[0], json.loads(argv[1]), pathlib.Path(argv[2])
    t0 = time.perf_counter()
    batches = list(read_batches(path, "vw", batch_size=settings["batch_size"]))
    parse_seconds = time.perf_counter() - t0
    nnz_rows = [int(b.indptr[-1]) for b in batches]
    n_rows = sum(b.n_rows for b in batches)
    total_nnz = sum(nnz_rows)
    print(f"  in-process: parsed {n_rows:,} rows, {total_nnz:,} non-zeros, "
          f"{len(batches)} batches in {parse_seconds:.1f} s", file=sys.stderr, flush=True)
    target = settings["live_target"]
    runs = []
    for rep in range(settings["repeats"]):
        for rule in settings["rules"]:
            update, _, variant = rule.partition("/")
            atomic = variant != "no-journal"
            opts = dict(update=update, l1=0.0 if update == "plain" else settings["l1"],
                        eta0=settings["eta0"])
            if update == "cumulative":
                opts["origin"] = "first-seen"
            learner = Learner(**opts)
            seconds = np.empty(len(batches))
            live_before = np.empty(len(batches), dtype=np.int64)
            gc.collect()
            gc.disable()
            busy0, own0, wall0 = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
            try:
                for i, batch in enumerate(batches):
                    live_before[i] = learner.store_size
                    t = time.perf_counter()
                    learner.learn(batch, atomic=atomic)
                    seconds[i] = time.perf_counter() - t
            finally:
                gc.enable()
            wall = time.perf_counter() - wall0
            other = (machine_busy_seconds() - busy0 - (own_cpu_seconds() - own0)) / wall
            total = float(seconds.sum())
            window = live_before >= target
            run = dict(rule=rule, repeat=rep, opts=learner.options.to_dict(), seconds=total,
                       rows=n_rows, nnz=total_nnz, store_size=learner.store_size,
                       nnz_w=learner.nnz, memory=learner.memory_bytes,
                       loss=learner.progress["loss"], other=max(other, 0.0),
                       window_batches=int(window.sum()),
                       window_seconds=float(seconds[window].sum()),
                       window_nnz=int(np.asarray(nnz_rows)[window].sum()),
                       window_first_live=int(live_before[window][0]) if window.any() else 0)
            runs.append(run)
            rate = total_nnz / total / 1e6
            wrate = (f"{run['window_nnz'] / run['window_seconds'] / 1e6:.2f} M/s"
                     if run["window_batches"] else "n/a")
            print(f"  in-process {rule:21s} run {rep + 1}: {total:7.2f} s, {rate:6.2f} M "
                  f"feature-updates/s; at >= {target / 1e6:g} M live: {wrate}; live "
                  f"{run['store_size']:,}, non-zeros {run['nnz_w']:,}, "
                  f"{run['memory'] / max(run['store_size'], 1):.1f} bytes/live feature",
                  file=sys.stderr, flush=True)
            del learner
    result_path.write_text(json.dumps(dict(parse_seconds=parse_seconds, rows=n_rows,
                                           nnz=total_nnz, batches=len(batches), runs=runs)))
    return 0


# ======================================================================
# child role: Vowpal Wabbit

VW_SCRIPT = """\
import json, sys, time
import vowpalwabbit
t0 = time.perf_counter()
ws = vowpalwabbit.Workspace(sys.argv[1])
t1 = time.perf_counter()
loss, weighted = ws.get_sum_loss(), ws.get_weighted_examples()
ws.finish()
t2 = time.perf_counter()
print(json.dumps(dict(learn=t1 - t0, inside=t2 - t0, sum_loss=loss, weighted=weighted)))
"""


# ======================================================================
# the parent: child processes, bounded and reaped

class ChildFailed(RuntimeError):
    pass


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat, all cores;
    as bench_daemon.py's, which this lean process cannot import)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)        # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(argv: list[str], timeout: float, log: pathlib.Path | None,
              what: str) -> dict:
    """Run ``argv`` to its end; wall seconds, exit code and os.wait4's
    rusage, and how many cores other processes kept busy meanwhile (the
    machine's busy time less the child's and this process's CPU, per
    second).  stdout and stderr go to ``log`` (or this process's stderr).
    Killed (and reaped) after ``timeout`` s or if this process is stopped."""
    out = open(log, "wb") if log is not None else None
    reaped: dict = {}
    proc = None
    try:
        busy0, own0 = machine_busy_seconds(), own_cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=out if out else sys.stderr,
                                stderr=subprocess.STDOUT if out else None,
                                env=child_env(), cwd=str(REPO))

        def wait() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            reaped.update(t=time.perf_counter(), status=status, usage=usage)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        waiter.join(timeout)
        if waiter.is_alive():
            raise ChildFailed(f"{what}: still running after {timeout:.0f} s; killed")
    finally:
        if proc is not None and not reaped:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            waiter.join(30)
        if proc is not None and reaped:
            proc.returncode = os.waitstatus_to_exitcode(reaped["status"])
        if out is not None:
            out.close()
    rc = proc.returncode
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
        raise ChildFailed(f"{what} failed (exit {rc}): {shlex.join(argv)}\n{tail}")
    usage = reaped["usage"]
    seconds, cpu = reaped["t"] - t0, usage.ru_utime + usage.ru_stime
    other = (machine_busy_seconds() - busy0 - cpu - (own_cpu_seconds() - own0)) / seconds
    return dict(seconds=seconds, maxrss=usage.ru_maxrss * 1024, cpu=cpu, other=max(other, 0.0))


def summary_lines(text: str) -> dict[str, str]:
    """``onlinel1 train``'s closing ``key  value`` lines."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z][a-z -]*?)\s{2,}(\S.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


class Contender:
    def __init__(self, name: str, kind: str, argv: list[str], display: str,
                 model: pathlib.Path | None, rule: str | None = None) -> None:
        self.name, self.kind, self.argv, self.display = name, kind, argv, display
        self.model, self.rule = model, rule
        self.runs: list[dict] = []


def contenders(args, data: pathlib.Path, work: pathlib.Path) -> list[Contender]:
    out = []
    for save in (False, True):
        model = work / "vw.model" if save else None
        vw_args = (f"-d {data} --loss_function logistic -b 26 --l1 {args.l1!r} --quiet"
                   + (f" {args.vw_args}" if args.vw_args else "")
                   + (f" -f {model}" if save else ""))
        out.append(Contender("Vowpal Wabbit" + (" -f" if save else ""), "vw",
                             [sys.executable, "-c", VW_SCRIPT, vw_args],
                             f'vowpalwabbit.Workspace("{vw_args}")', model))
    for rule in HEADLINE_RULES:
        for save in (False, True):
            model = work / f"{rule}.model" if save else None
            flags = ["--format", "vw", "--update", rule]
            flags += ["--origin", "first-seen"] if rule == "cumulative" else []
            # Not --quiet: that prints no summary, and the summary is read
            # (its progress lines are a few, when the example count doubles).
            flags += ["--l1", repr(args.l1), "--eta0", repr(args.eta0)]
            flags += shlex.split(args.train_args) if args.train_args else []
            flags += ["--save", str(model)] if save else []
            label = "fobos" if rule == "fobos" else "cumulative first-seen"
            out.append(Contender(f"onlinel1 train {label}" + (" --save" if save else ""), "ol1",
                                 [sys.executable, "-m", "onlinel1", "train", str(data)] + flags,
                                 shlex.join(["onlinel1", "train", str(data)] + flags), model,
                                 rule))
    # Interleaved as VW, VW -f, fobos, fobos --save, cumulative, cumulative --save.
    return out


def run_contender(c: Contender, args, logs: pathlib.Path, rows: int, rnd: int) -> dict:
    log = logs / f"{c.name.replace(' ', '_')}-{rnd}.log"
    if c.model is not None and c.model.exists():
        c.model.unlink()
    try:
        res = run_child(c.argv, args.timeout, log, c.name)
        text = log.read_text(errors="replace")
        if c.kind == "vw":
            vw = json.loads(text.strip().splitlines()[-1])
            res.update(inside=vw["inside"], loss=vw["sum_loss"] / vw["weighted"],
                       examples=vw["weighted"], nnz_w=None)
        else:
            s = summary_lines(text)
            try:
                res.update(inside=float(s["time"].split()[0]), loss=float(s["progressive loss"]),
                           examples=int(s["examples"]), nnz_w=int(s["non-zero weights"]))
            except (KeyError, ValueError) as exc:
                raise ChildFailed(f"{c.name}: cannot read its summary ({exc}):\n{text[-2000:]}")
        if int(res["examples"]) != rows:
            raise ChildFailed(f"{c.name}: learned {res['examples']} examples, expected {rows}")
        res["model_bytes"] = c.model.stat().st_size if c.model is not None else None
    finally:
        if c.model is not None and c.model.exists():
            c.model.unlink()
    return res


# ======================================================================
# report

def median(xs):
    return statistics.median(xs)


def spread(xs, fmt: str) -> str:
    return format(median(xs), fmt) if len(xs) == 1 else \
        f"{format(median(xs), fmt)} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def package_version(name: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def report_header(args, command: str, meta: dict, data: pathlib.Path, parent_rss: int,
                  started: str, elapsed: float, load: tuple) -> list[str]:
    from bench_learner import machine, onlinel1_commit
    rows = meta["rows"]
    lines = [
        "# onlinel1 at real model sizes: a synthetic click log, `onlinel1 train` beside "
        "Vowpal Wabbit",
        "",
        f"* date: {started} (took {elapsed / 60:.1f} min)",
        f"* machine: {machine()}; load average {load[0]:.2f} at the start, {load[1]:.2f} at "
        f"the end",
        f"* software: onlinel1 @ {onlinel1_commit()}, numpy {package_version('numpy')}, "
        f"vowpalwabbit {package_version('vowpalwabbit')}",
        f"* command: `{command}`",
        f"* settings: l1 = {args.l1!r}, eta0 = {args.eta0!r} (onlinel1: log loss, constant step, "
        f"an intercept; train's --batch-size 8192, in process {args.batch_size}); Vowpal "
        f"Wabbit: logistic loss, `-b 26`, the same --l1, its default learning rule (adaptive, "
        f"normalised, invariant, -l 0.5, power_t 0.5)"
        + (f" plus `{args.vw_args}`" if args.vw_args else "")
        + (f"; onlinel1 train also `{args.train_args}`" if args.train_args else ""),
        "* onlinel1's modules compiled to bytecode before the first run (`python -m "
        "compileall onlinel1`), as an installed package has them",
        f"* repeats: {args.repeats}, the contenders (and in process the rules) in turn; "
        f"median (min-max) reported",
    ]
    if args.note:
        lines.append(f"* note: {args.note}")
    fields_text = ", ".join(f"{f['name']}: {f['vocab']:,}^{f['exponent']:g} -> "
                            f"{f['distinct']:,}" for f in meta["fields"])
    lines += [
        "",
        "## The rows",
        "",
        f"{rows:,} rows x {N_FIELDS} fields = {meta['nnz']:,} non-zeros, "
        f"**{meta['distinct']:,} distinct (field, value) features**; "
        f"{meta['positive_rate']:.1%} positive (target {meta['positive_rate_target']:.0%}); "
        f"{meta['bytes'] / 1e6:,.0f} MB of VW text (`{data.name}`, generator v"
        f"{meta['generator_version']}, seed {meta['seed']}, written in "
        f"{meta['seconds']:.1f} s). Field j draws its value's rank from a bounded power "
        f"law over a vocabulary of round(10 * 4e6^(j/29)) values; the hidden model gives "
        f"{meta['active_fraction']:.0%} of the (field, value) pairs a weight uniform in "
        f"[-{meta['weight_range']}, {meta['weight_range']}], plus a bias of "
        f"{meta['bias']:.3f}. Log loss of the hidden model itself: {meta['bayes_loss']:.4f}; of "
        f"the base rate: {meta['base_rate_loss']:.4f}.",
        "",
        f"Fields (name: vocabulary^exponent -> distinct values seen): {fields_text}.",
        "",
        f"This script's own process stays small (peak RSS {parent_rss / MIB:.0f} MiB before "
        f"the first timed child): Linux carries a parent's peak RSS over into the ru_maxrss of "
        f"a child it vfork/execs, so that is the floor under every peak RSS below.",
    ]
    return lines


def e2e_report(meta: dict, cons: list[Contender]) -> list[str]:
    rows = meta["rows"]
    lines = [
        "",
        "## End to end: whole processes reading the same file",
        "",
        "seconds = wall time of a child process from start to exit (interpreter start-up "
        "included); peak RSS = the child's ru_maxrss (os.wait4). vs VW = examples/s over VW's "
        "in the same round (without --save against VW without -f, with against with), median "
        "of the rounds. CPU = user + system seconds (VW parses in a second thread). other "
        "cores = cores that processes outside this benchmark kept busy meanwhile (/proc/stat).",
        "",
        "| contender | seconds | examples/s | vs VW | progressive loss | non-zeros "
        "| peak RSS MiB | RSS with save / without | model MiB | CPU s | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by = {c.name: c for c in cons}
    vw_of = {False: by["Vowpal Wabbit"], True: by["Vowpal Wabbit -f"]}
    ratios: dict[str, list[float]] = {}
    rss_ratio: dict[str, list[float]] = {}
    for c in cons:
        saving = c.model is not None
        ref = vw_of[saving]
        ratios[c.name] = [ref.runs[i]["seconds"] / r["seconds"] for i, r in enumerate(c.runs)]
        base = by[c.name.removesuffix(" --save").removesuffix(" -f")]
        rss_ratio[c.name] = [r["maxrss"] / base.runs[i]["maxrss"] for i, r in enumerate(c.runs)]
        secs = [r["seconds"] for r in c.runs]
        nnz = c.runs[-1]["nnz_w"]
        model = [r["model_bytes"] / MIB for r in c.runs] if saving else None
        lines.append(
            f"| {c.name} | {spread(secs, '.2f')} | {spread([rows / s for s in secs], ',.0f')} "
            f"| {spread(ratios[c.name], '.2f')}x | {c.runs[-1]['loss']:.4f} "
            f"| {'' if nnz is None else f'{nnz:,}'} "
            f"| {spread([r['maxrss'] / MIB for r in c.runs], ',.0f')} "
            f"| {spread(rss_ratio[c.name], '.2f') + 'x' if saving else ''} "
            f"| {spread(model, ',.0f') if model else ''} "
            f"| {spread([r['cpu'] for r in c.runs], '.1f')} "
            f"| {spread([r['other'] for r in c.runs], '.2f')} |")
    lines += ["", "Commands:", ""]
    lines += [f"* {c.name}: `{c.display}`" for c in cons]
    full = meta["distinct"] >= 8_000_000
    lines += ["", "Targets (issue 13)" + ("" if full else
              f" -- this run has {meta['distinct']:,} distinct features, fewer than the 8 M "
              f"the targets are set at, so the verdicts are indicative only") + ":", ""]
    for rule in HEADLINE_RULES:
        label = "fobos" if rule == "fobos" else "cumulative first-seen"
        name = f"onlinel1 train {label}"
        r = median(ratios[name])
        lines.append(f"* {label}: {r:.2f}x VW's examples/s (target >= 1.5x): {verdict(r >= 1.5)}; "
                     f"with --save beside VW -f: {median(ratios[name + ' --save']):.2f}x")
    for rule in HEADLINE_RULES:
        label = "fobos" if rule == "fobos" else "cumulative first-seen"
        r = median(rss_ratio[f"onlinel1 train {label} --save"])
        lines.append(f"* {label}: peak RSS with --save {r:.2f}x without (target <= 1.15x): "
                     f"{verdict(r <= 1.15)}")
    return lines


def inprocess_report(args, res: dict, cons: list[Contender]) -> list[str]:
    target = args.live_target
    lines = [
        "",
        "## In process: `Learner(...).learn(batch)` over the parsed file",
        "",
        f"The file parsed once with `read_batches(FILE, \"vw\", batch_size={args.batch_size})` "
        f"({res['rows']:,} rows, {res['nnz']:,} non-zeros, {res['batches']} batches, "
        f"{res['parse_seconds']:.1f} s, not timed below). Each run: a fresh "
        f"`Learner(update=RULE, l1={args.l1!r}, eta0={args.eta0!r})` (origin first-seen for "
        f"cumulative; l1 = 0 for plain; the other settings are the defaults: log loss, "
        f"constant step, an intercept) learns every batch in order with `learn(batch)`, "
        f"which keeps the undo journal of an atomic batch, or, in the rows marked "
        f"atomic=False, with `learn(batch, atomic=False)`, without it, as `onlinel1 train` "
        f"learns; one thread, the garbage "
        f"collector off while timing. feature-updates/s = non-zeros learned / seconds; "
        f"\"at >= {target / 1e6:g} M live\" counts only the batches learned while the store "
        f"already held at least {target:,} features. The l1 is small on purpose so that "
        f"nearly every feature stays live, as in a real model of this size.",
        "",
        f"| rule | seconds | M feature-updates/s | M feature-updates/s at >= {target / 1e6:g} M "
        f"live (batches) | live features | non-zeros | bytes/live feature | progressive loss "
        f"| other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rules = []
    for run in res["runs"]:
        if run["rule"] not in rules:
            rules.append(run["rule"])
    rate_of, window_of, live_of = {}, {}, {}
    for rule in rules:
        runs = [r for r in res["runs"] if r["rule"] == rule]
        rates = [r["nnz"] / r["seconds"] / 1e6 for r in runs]
        win = [r["window_nnz"] / r["window_seconds"] / 1e6 for r in runs if r["window_batches"]]
        last = runs[-1]
        rate_of[rule], window_of[rule], live_of[rule] = median(rates), win, last["store_size"]
        wtext = f"{spread(win, '.2f')} ({last['window_batches']})" if win else "-"
        lines.append(
            f"| {RULE_LABEL.get(rule, rule)} | {spread([r['seconds'] for r in runs], '.2f')} "
            f"| {spread(rates, '.2f')} | {wtext} | {last['store_size']:,} | {last['nnz_w']:,} "
            f"| {last['memory'] / max(last['store_size'], 1):.1f} | {last['loss']:.4f} "
            f"| {spread([r['other'] for r in runs], '.2f')} |")
    lines += ["", "Targets (issue 13):", ""]
    for rule in HEADLINE_RULES + tuple(f"{r}/no-journal" for r in HEADLINE_RULES):
        if rule not in rate_of:
            continue
        win = window_of[rule]
        label = RULE_LABEL.get(rule, rule)
        if win:
            lines.append(f"* {label}: {median(win):.2f} M feature-updates/s with >= "
                         f"{target / 1e6:g} M live features (whole pass {rate_of[rule]:.2f} M/s, "
                         f"{live_of[rule]:,} live at the end; target >= 12 M/s at 10 M live): "
                         f"{verdict(median(win) >= 12.0 and target >= 10_000_000)}")
        else:
            lines.append(f"* {label}: the store never reached {target:,} live features "
                         f"({live_of[rule]:,} at the end): not measured at that size "
                         f"(whole pass {rate_of[rule]:.2f} M feature-updates/s)")
    # The same work as the end-to-end runs: same rows, options and batch size.
    by = {c.rule: c for c in cons if c.kind == "ol1" and c.model is None}
    checks = []
    for rule in HEADLINE_RULES:
        if rule in by and rule in live_of and args.batch_size == 8192:
            run = [r for r in res["runs"] if r["rule"] == rule][-1]
            checks.append(f"{RULE_LABEL.get(rule, rule)} {run['nnz_w']:,} in process vs "
                          f"{by[rule].runs[-1]['nnz_w']:,} from `onlinel1 train`")
    if checks:
        lines += ["", "check, non-zero weights at the end (the same work): " + "; ".join(checks)
                  + "."]
    return lines


# ======================================================================
# main

def data_file(args, work: pathlib.Path, logs: pathlib.Path) -> tuple[pathlib.Path, dict]:
    """The rows' VW file for (rows, seed, rate, generator version), written
    by a child process unless already in ``work``."""
    key = f"v{GENERATOR_VERSION}-{args.rows}-{args.seed}-{args.positive_rate!r}"
    tag = hashlib.sha1(key.encode()).hexdigest()[:8]
    path = work / f"clicks-{args.rows}-seed{args.seed}-{tag}.vw"
    meta_path = path.with_name(path.name + ".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size:
            print(f"reusing {path} ({meta['distinct']:,} distinct features)", file=sys.stderr)
            return path, meta
    print(f"writing {args.rows:,} rows to {path}", file=sys.stderr, flush=True)
    run_child([sys.executable, str(pathlib.Path(__file__).resolve()), "_generate",
               str(args.rows), str(args.seed), repr(args.positive_rate), str(path)],
              args.timeout, None, "generator")
    meta = json.loads(meta_path.read_text())
    print(f"  {meta['rows']:,} rows, {meta['distinct']:,} distinct features, "
          f"{meta['positive_rate']:.1%} positive, {meta['bytes'] / 1e6:,.0f} MB, "
          f"{meta['seconds']:.1f} s", file=sys.stderr, flush=True)
    return path, meta


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("Usage:")[1])
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of the synthetic log (default 3,000,000; 300,000 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 300 k rows and one round unless given (about a minute)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds of every contender and rule (default 3; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: %(default)s)")
    parser.add_argument("--positive-rate", type=float, default=0.22,
                        help="mean click probability of the hidden model (default: %(default)s)")
    parser.add_argument("--l1", type=float, default=1e-8,
                        help="L1 penalty of every learner (default: %(default)s)")
    parser.add_argument("--eta0", type=float, default=0.01,
                        help="onlinel1's constant step (default: %(default)s; a row moves the "
                             "margin by about 31 x eta0, so 0.1 overshoots on these rows)")
    parser.add_argument("--rules", default=",".join(ALL_RULES),
                        help="in-process rules, comma-separated, or 'none' (default: %(default)s)")
    parser.add_argument("--parts", default="e2e,inprocess",
                        help="e2e, inprocess or both (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8192,
                        help="rows per Batch in process (default: %(default)s, train's)")
    parser.add_argument("--live-target", type=int, default=10_000_000,
                        help="live features from which the in-process rate counts as 'at size' "
                             "(default: %(default)s)")
    parser.add_argument("--vw-args", default="", help="more Vowpal Wabbit options")
    parser.add_argument("--train-args", default="",
                        help="more `onlinel1 train` options, e.g. '--no-names'")
    parser.add_argument("--workdir", type=pathlib.Path,
                        default=pathlib.Path(tempfile.gettempdir()) / "onlinel1-bench-scale",
                        help="where the rows are cached and models written (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds any one child run may take before it is killed "
                             "(default: %(default)s)")
    parser.add_argument("--note", default="", help="a line for the report, e.g. about the machine")
    parser.add_argument("--out", type=pathlib.Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 300_000 if args.quick else 3_000_000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    args.rules = [] if args.rules == "none" else [r.strip() for r in args.rules.split(",") if r]
    unknown = sorted(set(args.rules) - set(ALL_RULES))
    if unknown:
        parser.error(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(ALL_RULES)}")
    args.parts = {p.strip() for p in args.parts.split(",")}
    if not args.parts <= {"e2e", "inprocess"}:
        parser.error("--parts takes e2e, inprocess or both")
    if args.rows < 1 or args.repeats < 1:
        parser.error("--rows and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw and raw[0] == "_generate":
        return generate_role(raw[1:])
    if raw and raw[0] == "_inprocess":
        return inprocess_role(raw[1:])
    args = parse_args(raw)
    # SIGTERM as an exception, so that the running child is killed and reaped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return bench(args, raw)
    except ChildFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def bench(args, raw: list[str]) -> int:
    command = shlex.join(["python", "benchmarks/bench_scale.py"] + raw)
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    logs = pathlib.Path(tempfile.mkdtemp(prefix="logs-", dir=work))
    print(f"child logs in {logs} (removed at the end unless a child fails)", file=sys.stderr)
    data, meta = data_file(args, work, logs)
    parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # onlinel1's modules compiled to bytecode first, as an installed package
    # (and VW's, by pip) has them: with PYTHONDONTWRITEBYTECODE set, as on
    # this machine, every child would compile them again (0.15 s a start).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "onlinel1")],
                   check=True, stdout=subprocess.DEVNULL)
    cons = contenders(args, data, work) if "e2e" in args.parts else []
    for rnd in range(args.repeats):
        for c in cons:
            c.runs.append(run_contender(c, args, logs, meta["rows"], rnd))
            r = c.runs[-1]
            print(f"  round {rnd + 1} {c.name:40s} {r['seconds']:7.2f} s "
                  f"({meta['rows'] / r['seconds']:,.0f}/s), {r['maxrss'] / MIB:,.0f} MiB, "
                  f"loss {r['loss']:.4f}", file=sys.stderr, flush=True)
    inproc = None
    if "inprocess" in args.parts and args.rules:
        settings = dict(rules=args.rules, l1=args.l1, eta0=args.eta0, repeats=args.repeats,
                        batch_size=args.batch_size, live_target=args.live_target)
        result = logs / "inprocess.json"
        run_child([sys.executable, str(pathlib.Path(__file__).resolve()), "_inprocess",
                   str(data), json.dumps(settings), str(result)],
                  args.timeout * (1 + len(args.rules) * args.repeats), None, "in-process part")
        inproc = json.loads(result.read_text())
    # Every timed child has ended: the report helpers (numpy, scipy) may load now.
    sys.path.insert(0, str(HERE))
    from bench_learner import write_report
    lines = report_header(args, command, meta, data, parent_rss, started,
                          time.perf_counter() - t_start, (load0, os.getloadavg()[0]))
    if cons:
        lines += e2e_report(meta, cons)
    if inproc is not None:
        lines += inprocess_report(args, inproc, cons)
    write_report(lines, args.out)
    shutil.rmtree(logs, ignore_errors=True)         # kept when a child failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
