#!/usr/bin/env python3
"""The onlinel1 daemon end to end over loopback ZeroMQ: ingest rate, prediction
latency (idle and under full training load) and memory under overload.

Everything is measured in one run on the same rows: the Criteo sample
(ctr_criteo_8k/train.tsv), each present field turned into the feature
"field=value" hashed to a uint64 key, tiled to --rows rows and shuffled
(bench_learner.load_criteo, imported).  The daemon is a separate process,
``python -m onlinel1 serve --train-endpoint tcp://127.0.0.1:P1
--request-endpoint tcp://127.0.0.1:P2 --update RULE --l1 X --eta0 X``
(its other learner settings are its defaults; the in-process Learner gets
exactly the options the daemon reports through ``config``).  Producers and
the echo server are separate processes too (this script, run with a hidden
first argument ``_producer`` / ``_echo``).  Only 127.0.0.1 is used.

1. Ingest.  A producer process (onlinel1.client.Producer, batch_size 1000,
   columnar ``csr`` messages) loads the rows and cuts them into 1000-row
   Batches before timing, then sends them all once.  The time runs from its
   first send to the moment the daemon's ``stats`` (polled by a Client,
   every --poll-ms to 50 ms, the nearer the end the shorter: a ``stats``
   costs the daemon's loop time) shows every example learned; each run uses
   a fresh daemon and the best of --repeats runs is reported.  Beside it, in this process and
   on the same rows: ``Learner(...).learn(batch)`` of the same rule over the
   whole batch (best of --repeats after a warm-up, a fresh model each), and
   the same rows learned the way the daemon cuts them (1000-row batches,
   checked once, learned in calls that look for requests every slice_nnz
   features, as the daemon does) -- the kernel and Python cost of the
   daemon without transport and decoding.
   Target: daemon >= 0.7x the in-process rate.  For update=cumulative
   (origin first-seen, the daemon's default) and update=fobos.
   Vowpal Wabbit reads the same rows from a local text file
   (``label |c field=value ...``, written before timing) in a separate
   process: ``vowpalwabbit.Workspace("-d FILE --loss_function logistic
   --l1 X -b 24 --quiet")``; both the process wall time and the time inside
   the process (Workspace to finish, i.e. without interpreter start-up and
   import) are reported.

2. Prediction latency over loopback, one example per request, sequential
   request/reply with onlinel1.client.Client (DEALER): --warmup requests,
   then --requests timed ones (time.perf_counter_ns around
   ``Client.predict``, which includes encoding the request and decoding the
   reply; the client's garbage collector is off while timing).  Each request
   is one Criteo row, sent in both encodings: ``csr`` (a one-row Batch) and
   ``rows`` (``[{"features": {key: 1.0, ...}}]`` with integer keys).  The
   floor is a bare pyzmq ROUTER echo server (recv_multipart, then
   send_multipart of one fixed small msgpack reply shaped like the daemon's)
   measured with the same client code.  Both are measured (a) idle (the
   daemon trained on the rows once) and (b) while a producer process pushes
   batches as fast as the high-water mark lets it (the daemon learning all
   the time; for the echo, the daemon and that producer run beside it, so
   the CPU is loaded the same way).  Goals (the team's transport notes): p50 within
   1.3x of the echo idle, p99 within 3x under full training load; absolute:
   p50 <= 150 us idle, p99 <= 2 ms under load.

3. Memory under overload.  --overload-producers producer processes push the
   rows in a loop for --overload-seconds against a fresh daemon that learns
   slower than they send.  The daemon's VmRSS (/proc/PID/status) and its
   ``stats`` are sampled every 0.5 s.  Reported: RSS min / median / max,
   at the start vs the end, and the check that the producers were held back
   rather than anything dropped: after they stop (waiting for delivery) and
   the queue drains, examples learned == examples sent, ``rejected`` empty;
   the producers' CPU time below their wall time; send rate == learn rate.

Example:
    python benchmarks/bench_daemon.py --out benchmarks/results/daemon.md
    python benchmarks/bench_daemon.py --quick          # a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import os
import pathlib
import platform
import resource
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO))       # run from anywhere against the in-place build
sys.path.insert(0, str(HERE))       # bench_learner (the Criteo rows, best_of, machine)

HOST = "127.0.0.1"
BATCH_ROWS = 1000                   # rows per training message
RULES = ("cumulative", "fobos")
START_TIMEOUT = 20.0                # seconds for a child process to be ready
ECHO_PREDICTION = 0.25


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


# ======================================================================
# child processes: producer and echo server (this file, hidden first argument)

def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _stop_flag() -> list[bool]:
    flag = [False]

    def handler(signum, frame):
        flag[0] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return flag


def producer_role(argv: list[str]) -> int:
    """Load the rows, cut them into batches, say "ready", wait for "go" on
    stdin, send (once, or in a loop until SIGTERM / --seconds), report."""
    p = argparse.ArgumentParser(prog="bench_daemon.py _producer")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--data", required=True, help="folder of the rows' .npy arrays")
    p.add_argument("--name", default="bench")
    p.add_argument("--loop", action="store_true", help="send the rows over and over")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="with --loop: stop after this long (0: at SIGTERM only)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="hard bound on sending")
    p.add_argument("--deliver", type=float, default=120.0,
                   help="seconds to wait for the queued messages at the end (0: drop them)")
    args = p.parse_args(argv)
    stop = _stop_flag()

    from onlinel1 import Batch
    from onlinel1.client import Producer

    d = pathlib.Path(args.data)
    batch = Batch(*(np.load(d / f"{name}.npy") for name in ("indptr", "keys", "values", "labels")))
    slices = [batch.slice(i, i + BATCH_ROWS) for i in range(0, batch.n_rows, BATCH_ROWS)]
    producer = Producer(args.endpoint, batch_size=BATCH_ROWS, producer=args.name,
                        send_timeout=60.0)
    _emit({"event": "ready", "rows": batch.n_rows, "messages": len(slices)})
    if sys.stdin.readline().strip() != "go":
        producer.close(linger=0, flush=False)
        return 1
    cpu0 = time.process_time()
    t_first = time.monotonic()
    hard = t_first + args.max_seconds
    soft = t_first + args.seconds if args.loop and args.seconds > 0 else hard
    if not args.loop:
        for s in slices:
            producer.send_batch(s)
    else:
        i = 0
        while not stop[0]:
            producer.send_batch(slices[i % len(slices)])
            i += 1
            if time.monotonic() >= soft:
                break
    t_sent = time.monotonic()
    if args.deliver > 0:
        producer.close(linger=args.deliver)
    else:
        producer.close(linger=0, flush=False)
    _emit({"event": "done", "t_first_send": t_first, "t_sent": t_sent,
           "t_closed": time.monotonic(), "examples_sent": producer.examples_sent,
           "messages": producer.seq, "cpu_s": time.process_time() - cpu0})
    return 0


def echo_role(argv: list[str]) -> int:
    """A bare ROUTER: receive a request, send one fixed reply; nothing else."""
    p = argparse.ArgumentParser(prog="bench_daemon.py _echo")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--max-seconds", type=float, default=600.0)
    args = p.parse_args(argv)
    stop = _stop_flag()

    import msgpack
    import zmq

    # Shaped like the daemon's reply to a one-row predict (without the id,
    # which the Client accepts: only one request is in flight).
    reply = msgpack.packb({"v": 1, "ok": True, "result": {"predictions": [ECHO_PREDICTION]}})
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.RCVTIMEO, 100)     # look at the stop flag 10 times a second
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(args.endpoint)
    _emit({"event": "ready"})
    deadline = time.monotonic() + args.max_seconds
    served = 0
    try:
        while not stop[0] and time.monotonic() < deadline:
            try:
                parts = sock.recv_multipart()
            except zmq.Again:
                continue
            sock.send_multipart([*parts[:-1], reply])
            served += 1
    finally:
        sock.close()
        ctx.term()
    _emit({"event": "done", "served": served})
    return 0


# ======================================================================
# the parent side: starting, talking to and stopping children

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Child:
    """A child process: JSON lines on its stdout, lines to its stdin, its
    stderr in a log file; ``stop()`` terminates and reaps it."""

    def __init__(self, name: str, argv: list[str], log_dir: pathlib.Path,
                 talk: bool = False) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE if talk else subprocess.DEVNULL,
                                         stdout=subprocess.PIPE if talk else subprocess.DEVNULL,
                                         stderr=log, env=env, cwd=str(REPO))
        self.pid = self.proc.pid
        self._buf = b""

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def _dead(self, what: str) -> BenchError:
        return BenchError(f"{self.name} (pid {self.pid}) {what}; exit code "
                          f"{self.proc.poll()}; its log ({self.log_path}):\n{self.log_tail()}")

    def read_event(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._dead(f"said nothing within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise self._dead("closed its output")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def say(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise self._dead("exited")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; always reaped."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return self.proc.returncode


class Children:
    """Every child started, stopped (and reaped) at the end whatever happens."""

    def __init__(self, log_dir: pathlib.Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.count = 0

    def start(self, name: str, argv: list[str], talk: bool = False) -> Child:
        self.count += 1
        child = Child(f"{self.count:02d}-{name}", argv, self.log_dir, talk)
        self.children.append(child)
        return child

    def stop(self, child: Child) -> int | None:
        rc = child.stop()
        if child in self.children:
            self.children.remove(child)
        return rc

    def stop_all(self) -> None:
        while self.children:
            self.stop(self.children[-1])


class Daemon:
    """``python -m onlinel1 serve`` on two free loopback ports."""

    def __init__(self, children: Children, update: str, args) -> None:
        from onlinel1.client import Client, DaemonTimeout
        self.train_endpoint = f"tcp://{HOST}:{free_port()}"
        self.request_endpoint = f"tcp://{HOST}:{free_port()}"
        self.argv = [sys.executable, "-m", "onlinel1", "serve",
                     "--train-endpoint", self.train_endpoint,
                     "--request-endpoint", self.request_endpoint,
                     "--log-level", "warning",
                     "--update", update, "--l1", repr(args.l1), "--eta0", repr(args.eta0),
                     *shlex.split(args.daemon_args)]
        self.children = children
        self.child = children.start(f"daemon-{update}", self.argv)
        self.pid = self.child.pid
        self.client = Client(self.request_endpoint, timeout=10.0)
        deadline = time.monotonic() + START_TIMEOUT
        probe = Client(self.request_endpoint, timeout=0.5)
        try:
            while True:
                self.child.check_alive()
                try:
                    probe.health()
                    break
                except DaemonTimeout:
                    if time.monotonic() > deadline:
                        raise self.child._dead(f"did not answer health within "
                                               f"{START_TIMEOUT:.0f} s") from None
        finally:
            probe.close()

    def stats(self) -> dict:
        return self.client.stats()

    def wait_examples(self, n: int, timeout: float, poll: float,
                      max_poll: float = 0.05) -> tuple[float, dict, int]:
        """Poll ``stats`` until ``examples >= n``; (time seen, stats, polls).

        A ``stats`` request costs the daemon's loop time (it counts the
        non-zero weights), so the interval adapts: half the time the rest
        should take at the rate seen so far, between ``poll`` and
        ``max_poll`` seconds.  The moment all is learned is thus seen at
        most about ``poll`` late, with few requests."""
        start = time.monotonic()
        deadline = start + timeout
        first = None
        polls = 0
        while True:
            stats = self.client.stats()
            now = time.monotonic()
            polls += 1
            examples = stats["examples"]
            if examples >= n:
                return now, stats, polls
            if now > deadline:
                raise BenchError(f"the daemon learned {examples:,} of {n:,} examples "
                                 f"in {timeout:.0f} s; stats: {stats}")
            self.child.check_alive()
            if first is None or examples <= first[1]:
                first = first or (now, examples)
                wait = poll
            else:
                rate = (examples - first[1]) / (now - first[0])
                wait = (n - examples) / rate / 2
            time.sleep(min(max(wait, poll), max_poll))

    def close(self) -> int | None:
        self.client.close()
        rc = self.children.stop(self.child)
        if rc != 0:
            raise self.child._dead("did not stop cleanly on SIGTERM")
        return rc


def start_producer(children: Children, daemon: Daemon, data_dir: pathlib.Path, name: str,
                   extra: list[str] = ()) -> Child:
    child = children.start(name, [sys.executable, str(pathlib.Path(__file__).resolve()),
                                  "_producer", "--endpoint", daemon.train_endpoint,
                                  "--data", str(data_dir), "--name", name, *extra], talk=True)
    event = child.read_event(START_TIMEOUT + 60)
    if event.get("event") != "ready":
        raise BenchError(f"{name}: unexpected {event}")
    return child


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat, all cores)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)        # idle + iowait
    busy = sum(values[:8]) - idle                                   # guest is inside user
    return busy / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """How many cores processes other than ``pids`` (this benchmark's) kept
    busy between construction and ``stop()``: the machine's busy time minus
    ours, per second.  The benchmark wants an otherwise idle machine; this
    says whether it had one."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = list(pids)
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        self.own0 = {pid: self._cpu(pid) for pid in self.pids}
        self.reaped0 = self._reaped()

    @staticmethod
    def _reaped() -> float:
        """CPU of this process's children already waited for (e.g. VW)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            return cpu_seconds(pid)
        except OSError:
            return 0.0

    def stop(self) -> float:
        seconds = time.monotonic() - self.t0
        busy = machine_busy_seconds() - self.busy0
        own = sum(self._cpu(pid) - cpu0 for pid, cpu0 in self.own0.items())
        own += self._reaped() - self.reaped0
        return max(0.0, busy - own) / seconds if seconds > 0 else 0.0


def idle_check(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes over ``seconds`` before starting."""
    watch = CpuWatch([os.getpid()])
    time.sleep(seconds)
    return watch.stop()


# ======================================================================
# data

def load_rows(args):
    """bench_learner's Criteo rows, and the 'field=value' name of every column."""
    from bench_learner import CRITEO_FILE, criteo_key, load_criteo
    data = load_criteo(args.data, args.rows, args.seed)
    names = [f"I{j}" for j in range(1, 14)] + [f"C{j}" for j in range(1, 27)]
    name_of: dict[int, str] = {}
    with open(args.data / CRITEO_FILE, encoding="utf-8") as f:
        for line in f:
            for n, v in zip(names, line.rstrip("\n").split("\t")[1:]):
                if v:
                    feature = f"{n}={v}"
                    name_of[criteo_key(feature)] = feature
    column_names = [name_of[int(k)] for k in data.keys_of_column]
    return data, column_names


def save_rows(batch, directory: pathlib.Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("indptr", "keys", "values", "labels"):
        np.save(directory / f"{name}.npy", getattr(batch, name))


def write_vw(data, column_names: list[str], path: pathlib.Path) -> None:
    X = data.X
    indptr = X.indptr.tolist()
    cols = X.indices.tolist()
    labels = ["1" if y > 0 else "-1" for y in data.y.tolist()]
    with open(path, "w", encoding="utf-8") as f:
        for i, label in enumerate(labels):
            f.write(f"{label} |c {' '.join([column_names[c] for c in cols[indptr[i]:indptr[i + 1]]])}\n")


# ======================================================================
# 1. ingest

def kernel_rates(opts: dict, batch, slice_nnz: int, repeats: int) -> dict:
    """Seconds, best of ``repeats``, of three in-process ways to learn the rows:

    * ``whole``: ``Learner.learn(batch)`` over the whole batch;
    * ``sliced``: as the daemon cuts them: 1000-row batches, each checked
      once, learned in calls of at most MAX_SLICES_PER_CALL x ``slice_nnz``
      features that poll a descriptor every ``slice_nnz`` features
      (``Learner.learn(batch, check=False, rows=(start, stop), wake=...)``,
      as the daemon calls it; here the descriptor is a pipe that stays
      empty, as the request socket does without requests);
    * ``decoded``: the same, each 1000-row batch first encoded as the
      producer's message (before timing) and decoded with the daemon's
      ``protocol.decode_message`` / ``decode_batch`` (timed): the daemon's
      message path without ZeroMQ and without the other processes.
    """
    import msgpack

    from bench_learner import best_of
    from onlinel1 import Learner
    from onlinel1._kernels.csr import slice_end
    from onlinel1.client import encode_csr
    from onlinel1.options import LearnerOptions
    from onlinel1.server import protocol
    from onlinel1.server.daemon import MAX_SLICES_PER_CALL

    known = {f.name for f in dataclasses.fields(LearnerOptions)}
    if set(opts) - known:
        raise BenchError(f"the daemon reports learner options this process does not know "
                         f"({', '.join(sorted(set(opts) - known))}): onlinel1 changed on disk "
                         f"while the benchmark ran; run it again")
    parts = [batch.slice(i, i + BATCH_ROWS) for i in range(0, batch.n_rows, BATCH_ROWS)]
    frames = [msgpack.packb({"v": 1, "op": "train", "seq": i + 1, "producer": "bench",
                             "csr": encode_csr(part)}) for i, part in enumerate(parts)]

    def whole():
        learner = Learner(**opts)
        learner.learn(batch)
        return learner

    quiet, writer = os.pipe()           # never written: never readable
    wake = (quiet, slice_nnz)
    budget = MAX_SLICES_PER_CALL * slice_nnz

    def learn_sliced(learner, part):
        learner.check(part)
        indptr, n, start = part.indptr, part.n_rows, 0
        while start < n:
            stop = slice_end(indptr, start, budget)
            start += learner.learn(part, check=False, rows=(start, stop), wake=wake).rows

    def sliced():
        learner = Learner(**opts)
        for part in parts:
            learn_sliced(learner, part)
        return learner

    def decoded():
        learner = Learner(**opts)
        for frame in frames:
            msg = protocol.decode_message(memoryview(frame), 1 << 30)
            learn_sliced(learner, protocol.decode_batch(msg, need_labels=True))
        return learner

    watch = CpuWatch([os.getpid()])
    out = {name: best_of(repeats, run)[0]
           for name, run in (("whole", whole), ("sliced", sliced), ("decoded", decoded))}
    out["other"] = watch.stop()
    os.close(quiet)
    os.close(writer)
    del frames
    return out


def daemon_ingest_once(children: Children, rule: str, data_dir: pathlib.Path, n: int,
                       args) -> dict:
    daemon = Daemon(children, rule, args)
    try:
        opts = daemon.client.config()["learner"]
        producer = start_producer(children, daemon, data_dir, f"producer-ingest-{rule}")
        try:
            cpu0 = cpu_seconds(daemon.pid)
            watch = CpuWatch([os.getpid(), daemon.pid, producer.pid])
            producer.say("go")
            t_done, stats, polls = daemon.wait_examples(n, timeout=max(60.0, n / 20_000),
                                                        poll=args.poll_ms / 1000)
            daemon_cpu = cpu_seconds(daemon.pid) - cpu0
            other = watch.stop()
            done = producer.read_event(120)
        finally:
            children.stop(producer)
        if stats["examples"] != n or stats["rejected"]:
            raise BenchError(f"ingest {rule}: sent {n:,}, daemon learned "
                             f"{stats['examples']:,}, rejected {stats['rejected']}")
        seconds = t_done - done["t_first_send"]
        return dict(seconds=seconds, send_seconds=done["t_sent"] - done["t_first_send"],
                    producer_cpu=done["cpu_s"], opts=opts, stats=stats,
                    daemon_cpu=daemon_cpu, polls=polls, other=other)
    finally:
        daemon.close()


VW_SCRIPT = """\
import sys, time
t0 = time.perf_counter()
import vowpalwabbit
t1 = time.perf_counter()
ws = vowpalwabbit.Workspace(sys.argv[1])
ws.finish()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def vw_once(path: pathlib.Path, l1: float) -> dict:
    command = f"-d {path} --loss_function logistic --l1 {l1!r} -b 24 --quiet"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", VW_SCRIPT, command], capture_output=True,
                          text=True, timeout=600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"vowpalwabbit failed ({done.returncode}): {done.stderr[-2000:]}")
    import_s, learn_s = map(float, done.stdout.split())
    return dict(wall=wall, inside=learn_s, command=command)


def bench_ingest(children: Children, data, data_dir: pathlib.Path, vw_path: pathlib.Path,
                 args) -> dict:
    from onlinel1.server.config import DaemonConfig
    slice_nnz = DaemonConfig().slice_nnz
    n = data.n_rows
    from onlinel1.server.daemon import MAX_SLICES_PER_CALL
    out = {"rules": [], "slice_nnz": slice_nnz, "max_slices": MAX_SLICES_PER_CALL}
    for rule in RULES:
        runs = []
        for r in range(args.repeats):
            runs.append(daemon_ingest_once(children, rule, data_dir, n, args))
            print(f"  daemon {rule:10s} run {r + 1}: {runs[-1]['seconds']:.3f} s "
                  f"({n / runs[-1]['seconds']:,.0f} examples/s; producer done sending after "
                  f"{runs[-1]['send_seconds']:.3f} s; other processes kept "
                  f"{runs[-1]['other']:.2f} cores busy)", flush=True)
        best = min(runs, key=lambda x: x["seconds"])
        k = kernel_rates(best["opts"], data.batch, slice_nnz, args.repeats)
        print(f"  in-process {rule:10s}: learn(batch) {k['whole']:.3f} s, daemon's slicing "
              f"{k['sliced']:.3f} s, + decoding {k['decoded']:.3f} s (other processes kept "
              f"{k['other']:.2f} cores busy)", flush=True)
        out["rules"].append(dict(rule=rule, runs=runs, best=best, kernel=k["whole"],
                                 kernel_sliced=k["sliced"], kernel_decoded=k["decoded"],
                                 kernel_other=k["other"]))
    vw_runs = []
    watch = CpuWatch([os.getpid()])
    for r in range(args.repeats):
        vw_runs.append(vw_once(vw_path, args.l1))
        print(f"  vowpalwabbit run {r + 1}: process {vw_runs[-1]['wall']:.3f} s, inside "
              f"{vw_runs[-1]['inside']:.3f} s", flush=True)
    out["vw"] = dict(other=watch.stop(), wall=min(x["wall"] for x in vw_runs),
                     inside=min(x["inside"] for x in vw_runs), command=vw_runs[0]["command"])
    return out


# ======================================================================
# 2. latency

def request_payloads(batch, count: int) -> tuple[list, list]:
    """One-row requests: (csr Batches, rows lists with integer keys)."""
    m = min(count, batch.n_rows)
    csr = [batch.slice(i, i + 1) for i in range(m)]
    rows = []
    for b in csr:
        rows.append([{"features": dict(zip(b.keys.tolist(), b.values.tolist()))}])
    return csr, rows


def timed_requests(client, payloads: list, warmup: int, count: int, max_seconds: float,
                   expect: float | None = None) -> np.ndarray:
    """Latencies in microseconds of ``count`` sequential predict calls."""
    for i in range(warmup):
        result = client.predict(payloads[i % len(payloads)])
    if expect is not None and result["predictions"] != [expect]:
        raise BenchError(f"the echo answered {result}")
    if expect is None and not (0.0 < result["predictions"][0] < 1.0):
        raise BenchError(f"the daemon answered {result}")
    times = np.empty(count, dtype=np.int64)
    gc.collect()
    gc.disable()
    deadline = time.perf_counter() + max_seconds
    done = count
    try:
        for i in range(count):
            payload = payloads[(warmup + i) % len(payloads)]
            t0 = time.perf_counter_ns()
            client.predict(payload)
            times[i] = time.perf_counter_ns() - t0
            if time.perf_counter() > deadline:
                done = i + 1
                break
    finally:
        gc.enable()
    return times[:done] / 1000.0


def summary(us: np.ndarray) -> dict:
    return dict(n=us.size, p50=float(np.percentile(us, 50)), p90=float(np.percentile(us, 90)),
                p99=float(np.percentile(us, 99)), p999=float(np.percentile(us, 99.9)),
                max=float(us.max()), mean=float(us.mean()))


def bench_latency(children: Children, data, data_dir: pathlib.Path, args) -> dict:
    from onlinel1.client import Client
    csr, rows = request_payloads(data.batch, max(args.requests, 1000))
    encodings = (("csr", csr), ("rows", rows))
    results: list[dict] = []
    daemon = Daemon(children, "cumulative", args)
    echo = None
    try:
        # Train the daemon on the rows once.
        producer = start_producer(children, daemon, data_dir, "producer-pretrain")
        try:
            producer.say("go")
            daemon.wait_examples(data.n_rows, timeout=max(60.0, data.n_rows / 20_000), poll=0.05)
            producer.read_event(120)
        finally:
            children.stop(producer)
        trained = daemon.stats()
        echo_endpoint = f"tcp://{HOST}:{free_port()}"
        echo = children.start("echo", [sys.executable, str(pathlib.Path(__file__).resolve()),
                                       "_echo", "--endpoint", echo_endpoint], talk=True)
        if echo.read_event(START_TIMEOUT).get("event") != "ready":
            raise BenchError("the echo server did not start")
        d_client = Client(daemon.request_endpoint, timeout=5.0)
        e_client = Client(echo_endpoint, timeout=5.0)

        def measure(load: str, pids: list[int]) -> None:
            for target, client, expect in (("daemon", d_client, None),
                                           ("echo", e_client, ECHO_PREDICTION)):
                for enc, payloads in encodings:
                    before = daemon.stats()["examples"]
                    t0 = time.monotonic()
                    watch = CpuWatch(pids)
                    us = timed_requests(client, payloads, args.warmup, args.requests,
                                        args.max_seconds, expect)
                    other = watch.stop()
                    t1 = time.monotonic()
                    learned = daemon.stats()["examples"] - before
                    row = dict(target=target, load=load, encoding=enc, **summary(us),
                               learn_rate=learned / (t1 - t0), other=other)
                    results.append(row)
                    print(f"  {target:6s} {load:5s} {enc:4s}: p50 {row['p50']:7.1f} us, p99 "
                          f"{row['p99']:7.1f} us, p99.9 {row['p999']:7.1f} us (daemon learned "
                          f"{row['learn_rate']:,.0f} examples/s meanwhile; other processes kept "
                          f"{other:.2f} cores busy)", flush=True)

        # What one stats request costs against a cheap request (health).
        costs = {}
        for op in ("health", "stats"):
            us = []
            for _ in range(200):
                t0 = time.perf_counter_ns()
                d_client.request(op)
                us.append((time.perf_counter_ns() - t0) / 1000)
            costs[op] = float(np.median(us))
        measure("idle", [os.getpid(), daemon.pid, echo.pid])
        load = start_producer(children, daemon, data_dir, "producer-load",
                              ["--loop", "--deliver", "0", "--max-seconds",
                               str(args.max_seconds * 8 + 60)])
        try:
            load.say("go")
            # Wait until the daemon is busy (its queue filled).
            t_end = time.monotonic() + 10
            first = daemon.stats()["examples"]
            while daemon.stats()["examples"] < first + 20 * BATCH_ROWS and time.monotonic() < t_end:
                time.sleep(0.01)
            measure("load", [os.getpid(), daemon.pid, echo.pid, load.pid])
            load.check_alive()
        finally:
            children.stop(load)
        d_client.close()
        e_client.close()
    finally:
        if echo is not None:
            children.stop(echo)
        daemon.close()
    return dict(results=results, trained=trained["examples"], costs=costs,
                store_features=trained["store_features"])


# ======================================================================
# 3. memory under overload

def message_bytes(batch) -> int:
    """Size of one training message of the first BATCH_ROWS rows."""
    import msgpack

    from onlinel1.client import encode_csr
    return len(msgpack.packb({"v": 1, "op": "train", "seq": 1, "producer": "bench",
                              "csr": encode_csr(batch.slice(0, BATCH_ROWS))}))


def bench_overload(children: Children, data, data_dir: pathlib.Path, args) -> dict:
    from onlinel1.server.config import DaemonConfig
    daemon = Daemon(children, "cumulative", args)
    producers: list[Child] = []
    samples: list[tuple[float, int, int]] = []     # (t, rss KiB, examples learned)
    try:
        for k in range(args.overload_producers):
            producers.append(start_producer(
                children, daemon, data_dir, f"producer-overload-{k + 1}",
                ["--loop", "--seconds", str(args.overload_seconds),
                 "--max-seconds", str(args.overload_seconds + 30), "--deliver", "120"]))
        rss_idle = rss_kib(daemon.pid)
        cpu0 = cpu_seconds(daemon.pid)
        watch = CpuWatch([os.getpid(), daemon.pid] + [p.pid for p in producers])
        for p in producers:
            p.say("go")
        t0 = time.monotonic()
        done_events: list[dict] = []
        pending = list(producers)
        hard = t0 + args.overload_seconds + 150
        next_sample = t0
        while pending:
            now = time.monotonic()
            if now > hard:
                raise BenchError("the overload producers did not finish in time")
            if now >= next_sample:
                samples.append((now - t0, rss_kib(daemon.pid), daemon.stats()["examples"]))
                next_sample += 0.5
            for p in list(pending):
                ready, _, _ = select.select([p.proc.stdout.fileno()], [], [], 0)
                if ready or b"\n" in p._buf:
                    done_events.append(p.read_event(5))
                    pending.remove(p)
            time.sleep(max(0.0, min(0.05, next_sample - time.monotonic())))
        t_stop = time.monotonic()
        sent = sum(e["examples_sent"] for e in done_events)
        # Drain: the queue empties, every example sent is learned.
        t_drained, stats, _ = daemon.wait_examples(sent, timeout=120, poll=0.05)
        samples.append((t_drained - t0, rss_kib(daemon.pid), stats["examples"]))
        daemon_cpu = cpu_seconds(daemon.pid) - cpu0
        other = watch.stop()
        stats = daemon.stats()
        push = [(e["t_sent"] - e["t_first_send"], e["cpu_s"], e["examples_sent"])
                for e in done_events]
    finally:
        for p in producers:
            children.stop(p)
        daemon.close()
    window = max(s for s, _, _ in push)
    in_window = [s for s in samples if s[0] <= window]
    rss = np.array([s[1] for s in samples])
    return dict(samples=samples, rss_idle=rss_idle, rss=rss, sent=sent, stats=stats, push=push,
                learned_in_window=(in_window[-1][2] - in_window[0][2]) /
                (in_window[-1][0] - in_window[0][0]) if len(in_window) > 1 else float("nan"),
                window=window, stop=t_stop - t0, drained=t_drained - t0, daemon_cpu=daemon_cpu,
                message_bytes=message_bytes(data.batch), hwm=DaemonConfig().high_water_mark,
                other=other)


# ======================================================================
# report

def versions() -> str:
    import msgpack
    import vowpalwabbit
    import zmq
    from bench_learner import onlinel1_commit
    vw = getattr(vowpalwabbit, "__version__", "?")
    return (f"onlinel1 @ {onlinel1_commit()}, numpy {np.__version__}, pyzmq {zmq.__version__} "
            f"(libzmq {zmq.zmq_version()}), msgpack {'.'.join(map(str, msgpack.version))}, "
            f"vowpalwabbit {vw}")


def verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def report_ingest(res: dict, data, args) -> list[str]:
    n = data.n_rows
    out = ["", "## 1. Ingest", "",
           f"{n:,} rows ({data.nnz / n:.1f} non-zeros a row) sent once by one producer "
           f"process (`Producer`, batch_size {BATCH_ROWS}, columnar `csr`, float64 values; "
           f"{-(-n // BATCH_ROWS)} messages); the rows were loaded and cut into batches before "
           f"timing. Daemon: from the producer's first send until `stats` shows all {n:,} "
           f"examples learned (polled by a Client in this process, adaptively: every "
           f"{args.poll_ms:g} to 50 ms, the shorter the nearer the end, since each `stats` costs "
           f"the daemon's loop time; "
           f"{', '.join(str(x['polls']) for r in res['rules'] for x in r['runs'])} polls in the "
           f"runs); a fresh daemon each run, best of {args.repeats}. In-process: "
           f"`Learner(...).learn(batch)` over the whole batch in this process, same options (read "
           f"from the daemon's `config`), best of {args.repeats} after a warm-up, fresh model "
           f"each.", "",
           "| rule | daemon end to end (examples/s) | in-process `learn(batch)` (examples/s) "
           "| ratio (target >= 0.7) |", "|---|---:|---:|---:|"]
    for r in res["rules"]:
        b = r["best"]
        d_rate, k_rate = n / b["seconds"], n / r["kernel"]
        ratio = d_rate / k_rate
        out.append(f"| {r['rule']} (origin {b['opts']['origin']}) | {d_rate:,.0f} "
                   f"({b['seconds']:.3f} s) | {k_rate:,.0f} ({r['kernel']:.3f} s) | "
                   f"{ratio:.3f} ({verdict(ratio >= 0.7)}) |")
    out += ["", "Where the difference goes: the same rows learned in this process the way the "
            f"daemon does it, step by step ('sliced': {BATCH_ROWS}-row batches, each checked "
            f"once and learned in calls of at most {res['max_slices']} x "
            f"{res['slice_nnz']:,} features that poll a descriptor (an empty pipe) every "
            f"{res['slice_nnz']:,} features, as the daemon polls its request socket; "
            "'+ decoded': also each message decoded from its msgpack frame with the daemon's "
            "`protocol.decode_message` / `decode_batch`), as examples/s and as a ratio to "
            "`learn(batch)`; then the daemon (ZeroMQ over loopback TCP, another process "
            "producing, the same 2 cores). 'daemon CPU / wall': CPU time of the daemon "
            "process (all threads, /proc/PID/stat, 10 ms ticks) over the timed interval; "
            "'producer done': when the producer's last send returned.", "",
            "| rule | `learn(batch)` | sliced | + decoded | daemon | daemon CPU / wall | "
            "producer done |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rules"]:
        b = r["best"]
        k = n / r["kernel"]
        cells = [f"{n / t:,.0f} ({n / t / k:.2f})" for t in
                 (r["kernel"], r["kernel_sliced"], r["kernel_decoded"], b["seconds"])]
        out.append(f"| {r['rule']} | {' | '.join(cells)} | "
                   f"{b['daemon_cpu'] / b['seconds']:.2f} | {b['send_seconds']:.3f} s |")
    out += ["", "Other processes on the machine (not this benchmark's) kept busy, on average, "
            + "; ".join(f"{r['rule']}: {r['best']['other']:.2f} cores during the best daemon "
                        f"run, {r['kernel_other']:.2f} during the in-process timings"
                        for r in res["rules"])
            + f"; {res['vw']['other']:.2f} during the VW runs."]
    vw = res["vw"]
    best_daemon = max(n / r["best"]["seconds"] for r in res["rules"])
    worst_daemon = min(n / r["best"]["seconds"] for r in res["rules"])
    out += ["", "All runs (seconds, first send to all learned): " + "; ".join(
        f"{r['rule']}: " + ", ".join(f"{x['seconds']:.3f}" for x in r["runs"])
        for r in res["rules"]) + ".", "",
        "Learner options (as the daemon reports them): " + "; ".join(
            f"{r['rule']}: `{json.dumps(r['best']['opts'], sort_keys=True)}`"
            for r in res["rules"]) + ".", "",
        "Vowpal Wabbit reading the same rows from a local text file "
        f"(`label |c field=value ...`, {vw['bytes'] / 1e6:.0f} MB, in the page cache), "
        f"separate process, `vowpalwabbit.Workspace(\"{vw['command']}\")`, best of "
        f"{args.repeats}:", "",
        "| contender | seconds | examples/s |", "|---|---:|---:|",
        f"| VW, whole process (interpreter start, import, read, learn, finish) | "
        f"{vw['wall']:.3f} | {n / vw['wall']:,.0f} |",
        f"| VW, inside the process (Workspace(...) to finish()) | {vw['inside']:.3f} | "
        f"{n / vw['inside']:,.0f} |",
        f"| onlinel1 daemon, slower / faster rule | | {worst_daemon:,.0f} / {best_daemon:,.0f} |",
        "",
        f"Daemon ingest is {'above' if worst_daemon > n / vw['inside'] else 'NOT above'} VW "
        f"reading a file (slower rule vs VW inside the process: "
        f"{worst_daemon / (n / vw['inside']):.2f}x). VW learns with its default "
        f"adaptive, normalised, invariant updates and parses in a second thread."]
    return out


GOALS = "the team's transport goals and the issue"


def report_latency(res: dict, args) -> list[str]:
    rows = res["results"]

    def get(target, load, enc):
        return next(r for r in rows if r["target"] == target and r["load"] == load
                    and r["encoding"] == enc)

    out = ["", "## 2. Prediction latency over loopback", "",
           f"One Criteo row per `predict` request, sequential request/reply with "
           f"`onlinel1.client.Client` (DEALER) in this process: {args.warmup} warm-up "
           f"requests, then {args.requests:,} timed (bounded to {args.max_seconds:g} s), "
           f"`time.perf_counter_ns` around `Client.predict` (so the client's encoding of the "
           f"request and decoding of the reply are inside; its GC is off while timing). "
           f"Encodings: `csr` = a one-row `Batch` sent columnar; `rows` = "
           f"`[{{\"features\": {{key: 1.0, ...}}}}]` with integer (uint64) keys, sent "
           f"row-wise. Daemon: update cumulative, trained on the {res['trained']:,} rows "
           f"first. Echo: a bare pyzmq ROUTER in its own process (`recv_multipart`, "
           f"`send_multipart` of one fixed reply shaped like the daemon's), same client code. "
           f"\"load\": a producer process pushes batches as fast as the high-water mark lets "
           f"it during the measurement; for the echo rows the daemon and that producer run "
           f"beside it (same CPU load). The machine has {os.cpu_count()} cores: daemon, "
           f"producer, client (and echo) share them.", "",
           "| server | load | encoding | p50 (us) | p90 (us) | p99 (us) | p99.9 (us) | max (us) "
           "| mean (us) | requests | daemon learned meanwhile (examples/s) | other processes "
           "(cores) |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['target']} | {r['load']} | {r['encoding']} | {r['p50']:.1f} | "
                   f"{r['p90']:.1f} | {r['p99']:.1f} | {r['p999']:.1f} | {r['max']:.1f} | "
                   f"{r['mean']:.1f} | {r['n']:,} | {r['learn_rate']:,.0f} | {r['other']:.2f} |")
    out += ["", f"Goals ({GOALS}):", "",
            "| encoding | p50 idle / echo p50 idle (<= 1.3) | p99 load / echo p99 idle (<= 3) "
            "| p99 load / echo p99 load | p50 idle (<= 150 us) | p99 load (<= 2,000 us) |",
            "|---|---:|---:|---:|---:|---:|"]
    for enc in ("csr", "rows"):
        di, dl = get("daemon", "idle", enc), get("daemon", "load", enc)
        ei, el = get("echo", "idle", enc), get("echo", "load", enc)
        r1 = di["p50"] / ei["p50"]
        r2 = dl["p99"] / ei["p99"]
        r3 = dl["p99"] / el["p99"]
        out.append(f"| {enc} | {r1:.2f} ({verdict(r1 <= 1.3)}) | {r2:.2f} ({verdict(r2 <= 3)}) | "
                   f"{r3:.2f} ({verdict(r3 <= 3)}) | {di['p50']:.0f} ({verdict(di['p50'] <= 150)}) "
                   f"| {dl['p99']:.0f} ({verdict(dl['p99'] <= 2000)}) |")
    out += ["", f"Other requests on the idle daemon ({res['store_features']:,} features stored), "
            f"median of 200 round trips: `health` {res['costs']['health']:.0f} us, `stats` "
            f"{res['costs']['stats']:.0f} us (it counts the non-zero weights over the whole "
            f"store)."]
    return out


def report_overload(res: dict, args) -> list[str]:
    rss = res["rss"] / 1024.0
    samples = res["samples"]
    stats = res["stats"]
    ok_count = stats["examples"] == res["sent"]
    push_rate = sum(s[2] for s in res["push"]) / res["window"]
    cpu_frac = [c / w for w, c, _ in res["push"]]
    start_rss, end_rss = samples[0][1] / 1024, [s for s in samples if s[0] <= res["window"]][-1][1] / 1024
    out = ["", "## 3. Memory under overload", "",
           f"{args.overload_producers} producer process(es), each pushing the rows in a loop "
           f"({BATCH_ROWS}-row columnar batches) for {args.overload_seconds:g} s against a fresh "
           f"daemon (update cumulative, high-water mark 64 messages on both sides); at the end "
           f"each waits for its queued messages to be delivered. Daemon VmRSS "
           f"(/proc/PID/status) and `stats` sampled every 0.5 s ({len(samples)} samples).", "",
           "| daemon VmRSS | MiB |", "|---|---:|",
           f"| idle, before the producers started | {res['rss_idle'] / 1024:.1f} |",
           f"| first sample (producers starting) | {start_rss:.1f} |",
           f"| last sample of the push window ({res['window']:.1f} s) | {end_rss:.1f} |",
           f"| after the queue drained ({res['drained']:.1f} s) | {samples[-1][1] / 1024:.1f} |",
           f"| min / median / max over the run | {rss.min():.1f} / {np.median(rss):.1f} / "
           f"{rss.max():.1f} |", "",
           f"For scale: one training message of {BATCH_ROWS} rows is "
           f"{res['message_bytes'] / 1e6:.2f} MB; the daemon's receive high-water mark "
           f"({res['hwm']} messages) applies per connected producer, so its receive queues "
           f"can hold about {args.overload_producers} x {res['hwm']} x "
           f"{res['message_bytes'] / 1e6:.2f} MB = "
           f"{args.overload_producers * res['hwm'] * res['message_bytes'] / 2**20:.0f} MiB "
           f"(plus the kernel's TCP buffers).", "",
           "Held back, nothing dropped:", "",
           f"* examples sent by the producers: {res['sent']:,}; learned by the daemon after the "
           f"drain: {stats['examples']:,} ({'equal' if ok_count else '**DIFFERENT**'}); "
           f"`rejected`: {stats['rejected'] or 'empty'}; `errors`: {stats['errors'] or 'none'}.",
           f"* producers' send rate over the push window: {push_rate:,.0f} examples/s; daemon's "
           f"learn rate over the same window (stats samples): {res['learned_in_window']:,.0f} "
           f"examples/s (ratio {push_rate / res['learned_in_window']:.3f}).",
           f"* producers' CPU time / wall time while pushing: "
           f"{', '.join(f'{c:.2f}' for c in cpu_frac)} (below 1: they waited at the high-water "
           f"mark); the daemon's CPU time / wall time: "
           f"{res['daemon_cpu'] / res['drained']:.2f}; other processes on the machine kept "
           f"{res['other']:.2f} cores busy on average.", "",
           "RSS over time (every ~10 % of the run):", "",
           "| t (s) | VmRSS (MiB) | examples learned |", "|---:|---:|---:|"]
    step = max(1, len(samples) // 10)
    picked = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for t, kib, ex in picked:
        out.append(f"| {t:.1f} | {kib / 1024:.1f} | {ex:,} |")
    return out


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("_producer", "_echo"):
        role = producer_role if sys.argv[1] == "_producer" else echo_role
        return role(sys.argv[2:])
    from onlinel1.options import LearnerOptions
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                        help="the shared data sets folder (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=500_000,
                        help="tile the 7,200 Criteo rows to at least this many "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default: %(default)s)")
    parser.add_argument("--l1", type=float, default=LearnerOptions().l1,
                        help="L1 penalty for the daemon, the in-process Learner and VW "
                             "(default: the daemon's, %(default)s)")
    parser.add_argument("--eta0", type=float, default=LearnerOptions().eta0,
                        help="constant step size (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="ingest runs per contender; the best is reported "
                             "(default: %(default)s)")
    parser.add_argument("--poll-ms", type=float, default=2.0,
                        help="shortest stats polling interval while timing ingest, in ms "
                             "(default: %(default)s)")
    parser.add_argument("--requests", type=int, default=5000,
                        help="timed predict requests per measurement (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=200,
                        help="untimed requests before each measurement (default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="bound on the time of one latency measurement (default: "
                             "%(default)s)")
    parser.add_argument("--overload-seconds", type=float, default=60.0,
                        help="how long the producers push in the overload run "
                             "(default: %(default)s)")
    parser.add_argument("--overload-producers", type=int, default=2,
                        help="producer processes in the overload run (default: %(default)s)")
    parser.add_argument("--parts", nargs="+", choices=["ingest", "latency", "overload"],
                        default=["ingest", "latency", "overload"],
                        help="which measurements (default: all)")
    parser.add_argument("--daemon-args", default="", metavar="FLAGS",
                        help="more flags for every daemon, e.g. '--training-io-nice 0' "
                             "(default: none)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few seconds: 20,000 rows, 1 repeat, 300 "
                             "requests, 3 s of overload (explicit flags still win)")
    parser.add_argument("--out", type=pathlib.Path, nargs="?",
                        const=HERE / "results" / "daemon.md",
                        help="also write the report (Markdown) here; without a value: "
                             "benchmarks/results/daemon.md")
    args = parser.parse_args(argv)
    if args.quick:
        given = set(sys.argv[1:] if argv is None else argv)
        for flag, value in (("--rows", 20_000), ("--repeats", 1), ("--requests", 300),
                            ("--warmup", 50), ("--overload-seconds", 3.0),
                            ("--max-seconds", 10.0)):
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    for name in ("rows", "repeats", "requests", "overload_producers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 1 or args.poll_ms <= 0 or args.overload_seconds <= 0 \
            or args.max_seconds <= 0:
        parser.error("--warmup must be >= 1; --poll-ms, --overload-seconds and --max-seconds > 0")
    from bench_learner import CRITEO_FILE, machine
    if not (args.data / CRITEO_FILE).is_file():
        print(f"error: {args.data / CRITEO_FILE} not found; point --data at the shared data "
              f"sets folder", file=sys.stderr)
        return 2
    try:
        from onlinel1._kernels import sgd  # noqa: F401
    except ImportError as exc:
        print(f"error: cannot import the onlinel1 kernels ({exc}); build them with\n"
              f"  cd {REPO} && python setup.py build_ext --inplace", file=sys.stderr)
        return 2

    command = shlex.join(["python", os.path.relpath(__file__)] + sys.argv[1:]) \
        if argv is None else shlex.join(["python", "bench_daemon.py"] + list(argv))
    started = time.monotonic()
    load_before = os.getloadavg()
    other_before = idle_check(2.0)
    print(f"[machine] other processes kept {other_before:.2f} cores busy over 2 s before "
          f"starting (load average {load_before[0]:.2f})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_daemon-") as tmp:
        tmp = pathlib.Path(tmp)
        print("[data] loading the Criteo rows", flush=True)
        data, column_names = load_rows(args)
        data_dir = tmp / "rows"
        save_rows(data.batch, data_dir)
        print(f"[data] {data.description}", flush=True)
        children = Children(tmp)
        sections: list[str] = []
        try:
            if "ingest" in args.parts:
                vw_path = tmp / "rows.vw"
                write_vw(data, column_names, vw_path)
                print(f"[ingest] {data.n_rows:,} rows; VW file {vw_path.stat().st_size / 1e6:.0f} "
                      f"MB", flush=True)
                res = bench_ingest(children, data, data_dir, vw_path, args)
                res["vw"]["bytes"] = vw_path.stat().st_size
                vw_path.unlink()
                sections += report_ingest(res, data, args)
            if "latency" in args.parts:
                print("[latency]", flush=True)
                sections += report_latency(bench_latency(children, data, data_dir, args), args)
            if "overload" in args.parts:
                print(f"[overload] {args.overload_producers} producer(s) for "
                      f"{args.overload_seconds:g} s", flush=True)
                sections += report_overload(bench_overload(children, data, data_dir, args), args)
        finally:
            children.stop_all()
    report = [
        "# onlinel1 daemon: ingest, prediction latency, memory under overload",
        "",
        f"* date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"* machine: {machine()}; platform.machine()={platform.machine()}, "
        f"os.cpu_count()={os.cpu_count()} (every process of the benchmark shares these "
        f"{os.cpu_count()} cores)",
        f"* software: {versions()}",
        f"* command: `{command}` ({time.monotonic() - started:.0f} s)",
        f"* machine load: before starting, other processes kept {other_before:.2f} cores busy "
        f"(2 s sample; 1-min load average {load_before[0]:.2f}); 1-min load average at the "
        f"end {os.getloadavg()[0]:.2f}. Each measurement below says how busy other processes "
        f"kept the machine meanwhile (machine busy time from /proc/stat minus this "
        f"benchmark's processes); figures taken with other processes using a sizeable part "
        f"of the {os.cpu_count()} cores are not clean.",
        f"* data: {data.description}",
        f"* daemon: `python -m onlinel1 serve --train-endpoint tcp://127.0.0.1:P1 "
        f"--request-endpoint tcp://127.0.0.1:P2 --log-level warning --update RULE "
        f"--l1 {args.l1!r} --eta0 {args.eta0!r}"
        f"{' ' + args.daemon_args if args.daemon_args else ''}` (log loss, constant step, "
        f"intercept, training I/O thread's nice value: its defaults unless given), loopback "
        f"TCP only",
    ] + sections
    from bench_learner import write_report
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
