#!/usr/bin/env python3
"""Load generator for the onlinel1 daemon: producers, paced prediction
clients and misbehaving clients at once, with a JSON-lines report.

It starts a daemon (``python -m onlinel1 serve`` on free loopback ports,
its snapshot folder in a temporary directory) or attaches to one
(``--attach``), then runs, each in its own process (multiprocessing,
spawned):

* ``--producers`` N producers (``onlinel1.client.Producer``, each with its
  own ``producer=`` name, so every batch carries a ``seq``), pushing
  batches as fast as the daemon takes them (or at ``--train-rate``);
* ``--predictors`` M prediction clients (``onlinel1.client.Client``), each
  sending one-row ``predict`` requests at ``--rate`` requests/s, one at a
  time, recording every latency;
* ``--misbehaving`` K misbehaving clients, their kinds taken in turn from
  ``--misbehaving-kinds``: ``silent`` (a raw DEALER that sends predict
  requests and never reads a reply), ``garbage`` (bad frames on both
  sockets: not msgpack, wrong version, unknown op, bad batches, unknown
  model, ...; the training ones are counted, since the daemon must count
  each as rejected) and ``churn`` (connects, sends, disconnects, in a loop).

Every ``--interval`` seconds it writes one JSON line: examples sent (by the
producers) and learned (the daemon's ``stats``), predictions/s against the
target, the well-behaved clients' latency p50/p99/p99.9/max (numpy
percentiles of every latency of the interval, and a log-bucket histogram
that can be merged across intervals), their errors, the daemon's errors
and rejections, and its resident memory (VmRSS of /proc/PID/status,
sampled every ``--rss-every`` s).  At the end the producers deliver what
they queued, the daemon is given ``--drain-timeout`` s to learn it, and a
summary line says whether nothing was lost: every training frame sent
(the producers' batches and the garbage client's frames) is either learned
(``stats`` ``batches``) or counted as rejected (``rejected``); the examples
learned equal the examples the producers sent; each producer's last
``seq`` is the one the daemon recorded for it.  Counts are differences of
``stats`` between the start and the end, so an attached daemon must get no
other traffic meanwhile.

    python benchmarks/loadgen.py --duration 120 --producers 2 --predictors 2 \\
        --rate 200 --misbehaving 3 --out /tmp/load.jsonl

Exit code: 0 when the run completed with nothing lost and no error reply
(nor timeout) to a well-behaved client, 1 when it completed and one of
these failed, 2 when it could not run (the daemon died, a process of the
load generator failed).  ``benchmarks/bench_soak.py`` runs it for an hour
and writes the report.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import math
import multiprocessing as mp
import os
import pathlib
import platform
import queue
import shlex
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _load_data import LoadError, prepare_rows  # noqa: E402
from _load_roles import child_main  # noqa: E402

HOST = "127.0.0.1"
KINDS = ("silent", "garbage", "churn")
#: Log-bucket histogram of latencies: bucket i holds [2^(i/16), 2^((i+1)/16)) us.
HIST_PER_OCTAVE = 16


# ======================================================================
# the parent: the daemon, the processes, the intervals, the accounting

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class Daemon:
    """``python -m onlinel1 serve`` on two free loopback ports, its
    snapshot folder and log under ``workdir``; ``stop()`` reaps it."""

    def __init__(self, workdir: pathlib.Path, args) -> None:
        from onlinel1.client import Client, DaemonTimeout
        self.train = f"tcp://{HOST}:{free_port()}"
        self.request = f"tcp://{HOST}:{free_port()}"
        while self.request == self.train:
            self.request = f"tcp://{HOST}:{free_port()}"
        self.log_path = workdir / "daemon.log"
        self.argv = [sys.executable, "-m", "onlinel1", "serve",
                     "--train-endpoint", self.train, "--request-endpoint", self.request,
                     "--snapshot-dir", str(workdir / "snapshots"),
                     "--snapshot-every-seconds", str(args.snapshot_every_seconds),
                     "--log-level", "warning", *shlex.split(args.daemon_args)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log, env=env,
                                         cwd=str(ROOT))
        self.pid = self.proc.pid
        probe = Client(self.request, timeout=0.5)
        deadline = time.monotonic() + 30.0
        try:
            while True:
                self.check_alive()
                try:
                    probe.health()
                    return
                except DaemonTimeout:
                    if time.monotonic() > deadline:
                        raise LoadError(f"the daemon did not answer health within 30 s\n"
                                        f"{self.log_tail()}") from None
        finally:
            probe.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise LoadError(f"the daemon exited with code {self.proc.returncode}; its log "
                            f"({self.log_path}):\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (it writes its final snapshot), then SIGKILL after
        ``timeout`` s; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def counter_delta(after: dict | None, before: dict | None) -> dict:
    after, before = after or {}, before or {}
    out = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    return {k: v for k, v in sorted(out.items()) if v}


def rejected_delta(after: dict, before: dict) -> dict:
    """Rejected training frames between two ``stats``: the model's and
    the daemon's own (frames naming no model that exists)."""
    total = collections.Counter(counter_delta(after.get("rejected"), before.get("rejected")))
    total.update(counter_delta((after.get("daemon") or {}).get("rejected"),
                               (before.get("daemon") or {}).get("rejected")))
    return dict(sorted(total.items()))


