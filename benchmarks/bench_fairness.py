#!/usr/bin/env python3
"""Training under a prediction flood: the share of the loop's time that
training keeps (``serve --training-share F``).

One daemon (a separate process, loopback TCP) learns a9a rows that a
producer process pushes as fast as the high-water mark lets it, 1000-row
columnar batches in a loop.  Phases of --seconds each, in one run:

1. training alone;
2. training while --clients flood processes send one-row ``predict``
   requests back to back (each waits for its reply);

for each value of --shares (a fresh daemon each).  Reported: training
examples/s (from ``stats``, over the phase), predictions/s, and each
phase's prediction latency p50/p99 (from the flood clients).  A share F
promises that training keeps about F of the loop's time when both wait:
the daemon counts the seconds it spends learning and answering requests
(``stats`` -> ``daemon`` -> ``loop``), and the report gives the learning
share of them under the flood two ways: of all the loop's time ("all"),
and of the time both waited ("contended": learning and the requests
answered between slices or while a training message waited; not the
requests answered while the CPU-starved producer had no message ready,
when requests rightly have the loop).  The contended share is what F
promises.  The ratio flood/alone is what training keeps of its rate; on
a 2-core machine the flood clients' own CPU takes part of it too.

    python benchmarks/bench_fairness.py --out benchmarks/results/fairness.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shlex
import socket
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
A9A = ROOT.parent / "shared" / "datasets" / "a9a" / "a9a.train.svm"
SAMPLE = ROOT / "tests" / "data" / "a9a_head2000.svm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows_path() -> pathlib.Path:
    return A9A if A9A.exists() else SAMPLE


# ------------------------------------------------------------ child roles

def producer_role(train: str, seconds: float) -> int:
    from onlinel1.client import Producer
    from onlinel1.io import read_batches
    batches = list(read_batches(str(rows_path()), "svmlight", 1000))
    deadline = time.monotonic() + seconds
    with Producer(train, batch_size=1000, send_timeout=30.0) as producer:
        i = 0
        while time.monotonic() < deadline:
            producer.send_batch(batches[i % len(batches)])
            i += 1
        producer.close(linger=0, flush=False)
    return 0


def flood_role(request: str, seconds: float) -> int:
    from onlinel1.client import Client
    from onlinel1.io import read_batches
    batch = next(read_batches(str(rows_path()), "svmlight", 1)).slice(0, 1)
    latencies = []
    deadline = time.monotonic() + seconds
    with Client(request, timeout=30.0) as client:
        while time.monotonic() < deadline:
            began = time.perf_counter_ns()
            client.predict(batch)
            latencies.append(time.perf_counter_ns() - began)
    print(json.dumps(latencies))
    return 0


# ----------------------------------------------------------------- phases

def stats(request: str) -> dict:
    from onlinel1.client import Client
    with Client(request, timeout=30.0) as client:
        return client.stats()


def phase(request: str, train: str, seconds: float, clients: int) -> dict:
    me = [sys.executable, __file__]
    producer = subprocess.Popen([*me, "_producer", train, str(seconds + 2)])
    time.sleep(1.0)                 # the producer fills the queue (a benchmark, not a test)
    floods = [subprocess.Popen([*me, "_flood", request, str(seconds)], stdout=subprocess.PIPE,
                               text=True) for _ in range(clients)]
    s0, t0 = stats(request), time.monotonic()
    time.sleep(seconds)
    s1, t1 = stats(request), time.monotonic()
    before, after = s0["examples"], s1["examples"]
    loop0, loop1 = s0["daemon"]["loop"], s1["daemon"]["loop"]

    def spent(field: str) -> float:          # 0 for a field an older daemon lacks
        return loop1.get(field, 0) - loop0.get(field, 0)

    learning, requests = spent("learning_s"), spent("requests_s")
    between, waiting = spent("requests_between_slices_s"), spent("requests_training_waiting_s")
    idle = spent("requests_none_waiting_s")
    latencies = []
    for f in floods:
        out, _ = f.communicate(timeout=seconds + 60)
        latencies += json.loads(out)
    producer.wait(timeout=seconds + 60)
    lat = np.array(latencies, dtype=float) / 1000.0
    return {"train_per_s": (after - before) / (t1 - t0),
            "learning_share": learning / (learning + requests) if learning + requests else None,
            "contended_share": (learning / (learning + between + waiting)
                                if learning + between + waiting else None),
            "loop_s": {"learning": learning, "between_slices": between,
                       "training_waiting": waiting, "none_waiting": idle,
                       "forgiven": spent("overdraft_forgiven_s")},
            "on_overdraft": spent("requests_on_overdraft"),
            "predict_per_s": len(lat) / seconds if clients else 0.0,
            "p50_us": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_us": float(np.percentile(lat, 99)) if lat.size else None}


def run_share(share: float, seconds: float, clients: int, serve_args: str = "") -> dict:
    train, request = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    daemon = subprocess.Popen([sys.executable, "-m", "onlinel1", "serve", "--train-endpoint",
                               train, "--request-endpoint", request, "--training-share",
                               str(share), "--log-level", "warning",
                               *shlex.split(serve_args)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                stats(request)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        alone = phase(request, train, seconds, 0)
        flood = phase(request, train, seconds, clients)
    finally:
        daemon.terminate()
        daemon.wait(60)
    return {"share": share, "alone": alone, "flood": flood}


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("_producer", "_flood"):
        role, endpoint, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
        return (producer_role if role == "_producer" else flood_role)(endpoint, seconds)
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shares", default="0.5,0.2,0.05", help="training shares to run")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    p.add_argument("--clients", type=int, default=8, help="flood processes")
    p.add_argument("--serve-args", default="",
                   help="more flags for onlinel1 serve (e.g. '--training-io-nice 0')")
    p.add_argument("--out", help="write a Markdown report here")
    args = p.parse_args(argv)
    # A shared machine makes the rates noisy: say how busy it was before this began.
    load = f"{os.getloadavg()[0]:.1f}"
    results = [run_share(float(s), args.seconds, args.clients, args.serve_args)
               for s in args.shares.split(",")]

    command = "python benchmarks/bench_fairness.py " + " ".join(
        a for a in (sys.argv[1:] if argv is None else argv))
    lines = [f"# Training under a prediction flood ({datetime.date.today()})", "",
             f"`{command}` on {os.cpu_count()} cores; rows: {rows_path().name}; "
             f"{args.clients} flood clients, one-row predicts back to back; phases of "
             f"{args.seconds:g} s; load average (1 min) before the run: {load}.", "",
             "| --training-share | training alone (ex/s) | under the flood (ex/s) | kept | "
             "learning share, all loop time | learning share, contended | predicts/s | "
             "p50 | p99 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        a, f = r["alone"], r["flood"]
        lines.append(f"| {r['share']:g} | {a['train_per_s']:,.0f} | {f['train_per_s']:,.0f} | "
                     f"{f['train_per_s'] / a['train_per_s']:.2f} | {f['learning_share']:.2f} | "
                     f"{f['contended_share']:.2f} | {f['predict_per_s']:,.0f} | "
                     f"{f['p50_us']:,.0f} us | {f['p99_us']:,.0f} us |")
    lines += ["", "Loop seconds under the flood (stats -> daemon -> loop, over the phase): "
              "learning; requests between slices, in the main loop while training waited, "
              "and while none waited; requests answered with no credit left (the floor of "
              "one a turn) and the request seconds beyond the loop's most debt.", "",
              "| --training-share | learning | between slices | training waiting | "
              "none waiting | on overdraft | forgiven |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r["flood"]["loop_s"]
        lines.append(f"| {r['share']:g} | {s['learning']:.2f} s | {s['between_slices']:.2f} s | "
                     f"{s['training_waiting']:.2f} s | {s['none_waiting']:.2f} s | "
                     f"{r['flood']['on_overdraft']:,} | {s['forgiven']:.2f} s |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
