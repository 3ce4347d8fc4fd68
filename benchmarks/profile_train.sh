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
# (default 25).  ANNOTATE=SYMBOL also prints the instructions of that
# function that hold at least 1 % of its samples.  The onlinel1 that runs
# is `$PYTHON -m onlinel1` (PYTHONPATH=CHECKOUT picks a build in place).
set -euo pipefail
DATA=${1:-$(ls /tmp/onlinel1-bench-scale/clicks-3000000-seed0-*.vw | head -1)}
shift || true
OPTIONS=("$@")
[ ${#OPTIONS[@]} -gt 0 ] || OPTIONS=(--update fobos --l1 1e-08 --eta0 0.01 --no-names)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=${PYTHON:-python}
WHERE=$(cd /tmp && "$PY" -c 'import onlinel1, os; print(os.path.dirname(os.path.dirname(onlinel1.__file__)))')
echo "# $(date -u +%FT%TZ) onlinel1 @ $(git -C "$WHERE" rev-parse --short HEAD 2>/dev/null || echo "$WHERE"), load $(cut -d' ' -f1 /proc/loadavg)"
echo "# perf record -- onlinel1 train $DATA --format vw ${OPTIONS[*]} --quiet"
/usr/bin/time -f "# %e s wall, %U s user, %S s system" \
    perf record -q -o "$WORK/perf.data" -- "$PY" -m onlinel1 train "$DATA" --format vw "${OPTIONS[@]}" --quiet
# One line per (thread, function): the share of all samples, the thread id
# (the lower one is the learning thread) and the function.
perf report -i "$WORK/perf.data" --stdio --sort pid,sym 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | sed -n "1,${TOP:-25}p"
if [ -n "${ANNOTATE:-}" ]; then
    echo "# the instructions of $ANNOTATE with >= 1 % of its samples"
    perf annotate -i "$WORK/perf.data" --stdio -s "$ANNOTATE" 2>/dev/null | awk '$1 + 0 >= 1'
fi