def errors_delta(after: dict, before: dict) -> dict:
    total = collections.Counter(counter_delta(after.get("errors"), before.get("errors")))
    total.update(counter_delta((after.get("daemon") or {}).get("errors"),
                               (before.get("daemon") or {}).get("errors")))
    return dict(sorted(total.items()))


def account(before: dict, after: dict, producers: list[dict], garbage_done: list[dict]) -> dict:
    """Whether nothing was lost between two ``stats`` of the daemon.

    ``producers``: each producer's final ``{"name", "seq", "examples_sent",
    "undelivered"}``; ``garbage_done``: each garbage client's
    ``{"train_frames", "undelivered"}``.  Every training frame sent must be
    learned (``batches``) or counted as rejected; a ``numeric`` rejection
    is both (the batch was learned up to the bad row), so it counts once.
    """
    rejected = rejected_delta(after, before)
    good_frames = sum(p["seq"] for p in producers)
    bad_frames = sum(g["train_frames"] for g in garbage_done)
    learned_frames = after["batches"] - before["batches"] - rejected.get("numeric", 0)
    rejected_frames = sum(rejected.values())
    lost_frames = good_frames + bad_frames - learned_frames - rejected_frames
    # Rejections beyond the garbage client's frames are the producers' batches.
    good_rejected = max(0, rejected_frames - bad_frames)
    sent = sum(p["examples_sent"] for p in producers)
    learned = after["examples"] - before["examples"]
    seqs = {p["name"]: {"sent": p["seq"], "learned": (after.get("producers") or {}).get(p["name"])}
            for p in producers}
    seqs_ok = all(s["sent"] == (s["learned"] or 0) for s in seqs.values())
    repeats = after.get("seq_repeats", 0) - before.get("seq_repeats", 0)
    undelivered = [p["name"] for p in producers if p.get("undelivered")] + \
        ["garbage"] * sum(1 for g in garbage_done if g.get("undelivered"))
    examples_ok = learned == sent if good_rejected == 0 else learned < sent
    ok = lost_frames == 0 and examples_ok and seqs_ok and repeats == 0 and not undelivered
    return {"ok": ok,
            "frames": {"sent": good_frames + bad_frames, "producers": good_frames,
                       "garbage": bad_frames, "learned": learned_frames,
                       "rejected": rejected_frames, "lost": lost_frames},
            "rejected": rejected, "producer_batches_rejected": good_rejected,
            "examples": {"sent": sent, "learned": learned, "lost": sent - learned},
            "producers": seqs, "seq_repeats": repeats, "undelivered": undelivered}


def percentiles(lat_us: np.ndarray) -> dict:
    if lat_us.size == 0:
        return {"p50_us": None, "p99_us": None, "p999_us": None, "max_us": None}
    p50, p99, p999 = np.percentile(lat_us, [50, 99, 99.9])
    return {"p50_us": round(float(p50), 1), "p99_us": round(float(p99), 1),
            "p999_us": round(float(p999), 1), "max_us": round(float(lat_us.max()), 1)}


def histogram(lat_us: np.ndarray) -> list[list[int]]:
    """``[[bucket, count], ...]``: bucket i holds latencies in
    [2^(i/16), 2^((i+1)/16)) microseconds (mergeable across intervals)."""
    if lat_us.size == 0:
        return []
    idx = np.floor(np.log2(np.maximum(lat_us, 1.0)) * HIST_PER_OCTAVE).astype(np.int64)
    buckets, counts = np.unique(idx, return_counts=True)
    return [[int(b), int(c)] for b, c in zip(buckets, counts)]


