#!/usr/bin/env bash
# Where `onlinel1 train`'s time goes at scale: `perf record` of one run over
# bench_scale's click log (12.9 M distinct features), its samples by thread
# (the learning thread and the read-ahead parser) and function.
#
#   bash benchmarks/profile_train.sh [DATA] [TRAIN-OPTIONS...]
#
# DATA defaults to bench_scale's 3 M-row file (python benchmarks/bench_scale.py
# writes it); the default options are bench_scale's fobos run.  Needs perf
# (linux-perf) and kernel.perf_event_paranoid <= 2; TOP lines are printed
# (default 25).
set -euo pipefail
DATA=${1:-$(ls /tmp/onlinel1-bench-scale/clicks-3000000-seed0-*.vw | head -1)}
shift || true
OPTIONS=("$@")
[ ${#OPTIONS[@]} -gt 0 ] || OPTIONS=(--update fobos --l1 1e-08 --eta0 0.01 --no-names)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "# $(date -u +%FT%TZ) onlinel1 @ $(git -C "$(dirname "$0")" rev-parse --short HEAD), load $(cut -d' ' -f1 /proc/loadavg)"
echo "# perf record -- onlinel1 train $DATA --format vw ${OPTIONS[*]} --quiet"
/usr/bin/time -f "# %e s wall, %U s user, %S s system" \
    perf record -q -o "$WORK/perf.data" -- onlinel1 train "$DATA" --format vw "${OPTIONS[@]}" --quiet
# One line per (thread, function): the share of all samples, the thread id
# (the lower one is the learning thread) and the function.
perf report -i "$WORK/perf.data" --stdio --sort pid,sym 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -"${TOP:-25}"
