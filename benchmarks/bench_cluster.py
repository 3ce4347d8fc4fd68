#!/usr/bin/env python3
"""``onlinel1 cluster`` beside one process, on this machine (docs/scaling.md).

    python benchmarks/bench_cluster.py [--minibatch 256] [--features 10000000]
        [--out benchmarks/results/cluster.md] [--costs-out benchmarks/results/cluster-costs.json]

Part 1, real data: a9a's 32,561 training rows (../shared/datasets; the
2,000-row sample of tests/data without it), learned with
``Learner(minibatch=B)`` and with a ``ClusterLearner`` over S shard actors
and W worker actors on a local Ray (``ray.init(num_cpus=2)``), for (S, W)
in (1, 1), (2, 1), (2, 2), (4, 1), in the same run, each contender timed
over the same rows (learn calls of 1,000 rows), the median of 3 runs.  Each cluster's weights are
checked equal to the single process's, bit for bit.

Part 2, at scale: a model of --features live features (default 10^7; keys
drawn at random, small random weights: the state of a model that has seen
them), loaded into the single process and seeded into each cluster; then
--scale-rows rows (default 20,000) of 31 entries (30 fields and one
rare key), their keys drawn from the model's by a power law, learned by
each.  The store does not fit in any cache here, as in real click logs.

Part 3, the costs of messages: rounds of 1, 2 and 4 actor calls at once
(fitted as a round's fixed cost plus a cost per more call) and calls
carrying 1 and 8 MiB (the bytes' cost); the per-entry costs of
the split, the factors and the apply, and the per-key cost of the pull,
timed in this process on part 1's rows (a one-shard cluster of plain
objects, no Ray).  benchmarks/cluster_model.py's closed form
and simulation are then checked against the measured rows/s of part 1,
and predict N machines.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import ray  # noqa: E402

from onlinel1 import Batch, Learner  # noqa: E402
from onlinel1.cluster.learner import ClusterLearner  # noqa: E402
from onlinel1.cluster.partition import Partitioner  # noqa: E402
from onlinel1.cluster.ray_backend import NAMESPACE, RayCluster  # noqa: E402
from onlinel1.cluster.shard import ShardState  # noqa: E402
from onlinel1.cluster.step import LocalCalls  # noqa: E402
from onlinel1.io import read_batches  # noqa: E402
from onlinel1.options import LearnerOptions  # noqa: E402
import cluster_model  # noqa: E402

CONTENDERS = [(1, 1), (2, 1), (2, 2), (4, 1)]
#: Runs of each contender; the median is reported (the machine is shared).
REPEATS = 3
#: The network of the N-machine predictions: one-way latency, link speed.
LATENCY_S = 50e-6
GBPS = 10
OPTIONS = dict(update="fobos", l1=1e-6, l2=0.0, eta0=0.05)


def a9a_rows() -> tuple[Batch, str]:
    shared = ROOT.parent / "shared" / "datasets" / "a9a" / "a9a.train.svm"
    path = shared if shared.exists() else ROOT / "tests" / "data" / "a9a_head2000.svm"
    batches = list(read_batches(str(path), "svmlight", batch_size=1 << 20))
    return _concat(batches), str(path.relative_to(ROOT.parent))


def _concat(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        b = batches[0]
        return Batch(b.indptr, b.keys, b.values, b.labels)
    offsets = np.cumsum([0] + [b.keys.size for b in batches[:-1]])
    indptr = np.concatenate([batches[0].indptr[:1]]
                            + [b.indptr[1:] + o for b, o in zip(batches, offsets)])
    return Batch(indptr, np.concatenate([b.keys for b in batches]),
                 np.concatenate([b.values for b in batches]),
                 np.concatenate([b.labels for b in batches]))


def learn_all(learner: Learner, batch: Batch, cut: int = 1000) -> float:
    began = time.perf_counter()
    for lo in range(0, batch.n_rows, cut):
        learner.learn(batch.slice(lo, min(lo + cut, batch.n_rows)), check=False)
    learner.flush()
    return time.perf_counter() - began


def scale_model(options: LearnerOptions, features: int, seed: int) -> Learner:
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(1, 2 ** 63, size=int(features * 1.01), dtype=np.uint64))
    keys = rng.permutation(keys)[:features]
    base = Learner(options)
    state = base.state
    state["keys"] = keys
    state["weights"] = rng.normal(0.0, 0.01, size=keys.size)
    state["columns"] = {c: np.zeros(keys.size) for c in state["columns"]}
    return Learner.from_state(state)


def scale_rows(model_keys: np.ndarray, rows: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    ranks = np.minimum((rng.pareto(0.6, size=(rows, 30)) * 50).astype(np.int64),
                       model_keys.size - 1)
    keys = np.empty((rows, 31), dtype=np.uint64)
    keys[:, :30] = model_keys[ranks]
    keys[:, 30] = rng.integers(2 ** 63, 2 ** 64 - 1, size=rows, dtype=np.uint64)   # new ones
    indptr = np.arange(rows + 1, dtype=np.int64) * 31
    labels = np.where(rng.random(rows) < 0.22, 1.0, -1.0)
    return Batch(indptr, keys.reshape(-1), np.ones(rows * 31, dtype=np.float32), labels)


def cluster_run(name: str, options: LearnerOptions, S: int, W: int, batch: Batch,
                seed_from: Learner | None) -> tuple[float, ClusterLearner, RayCluster, float]:
    partitioner = Partitioner(S)
    actors = RayCluster.create(name, options, partitioner, W, {"shards": S, "workers": W})
    learner = ClusterLearner(options, partitioner, actors.calls(), actors.workers())
    began = time.perf_counter()
    learner.seed(seed_from)
    seeded = time.perf_counter() - began
    return learn_all(learner, batch), learner, actors, seeded


def same_weights(a: Learner, b: Learner) -> bool:
    (k1, w1), (k2, w2) = a.weights(), b.weights()
    return bool(np.array_equal(k1, k2) and w1.tobytes() == w2.tobytes())


def message_costs() -> dict:
    """Median round trips: one actor call with no argument, rounds of 1, 2
    and 4 calls shaped like a shard's apply (an int and four arrays of
    1,000 entries; a tuple with a dict back) to as many actors at once,
    and calls carrying 1 and 8 MiB."""
    @ray.remote(num_cpus=0)
    class Echo:
        def size(self, x) -> int:
            return len(x) if x is not None else 0

        def apply(self, n, a, b, c, d):
            return n, {"t": 1, "scale": 1.0, "intercept": 0.0, "clock": 0.0}, None

    echoes = [Echo.remote() for _ in range(4)]
    ray.get([e.size.remote(None) for e in echoes])

    def median(call, repeats: int) -> float:
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            ray.get(call())
            times.append(time.perf_counter() - began)
        return float(np.median(times))
    arrays = [np.zeros(1000, dtype=np.uint64), np.zeros(1000), np.zeros(1001, dtype=np.int64),
              np.zeros((1000, 3))]
    out = {"call_s": median(lambda: echoes[0].size.remote(None), 50)}
    for n in (1, 2, 4):
        out[f"round_{n}_s"] = median(lambda: [e.apply.remote(1, *arrays) for e in echoes[:n]],
                                     50)
    for size, name in ((1 << 20, "call_1MiB_s"), (8 << 20, "call_8MiB_s")):
        arg = np.zeros(size, dtype=np.uint8)
        out[name] = median(lambda: echoes[0].size.remote(arg), 15)
    for e in echoes:
        ray.kill(e)
    # round(n) = round_s + (n - 1) extra_call_s, least squares over n = 1, 2, 4.
    extra, fixed = np.polyfit([0, 1, 3], [out["round_1_s"], out["round_2_s"], out["round_4_s"]], 1)
    slope = (out["call_8MiB_s"] - out["call_1MiB_s"]) / (7 << 20)
    out.update(round_s=float(fixed), extra_call_s=float(extra), bandwidth=1.0 / slope)
    return out


def part(title: str, options: LearnerOptions, batch: Batch, seed_from: Learner | None,
         tag: str) -> tuple[list[dict], dict]:
    times = []
    for _ in range(REPEATS):
        single = Learner(options) if seed_from is None else Learner.from_state(seed_from.state)
        times.append(learn_all(single, batch))
    t_single = float(np.median(times))
    runs = [{"contender": "one process, Learner(minibatch=B)", "seconds": t_single,
             "rows_s": batch.n_rows / t_single, "ratio": 1.0, "identical": "-", "seed_s": 0.0}]
    costs = {}
    for S, W in CONTENDERS:
        timed = []
        for r in range(REPEATS):
            timed.append(cluster_run(f"bench-{tag}-{S}-{W}-{r}", options, S, W, batch,
                                     seed_from))
            if r < REPEATS - 1:
                timed[-1][2].kill()
        seconds = float(np.median([t[0] for t in timed]))
        _, learner, actors, seeded = timed[-1]
        try:
            identical = same_weights(learner, single)
            runs.append({"contender": f"cluster S={S} W={W}", "seconds": seconds,
                         "rows_s": batch.n_rows / seconds, "ratio": t_single / seconds,
                         "identical": "yes" if identical else "NO", "seed_s": seeded,
                         "minibatches": learner._kernel.n,
                         "costs": dict(learner._kernel.costs)})
            costs[(S, W)] = dict(learner._kernel.costs, minibatches=learner._kernel.n)
        finally:
            actors.kill()
        print(f"{title}: S={S} W={W} {batch.n_rows / seconds:,.0f} rows/s "
              f"(one process {batch.n_rows / t_single:,.0f}), identical {identical}",
              flush=True)
    return runs, costs


class _Timed:
    """A shard object whose pull and apply are timed."""

    def __init__(self, state: ShardState, spent: dict) -> None:
        self.state, self.spent = state, spent

    def __getattr__(self, name: str):
        method = getattr(self.state, name)
        if name not in ("pull", "apply"):
            return method

        def timed(*args):
            began = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.spent[name] += time.perf_counter() - began
        return timed


def compute_costs(options: LearnerOptions, batch: Batch) -> dict:
    """Seconds per entry of the split, factors and apply, and per distinct
    key of the pull, of a one-shard cluster in this process."""
    spent = {"pull": 0.0, "apply": 0.0}
    calls = LocalCalls([_Timed(ShardState(0, options.to_dict()), spent)])
    learner = ClusterLearner(options, Partitioner(1), calls).seed()
    stepper = learner._kernel.stepper
    factors = stepper.factors
    spent_factors = [0.0]

    def timed_factors(*args):
        began = time.perf_counter()
        out = factors(*args)
        spent_factors[0] += time.perf_counter() - began
        return out
    stepper.factors = timed_factors
    total = learn_all(learner, batch)
    E = batch.keys.size
    K = sum(int(k.sum()) for _, _, k in minibatch_shapes(batch, options.minibatch, 1))
    split = learner._kernel.costs["split_s"]
    measured = split + spent_factors[0] + spent["apply"]      # factors' time holds the pull
    return {"split_s": split / E, "factors_s": max(spent_factors[0] - spent["pull"], 0.0) / E,
            "apply_s": spent["apply"] / E, "pull_s": spent["pull"] / K,
            "glue_s": max(total - measured, 0.0) / learner._kernel.n}


def minibatch_shapes(batch: Batch, B: int, S: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    p = Partitioner(S)
    out = []
    for b0 in range(0, batch.n_rows, B):
        b1 = min(b0 + B, batch.n_rows)
        lo, hi = batch.indptr[b0], batch.indptr[b1]
        keys = batch.keys[lo:hi]
        owner = p.shard_of(keys)
        entries = np.bincount(owner, minlength=S)
        distinct = np.array([np.unique(keys[owner == s]).size for s in range(S)])
        out.append((b1 - b0, entries, distinct))
    return out


def machines(costs: cluster_model.Costs, entries_per_row: float,
             distinct_share: float) -> list[str]:
    c = dataclasses.replace(costs, latency_s=LATENCY_S, bandwidth=GBPS * 1e9 / 8)
    sizes = (256, 1024, 4096, 16384)
    lines = ["| shards | " + " | ".join(f"B = {b}" for b in sizes) + " |",
             "|---:|" + "---:|" * len(sizes)]
    for S in (1, 2, 4, 8, 16, 32, 64):
        cells = [cluster_model.closed_form(c, B, B * entries_per_row,
                                           distinct_share * B * entries_per_row, S)
                 for B in sizes]
        lines.append(f"| {S} | " + " | ".join(f"{v:,.0f}" for v in cells) + " |")
    return lines


def table(runs: list[dict]) -> list[str]:
    lines = ["| contender | seconds | rows/s | x one process | weights bit for bit | "
             "ms per mini-batch | pull + factors ms | apply ms | seeding s |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in runs:
        c, n = r.get("costs"), r.get("minibatches")
        per = (f"{1000 * r['seconds'] / n:.2f} | {1000 * c['pull_and_factors_s'] / n:.2f} | "
               f"{1000 * c['apply_s'] / n:.2f}") if c else "- | - | -"
        lines.append(f"| {r['contender']} | {r['seconds']:.2f} | {r['rows_s']:,.0f} | "
                     f"{r['ratio']:.3f} | {r['identical']} | {per} | {r['seed_s']:.1f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minibatch", type=int, default=256)
    ap.add_argument("--features", type=int, default=10_000_000)
    ap.add_argument("--scale-rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "cluster.md"))
    ap.add_argument("--costs-out", default=str(HERE / "results" / "cluster-costs.json"))
    args = ap.parse_args()
    B = args.minibatch
    options = LearnerOptions(minibatch=B, **OPTIONS)
    ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE, log_to_driver=False,
             _node_ip_address="127.0.0.1", address="local")
    try:
        messages = message_costs()
        print(f"messages: {messages}", flush=True)
        rows, source = a9a_rows()
        small, small_costs = part("a9a", options, rows, None, "a9a")
        model = scale_model(options, args.features, args.seed)
        at_scale = scale_rows(model.weights()[0], args.scale_rows, args.seed)
        big, big_costs = part(f"{args.features:,} features", options, at_scale, model, "scale")
    finally:
        ray.shutdown()

    # The per-entry compute costs, measured in this process on the same rows
    # (one shard object, no Ray); the per-message ones measured above.
    compute = compute_costs(options, rows)
    costs = cluster_model.Costs(round_s=messages["round_s"],
                                extra_call_s=messages["extra_call_s"], latency_s=0.0,
                                bandwidth=messages["bandwidth"], **compute)
    json.dump(dataclasses.asdict(costs), open(args.costs_out, "w"), indent=1)
    checks = ["| contender | measured rows/s | simulation | closed form |", "|---|---:|---:|---:|"]
    for r in small[1:]:
        S = int(r["contender"].split("S=")[1].split()[0])
        shapes = minibatch_shapes(rows, B, S)
        sim = cluster_model.simulate(costs, shapes, S, cores=2)
        mean_e = np.mean([e.sum() for _, e, _ in shapes])
        mean_k = np.mean([k.sum() for _, _, k in shapes])
        closed = cluster_model.closed_form(costs, B, mean_e, mean_k, S)
        checks.append(f"| {r['contender']} | {r['rows_s']:,.0f} | {sim:,.0f} | {closed:,.0f} |")

    shapes = minibatch_shapes(at_scale, B, 1)
    share = sum(int(k.sum()) for _, _, k in shapes) / sum(int(e.sum()) for _, e, _ in shapes)
    date = datetime.date.today().isoformat()
    text = [f"# onlinel1 cluster beside one process ({date})", "",
            f"`python benchmarks/bench_cluster.py --minibatch {B} --features {args.features} "
            f"--scale-rows {args.scale_rows}` on {platform.node()} ({os.cpu_count()} cores, "
            f"Python {platform.python_version()}, Ray {ray.__version__}); a local Ray with "
            f"num_cpus=2, every actor on this machine. Update rule {OPTIONS}, minibatch {B}.",
            "", f"## a9a ({rows.n_rows:,} rows, {rows.keys.size:,} entries; {source})", "", *table(small), "",
            f"## {args.features:,} live features ({args.scale_rows:,} rows of 31 entries)", "",
            *table(big), "",
            "## Rounds of calls (Ray actor calls, median)", "",
            f"one no-op call {1e3 * messages['call_s']:.3f} ms; rounds of 1, 2 and 4 calls "
            f"shaped like an apply to as many actors {1e3 * messages['round_1_s']:.3f}, "
            f"{1e3 * messages['round_2_s']:.3f} and {1e3 * messages['round_4_s']:.3f} ms "
            f"(fitted: {1e3 * messages['round_s']:.3f} ms a round and "
            f"{1e3 * messages['extra_call_s']:.3f} ms each more call); one call with 1 MiB "
            f"{1e3 * messages['call_1MiB_s']:.3f} ms, with 8 MiB "
            f"{1e3 * messages['call_8MiB_s']:.3f} ms: "
            f"{messages['bandwidth'] / 2 ** 30:.2f} GiB/s of serialisation.",            "", "## The model checked (benchmarks/cluster_model.py, 2 cores shared)", "",
            *checks, "", f"Costs used: `{json.dumps(dataclasses.asdict(costs))}`", "",
            f"## N machines (the closed form; latency {LATENCY_S * 1e6:.0f} us one way, "
            f"{GBPS} Gb/s; the costs above)", "",
            f"Rows of the at-scale part: 31 entries, {share:.2f} of a mini-batch's entries "
            f"distinct keys (measured on its B = {B} mini-batches). Predicted rows/s:", "",
            *machines(costs, 31.0, share), ""]
    pathlib.Path(args.out).write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
