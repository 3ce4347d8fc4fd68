#!/usr/bin/env python3
"""Learning at 10^7 live features, in process, for one or more checkouts
side by side (each a folder with its extension modules built in place):
the feature-updates/s of a whole pass and the peak resident memory that
learning adds (the store's growth), beside the model's own bytes.

    python benchmarks/bench_growth.py /path/to/old/checkout /path/to/this/checkout \\
        --out benchmarks/results/growth.md

Rows: benchmarks/bench_scale.py's 3 M-row click log (about 12.9 M distinct
features; written by bench_scale into its --workdir, and by this script if
it is missing), parsed once per run, then ``Learner(update=RULE, l1=1e-8,
eta0=0.01).learn`` over its batches of 8,192 rows (cumulative with origin
first-seen; with --no-journal, ``learn(batch, atomic=False)``, as
``onlinel1 train`` learns), each checkout and rule in its own process, the
checkouts alternated --rounds times, the median of each at the end.  Peak
RSS growth is ru_maxrss after learning less ru_maxrss after parsing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROWS = pathlib.Path("/tmp/onlinel1-bench-scale")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import onlinel1
assert onlinel1.__file__.startswith(sys.argv[1]), onlinel1.__file__
from onlinel1 import Learner
from onlinel1.io import read_batches
batches = list(read_batches(sys.argv[3], "vw", batch_size=8192))
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
opts = {"origin": "first-seen"} if sys.argv[2] == "cumulative" else {}
learner = Learner(update=sys.argv[2], l1=1e-8, eta0=0.01, **opts)
atomic = sys.argv[4] == "atomic"
t = time.perf_counter()
for b in batches:
    learner.learn(b, atomic=atomic)
seconds = time.perf_counter() - t
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(rate=sum(int(b.indptr[-1]) for b in batches) / seconds,
                      rss_growth=(rss1 - rss0) * 1024, model=learner.memory_bytes,
                      live=learner.store_size)))
"""


def rows_file() -> pathlib.Path:
    found = sorted(ROWS.glob("clicks-3000000-seed0-*.vw"))
    if not found:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"),
                        "--parts", "inprocess", "--rules", "none"], check=True)
        found = sorted(ROWS.glob("clicks-3000000-seed0-*.vw"))
    return found[0]


def label(checkout: str) -> str:
    """The checkout's folder and commit."""
    commit = subprocess.run(["git", "-C", checkout, "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip()
    return f"{checkout} ({commit or 'no git'})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkouts", nargs="+")
    p.add_argument("--rules", default="fobos,cumulative")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-journal", action="store_true",
                   help="learn with atomic=False (no undo journal), as onlinel1 train does")
    p.add_argument("--out")
    args = p.parse_args()
    data = rows_file()
    rows = []
    for rnd in range(args.rounds):
        for rule in args.rules.split(","):
            for checkout in args.checkouts:
                out = subprocess.run([sys.executable, "-c", CHILD, checkout, rule, str(data),
                                      "bare" if args.no_journal else "atomic"],
                                     check=True, capture_output=True, text=True).stdout
                r = dict(json.loads(out.splitlines()[-1]), checkout=checkout, rule=rule,
                         round=rnd + 1)
                rows.append(r)
                print(f"{checkout} {rule} round {rnd + 1}: {r['rate'] / 1e6:.2f} M/s, "
                      f"peak RSS growth {r['rss_growth'] / 2**20:.0f} MiB, model "
                      f"{r['model'] / 2**20:.0f} MiB, {r['live']:,} live", flush=True)
    lines = [f"# Learning at 10^7 live features, checkouts side by side "
             f"({datetime.date.today().isoformat()})", "",
             f"`python benchmarks/bench_growth.py {' '.join(sys.argv[1:])}`; rows: {data.name}; "
             f"`Learner.learn(batch{', atomic=False' if args.no_journal else ''})`.",
             "", "| checkout | rule | round | M feature-updates/s | peak RSS growth | model |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {label(r['checkout'])} | {r['rule']} | {r['round']} | {r['rate'] / 1e6:.2f} | "
              f"{r['rss_growth'] / 2**20:.0f} MiB | {r['model'] / 2**20:.0f} MiB |" for r in rows]
    medians = ["| checkout | rule | median M feature-updates/s | rounds |", "|---|---|---:|---:|"]
    for rule in args.rules.split(","):
        for checkout in args.checkouts:
            rates = [r["rate"] / 1e6 for r in rows if r["rule"] == rule and r["checkout"] == checkout]
            medians.append(f"| {label(checkout)} | {rule} | {statistics.median(rates):.2f} | "
                           f"{len(rates)} |")
    print("\n".join(medians))
    lines += [""] + medians
    if args.out:
        pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
