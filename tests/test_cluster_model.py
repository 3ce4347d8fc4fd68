"""benchmarks/cluster_model.py (docs/scaling.md, "N machines"): the closed
form and the message-by-message simulation agree where the closed form's
assumptions hold (shards of equal size, a machine each), and the
simulation charges what the closed form leaves out (skewed shards, shared
cores)."""
from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import cluster_model  # noqa: E402

COSTS = cluster_model.Costs(latency_s=50e-6, bandwidth=1.25e9, split_s=5e-9, factors_s=20e-9,
                            apply_s=60e-9, pull_s=30e-9)


def balanced(n: int, B: int, E: int, K: int, S: int):
    return [(B, np.full(S, E // S), np.full(S, K // S)) for _ in range(n)]


@pytest.mark.parametrize("S", [1, 2, 8, 64])
@pytest.mark.parametrize("B", [64, 1024])
def test_closed_form_matches_the_simulation_on_balanced_shards(S, B):
    E, K = 32 * B, 16 * B
    closed = cluster_model.closed_form(COSTS, B, E, K, S)
    simulated = cluster_model.simulate(COSTS, balanced(20, B, E, K, S), S)
    assert closed == pytest.approx(simulated, rel=0.05)


def test_skew_and_shared_cores_cost_what_they_should():
    B, E, K, S = 512, 16384, 8192, 4
    even = cluster_model.simulate(COSTS, balanced(10, B, E, K, S), S)
    skewed = [(B, np.array([E - 3 * (E // 16)] + [E // 16] * 3),
               np.array([K - 3 * (K // 16)] + [K // 16] * 3)) for _ in range(10)]
    assert cluster_model.simulate(COSTS, skewed, S) < even      # the big shard waits
    assert cluster_model.simulate(COSTS, balanced(10, B, E, K, S), S, cores=1) < even
    # One shard of the whole batch on one core: nothing to share.
    one = balanced(10, B, E, K, 1)
    assert cluster_model.simulate(COSTS, one, 1, cores=1) == cluster_model.simulate(COSTS, one, 1)


def test_latency_bounds_small_minibatches():
    # Six one-way latencies a mini-batch: B rows can never go faster than B / 6L.
    fast = cluster_model.Costs(50e-6, 1e15, 0.0, 0.0, 0.0, 0.0)
    assert cluster_model.closed_form(fast, 64, 2048, 1024, 8) == pytest.approx(64 / 300e-6,
                                                                               rel=1e-3)
