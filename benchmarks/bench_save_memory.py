#!/usr/bin/env python3
"""Peak memory of ``onlinel1 train --save`` against ``onlinel1 train``, at
10 M live features, and the time of saving and loading that model.

The script writes a synthetic svmlight file (fixed seed) in which every
feature index occurs once: ``--features`` distinct random indices (default
10,240,000), ``--per-row`` to a row, random labels.  With ``--l1 1e-9``
every feature stays live, and ``onlinel1 inspect`` of the saved model
reports the live count.  Then, ``--repeat`` times, alternating:

* ``python -m onlinel1 train FILE --quiet --l1 1e-9``
* ``python -m onlinel1 train FILE --quiet --l1 1e-9 --save MODEL``

each a child process whose peak resident memory (``ru_maxrss``) comes from
``os.wait4``.  The target is a median ratio of at most 1.15.  With
``--old-encoder`` it also runs ``train --save`` with the encoder that built
the whole file in memory (``tests/old_model_file.py``), for comparison.

Last, a child process loads the model (``model_file.load``, timed) and
saves it again (``model_file.save``, timed, with fsync), and reports its
peak memory after each step; its baseline is a child that only imports
onlinel1.

Usage:
    python benchmarks/bench_save_memory.py [--features N] [--repeat 3]
        [--old-encoder] [--dir DIR] [--out benchmarks/results/save_memory.md]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
L1 = "1e-9"


def write_data(path: pathlib.Path, features: int, per_row: int, seed: int) -> int:
    """The svmlight file: each of ``features`` distinct indices in one row
    (ascending within the row); return the number of rows."""
    import numpy as np
    rng = np.random.default_rng(seed)
    # Distinct indices spread over 1..8*features, in random order.
    indices = rng.choice(8 * features, size=features, replace=False).astype(np.int64) + 1
    rows = -(-features // per_row)
    labels = rng.choice(np.array(["-1", "+1"]), size=rows)
    with open(path, "w") as f:
        for start in range(0, rows, 10_000):
            lines = []
            for row in range(start, min(rows, start + 10_000)):
                part = np.sort(indices[row * per_row:(row + 1) * per_row])
                lines.append(labels[row] + " " + " ".join(f"{i}:1" for i in part.tolist()))
            f.write("\n".join(lines))
            f.write("\n")
    return rows


def run_child(argv: list[str], out: pathlib.Path) -> tuple[int, float, float]:
    """Run ``argv`` with stdout and stderr to ``out``; return (exit code,
    peak RSS in MiB, wall seconds).  The child is always reaped.

    Linux carries the parent's resident high-water mark into a child's
    ``ru_maxrss`` across ``execve``, so this process stays small (no numpy;
    the data is written by a child) and ``base`` below is measured too."""
    began = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, str(out),
                                        os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                                       (os.POSIX_SPAWN_DUP2, 1, 2)])
    try:
        _, status, usage = os.wait4(pid, 0)
    except BaseException:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    elapsed = time.perf_counter() - began
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, elapsed


def checked(argv: list[str], out: pathlib.Path) -> tuple[float, float]:
    code, rss, elapsed = run_child(argv, out)
    if code != 0:
        raise SystemExit(f"{shlex.join(argv)} exited with {code}:\n{out.read_text()[-2000:]}")
    return rss, elapsed


# ------------------------------------------------------------ child modes

def child_old_train(argv: list[str]) -> int:
    """``onlinel1 train ARGV`` with model_file.save as it was: the whole
    file built in memory, then written."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from old_model_file import old_encode
    from onlinel1 import model_file
    from onlinel1.cli import main

    def save(path, learner, names=None, extra=None, **_):
        data = old_encode(learner, names, extra, written_by="old", written_at="old")
        model_file.write_atomic(path, data)
        return len(data)

    model_file.save = save
    return main(argv)



def max_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def child_load_save(model: str, again: str) -> int:
    from onlinel1 import model_file
    began = time.perf_counter()
    learner, names, extra = model_file.load(model)
    load_s = time.perf_counter() - began
    after_load, held = max_rss_mib(), current_rss_mib()
    began = time.perf_counter()
    size = model_file.save(again, learner, names, extra)
    save_s = time.perf_counter() - began
    peak_after_save = max_rss_mib()
    print(json.dumps({"load_s": load_s, "save_s": save_s, "size": size,
                      "rows": learner.store_size, "peak_after_load": after_load,
                      "rss_after_load": held, "peak_after_save": peak_after_save}))
    return 0


