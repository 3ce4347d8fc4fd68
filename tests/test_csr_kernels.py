"""The CSR helpers of ``onlinel1._kernels.csr`` against numpy oracles.

The finiteness check scans blocks of 512 entries with a branch-free test
and looks for the first offender only inside a flagged block, so the cases
put offenders on both sides of block edges, several in one block, and in
the last, short block; the special values are every kind of NaN and
infinity next to the largest and smallest finite numbers.  The other
checks are plain loops, held to the same cases.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onlinel1._kernels import csr

BLOCK = 512
POSITIONS = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK - 1, 3 * BLOCK + 7]


def first(mask: np.ndarray) -> int:
    return int(np.argmax(mask)) if mask.any() else -1


def nonfinite_oracle(x: np.ndarray) -> int:
    return first(~np.isfinite(x))


def special_values(dtype) -> list:
    nan_bits = {np.float64: [0x7FF8000000000000, 0xFFF8000000000001, 0x7FF0000000000001],
                np.float32: [0x7FC00000, 0xFFC00001, 0x7F800001]}[dtype]
    uint = np.uint64 if dtype is np.float64 else np.uint32
    nans = list(np.array(nan_bits, dtype=uint).view(dtype))
    return [np.inf, -np.inf, *nans]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [0, 1, 7, BLOCK, BLOCK + 1, 4 * BLOCK + 9])
def test_finite_arrays_pass(dtype, n):
    info = np.finfo(dtype)
    rng = np.random.default_rng(n)
    x = rng.normal(size=n).astype(dtype)
    edges = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0, 0.0],
                     dtype=dtype)
    x[: min(n, edges.size)] = edges[: min(n, edges.size)]
    assert csr.first_nonfinite(x) == nonfinite_oracle(x) == -1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_nonfinite_finds_the_first(dtype):
    n = 4 * BLOCK + 9
    for bad in special_values(dtype):
        for pos in POSITIONS:
            x = np.ones(n, dtype=dtype)
            x[pos] = bad
            x[n - 1] = bad               # a later one must not win
            assert csr.first_nonfinite(x) == pos, (bad, pos)
    x = np.ones(n, dtype=dtype)
    x[[BLOCK + 3, BLOCK + 2, 3 * BLOCK]] = np.nan
    assert csr.first_nonfinite(x) == BLOCK + 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=1200),
       st.integers(0, 1))
def test_first_nonfinite_matches_numpy(values, as_f32):
    x = np.array(values, dtype=np.float64)
    if as_f32:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)   # overflowing values become infinities: also checked
    assert csr.first_nonfinite(x) == nonfinite_oracle(x)


def test_first_nonfinite_reads_unaligned_read_only_buffers():
    raw = bytearray(8 * 600 + 3)
    x = np.frombuffer(memoryview(bytes(raw))[3:], dtype="<f8")     # offset 3: unaligned
    assert not x.flags.writeable and csr.first_nonfinite(x) == -1
    raw[3 + 8 * 513 + 7] = 0x7F
    raw[3 + 8 * 513 + 6] = 0xF0
    x = np.frombuffer(memoryview(bytes(raw))[3:], dtype="<f8")
    assert csr.first_nonfinite(x) == 513 == nonfinite_oracle(x)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([1.0, -1.0, 0.0, -0.0, 2.0, 0.5, -1.0000000000000002,
                                 0.9999999999999999, np.nan, np.inf, 5e-324]),
                max_size=1100))
def test_first_not_binary_matches_numpy(labels):
    y = np.array(labels, dtype=np.float64)
    assert csr.first_not_binary(y) == first((y != 1) & (y != -1) & (y != 0))


def test_first_not_binary_at_block_edges():
    for pos in POSITIONS:
        y = np.ones(4 * BLOCK + 9)
        y[::2] = -1.0
        y[pos] = 2.0
        assert csr.first_not_binary(y) == pos


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([1.0, 0.0, -0.0, 3.5, 1e300, -1.0, -5e-324, np.nan,
                                 np.inf, -np.inf, np.finfo(np.float64).max]),
                max_size=1100))
def test_first_bad_weight_matches_numpy(weights):
    w = np.array(weights, dtype=np.float64)
    assert csr.first_bad_weight(w) == first(~(np.isfinite(w) & (w >= 0)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=1300), st.data())
def test_first_decrease_matches_numpy(steps, data):
    indptr = np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)
    if indptr.size > 1 and data.draw(st.booleans()):
        i = data.draw(st.integers(1, indptr.size - 1))
        indptr[i] = indptr[i - 1] - data.draw(st.integers(1, 3))
    assert csr.first_decrease(indptr) == first(indptr[1:] < indptr[:-1])


def slice_end_oracle(indptr: np.ndarray, start: int, budget: int) -> int:
    """The daemon's former rule, with searchsorted."""
    n = indptr.size - 1
    stop = int(np.searchsorted(indptr, indptr[start] + budget, side="right")) - 1
    return min(max(stop, start + 1), n)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=300), st.data())
def test_slice_end_matches_searchsorted(row_sizes, data):
    indptr = np.concatenate([[0], np.cumsum(row_sizes)]).astype(np.int64)
    start = data.draw(st.integers(0, len(row_sizes) - 1))
    budget = data.draw(st.integers(0, 400))
    stop = csr.slice_end(indptr, start, budget)
    assert stop == slice_end_oracle(indptr, start, budget)
    assert start < stop <= len(row_sizes)
    assert stop == start + 1 or indptr[stop] - indptr[start] <= budget


def test_slice_end_refuses_a_start_outside_the_batch():
    indptr = np.array([0, 2, 5], dtype=np.int64)
    for start in (-1, 2, 3):
        with pytest.raises(ValueError, match="not a row"):
            csr.slice_end(indptr, start, 10)
