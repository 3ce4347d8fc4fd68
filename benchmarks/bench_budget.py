"""Resident memory of a model on a stream whose feature space grows without
end, without and with a memory budget (``max_features``; docs/algorithms.md,
"The memory budget").

Each configuration runs in its own process (so its VmRSS is its own): a
``Learner`` with the default rule (cumulative L1, origin first-seen) learns
batches of a synthetic stream in which every row has ``--fresh`` keys never
seen before and ``--row - --fresh`` keys drawn with a Zipf-like skew from
``--hot-keys`` repeating keys, for ``--seconds`` seconds (or until its RSS
passes ``--rss-limit-mib``, so that the unbounded run cannot take a shared
machine's memory).  About once a second it samples VmRSS (/proc/self/status),
the live features and the examples learned.  The results go to a Markdown
table and an SVG plot of RSS over time (written by plain Python).

    python benchmarks/bench_budget.py --seconds 120 --max-features 2000000 \\
        --out benchmarks/results/budget.md --svg benchmarks/results/budget-rss.svg
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def batches(args):
    """Endless batches (indptr, keys, values, labels) of the stream."""
    from onlinel1 import Batch
    rng = np.random.default_rng(args.seed)
    rows, width, fresh = args.batch_rows, args.row, args.fresh
    hot = width - fresh
    indptr = np.arange(0, rows * width + 1, width, dtype=np.int64)
    values = np.ones(rows * width, dtype=np.float32)
    next_fresh = 1 << 40          # fresh keys: a counter far from the hot ones
    while True:
        keys = np.empty((rows, width), dtype=np.uint64)
        # Skewed repeating keys (a few are very frequent, most rare).
        keys[:, :hot] = 1 + (args.hot_keys * rng.random((rows, hot)) ** 3).astype(np.uint64)
        keys[:, hot:] = (next_fresh + np.arange(rows * fresh, dtype=np.uint64)).reshape(rows, fresh)
        next_fresh += rows * fresh
        labels = np.where(rng.random(rows) < 0.5, -1.0, 1.0)
        yield Batch(indptr, keys.ravel(), values, labels)


def worker(args) -> None:
    """Learn for args.seconds; print one JSON sample a line."""
    from onlinel1 import Learner
    learner = Learner(max_features=args.max_features)
    stream = batches(args)
    start = time.perf_counter()
    last = -1.0
    examples = 0
    print(json.dumps({"t": 0.0, "rss_mib": rss_mib(), "features": 0, "examples": 0,
                      "evicted": 0}), flush=True)
    while True:
        batch = next(stream)
        learner.learn(batch, check=False)
        examples += batch.n_rows
        now = time.perf_counter() - start
        done = now >= args.seconds
        if now - last >= args.sample_every or done:
            last = now
            rss = rss_mib()
            print(json.dumps({"t": round(now, 3), "rss_mib": round(rss, 1),
                              "features": learner.store_size, "examples": examples,
                              "evicted": learner.evicted}), flush=True)
            if rss > args.rss_limit_mib:
                print(json.dumps({"stopped": "rss_limit"}), flush=True)
                return
        if done:
            return


def run(args, max_features: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "--max-features", str(max_features)]
    for name in ("seconds", "row", "fresh", "hot_keys", "batch_rows", "seed", "sample_every",
                 "rss_limit_mib"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    samples, stopped = [], None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            record = json.loads(line)
            if "stopped" in record:
                stopped = record["stopped"]
            else:
                samples.append(record)
                print(f"  max_features={max_features}: {record}", file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed with exit code {proc.returncode}")
    return {"max_features": max_features, "samples": samples, "stopped": stopped}


# ------------------------------------------------------------------ output

def svg_plot(runs: list[dict], title: str) -> str:
    """RSS (MiB) against time (s), one polyline per run, plain SVG."""
    import _plot
    series = [_plot.Series("no budget" if not r["max_features"]
                           else f"--max-features {r['max_features']:,}",
                           [(s["t"], s["rss_mib"]) for s in r["samples"]]) for r in runs]
    return _plot.line_chart(series, title=title, x_label="seconds",
                            y_label="resident memory (MiB)")


def markdown(args, runs: list[dict], command: str, svg_name: str) -> str:
    today = datetime.date.today().isoformat()
    lines = [f"# Memory of a model on an endless feature space, with and without a budget "
             f"({today})", "",
             f"`{command}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs "
             f"(the rates are noisy), Python {platform.python_version()}.  Stream: rows of "
             f"{args.row} keys, {args.fresh} never seen before and {args.row - args.fresh} "
             f"skewed over {args.hot_keys:,} repeating keys; batches of {args.batch_rows:,} "
             f"rows; the default rule (cumulative L1, origin first-seen, l1 = 1e-6).  Each "
             f"run is its own process; RSS is its VmRSS.", "",
             "| run | seconds | examples | examples/s | live features at the end | "
             "RSS at the end (MiB) | max RSS (MiB) | evicted |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        s = r["samples"]
        end = s[-1]
        label = "no budget" if not r["max_features"] else f"`--max-features {r['max_features']}`"
        if r["stopped"]:
            label += " (stopped at the RSS limit)"
        lines.append(f"| {label} | {end['t']:.0f} | {end['examples']:,} | "
                     f"{end['examples'] / end['t']:,.0f} | {end['features']:,} | "
                     f"{end['rss_mib']:,.0f} | {max(x['rss_mib'] for x in s):,.0f} | "
                     f"{end['evicted']:,} |")
    lines += ["", f"![RSS over time]({svg_name})", "", "Samples (every ~10 s):", "",
              "| run | s | examples | live features | RSS (MiB) |", "|---|---:|---:|---:|---:|"]
    for r in runs:
        label = "no budget" if not r["max_features"] else f"{r['max_features']:,}"
        next_t = 0.0
        for s in r["samples"]:
            if s["t"] >= next_t or s is r["samples"][-1]:
                lines.append(f"| {label} | {s['t']:.0f} | {s['examples']:,} | "
                             f"{s['features']:,} | {s['rss_mib']:,.0f} |")
                next_t = s["t"] + 10.0
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=180.0, help="per run (default: 180)")
    p.add_argument("--max-features", type=int, default=2_000_000,
                   help="the budget of the second run (default: 2,000,000)")
    p.add_argument("--row", type=int, default=16, help="keys per row (default: 16)")
    p.add_argument("--fresh", type=int, default=1, help="never-seen keys per row (default: 1)")
    p.add_argument("--hot-keys", type=int, default=1_000_000,
                   help="repeating keys (default: 1,000,000)")
    p.add_argument("--batch-rows", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-every", type=float, default=1.0)
    p.add_argument("--rss-limit-mib", type=float, default=4096.0,
                   help="stop a run whose RSS passes this (default: 4096)")
    p.add_argument("--out", default=None, help="write the Markdown table here")
    p.add_argument("--svg", default=None, help="write the RSS plot here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return
    command = "python benchmarks/bench_budget.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    runs = [run(args, 0), run(args, args.max_features)]
    svg_name = os.path.basename(args.svg) if args.svg else "budget-rss.svg"
    text = markdown(args, runs, command, svg_name)
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg_plot(runs, "Resident memory, endless feature space"))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