# ------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=10_240_000,
                        help="distinct features in the file (default: %(default)s)")
    parser.add_argument("--per-row", type=int, default=40,
                        help="features per row (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each train command (default: %(default)s)")
    parser.add_argument("--old-encoder", action="store_true",
                        help="also run train --save with the in-memory encoder of before")
    parser.add_argument("--dir", help="where the data and models go (default: a temporary "
                                      "directory)")
    parser.add_argument("--out", help="also write the Markdown report here")
    args = parser.parse_args()
    command = "python benchmarks/bench_save_memory.py " + shlex.join(sys.argv[1:])
    py = sys.executable
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = pathlib.Path(tmp)
        data, model, log = tmp / "synthetic.svm", tmp / "model.ol1", tmp / "child.log"
        began = time.perf_counter()
        checked([py, __file__, "--child-write-data", str(data), str(args.features),
                 str(args.per_row), str(args.seed)], log)
        rows = int(log.read_text().split()[-1])
        print(f"data: {rows:,} rows, {args.features:,} distinct features, "
              f"{data.stat().st_size / 2**20:,.0f} MiB, written in "
              f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
        train = [py, "-m", "onlinel1", "train", str(data), "--quiet", "--l1", L1]
        runs: dict[str, list[tuple[float, float]]] = {"train": [], "train --save": []}
        for i in range(args.repeat):
            order = ["train", "train --save"] if i % 2 == 0 else ["train --save", "train"]
            for what in order:
                argv = train if what == "train" else train + ["--save", str(model)]
                runs[what].append(checked(argv, log))
                print(f"{what}: peak {runs[what][-1][0]:,.0f} MiB, "
                      f"{runs[what][-1][1]:.1f} s", file=sys.stderr)
        if args.old_encoder:
            old_model = tmp / "old.ol1"
            runs["train --save (old encoder)"] = [checked(
                [py, __file__, "--child-old-train", "train", str(data), "--quiet", "--l1", L1,
                 "--save", str(old_model)], log)]
            with open(old_model, "rb") as old, open(model, "rb") as new:   # not whole:
                if old.read(12) != new.read(12):        # this process must stay small
                    raise SystemExit("the old encoder wrote another format")
            old_model.unlink()
        checked([py, "-m", "onlinel1", "inspect", str(model), "--top", "0"], log)
        inspect = log.read_text()
        live = int(re.search(r"non-zero weights\s+(\d+)", inspect).group(1))
        file_size = model.stat().st_size
        base_rss, _ = checked([py, "-c", "import onlinel1.model_file"], log)
        checked([py, __file__, "--child-load-save", str(model), str(tmp / "again.ol1")], log)
        ls = json.loads(log.read_text().strip().splitlines()[-1])
        if ls["size"] != file_size or ls["rows"] < live:
            raise SystemExit(f"the model saved again differs: {ls} against {file_size} bytes")

    def med(what: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[what])

    parent_rss = max_rss_mib()
    ratio = med("train --save", 0) / med("train", 0)
    lines = [
        f"Peak memory of `train --save` ({datetime.date.today().isoformat()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}), "
        f"median of {args.repeat} runs each, alternating; the machine is shared, so times "
        f"are noisy, memory figures are not.",
        f"Command: `{command}`",
        "",
        f"Data: synthetic svmlight, {rows:,} rows, {args.features:,} distinct features "
        f"({args.per_row} a row, each once), seed {args.seed}. Rule: the defaults "
        f"(cumulative L1, origin first-seen: keys, weights and 2 state columns) with "
        f"`--l1 {L1}`. `onlinel1 inspect` of the model: **{live:,} non-zero weights**; "
        f"model file {file_size / 2**20:,.1f} MiB.",
        "",
        "| command | peak RSS (median) | min | max | wall time (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for what, results in runs.items():
        rss = [r[0] for r in results]
        lines.append(f"| `onlinel1 {what}` | {statistics.median(rss):,.1f} MiB | "
                     f"{min(rss):,.1f} MiB | {max(rss):,.1f} MiB | {med(what, 1):.1f} s |")
    lines += [
        "",
        f"Ratio `train --save` / `train`: **{ratio:.3f}** (target <= 1.15: "
        f"{'met' if ratio <= 1.15 else 'NOT met'}).",
        "",
        "Save and load of that model in one child process (peak RSS so far after each step; "
        f"a child that only imports onlinel1 peaks at {base_rss:,.0f} MiB, this script at "
        f"{parent_rss:,.0f} MiB):",
        "",
        "| step | time | peak RSS after it |",
        "|---|---:|---:|",
        f"| `model_file.load` ({ls['rows']:,} rows; the learner then holds "
        f"{ls['rss_after_load']:,.0f} MiB resident) | {ls['load_s']:.2f} s | "
        f"{ls['peak_after_load']:,.0f} MiB |",
        f"| `model_file.save` (streaming, with fsync) | {ls['save_s']:.2f} s | "
        f"{ls['peak_after_save']:,.0f} MiB |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        pathlib.Path(args.out).write_text(report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-old-train":
        sys.exit(child_old_train(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--child-write-data":
        print(write_data(pathlib.Path(sys.argv[2]), *map(int, sys.argv[3:6])))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--child-load-save":
        sys.exit(child_load_save(sys.argv[2], sys.argv[3]))
    main()