def histogram_percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of a merged histogram: the upper
    edge of the bucket that holds it (at most 4.4 % above the truth)."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = q / 100.0 * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return 2.0 ** ((bucket + 1) / HIST_PER_OCTAVE)
    return 2.0 ** ((max(hist) + 1) / HIST_PER_OCTAVE)


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "onlinel1"], capture_output=True, text=True, timeout=10).stdout
        return head + ("+dirty" if dirty.strip() else "") if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
           f"Linux {platform.release()}"


class Run:
    """The processes of one run and the queue they report on."""

    def __init__(self, args, cfg: dict) -> None:
        self.args, self.cfg = args, cfg
        ctx = mp.get_context("spawn")
        self.queue: mp.Queue = ctx.Queue()
        self.go, self.stop = ctx.Event(), ctx.Event()
        self.t0 = ctx.Value("d", 0.0)
        self.procs: dict[tuple[str, int], mp.Process] = {}
        kinds = [k.strip() for k in args.misbehaving_kinds.split(",") if k.strip()]
        plan = [("producer", i, "producer") for i in range(args.producers)] + \
               [("predictor", i, "predictor") for i in range(args.predictors)] + \
               [("misbehaving", i, kinds[i % len(kinds)]) for i in range(args.misbehaving)]
        self.kind = {("misbehaving", i): k for role, i, k in plan if role == "misbehaving"}
        for role, i, kind in plan:
            p = ctx.Process(target=child_main, name=f"loadgen-{kind}-{i}",
                            args=(kind, cfg, i, self.queue, self.go, self.stop, self.t0))
            p.start()
            self.procs[(role, i)] = p
        self.buckets: dict[int, dict] = collections.defaultdict(dict)
        self.done: dict[tuple[str, int], dict] = {}
        self.ready: set = set()

    def handle(self, msg: tuple) -> None:
        what, role, index = msg[:3]
        if what == "error":
            raise LoadError(f"{role} {index} failed:\n{msg[3]}")
        if what == "ready":
            self.ready.add((role, index))
        elif what == "bucket":
            self.buckets[msg[3]][(role, index)] = msg[4]
        elif what == "done":
            self.done[(role, index)] = msg[3]

    def pump(self, until: float, done=lambda: False, tick=None) -> None:
        """Handle messages until ``done()`` or the monotonic time ``until``;
        ``tick()`` at least every second."""
        while not done():
            now = time.monotonic()
            if now >= until:
                return
            if tick is not None:
                tick()
            try:
                self.handle(self.queue.get(timeout=min(1.0, self.args.rss_every,
                                                       until - now)))
            except queue.Empty:
                self.check_alive()

    def check_alive(self) -> None:
        """``LoadError`` if a process ended without its final report."""
        ended = [key for key, p in self.procs.items()
                 if p.exitcode is not None and key not in self.done]
        if not ended:
            return
        # Its last messages (a report, or an error) may still be on the way.
        with contextlib.suppress(queue.Empty):
            while any(key not in self.done for key in ended):
                self.handle(self.queue.get(timeout=2.0))
        for key in ended:
            if key not in self.done or self.procs[key].exitcode != 0:
                p = self.procs[key]
                raise LoadError(f"{p.name} exited with code {p.exitcode} without its report")

    def close(self) -> None:
        self.stop.set()
        self.go.set()
        deadline = time.monotonic() + self.args.drain_timeout + 30
        for p in self.procs.values():
            p.join(max(0.1, deadline - time.monotonic()))
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()
                p.join(10)
        self.queue.close()


