"""Progressive log loss of ``onlinel1 train`` with and without ``--adaptive``
(docs/algorithms.md, "Adaptive steps") beside Vowpal Wabbit's defaults, on
the shared real data sets (../shared/datasets, beside the checkout).

    python benchmarks/bench_defaults.py [--out benchmarks/results/defaults.md]

For every data set and every rule (cumulative, fobos), with and without
``--adaptive``, at a few ``--eta0``, one pass in file order, with the
other settings at their defaults (``--l1 1e-6``); Vowpal Wabbit
(``pip install vowpalwabbit``) with its defaults and ``--loss_function
logistic --link logistic``, its progressive loss computed from the
prediction it makes before learning each example. The Criteo rows are
written as VW text (``|i`` the integer fields as values ``log(1 + v)``, ``|c`` the
categorical ones as ``C<k>=<hash>`` strings) and both learners read that
file; the LIBSVM sets are read as svmlight by onlinel1 and as
``|f index:value`` by VW.

This only measures: it does not change any default (that decision is the
project lead's). Takes about 15 s here.
"""
from __future__ import annotations

import argparse
import datetime
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
ETAS = (0.01, 0.1, 0.5, 1.0)
RULES = ("cumulative", "fobos")


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


def vw_progressive(path: pathlib.Path) -> float:
    from vowpalwabbit import pyvw
    ws = pyvw.Workspace("--loss_function logistic --link logistic --quiet")
    total, n = 0.0, 0
    with open(path) as f:
        for line in f:
            ex = ws.parse(line)
            ws.learn(ex)       # the prediction it keeps is the one made before learning
            p = min(max(ex.get_simplelabel_prediction(), 1e-15), 1 - 1e-15)
            y = ex.get_simplelabel_label()
            total += -math.log(p if y > 0 else 1.0 - p)
            n += 1
            ws.finish_example(ex)
    ws.finish()
    return total / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "defaults.md"))
    args = ap.parse_args()
    started = time.time()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_defaults_"))
    sets = []
    criteo = tmp / "criteo_train.vw"
    criteo_to_vw(SHARED / "ctr_criteo_8k" / "train.tsv", criteo)
    sets.append(("ctr_criteo_8k train (7,200 rows)", criteo, criteo))
    for name, rel in (("a9a train (32,561 rows)", "a9a/a9a.train.svm"),
                      ("rcv1_small train (1,000 rows)", "vw_rcv1/rcv1_small.train.svm")):
        vw = tmp / (pathlib.Path(rel).stem + ".vw")
        svm_to_vw(SHARED / rel, vw)
        sets.append((name, SHARED / rel, vw))

    lines = [f"# Progressive log loss: onlinel1 with and without --adaptive, beside VW\n",
             f"Measured {datetime.date.today().isoformat()} with "
             f"`python benchmarks/bench_defaults.py` (one pass in file order, `--l1 1e-6` "
             f"(the default) for every onlinel1 run; Vowpal Wabbit "
             f"{__import__('vowpalwabbit').__version__} with its defaults, "
             f"`--loss_function logistic --link logistic`, its loss from the prediction made "
             f"before it learns each example). Both read the same VW text for Criteo "
             f"(integer fields as `log(1 + v)`, categorical ones as `C<k>=<hash>` "
             f"strings); for the LIBSVM sets onlinel1 reads svmlight and VW `|f index:value` "
             f"lines. Lower is better; the best onlinel1 figure of each data set is in "
             f"bold. No default is changed by this.\n"]
    for title, ours, theirs in sets:
        vw_loss = vw_progressive(theirs)
        rows = []
        for rule in RULES:
            for adaptive in (False, True):
                for eta in ETAS:
                    flags = ["--update", rule, "--eta0", str(eta)] + (["--adaptive"] if adaptive
                                                                        else [])
                    loss, nnz = onlinel1_train(ours, *flags)
                    rows.append((rule, adaptive, eta, loss, nnz))
        best = min(r[3] for r in rows if r[3] == r[3])
        lines.append(f"\n## {title}\n\nVowpal Wabbit, defaults: **{vw_loss:.4f}**\n")
        lines.append("| rule | --adaptive | --eta0 | progressive loss | vs VW | non-zero weights |")
        lines.append("|---|---|---:|---:|---:|---:|")
        for rule, adaptive, eta, loss, nnz in rows:
            if loss != loss:
                lines.append(f"| {rule} | {'yes' if adaptive else 'no'} | {eta:g} | failed "
                             f"(overflow) | | |")
                continue
            shown = f"**{loss:.4f}**" if loss == best else f"{loss:.4f}"
            lines.append(f"| {rule} | {'yes' if adaptive else 'no'} | {eta:g} | {shown} | "
                         f"{100 * (loss / vw_loss - 1):+.1f} % | {nnz:,} |")
        print(f"{title}: VW {vw_loss:.4f}, best onlinel1 {best:.4f}", file=sys.stderr)
    lines.append(f"\nTotal time {time.time() - started:.0f} s on this machine (2 cores).\n")
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
