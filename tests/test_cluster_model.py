"""benchmarks/cluster_model.py (docs/scaling.md, "N machines"): the closed
form and the message-by-message simulation agree where the closed form's
assumptions hold (shards of equal size, a machine each), and the
simulation charges what the closed form leaves out (skewed shards, shared
cores)."""
from __future__ import annotations

import dataclasses
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import cluster_model  # noqa: E402

COSTS = cluster_model.Costs(round_s=600e-6, extra_call_s=200e-6, latency_s=50e-6,
                            bandwidth=1.25e9, split_s=5e-9, factors_s=20e-9, apply_s=60e-9,
                            pull_s=30e-9, glue_s=1e-3)


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
    # Cheap messages, so that the shards' work is what the mini-batch waits for.
    costs = dataclasses.replace(COSTS, round_s=20e-6, extra_call_s=5e-6)
    B, E, K, S = 512, 16384, 8192, 4
    even = cluster_model.simulate(costs, balanced(10, B, E, K, S), S)
    skewed = [(B, np.array([E - 3 * (E // 16)] + [E // 16] * 3),
               np.array([K - 3 * (K // 16)] + [K // 16] * 3)) for _ in range(10)]
    assert cluster_model.simulate(costs, skewed, S) < 0.9 * even      # the big shard waits
    assert cluster_model.simulate(costs, balanced(10, B, E, K, S), S, cores=1) < 0.9 * even
    # One shard of the whole batch on one core: nothing to share.
    one = balanced(10, B, E, K, 1)
    assert cluster_model.simulate(costs, one, 1, cores=1) == cluster_model.simulate(costs, one, 1)


def test_rounds_bound_small_minibatches():
    # Rounds and latencies only: the head's round of one call, then two
    # rounds of S calls; B rows take exactly that long, in both.
    S, B, lat = 8, 64, 50e-6
    bare = cluster_model.Costs(600e-6, 200e-6, lat, 1e15, 0.0, 0.0, 0.0, 0.0, 0.0)
    expected = B / ((600e-6 + 2 * lat) + 2 * (600e-6 + 7 * 200e-6 + 2 * lat))
    assert cluster_model.closed_form(bare, B, 2048, 1024, S) == pytest.approx(expected, rel=1e-6)
    assert cluster_model.simulate(bare, balanced(5, B, 2048, 1024, S), S) == \
        pytest.approx(expected, rel=1e-6)