def interval_record(run: Run, b: int, t_s: float, seconds: float, s0: dict, s1: dict,
                    rss_end: float | None, rss_samples: list[float],
                    target_rate: float) -> dict:
    reports = run.buckets.pop(b, {})
    counts = {role: collections.Counter() for role in ("producer", "predictor")}
    lat = [np.zeros(0)]
    lag = 0.0
    misbehaving: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for (role, index), payload in reports.items():
        if role == "misbehaving":
            misbehaving[run.kind[(role, index)]].update(payload["counts"])
            continue
        counts[role].update(payload["counts"])
        if role == "predictor":
            lat.append(payload["latencies_us"])
            lag = max(lag, payload["lag_s"])
    lat_us = np.concatenate(lat)
    pc = counts["predictor"]
    errors = {k.split(":", 1)[1]: v for k, v in pc.items() if k.startswith("error:")}
    learned = s1["examples"] - s0["examples"]
    return {"type": "interval", "i": b, "t_s": round(t_s, 3), "seconds": round(seconds, 3),
            "train": {"examples_sent": counts["producer"]["examples"],
                      "batches_sent": counts["producer"]["batches"],
                      "examples_learned": learned,
                      "learned_per_s": round(learned / seconds, 1) if seconds > 0 else None,
                      "producer_timeouts": counts["producer"]["timeouts"]},
            "predict": {"requests": pc["ok"] + pc["bad_reply"] + pc["timeout"]
                        + sum(errors.values()),
                        "ok": pc["ok"],
                        "per_s": round(pc["ok"] / seconds, 1) if seconds > 0 else None,
                        "target_per_s": target_rate, **percentiles(lat_us),
                        "hist": histogram(lat_us), "max_lag_s": round(lag, 4),
                        "error_replies": errors, "timeouts": pc["timeout"],
                        "bad_replies": pc["bad_reply"]},
            "misbehaving": {k: dict(v) for k, v in sorted(misbehaving.items())},
            "daemon": {"rss_mib": None if rss_end is None else round(rss_end, 2),
                       "rss_median_mib": round(float(np.median(rss_samples)), 2)
                       if rss_samples else None,
                       "rss_max_mib": round(max(rss_samples), 2) if rss_samples else None,
                       "rss_samples": len(rss_samples),
                       "errors": errors_delta(s1, s0), "rejected": rejected_delta(s1, s0),
                       "requests": sum(counter_delta(s1.get("requests"),
                                                     s0.get("requests")).values()),
                       "examples": s1["examples"], "store_features": s1.get("store_features"),
                       "nnz": s1.get("nnz"),
                       "snapshots": (s1.get("last_snapshot") or {}).get("seq"),
                       "snapshots_failed": s1.get("snapshots_failed")}}


def progress(rec: dict) -> str:
    p, d = rec["predict"], rec["daemon"]
    p99 = "-" if p["p99_us"] is None else f"{p['p99_us'] / 1000:.2f} ms"
    rss = "-" if d["rss_mib"] is None else f"{d['rss_mib']:.1f} MiB"
    errs = sum(p["error_replies"].values()) + p["timeouts"] + p["bad_replies"]
    return (f"[loadgen] t={rec['t_s']:7.1f}s learned {rec['train']['learned_per_s'] or 0:>10,.0f}"
            f" ex/s  predict {p['per_s'] or 0:>7,.0f}/s p99 {p99}  errors {errs}  rss {rss}")


