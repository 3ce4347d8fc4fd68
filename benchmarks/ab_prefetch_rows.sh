#!/usr/bin/env bash
# How far ahead the per-example loop should prefetch (PREFETCH_ROWS in
# onlinel1/_kernels/sgd.pyx.tp): builds one copy of the checkout per
# distance, then times in-process FOBOS learning over bench_scale's rows
# (13 M distinct features) with each, the copies alternated ROUNDS times.
#
#   bash benchmarks/ab_prefetch_rows.sh [ROUNDS] [DISTANCES...]
#
# Needs bench_scale's data file (python benchmarks/bench_scale.py --parts
# inprocess --rules fobos writes it); prints one line per run.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
ROUNDS=${1:-3}; shift || true
DISTANCES=${*:-2 3 4}
DATA=$(ls /tmp/onlinel1-bench-scale/clicks-3000000-seed0-*.vw | head -1)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for d in $DISTANCES; do
    git -C "$REPO" archive HEAD | (mkdir -p "$WORK/$d" && tar -x -C "$WORK/$d")
    sed -i "s/^    PREFETCH_ROWS = [0-9]*/    PREFETCH_ROWS = $d/" "$WORK/$d/onlinel1/_kernels/sgd.pyx.tp"
    (cd "$WORK/$d" && "$PY" setup.py build_ext --inplace -j 2 > build.log 2>&1)
done
cat > "$WORK/time.py" <<'PYEOF'
import gc, sys, time
from onlinel1 import Learner
from onlinel1.io import read_batches
batches = list(read_batches(sys.argv[1], "vw", batch_size=8192))
learner = Learner(update="fobos", l1=1e-8, eta0=0.01)
gc.disable()
t = time.perf_counter()
for b in batches:
    learner.learn(b)
dt = time.perf_counter() - t
print(f"{dt:.3f} s  {sum(b.nnz for b in batches) / dt / 1e6:.2f} M feature-updates/s")
PYEOF
echo "# $(date -u +%FT%TZ) $(git -C "$REPO" rev-parse --short HEAD), load $(cut -d' ' -f1 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for d in $DISTANCES; do
        echo "round $r  PREFETCH_ROWS=$d  $(cd "$WORK" && PYTHONPATH="$WORK/$d" "$PY" time.py "$DATA")"
    done
done
