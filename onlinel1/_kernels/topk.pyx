# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Each row's largest contributions |w_i x_i| (``predict`` with ``top_k``),
over the whole batch in one nogil loop: per row a heap of at most k
entries, so O(nnz log k) time and no Python object per row.

The order is the one ``np.argsort(-np.abs(c), kind="stable")`` gives: the
largest |c| first, ties in the order of the features, NaN last; then the
zeros among the first k are left out (they add nothing to the margin).
"""
from libc.math cimport fabs, isnan
from libc.stdint cimport int64_t
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc

import numpy as np


cdef struct Item:
    double size                 # |c|, or -1 for NaN (after every number)
    int64_t pos


cdef inline bint better(Item* a, Item* b) noexcept nogil:
    """Whether ``a`` comes before ``b``."""
    return a.size > b.size or (a.size == b.size and a.pos < b.pos)


cdef inline void sift_down(Item* h, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    # A heap whose root is the item that comes last.
    cdef Py_ssize_t child
    cdef Item t
    while 2 * i + 1 < n:
        child = 2 * i + 1
        if child + 1 < n and better(&h[child], &h[child + 1]):
            child += 1
        if better(&h[child], &h[i]):
            return
        t = h[i]; h[i] = h[child]; h[child] = t
        i = child


def top_positions(const int64_t[::1] indptr, const double[::1] contrib, Py_ssize_t k):
    """``(counts, positions)``: row i's chosen features are the next
    ``counts[i]`` of ``positions`` (indices into ``contrib``), in order."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, r, j, m, size, total = 0
    cdef int64_t lo, hi, p
    cdef Item x
    cdef Item* heap
    if k < 1:
        raise ValueError("k must be at least 1")
    for r in range(n):
        total += min(<Py_ssize_t>(indptr[r + 1] - indptr[r]), k)
    counts = np.zeros(n, dtype=np.int64)
    positions = np.empty(total, dtype=np.int64)
    cdef int64_t[::1] counts_v = counts
    cdef int64_t[::1] out = positions
    heap = <Item*>PyMem_RawMalloc(<size_t>(k if k < total else (total if total else 1))
                                  * sizeof(Item))
    if heap == NULL:
        raise MemoryError("out of memory choosing the top contributions")
    m = 0
    with nogil:
        for r in range(n):
            lo = indptr[r]
            hi = indptr[r + 1]
            size = 0
            for p in range(lo, hi):
                x.size = -1.0 if isnan(contrib[p]) else fabs(contrib[p])
                x.pos = p
                if size < k:
                    # Sift up from the new leaf.
                    j = size
                    size += 1
                    heap[j] = x
                    while j > 0 and better(&heap[(j - 1) // 2], &heap[j]):
                        x = heap[j]; heap[j] = heap[(j - 1) // 2]; heap[(j - 1) // 2] = x
                        j = (j - 1) // 2
                elif better(&x, &heap[0]):
                    heap[0] = x
                    sift_down(heap, size, 0)
            # Heapsort: the item that comes last goes to the end, and so on.
            j = size
            while j > 1:
                j -= 1
                x = heap[0]; heap[0] = heap[j]; heap[j] = x
                sift_down(heap, j, 0)
            for j in range(size):
                if contrib[heap[j].pos] != 0.0:
                    out[m] = heap[j].pos
                    m += 1
                    counts_v[r] += 1
    PyMem_RawFree(heap)
    return counts, positions[:m]