def run_load(args, out) -> int:
    from onlinel1.client import Client
    emit = _emitter(out)
    with tempfile.TemporaryDirectory(prefix="onlinel1-loadgen-") as tmp:
        workdir = pathlib.Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        described = prepare_rows(args, workdir)
        daemon = None
        if args.attach:
            train, request = args.attach
            pid = args.daemon_pid
        else:
            daemon = Daemon(workdir, args)
            train, request, pid = daemon.train, daemon.request, daemon.pid
        buckets = max(1, math.ceil(args.duration / args.interval - 1e-9))
        cfg = {"train": train, "request": request, "workdir": str(workdir), "data": args.data,
               "key_space": args.key_space, "seed": args.seed, "run_id": os.urandom(3).hex(),
               "duration": args.duration, "interval": args.interval, "buckets": buckets,
               "batch_rows": args.batch_rows, "train_rate": args.train_rate, "rate": args.rate,
               "predictors": args.predictors, "timeout": args.timeout,
               "misbehaving_rate": args.misbehaving_rate, "drain_timeout": args.drain_timeout}
        run = None
        monitor = Client(request, timeout=30.0)
        try:
            run = Run(args, cfg)
            run.pump(time.monotonic() + 300, lambda: len(run.ready) == len(run.procs))
            if len(run.ready) < len(run.procs):
                raise LoadError("the processes were not ready within 300 s")
            before = monitor.stats()
            emit({"type": "start", "date": datetime.datetime.now(datetime.timezone.utc)
                  .isoformat(timespec="seconds"), "command": command_line(args),
                  "commit": git_commit(), "machine": machine(),
                  "python": platform.python_version(), "data": described,
                  "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
                  "daemon": {"pid": pid, "train": train, "request": request,
                             "argv": daemon.argv if daemon else None,
                             "attached": daemon is None, "rss_mib": rss_mib(pid)}})
            t0 = time.monotonic() + 0.2
            run.t0.value = t0
            run.go.set()
            prev, prev_t = before, t0
            rss_samples: list[float] = []      # this interval's
            next_rss = [t0]

            def sample() -> None:
                now = time.monotonic()
                if now >= next_rss[0]:
                    next_rss[0] = now + args.rss_every
                    r = rss_mib(pid)
                    if r is not None:
                        rss_samples.append(r)
                if daemon is not None:
                    daemon.check_alive()

            for b in range(buckets):
                boundary = t0 + min((b + 1) * args.interval, args.duration)
                run.pump(boundary, tick=sample)
                stats, now = monitor.stats(), time.monotonic()
                rss_end = rss_mib(pid)
                samples = rss_samples + ([rss_end] if rss_end is not None else [])
                rss_samples.clear()
                run.pump(boundary + args.timeout + 5, lambda: len(run.buckets[b]) == len(run.procs),
                         tick=sample)
                if len(run.buckets[b]) < len(run.procs):
                    raise LoadError(f"interval {b}: {len(run.buckets[b])} of {len(run.procs)} "
                                    f"processes reported")
                rec = interval_record(run, b, now - t0, now - prev_t, prev, stats, rss_end,
                                      samples, args.predictors * args.rate)
                emit(rec)
                print(progress(rec), file=sys.stderr, flush=True)
                prev, prev_t = stats, now
            # The end: every process reports what it sent (producers after delivering).
            run.pump(time.monotonic() + args.drain_timeout + 30,
                     lambda: len(run.done) == len(run.procs), tick=sample)
            if len(run.done) < len(run.procs):
                raise LoadError(f"{len(run.procs) - len(run.done)} processes did not finish")
            producers = [v for (role, _), v in sorted(run.done.items()) if role == "producer"]
            garbage_done = [v for v in run.done.values() if v.get("kind") == "garbage"]
            frames = sum(p["seq"] for p in producers) + sum(g["train_frames"]
                                                            for g in garbage_done)
            # Wait (bounded) until the daemon has taken every frame sent.
            deadline = time.monotonic() + args.drain_timeout
            while True:
                after = monitor.stats()
                acc = account(before, after, producers, garbage_done)
                if acc["frames"]["learned"] + acc["frames"]["rejected"] >= frames \
                        or time.monotonic() > deadline:
                    break
                if daemon is not None:
                    daemon.check_alive()
                time.sleep(0.2)              # polling interval of a bounded wait
            summary = {"type": "summary", "seconds": args.duration, "nothing_lost": acc,
                       "rss_mib": rss_mib(pid),
                       "stats": {k: after.get(k) for k in (
                           "examples", "batches", "store_features", "nnz", "seq_repeats",
                           "snapshots_failed", "last_snapshot")},
                       "daemon_errors": errors_delta(after, before)}
        except BaseException:
            if run is not None:
                run.close()
            monitor.close()
            if daemon is not None:
                daemon.stop()
            raise
        run.close()
        monitor.close()
        if daemon is not None:
            summary["daemon_exit"] = daemon.stop()
            summary["snapshots_on_disk"] = sorted(
                p.name for p in (workdir / "snapshots").rglob("*.ol1"))
        # The well-behaved clients' failures, summed over the interval lines.
        failures = {k: v for k, v in sorted(emit.failures.items()) if v}
        summary["well_behaved_failures"] = failures
        summary["ok"] = bool(acc["ok"] and not failures and summary.get("daemon_exit", 0) == 0)
        emit(summary)
        print(f"[loadgen] nothing lost: {acc['ok']} (frames {acc['frames']}); well-behaved "
              f"failures: {failures or 'none'}; daemon exit: {summary.get('daemon_exit')}",
              file=sys.stderr)
        return 0 if summary["ok"] else 1


def _emitter(out):
    """Writes one JSON line a record; keeps count of the well-behaved
    clients' failures seen in the interval lines."""
    failures: collections.Counter = collections.Counter()

    def emit(record: dict) -> None:
        if record.get("type") == "interval":
            p = record["predict"]
            for code, n in p["error_replies"].items():
                failures[f"predict_error:{code}"] += n
            failures["predict_timeouts"] += p["timeouts"]
            failures["predict_bad_replies"] += p["bad_replies"]
        out.write(json.dumps(record) + "\n")
        out.flush()

    emit.failures = failures
    return emit


