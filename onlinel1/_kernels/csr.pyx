# cython: language_level=3
"""CSR helpers for ``Batch`` and the daemon: validation and slicing.

Each check is one pass over an array, without the GIL and without the
temporary arrays of the numpy expressions it replaces, and returns the
index of the first offending entry, or -1.  The feature values (a batch's
longest array, tens of thousands of entries) are scanned faster: the pass
ORs a branch-free test over blocks of entries (which the compiler
vectorises) and looks for the first offender only inside a block that has
one.  Labels, weights and indptr have one entry per row, and a plain loop
that stops at the first offender serves them.
"""
from libc.stdint cimport int64_t, uint32_t, uint64_t

ctypedef fused real:
    float
    double

cdef enum:
    BLOCK = 512

cdef extern from *:
    """
    #define OL1_EXP64 0x7FF0000000000000ULL  /* exponent bits of a double */
    #define OL1_EXP64_ONE 0x0010000000000000ULL  /* lowest exponent bit */
    #define OL1_EXP32 0x7F800000U            /* exponent bits of a float */
    """
    uint64_t EXP64 "OL1_EXP64"
    uint64_t EXP64_ONE "OL1_EXP64_ONE"
    uint32_t EXP32 "OL1_EXP32"


cdef inline Py_ssize_t _nonfinite64(const uint64_t* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t lo, hi, i
    cdef uint64_t hit
    lo = 0
    while lo < n:
        hi = min(lo + BLOCK, n)
        hit = 0
        # (exponent + 1) reaches bit 63 only for an all-ones exponent (NaN,
        # infinity); adds, ANDs and ORs of 64-bit lanes vectorise with SSE2.
        for i in range(lo, hi):
            hit |= (b[i] & EXP64) + EXP64_ONE
        if hit >> 63:
            for i in range(lo, hi):
                if (b[i] & EXP64) == EXP64:
                    return i
        lo = hi
    return -1


cdef inline Py_ssize_t _nonfinite32(const uint32_t* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t lo, hi, i
    cdef uint32_t hit
    lo = 0
    while lo < n:
        hi = min(lo + BLOCK, n)
        hit = 0
        for i in range(lo, hi):
            hit |= (b[i] & EXP32) == EXP32
        if hit:
            for i in range(lo, hi):
                if (b[i] & EXP32) == EXP32:
                    return i
        lo = hi
    return -1


def first_nonfinite(const real[::1] x):
    """Index of the first NaN or infinity in ``x``, or -1."""
    cdef Py_ssize_t n = x.shape[0], at
    if n == 0:
        return -1
    with nogil:
        if real is double:
            at = _nonfinite64(<const uint64_t*>&x[0], n)
        else:
            at = _nonfinite32(<const uint32_t*>&x[0], n)
    return at


def first_not_binary(const double[::1] labels):
    """Index of the first label that is not -1, 0 or +1, or -1."""
    cdef Py_ssize_t i, at = -1
    cdef double y
    with nogil:
        for i in range(labels.shape[0]):
            y = labels[i]
            if y != 1.0 and y != -1.0 and y != 0.0:
                at = i
                break
    return at


def first_bad_weight(const double[::1] weights):
    """Index of the first importance weight that is not finite and >= 0, or -1."""
    cdef Py_ssize_t i, at = -1
    cdef double w
    with nogil:
        for i in range(weights.shape[0]):
            w = weights[i]
            if not (w >= 0.0 and w <= 1.7976931348623157e308):
                at = i
                break
    return at


def first_decrease(const int64_t[::1] indptr):
    """The first i with ``indptr[i + 1] < indptr[i]``, or -1."""
    cdef Py_ssize_t i, at = -1
    with nogil:
        for i in range(indptr.shape[0] - 1):
            if indptr[i + 1] < indptr[i]:
                at = i
                break
    return at


def slice_end(const int64_t[::1] indptr, Py_ssize_t start, int64_t budget):
    """The largest ``stop`` with ``indptr[stop] - indptr[start] <= budget``,
    at least ``start + 1`` and at most the number of rows: where a slice
    of about ``budget`` features that begins at row ``start`` ends."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, lo, hi, mid
    cdef int64_t limit
    if not 0 <= start < n:
        raise ValueError(f"start {start} is not a row of the batch's {n}")
    limit = indptr[start] + budget
    lo, hi = start + 1, n          # the answer lies in [lo, hi]
    if indptr[lo] > limit:
        return lo
    while lo < hi:                 # invariant: indptr[lo] <= limit
        mid = (lo + hi + 1) // 2
        if indptr[mid] <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo
