"""The defaults of ``onlinel1 train``, chosen beside Vowpal Wabbit's: one
pass, progressive log loss and non-zero weights, on the shared real data
sets (../shared/datasets, beside the checkout) and a synthetic click log.

    python benchmarks/bench_defaults.py [--out benchmarks/results/defaults.md]
                                        [--clicks 3000000] [--workdir DIR] [--speed-rounds 3]

Every data set is learned once in file order by

* ``onlinel1 train FILE`` with no learner flags (the defaults),
* the defaults before 2026-12-03 (``--update cumulative --eta0 0.1
  --l1 1e-6``) and constant-step cumulative and fobos at ``--eta0 0.01``,
* the candidates: ``adagrad-fobos`` (FOBOS's L1 with AdaGrad's
  per-coordinate steps; ``fobos --adaptive`` is the same kernel) and
  ``cumulative --adaptive``, at ``--eta0`` 0.02, 0.05, 0.1 and ``--l1``
  1e-6, 1e-4,
* Vowpal Wabbit (``pip install vowpalwabbit``) with its defaults and
  ``--loss_function logistic --link logistic`` (``-d FILE``: its average
  loss is progressive, each example's loss taken before it learns it;
  its non-zero weights counted over the 2^18 of its table).

The Criteo rows (the real click data) are written as VW text (``|i`` the
integer fields as values ``log(1 + v)``, ``|c`` the categorical ones as
``C<k>=<hash>`` strings) and both learners read that file; the LIBSVM sets
are read as svmlight by onlinel1 and as ``|f index:value`` by VW.  The
click log is benchmarks/bench_scale.py's (``--clicks`` rows of 30 fields,
labels from a hidden sparse logistic model; about 9 M distinct features at
3 M rows), written once to ``--workdir``; ``--clicks 0`` leaves it out.

The report ends with the criterion the defaults were chosen by: on the
real click data, a progressive loss within 1 % of VW's defaults with
fewer non-zero weights; then the defaults' speed beside VW's on the click
log, whole processes timed in turn (``--speed-rounds``).  About 13 minutes
here with the click log, 40 s without.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
#: (label, flags) of every onlinel1 run; the first is the defaults.
CONFIGS = ([("defaults (no flags)", ()),
            ("before 2026-12-03: cumulative, -l 0.1, --l1 1e-6",
             ("--update", "cumulative", "--eta0", "0.1", "--l1", "1e-6")),
            ("cumulative, -l 0.01, --l1 1e-4",
             ("--update", "cumulative", "--eta0", "0.01", "--l1", "1e-4")),
            ("fobos, -l 0.01, --l1 1e-4", ("--update", "fobos", "--eta0", "0.01", "--l1", "1e-4"))]
           + [(f"{name}, -l {eta:g}, --l1 {l1:g}", (*flags, "--eta0", str(eta), "--l1", str(l1)))
              for name, flags in (("adagrad-fobos", ("--update", "adagrad-fobos")),
                                  ("cumulative --adaptive", ("--update", "cumulative",
                                                             "--adaptive")))
              for eta in (0.02, 0.05, 0.1) for l1 in (1e-6, 1e-4)])
#: The criterion: within this fraction of VW's loss on real click data.
WITHIN = 0.01


def criteo_to_vw(src: pathlib.Path, dst: pathlib.Path) -> None:
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            label = "1" if cols[0] == "1" else "-1"
            # Integer counts up to 10^5 as raw values make every step
            # overflow a linear model: log(1 + v) (sign kept), as usual.
            ints = [f"I{k}:{math.copysign(math.log1p(abs(float(v))), float(v)):.6g}"
                    for k, v in enumerate(cols[1:14], 1) if v not in ("", "0")]
            cats = [f"C{k}={v}" for k, v in enumerate(cols[14:40], 1) if v]
            out.write(f"{label} |i {' '.join(ints)} |c {' '.join(cats)}\n")


def svm_to_vw(src: pathlib.Path, dst: pathlib.Path) -> None:
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            label = "1" if float(parts[0]) > 0 else "-1"
            out.write(f"{label} |f {' '.join(parts[1:])}\n")


def onlinel1_train(path: pathlib.Path, *flags: str) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "onlinel1", "train", str(path), *flags],
                         capture_output=True, text=True, env=env)
    text = out.stdout + out.stderr     # the report goes to stderr when stdout is not a tty
    loss = re.search(r"^progressive loss\s+(\S+)", text, re.M)
    nnz = re.search(r"^non-zero weights\s+(\S+)", text, re.M)
    if out.returncode != 0 or loss is None or nnz is None:
        return math.nan, -1       # e.g. a step that overflows: reported as failed
    return float(loss.group(1)), int(nnz.group(1).replace(",", ""))


def vw_run(path: pathlib.Path) -> tuple[float, int]:
    """Vowpal Wabbit's progressive loss and non-zero weights, defaults."""
    from vowpalwabbit import pyvw
    ws = pyvw.Workspace(f"-d {path} --loss_function logistic --link logistic --quiet")
    loss = ws.get_sum_loss() / ws.get_weighted_examples()
    nnz = sum(1 for i in range(ws.num_weights()) if ws.get_weight(i) != 0.0)
    ws.finish()
    return loss, nnz


