#!/usr/bin/env python3
"""The soak: the daemon under steady load for an hour (benchmarks/loadgen.py),
judged against three targets, with a report and a plot.

It runs ``loadgen.py`` (producers flat out, paced prediction clients,
misbehaving clients: see its ``--help``) for ``--duration`` seconds,
keeps its JSON lines (``--jsonl``), then writes a Markdown report
(``--out``): the settings, date, commit and machine, a table of the
figures of every ``--window`` seconds (10 minutes), and the verdict on each
target:

* **memory flat**: after the warm-up (``--warmup`` seconds, by default
  the first sixth of the run, at most 10 minutes: long enough for the
  model to hold every feature of the replayed data and for ZeroMQ's
  queues to fill to their high-water marks), the daemon's VmRSS (sampled
  every second; the median of each report interval) is cut into windows
  of ``--window`` seconds, and the median of every window lies within 5 %
  of the first one's (medians, so that the momentary fill of the queues
  does not decide; a growth of 5 % does);
* **no error replies to well-behaved clients**: the prediction clients
  got no error reply, no timeout and no malformed reply;
* **nothing lost**: every training frame sent was learned or counted as
  rejected, the examples learned equal the examples sent, and each
  producer's last ``seq`` is the one the daemon recorded.

The plot (``--svg``) shows the daemon's RSS, the training and prediction
rates and the prediction latency over time.

    python benchmarks/bench_soak.py                       # one hour, into benchmarks/results/
    python benchmarks/bench_soak.py --duration 120 --out /tmp/soak.md --svg /tmp/soak.svg \\
        --jsonl /tmp/soak.jsonl                           # a 2-minute smoke run
    python benchmarks/bench_soak.py --from-jsonl benchmarks/results/soak.jsonl   # report only

Exit code: 0 if every target is met, 1 if one is not (or the load
generator failed; the report says how).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import _plot  # noqa: E402
from loadgen import histogram_percentile  # noqa: E402

MEMORY_TOLERANCE = 0.05


def run_loadgen(args, jsonl: pathlib.Path) -> tuple[int, str]:
    """Run the load generator; its exit code and the last lines it printed."""
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--duration", str(args.duration),
           "--interval", str(args.interval), "--producers", str(args.producers),
           "--predictors", str(args.predictors), "--rate", str(args.rate),
           "--misbehaving", str(args.misbehaving), "--data", args.data,
           "--train-rate", str(args.train_rate),
           "--out", str(jsonl), *shlex.split(args.loadgen_args)]
    print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=40)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    deadline = time.monotonic() + args.duration + 900
    try:
        for line in proc.stderr:            # loadgen prints a line every interval
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
            if time.monotonic() > deadline:
                raise TimeoutError
        rc = proc.wait(max(1.0, deadline - time.monotonic()))
    except (TimeoutError, subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.terminate()
        try:
            proc.wait(180)                   # it stops its daemon and processes
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        tail.append("bench_soak: the load generator was stopped (timeout or interrupt)")
        rc = proc.returncode if proc.returncode not in (None, 0) else 2
    return rc, "\n".join(tail)


def read_jsonl(path: pathlib.Path) -> tuple[dict | None, list[dict], dict | None]:
    start, intervals, summary = None, [], None
    if not path.exists():
        return start, intervals, summary
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        kind = rec.get("type")
        if kind == "start":
            start = rec
        elif kind == "interval":
            intervals.append(rec)
        elif kind == "summary":
            summary = rec
    return start, intervals, summary


# ------------------------------------------------------------------ figures

def well_behaved_failures(rec: dict) -> int:
    p = rec["predict"]
    return sum(p["error_replies"].values()) + p["timeouts"] + p["bad_replies"]


def windows(intervals: list[dict], window: float, interval: float,
            duration: float) -> list[dict]:
    """The figures of each ``window`` seconds: the intervals whose nominal
    end (a multiple of ``interval``) falls in it."""
    groups: dict[int, list[dict]] = collections.defaultdict(list)
    for rec in intervals:
        end = min((rec["i"] + 1) * interval, duration)
        groups[max(0, int((end - 1e-6) // window))].append(rec)
    out = []
    for w in sorted(groups):
        recs = groups[w]
        seconds = sum(r["seconds"] for r in recs)
        hist: collections.Counter = collections.Counter()
        for r in recs:
            hist.update({b: c for b, c in r["predict"]["hist"]})
        learned = sum(r["train"]["examples_learned"] for r in recs)
        ok = sum(r["predict"]["ok"] for r in recs)
        rss = [rss_of(r) for r in recs if rss_of(r) is not None]
        peaks = [r["daemon"]["rss_max_mib"] for r in recs
                 if r["daemon"]["rss_max_mib"] is not None]
        maxes = [r["predict"]["max_us"] for r in recs if r["predict"]["max_us"] is not None]
        out.append({
            "from_s": w * window, "to_s": min((w + 1) * window, duration), "seconds": seconds,
            "sent": sum(r["train"]["examples_sent"] for r in recs), "learned": learned,
            "learned_per_s": learned / seconds if seconds else 0.0,
            "predict_per_s": ok / seconds if seconds else 0.0,
            "target_per_s": recs[-1]["predict"]["target_per_s"],
            # A bucket's upper edge can pass the largest latency seen: not beyond it.
            **{name: None if not maxes else min(histogram_percentile(hist, q), max(maxes))
               for name, q in (("p50", 50), ("p99", 99), ("p999", 99.9))},
            "max": max(maxes) if maxes else None,
            "failures": sum(well_behaved_failures(r) for r in recs),
            "held_back": sum(r["train"]["producer_timeouts"] for r in recs),
            "rss": float(np.median(rss)) if rss else None,
            "rss_max": max(peaks) if peaks else None,
            "daemon_errors": sum(sum(r["daemon"]["errors"].values()) for r in recs),
            "rejected": sum(sum(r["daemon"]["rejected"].values()) for r in recs),
        })
    return out


def rss_of(rec: dict) -> float | None:
    """An interval's VmRSS: the median of its samples (every --rss-every
    s), or, in lines written before the load generator kept it, the
    sample at its end."""
    d = rec["daemon"]
    return d.get("rss_median_mib", d["rss_mib"])


def memory_verdict(intervals: list[dict], warmup: float, window: float) -> dict:
    """Memory flat within 5 % after the warm-up: the samples after
    ``warmup`` seconds (the median VmRSS of each interval) are cut into
    windows of ``window`` seconds from the warm-up's end, and the median of
    every window must lie within 5 % of the first window's.  Medians, so
    that the momentary fill of the queues (a few hundred kB a batch, up to
    the high-water marks) does not decide; a leak of 5 % does.  Every
    single sample's distance from that reference is reported too."""
    after = [(r["t_s"], rss_of(r)) for r in intervals
             if rss_of(r) is not None and r["t_s"] >= warmup - 1e-6]
    groups: dict[int, list[float]] = collections.defaultdict(list)
    for t, v in after:
        groups[int((t - warmup) // window)].append(v)
    medians = [(k, float(np.median(groups[k]))) for k in sorted(groups)]
    if len(after) < 2:
        return {"ok": False, "why": f"fewer than two VmRSS samples after the warm-up of "
                                    f"{span(warmup)}", "samples": len(after)}
    ref = medians[0][1]
    worst_window = max(abs(m / ref - 1.0) for _, m in medians)
    values = np.array([v for _, v in after])
    times = np.array([t for t, _ in after])
    slope = float(np.polyfit(times, values, 1)[0]) * 3600.0 if len(after) > 2 else 0.0
    return {"ok": worst_window <= MEMORY_TOLERANCE, "reference_mib": ref,
            "windows": [(warmup + k * window, m) for k, m in medians],
            "worst_window": worst_window,
            "drift": medians[-1][1] / ref - 1.0,
            "min_mib": float(values.min()), "max_mib": float(values.max()),
            "worst_sample": float(np.max(np.abs(values / ref - 1.0))),
            "slope_mib_per_h": slope, "samples": len(after)}


def default_warmup(duration: float) -> float:
    return min(600.0, duration / 6.0)


# ------------------------------------------------------------------ output

def span(seconds: float) -> str:
    """``3600`` -> "1 hour", ``120`` -> "2 minutes", ``10`` -> "10 s"."""
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour" + ("s" if hours > 1 else "")
    if seconds >= 120:
        return f"{seconds / 60:.3g} minutes"
    return f"{seconds:.3g} s"


def fmt_us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} us"


def fmt(v, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def report(args, start: dict | None, intervals: list[dict], summary: dict | None,
           rc: int | None, tail: str, svg_name: str, loadavg: tuple | None) -> tuple[str, bool]:
    warmup = args.warmup if args.warmup is not None else default_warmup(
        (start or {}).get("settings", {}).get("duration", args.duration))
    duration = (start or {}).get("settings", {}).get("duration", args.duration)
    when = (start or {}).get("date", "?")
    lines = [f"# Soak: {span(duration)} of load on the daemon ({when[:10]})", ""]
    if duration < 3600:
        lines += [f"*A run of {span(duration)}, not the one-hour soak: its figures say that "
                  f"the soak works, not how the daemon holds up for an hour.*", ""]
    if start:
        s = start["settings"]
        kinds = s["misbehaving_kinds"].split(",")
        mis = [kinds[i % len(kinds)] for i in range(s["misbehaving"])]
        lines += [
            f"`{start['command']}`, run by `python benchmarks/bench_soak.py "
            f"{' '.join(shlex.quote(a) for a in args.argv)}`".rstrip() + ".", "",
            f"* Started {start['date']} at commit `{start['commit']}`, on {start['machine']}, "
            f"Python {start['python']}."
            + (f" Load average (1 min) {loadavg[0]:.2f} at the start and {loadavg[1]:.2f} "
               f"at the end: the machine's 2 cores are shared with other jobs, so rates and "
               f"latencies are noisy." if loadavg else ""),
            f"* Daemon: `{' '.join(start['daemon']['argv'][2:]) if start['daemon']['argv'] else 'attached'}`"
            f" (the default learner of that commit), pid {start['daemon']['pid']}.",
            f"* Data: {start['data']}.",
            f"* {s['producers']} producer processes (`Producer`, batches of {s['batch_rows']:,} "
            f"rows, " + ("as fast as the daemon takes them" if not s["train_rate"] else
                         f"{s['train_rate']:,.0f} examples/s each") + "); "
            f"{s['predictors']} prediction client{'s' if s['predictors'] != 1 else ''} (`Client`, one-row `predict`, "
            + (f"{s['rate']:g} requests/s each" if s["rate"] else "back to back")
            + f", timeout {s['timeout']:g} s); {s['misbehaving']} misbehaving clients "
            f"({', '.join(mis) or 'none'}; {s['misbehaving_rate']:g} messages/s each).",
            f"* A line every {s['interval']:g} s; the daemon's VmRSS sampled every "
            f"{s['rss_every']:g} s. Latency: each request's round trip at its client, the "
            f"percentiles of a window from log-bucket histograms (16 buckets an octave: "
            f"at most 4.4 % above the exact value). Raw lines: `{args.jsonl_name}`.", ""]
    else:
        lines += ["The load generator wrote no start line: it failed before the load began.", ""]

    rows = windows(intervals, args.window,
                   (start or {}).get("settings", {}).get("interval", args.interval), duration)
    if rows:
        lines += [f"## Every {span(args.window)}", "",
                  "| minutes | examples learned | learned/s | predictions/s (target) | p50 | "
                  "p99 | p99.9 | max | well-behaved failures | producers held back 1 s | "
                  "VmRSS median (MiB) | VmRSS max (MiB) | error replies to misbehaving | "
                  "rejected frames |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for w in rows:
            lines.append(
                f"| {w['from_s'] / 60:.4g}-{w['to_s'] / 60:.4g} | {w['learned']:,} | "
                f"{w['learned_per_s']:,.0f} | {w['predict_per_s']:,.0f} "
                f"({w['target_per_s']:,.0f}) | {fmt_us(w['p50'])} | {fmt_us(w['p99'])} | "
                f"{fmt_us(w['p999'])} | {fmt_us(w['max'])} | {w['failures']} | "
                f"{w['held_back']} | {fmt(w['rss'], ',.1f')} | {fmt(w['rss_max'], ',.1f')} | "
                f"{w['daemon_errors']:,} | {w['rejected']:,} |")
        lines += ["", f"![VmRSS and throughput over time]({svg_name})", ""]

    # ----- verdicts
    lines += ["## Verdict", ""]
    all_ok = True
    if rc not in (0, 1) or summary is None:
        all_ok = False
        lines += [f"{verdict(False)}: the load generator did not complete (exit code {rc}); "
                  f"its last lines:", "", "```", tail, "```", ""]
    mem = memory_verdict(intervals, warmup, args.window)
    all_ok &= mem["ok"]
    if "reference_mib" in mem:
        medians = ", ".join(f"{m:,.1f}" for _, m in mem["windows"])
        lines.append(
            f"* Memory flat within 5 % after a warm-up of {span(warmup)}: "
            f"{verdict(mem['ok'])}. Median VmRSS of each {span(args.window)} from the "
            f"warm-up's end: {medians} MiB; the farthest is {mem['worst_window'] * 100:.1f} % "
            f"from the first, the last {mem['drift'] * 100:+.1f} %. The {mem['samples']} "
            f"interval medians lie between {mem['min_mib']:,.1f} and {mem['max_mib']:,.1f} MiB "
            f"(at most {mem['worst_sample'] * 100:.1f} % from the first window's); "
            f"least-squares slope {mem['slope_mib_per_h']:+,.1f} MiB/hour.")
    else:
        lines.append(f"* Memory flat within 5 % after the warm-up: {verdict(False)}: "
                     f"{mem['why']}.")
    failures = sum(well_behaved_failures(r) for r in intervals)
    codes: collections.Counter = collections.Counter()
    for r in intervals:
        codes.update(r["predict"]["error_replies"])
        codes["timeout"] += r["predict"]["timeouts"]
        codes["malformed reply"] += r["predict"]["bad_replies"]
    codes = collections.Counter({k: v for k, v in codes.items() if v})
    requests = sum(r["predict"]["requests"] for r in intervals)
    errors_ok = failures == 0 and summary is not None
    all_ok &= errors_ok
    lines.append(f"* No error replies to well-behaved clients: {verdict(errors_ok)}. "
                 f"{requests:,} predict requests, {failures} failed"
                 + (f" ({', '.join(f'{k} {v}' for k, v in sorted(codes.items()))})"
                    if codes else "")
                 + ". (The misbehaving clients got "
                 f"{sum(sum(r['daemon']['errors'].values()) for r in intervals):,} error "
                 f"replies, as they should.)")
    if summary is not None:
        acc = summary["nothing_lost"]
        f, e = acc["frames"], acc["examples"]
        all_ok &= acc["ok"]
        seq_ok = all(p["sent"] == p["learned"] for p in acc["producers"].values())
        lines.append(
            f"* Nothing lost: {verdict(acc['ok'])}. {f['sent']:,} training frames sent "
            f"({f['producers']:,} producer batches, {f['garbage']:,} garbage frames): "
            f"{f['learned']:,} learned, {f['rejected']:,} counted as rejected "
            f"({', '.join(f'{k} {v}' for k, v in acc['rejected'].items()) or 'none'}), "
            f"{f['lost']:,} lost; {e['sent']:,} examples sent, {e['learned']:,} learned; "
            f"each producer's last seq recorded by the daemon: "
            f"{'yes' if seq_ok else 'no'} ({len(acc['producers'])} producers); "
            f"seq repeats {acc['seq_repeats']}; undelivered at close: "
            f"{', '.join(acc['undelivered']) or 'none'}.")
        exit_code = summary.get("daemon_exit")
        if exit_code is not None:
            all_ok &= exit_code == 0
            lines.append(f"* The daemon stopped on SIGTERM with exit code {exit_code} "
                         f"({len(summary.get('snapshots_on_disk', []))} snapshots on disk, "
                         f"{summary['stats'].get('snapshots_failed')} failed).")
    lines.append("")
    return "\n".join(lines) + "\n", all_ok


def plot(intervals: list[dict], warmup: float, window: float) -> str:
    minutes = [r["t_s"] / 60 for r in intervals]
    mem = memory_verdict(intervals, warmup, window)
    x_max = max(minutes, default=1.0) or 1.0
    marker = [(warmup / 60, "end of warm-up")] if warmup > 0 else []
    rss = [_plot.Series("median VmRSS of each interval",
                        list(zip(minutes, [rss_of(r) for r in intervals]))),
           _plot.Series("max VmRSS in the interval",
                        list(zip(minutes, [r["daemon"]["rss_max_mib"] for r in intervals])),
                        colour="#e59866")]
    if "reference_mib" in mem:
        ref = mem["reference_mib"]
        for sign in (+1, -1):
            rss.append(_plot.Series(f"{'+' if sign > 0 else '-'}5 % of the first median "
                                    f"after the warm-up",
                                    [(warmup / 60, ref * (1 + sign * MEMORY_TOLERANCE)),
                                     (x_max, ref * (1 + sign * MEMORY_TOLERANCE))],
                                    colour="#999999"))
    train = [_plot.Series("examples learned/s",
                          list(zip(minutes, [r["train"]["learned_per_s"] for r in intervals]))),
             _plot.Series("examples sent/s", list(zip(minutes, [
                 r["train"]["examples_sent"] / r["seconds"] if r["seconds"] else None
                 for r in intervals])), colour="#85c1e9")]
    predict = [_plot.Series("predictions/s (well-behaved)",
                            list(zip(minutes, [r["predict"]["per_s"] for r in intervals]))),
               _plot.Series("target", list(zip(minutes, [r["predict"]["target_per_s"]
                                                        for r in intervals])),
                            colour="#999999")]
    latency = [_plot.Series(name, list(zip(minutes, [
        None if r["predict"][key] is None else r["predict"][key] / 1000 for r in intervals])))
        for name, key in (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p999_us"))]
    common = dict(x_label="minutes", x_max=x_max, height=300, vlines=marker, x_fmt="{:.3g}",
                  left=90)
    return _plot.document([
        _plot.panel(rss, title="Daemon resident memory", y_label="MiB", legend="bottom",
                    **common),
        _plot.panel(train, title="Training", y_label="examples/s", y_fmt="{:,.0f}",
                    legend="bottom", **common),
        _plot.panel(predict, title="Predictions", y_label="requests/s", y_fmt="{:,.0f}",
                    legend="bottom", **common),
        _plot.panel(latency, title="Prediction latency (per interval)", y_label="ms",
                    y_fmt="{:.1f}", **common)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=3600.0,
                   help="seconds of load (default: 3600)")
    p.add_argument("--interval", type=float, default=10.0,
                   help="seconds between the load generator's lines (default: 10)")
    p.add_argument("--window", type=float, default=600.0,
                   help="seconds a row of the report's table covers (default: 600)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds before memory must stay flat (default: a sixth of the run, "
                        "at most 600)")
    p.add_argument("--producers", type=int, default=3, help="(default: 3)")
    p.add_argument("--train-rate", type=float, default=0.0,
                   help="examples/s of each producer; 0: as fast as the daemon takes them "
                        "(default: 0). Flat out, the queues are at their high-water marks "
                        "from the first seconds on, so the memory they take is part of the "
                        "level the warm-up reaches; at a paced rate, a stall of the machine "
                        "fills them later, and the allocator keeps that memory")
    p.add_argument("--predictors", type=int, default=2, help="(default: 2)")
    p.add_argument("--rate", type=float, default=200.0,
                   help="predict requests/s of each prediction client (default: 200)")
    p.add_argument("--misbehaving", type=int, default=3,
                   help="misbehaving clients: silent, garbage, churn in turn (default: 3)")
    p.add_argument("--data", default="criteo", choices=("criteo", "a9a", "synthetic"),
                   help="(default: criteo)")
    p.add_argument("--loadgen-args", default="",
                   help="more options for loadgen.py, e.g. \"--daemon-args '--update fobos'\"")
    p.add_argument("--out", default=str(RESULTS / "soak.md"), help="the Markdown report")
    p.add_argument("--svg", default=str(RESULTS / "soak-rss.svg"), help="the plot")
    p.add_argument("--jsonl", default=str(RESULTS / "soak.jsonl"),
                   help="the load generator's JSON lines")
    p.add_argument("--from-jsonl", default=None, metavar="FILE",
                   help="write the report and plot of an earlier run's JSON lines; run nothing")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    rc, tail, loadavg = None, "", None
    if args.from_jsonl:
        jsonl = pathlib.Path(args.from_jsonl)
        rc = 0
    else:
        jsonl = pathlib.Path(args.jsonl)
        jsonl.parent.mkdir(parents=True, exist_ok=True)
        before = os.getloadavg()[0]
        rc, tail = run_loadgen(args, jsonl)
        loadavg = (before, os.getloadavg()[0])
    start, intervals, summary = read_jsonl(jsonl)
    if args.from_jsonl and summary is None:
        rc = None
    out, svg = pathlib.Path(args.out), pathlib.Path(args.svg)
    args.jsonl_name = os.path.relpath(jsonl, out.parent)
    warmup = args.warmup if args.warmup is not None else default_warmup(
        (start or {}).get("settings", {}).get("duration", args.duration))
    text, ok = report(args, start, intervals, summary, rc, tail,
                      os.path.relpath(svg, out.parent), loadavg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if intervals:
        svg.write_text(plot(intervals, warmup, args.window))
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