def command_line(args) -> str:
    return "python benchmarks/loadgen.py " + " ".join(shlex.quote(a) for a in args.argv)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("the run")
    g.add_argument("--duration", type=float, default=60.0,
                   help="seconds of load (default: 60)")
    g.add_argument("--interval", type=float, default=10.0,
                   help="seconds between report lines (default: 10)")
    g.add_argument("--out", default="-", metavar="FILE.jsonl",
                   help="write the JSON lines here (default: standard output)")
    g.add_argument("--seed", type=int, default=0, help="seed of the data's order (default: 0)")
    g = p.add_argument_group("the clients")
    g.add_argument("--producers", type=int, default=2, metavar="N",
                   help="producer processes (default: 2)")
    g.add_argument("--batch-rows", type=int, default=1000,
                   help="rows per training batch (default: 1000)")
    g.add_argument("--train-rate", type=float, default=0.0, metavar="EX_PER_S",
                   help="examples/s of each producer; 0: as fast as the daemon takes them, "
                        "held back by the high-water mark (default: 0)")
    g.add_argument("--predictors", type=int, default=2, metavar="M",
                   help="prediction client processes (default: 2)")
    g.add_argument("--rate", type=float, default=200.0, metavar="R",
                   help="one-row predict requests/s of each prediction client, one at a time; "
                        "0: back to back (default: 200)")
    g.add_argument("--timeout", type=float, default=5.0,
                   help="seconds a prediction client waits for a reply (default: 5)")
    g.add_argument("--misbehaving", type=int, default=3, metavar="K",
                   help="misbehaving client processes (default: 3)")
    g.add_argument("--misbehaving-kinds", default=",".join(KINDS),
                   help="their kinds, taken in turn: silent (sends predict requests, never "
                        "reads a reply), garbage (bad frames on both sockets), churn "
                        "(connects and disconnects in a loop) (default: silent,garbage,churn)")
    g.add_argument("--misbehaving-rate", type=float, default=100.0,
                   help="messages (or connections)/s of each misbehaving client (default: 100)")
    g = p.add_argument_group("the data")
    g.add_argument("--data", choices=("criteo", "a9a", "synthetic"), default="criteo",
                   help="criteo: the Criteo sample (ctr_criteo_8k/train.tsv, 'field=value' "
                        "features) replayed in a loop; a9a: a9a.train.svm replayed; "
                        "synthetic: an endless seeded click stream of 30 fields a row over "
                        "--key-space keys (default: criteo)")
    g.add_argument("--data-file", default=None,
                   help="the file of --data criteo or a9a (default: in ../shared/datasets)")
    g.add_argument("--key-space", type=int, default=1_000_000,
                   help="about how many distinct keys the synthetic stream has; the model "
                        "grows until it holds them all (default: 1,000,000)")
    g = p.add_argument_group("the daemon")
    g.add_argument("--attach", nargs=2, metavar=("TRAIN", "REQUEST"),
                   help="use a running daemon at these endpoints instead of starting one "
                        "(it must get no other traffic meanwhile)")
    g.add_argument("--daemon-pid", type=int, default=None,
                   help="with --attach: its process id, for its resident memory")
    g.add_argument("--daemon-args", default="",
                   help="more flags for the daemon started, e.g. \"--update fobos\"")
    g.add_argument("--snapshot-every-seconds", type=float, default=60.0,
                   help="the started daemon's periodic snapshots, into a temporary folder "
                        "(default: 60)")
    g.add_argument("--rss-every", type=float, default=1.0,
                   help="seconds between samples of the daemon's VmRSS (default: 1)")
    g.add_argument("--drain-timeout", type=float, default=120.0,
                   help="seconds, at the end, for the producers' queues to be delivered and "
                        "learned (default: 120)")
    g.add_argument("--workdir", default=None,
                   help="keep the daemon's log and snapshots here (default: a temporary "
                        "folder, removed)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    kinds = [k.strip() for k in args.misbehaving_kinds.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        p.error(f"--misbehaving-kinds: a comma-separated list of {', '.join(KINDS)}")
    if args.duration <= 0 or args.interval <= 0:
        p.error("--duration and --interval must be > 0")
    if min(args.producers, args.predictors, args.misbehaving) < 0:
        p.error("process counts must be >= 0")
    if args.daemon_pid is not None and not args.attach:
        p.error("--daemon-pid goes with --attach")
    return args


def main(argv=None) -> int:
    from onlinel1.client import ClientError
    args = parse_args(argv)
    stream = sys.stdout if args.out == "-" else open(args.out, "w")
    try:
        return run_load(args, stream)
    except (LoadError, ClientError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 2
    finally:
        if stream is not sys.stdout:
            stream.close()


if __name__ == "__main__":
    raise SystemExit(main())