def click_log(rows: int, workdir: pathlib.Path) -> pathlib.Path:
    """bench_scale.py's synthetic click log of ``rows`` rows (seed 0, 22 %
    positive), written once to ``workdir``."""
    path = workdir / f"clicks-{rows}-seed0.vw"
    meta = path.with_name(path.name + ".json")
    if not (path.exists() and meta.exists()
            and json.loads(meta.read_text()).get("bytes") == path.stat().st_size):
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"writing {rows:,} rows to {path}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"),
                        "_generate", str(rows), "0", "0.22", str(path)], check=True)
    return path


VW_PROCESS = "import sys, vowpalwabbit; vowpalwabbit.Workspace(sys.argv[1]).finish()"


def speed(path: pathlib.Path, rows: int, rounds: int) -> list[str]:
    """Whole processes, timed from start to exit, in turn for ``rounds``
    rounds: ``onlinel1 train FILE --quiet`` (the defaults) and VW with its
    defaults (``-d FILE``), on the same file; the report's lines."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmds = {"onlinel1 train FILE (defaults)": [sys.executable, "-m", "onlinel1", "train",
                                               str(path), "--quiet"],
            "onlinel1 train FILE --no-names": [sys.executable, "-m", "onlinel1", "train",
                                               str(path), "--quiet", "--no-names"],
            "Vowpal Wabbit, defaults": [sys.executable, "-c", VW_PROCESS,
                                        f"-d {path} --loss_function logistic --link logistic "
                                        f"--quiet"]}
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(rounds):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            times[name].append(time.perf_counter() - t0)
    median = {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}
    vw = median["Vowpal Wabbit, defaults"]
    lines = [f"\n## Speed of the defaults on the click log\n\nWhole processes from start to "
             f"exit on the {rows:,} rows, in turn, median of {rounds} rounds (one run, one "
             f"machine: a ratio, not a constant):\n",
             "| | seconds | examples/s | vs VW |", "|---|---:|---:|---:|"]
    for name, t in median.items():
        lines.append(f"| {name} | {t:.1f} | {rows / t:,.0f} | {vw / t:.2f}x |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "defaults.md"))
    ap.add_argument("--clicks", type=int, default=3_000_000,
                    help="rows of the synthetic click log (0: leave it out; default: %(default)s)")
    ap.add_argument("--workdir", type=pathlib.Path,
                    default=pathlib.Path(tempfile.gettempdir()) / "onlinel1-bench-defaults",
                    help="where the click log is written once (default: %(default)s)")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the timed runs on the click log (written to --out)")
    ap.add_argument("--speed-rounds", type=int, default=3,
                    help="rounds of the timed defaults beside VW on the click log (0: none; "
                         "default: %(default)s)")
    args = ap.parse_args()
    started = time.time()
    if args.speed_only:
        clicks = click_log(args.clicks, args.workdir)
        lines = ["# The defaults of `onlinel1 train` beside Vowpal Wabbit's: speed\n",
                 f"Measured {datetime.date.today().isoformat()} with `python "
                 f"benchmarks/bench_defaults.py --speed-only` (the machine otherwise idle).\n"]
        lines += speed(clicks, args.clicks, max(args.speed_rounds, 1))
        pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
        return 0
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_defaults_"))
    criteo = tmp / "criteo_train.vw"
    criteo_to_vw(SHARED / "ctr_criteo_8k" / "train.tsv", criteo)
    # (title, short name, onlinel1's file, VW's file, real click data)
    sets = [("ctr_criteo_8k train (7,200 rows; real click data)", "Criteo 8k", criteo, criteo,
             True)]
    if args.clicks:
        clicks = click_log(args.clicks, args.workdir)
        sets.append((f"synthetic click log ({args.clicks:,} rows, bench_scale.py)", "click log",
                     clicks, clicks, False))
    for name, short, rel in (("a9a train (32,561 rows)", "a9a", "a9a/a9a.train.svm"),
                             ("mushrooms train (6,513 rows)", "mushrooms",
                              "mushrooms_agaricus/agaricus.train.svm"),
                             ("rcv1_small train (1,000 rows)", "rcv1", "vw_rcv1/rcv1_small.train.svm")):
        vw = tmp / (pathlib.Path(rel).stem + ".vw")
        svm_to_vw(SHARED / rel, vw)
        sets.append((name, short, SHARED / rel, vw, False))

    import vowpalwabbit
    lines = ["# The defaults of `onlinel1 train`, beside Vowpal Wabbit's\n",
             f"Measured {datetime.date.today().isoformat()} with "
             f"`python benchmarks/bench_defaults.py` (one pass in file order; Vowpal Wabbit "
             f"{vowpalwabbit.__version__} with its defaults, `--loss_function logistic --link "
             f"logistic`). Progressive log loss: each example's loss from the prediction made "
             f"before learning it. Lower is better; the best onlinel1 figure of each data set "
             f"is in bold. VW's non-zero weights are those of its 2^18-slot table.\n"]
    results: dict[str, dict[str, tuple[float, int]]] = {}
    vw: dict[str, tuple[float, int]] = {}
    for title, short, ours, theirs, _ in sets:
        vw[short] = vw_run(theirs)
        results[short] = {label: onlinel1_train(ours, *flags) for label, flags in CONFIGS}
        rows = results[short]
        best = min(r[0] for r in rows.values() if r[0] == r[0])
        vw_loss, vw_nnz = vw[short]
        lines.append(f"\n## {title}\n\nVowpal Wabbit, defaults: **{vw_loss:.4f}**, "
                     f"{vw_nnz:,} non-zero weights\n")
        lines.append("| onlinel1 | progressive loss | vs VW | non-zero weights |")
        lines.append("|---|---:|---:|---:|")
        for label, (loss, nnz) in rows.items():
            if loss != loss:
                lines.append(f"| {label} | failed (overflow) | | |")
                continue
            shown = f"**{loss:.4f}**" if loss == best else f"{loss:.4f}"
            lines.append(f"| {label} | {shown} | {100 * (loss / vw_loss - 1):+.1f} % | "
                         f"{nnz:,} |")
        print(f"{title}: VW {vw_loss:.4f}, defaults {rows[CONFIGS[0][0]][0]:.4f}",
              file=sys.stderr, flush=True)

    lines.append("\n## The choice\n")
    lines.append("Each configuration's loss beside VW's (and its non-zero weights beside "
                 "VW's) on every data set:\n")
    shorts = [s[1] for s in sets]
    lines.append("| onlinel1 | " + " | ".join(shorts) + " |")
    lines.append("|---|" + "---:|" * len(shorts))
    for label, _ in CONFIGS:
        cells = []
        for short in shorts:
            loss, nnz = results[short][label]
            cells.append("failed" if loss != loss else
                         f"{100 * (loss / vw[short][0] - 1):+.1f} % ({nnz / vw[short][1]:.2f}x)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    label = CONFIGS[0][0]
    for title, short, _, _, real in sets:
        if not real:
            continue
        loss, nnz = results[short][label]
        ok = loss <= (1 + WITHIN) * vw[short][0] and 0 <= nnz < vw[short][1]
        lines.append(f"\nThe criterion, on {short} (real click data): a loss within "
                     f"{100 * WITHIN:g} % of VW's defaults with fewer non-zero weights. The "
                     f"defaults: {loss:.4f} against {vw[short][0]:.4f} "
                     f"({100 * (loss / vw[short][0] - 1):+.1f} %), {nnz:,} non-zero weights "
                     f"against {vw[short][1]:,}: **{'met' if ok else 'NOT met'}**.")
    if args.clicks and args.speed_rounds:
        lines += speed(clicks, args.clicks, args.speed_rounds)
    lines.append(f"\nTotal time {time.time() - started:.0f} s on this machine (2 cores).\n")
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
