"""Run every harness (or some) for a bounded time from its seed corpus; exit
1 if any crashed, naming the crash file.  .ci/run runs this after the tests.

    python fuzz/run.py                      # each harness $ONLINEL1_FUZZ_SECONDS (30) seconds
    python fuzz/run.py --seconds 300 vw     # one harness, longer
    ONLINEL1_FUZZ_SECONDS=0 .ci/run         # no fuzzing

Each harness runs as its own libFuzzer process, one after the other (they
are single-threaded): ``python fuzz/fuzz_<name>.py WORK SEEDS
-max_total_time=N ...``.  The seeds (fuzz/corpus/<name>/) are only read;
the inputs libFuzzer finds go to WORK, a folder of --work (by default a
new temporary folder, printed, kept when something crashed), as do the
crash files (``<work>/<name>/crash-<sha1>``) and the log of each run.
Replay a crash with ``python fuzz/reproduce.py <name> <crash file>``.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import ol1fuzz

#: libFuzzer's options for every harness: an input slower than TIMEOUT
#: seconds is a crash (a hang), and so is a process above RSS_LIMIT_MB.
TIMEOUT = 25
RSS_LIMIT_MB = 2048
STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)


def command(harness: str, seconds: int, work: pathlib.Path) -> list[str]:
    cmd = [sys.executable, str(ol1fuzz.FUZZ / f"fuzz_{harness}.py"), str(work / "corpus"),
           str(ol1fuzz.CORPUS / harness), f"-max_total_time={seconds}",
           f"-artifact_prefix={work}{os.sep}", f"-timeout={TIMEOUT}",
           f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1"]
    dictionary = ol1fuzz.DICTS / f"{harness}.dict"
    if dictionary.exists():
        cmd.append(f"-dict={dictionary}")
    return cmd


def run(harness: str, seconds: int, work: pathlib.Path) -> tuple[bool, dict[str, int], float]:
    """Fuzz one harness; (crashed?, libFuzzer's final stats, wall seconds)."""
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    log = work / "fuzz.log"
    env = dict(os.environ, ONLINEL1_FUZZ_TMP=str(work), PYTHONWARNINGS="ignore")
    began = time.monotonic()
    with open(log, "wb") as out:
        code = subprocess.call(command(harness, seconds, work), stdout=out,
                               stderr=subprocess.STDOUT, env=env, cwd=ol1fuzz.REPO)
    wall = time.monotonic() - began
    text = log.read_text("utf-8", "replace")
    stats = {name: int(value) for name, value in STAT.findall(text)}
    crashes = sorted(p for p in work.iterdir()
                     if p.is_file() and p.name.split("-")[0] in ("crash", "timeout", "oom",
                                                                  "leak", "slow"))
    crashed = code != 0 or bool(crashes)
    if crashed:
        print(f"\n=== {harness}: CRASH (exit {code}); the end of {log}:\n", flush=True)
        print("\n".join(text.splitlines()[-40:]))
        for path in crashes:
            print(f"\n{harness}: crash input {path}\n    replay: python fuzz/reproduce.py "
                  f"{harness} {path}")
    return crashed, stats, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harnesses", nargs="*", metavar="harness",
                        help=f"which of {', '.join(ol1fuzz.HARNESSES)} (default: all)")
    parser.add_argument("--seconds", type=int,
                        default=int(os.environ.get("ONLINEL1_FUZZ_SECONDS", "30")),
                        help="per harness (default: $ONLINEL1_FUZZ_SECONDS or 30; 0 skips)")
    parser.add_argument("--work", type=pathlib.Path,
                        help="folder for the corpora found, crashes and logs "
                             "(default: a new temporary one)")
    args = parser.parse_args(argv)
    harnesses = args.harnesses or list(ol1fuzz.HARNESSES)
    unknown = sorted(set(harnesses) - set(ol1fuzz.HARNESSES))
    if unknown:
        parser.error(f"no harness {', '.join(unknown)}")
    if args.seconds <= 0:
        print("fuzzing skipped (--seconds / ONLINEL1_FUZZ_SECONDS is 0)")
        return 0
    work = args.work or pathlib.Path(tempfile.mkdtemp(prefix="onlinel1-fuzz-"))
    print(f"fuzzing {', '.join(harnesses)} for {args.seconds} s each; work folder {work}",
          flush=True)
    failed = []
    for harness in harnesses:
        crashed, stats, wall = run(harness, args.seconds, work / harness)
        runs = stats.get("number_of_executed_units", 0)
        print(f"{harness:>11}: {'CRASH' if crashed else 'ok':5} {runs:>8} executions in "
              f"{wall:5.1f} s ({stats.get('average_exec_per_sec', 0)}/s), "
              f"{stats.get('new_units_added', 0)} new inputs", flush=True)
        if crashed:
            failed.append(harness)
    if failed:
        print(f"\nfuzzing found crashes in: {', '.join(failed)} (work folder {work} kept)")
        return 1
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
