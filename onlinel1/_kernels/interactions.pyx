# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Feature interactions: Vowpal Wabbit's ``-q ab``, ``--cubic abc``,
``--interactions ...``, crossed where the namespaces are still known.

Semantics (docs/formats.md, "Interactions"; VW's interactions_predict.h
without ``--permutations``):

* a namespace is named by the first byte of its name; the default
  namespace (no name) is ``' '``; all the namespaces of an example that
  start with the same byte form one group, its features in example order;
* an interaction is a string of namespace characters, sorted (``ba`` is
  ``ab``); it crosses every feature of the first group with every one of
  the second (and third, ...).  Where a character repeats (``aa``), the
  features are combined with repetition: pairs ``(i, j)`` with ``j >= i``
  in group order, ``x_i * x_i`` included, as VW does;
* the wildcard ``:`` (interactions of two only) stands for every namespace
  character present in the example: ``::`` crosses every pair of groups
  once (self pairs included), ``:a`` every group with ``a``; a pair
  already crossed for the example (by an earlier interaction) is skipped;
* the crossed feature's value is the product of the values (namespace
  scales applied), its key the chained ``cross_keys``: ``cross_keys(a, b)``
  is XXH64 of the 16 bytes ``le64(a) || le64(b)`` with ``CROSS_SEED``, and
  three keys are ``cross_keys(cross_keys(a, b), c)``;
* the crossed features follow the example's own, interaction by
  interaction, in the order of the loops above (the first group outermost).

``Crosser`` holds the compiled interactions and the scratch of one
example; ``prepare`` groups an example's features and counts what it will
cross, ``emit`` writes the crossed features.  Both run without the GIL and
allocate nothing per feature.  A ``Crosser`` is used by one thread at a
time (each parser has its own).
"""
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

import numpy as np

#: The seed of cross_keys: "ol1cross" in ASCII, read as a big-endian integer.
CROSS_SEED = 0x6F6C3163726F7373
cdef uint64_t C_CROSS_SEED = 0x6F6C3163726F7373ULL
MAX_ORDER = CROSS_MAX_ORDER
WILDCARD = chr(CROSS_WILDCARD)
#: The most crossed features one example may give; more is refused.
MAX_CROSSED_PER_ROW = 1 << 22

cdef uint64_t PRIME64_1 = 0x9E3779B185EBCA87ULL
cdef uint64_t PRIME64_2 = 0xC2B2AE3D27D4EB4FULL
cdef uint64_t PRIME64_3 = 0x165667B19E3779F9ULL
cdef uint64_t PRIME64_4 = 0x85EBCA77C2B2AE63ULL
cdef uint64_t PRIME64_5 = 0x27D4EB2F165667C5ULL


class InteractionLimitError(ValueError):
    """A batch whose interactions give too many features: ``row`` (0-based)
    gives more than ``limit`` (``MAX_CROSSED_PER_ROW``), or, with ``row``
    None, the whole batch more than the ``limit`` its caller set.
    ``count``: the features it would give (at least; counting stops past
    the limit)."""

    def __init__(self, message, *, row, count, limit):
        super().__init__(message)
        self.row, self.count, self.limit = row, count, limit


cdef inline uint64_t rotl64(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t lane(uint64_t x) noexcept nogil:
    # XXH64's round(0, x).
    return rotl64(x * PRIME64_2, 31) * PRIME64_1


cdef inline uint64_t cross_keys(uint64_t a, uint64_t b) noexcept nogil:
    """XXH64(le64(a) || le64(b), CROSS_SEED): the specification's path for
    an input of 16 bytes (two 8-byte lanes, then the avalanche), on the
    values themselves, so the same on every host."""
    cdef uint64_t h = C_CROSS_SEED + PRIME64_5 + 16
    h ^= lane(a)
    h = rotl64(h, 27) * PRIME64_1 + PRIME64_4
    h ^= lane(b)
    h = rotl64(h, 27) * PRIME64_1 + PRIME64_4
    h ^= h >> 33
    h *= PRIME64_2
    h ^= h >> 29
    h *= PRIME64_3
    h ^= h >> 32
    return h


def cross(uint64_t a, uint64_t b):
    """The key of the crossed feature of keys ``a`` and ``b`` (in this order)."""
    return cross_keys(a, b)


cdef class Crosser:
    """The compiled interactions (normalised strings, as
    ``onlinel1.options.normalise_interactions`` gives them) and the scratch
    of one example.  ``max_row``: the most crossed features one example may
    give (``prepare`` reports more as ``max_row + 1``)."""

    def __cinit__(self, interactions, int64_t max_row=MAX_CROSSED_PER_ROW):
        cdef int t, p, c, k
        cdef bytes raw
        cdef short s
        cdef bint used[256]
        terms = list(interactions)
        if max_row < 0:
            raise ValueError(f"max_row must be >= 0, got {max_row}")
        self.max_row = max_row
        for term in terms:
            if not isinstance(term, str) or not term.isascii() \
                    or not 2 <= len(term) <= CROSS_MAX_ORDER or "".join(sorted(term)) != term \
                    or (WILDCARD in term and len(term) != 2):
                raise ValueError(f"interaction {term!r} is not normalised (see "
                                 f"onlinel1.options.normalise_interactions)")
        self.n_terms = len(terms)
        self.order = <int*>malloc(max(1, self.n_terms) * sizeof(int))
        self.chars = <unsigned char*>malloc(max(1, self.n_terms) * CROSS_MAX_ORDER)
        if self.order == NULL or self.chars == NULL:
            raise MemoryError("cannot allocate the interactions")
        for c in range(256):
            used[c] = False
        self.wildcard = False
        for t, term in enumerate(terms):
            raw = term.encode("ascii")
            self.order[t] = len(raw)
            for p in range(len(raw)):
                self.chars[t * CROSS_MAX_ORDER + p] = raw[p]
                if raw[p] == CROSS_WILDCARD:
                    self.wildcard = True
                else:
                    used[raw[p]] = True
        # Slots: every character with a wildcard, else those used, in order.
        self.n_slots = 0
        for c in range(256):
            if self.wildcard or used[c]:
                self.slot_of[c] = <short>self.n_slots
                self.char_of[self.n_slots] = <unsigned char>c
                self.n_slots += 1
            else:
                self.slot_of[c] = -1
        k = max(1, self.n_slots)
        self.count = <int64_t*>calloc(k, sizeof(int64_t))
        self.lo = <int64_t*>malloc(k * sizeof(int64_t))
        self.hi = <int64_t*>malloc(k * sizeof(int64_t))
        self.present = <short*>malloc(k * sizeof(short))
        self.grouped_cap = 64
        self.grouped = <int64_t*>malloc(self.grouped_cap * sizeof(int64_t))
        self.tuples_cap = self.n_terms + 64
        self.tuples = <short*>malloc(self.tuples_cap * CROSS_MAX_ORDER * sizeof(short))
        self.tuple_order = <int*>malloc(self.tuples_cap * sizeof(int))
        if self.wildcard:
            self.stamp = <uint32_t*>calloc(65536, sizeof(uint32_t))
        if (self.count == NULL or self.lo == NULL or self.hi == NULL or self.present == NULL
                or self.grouped == NULL or self.tuples == NULL or self.tuple_order == NULL
                or (self.wildcard and self.stamp == NULL)):
            raise MemoryError("cannot allocate the interactions' scratch")
        self.row_stamp = 0

    def __dealloc__(self):
        free(self.order)
        free(self.chars)
        free(self.count)
        free(self.lo)
        free(self.hi)
        free(self.present)
        free(self.grouped)
        free(self.tuples)
        free(self.tuple_order)
        free(self.stamp)

    @property
    def interactions(self):
        """The interactions, as given (normalised)."""
        return tuple(bytes(self.chars[t * CROSS_MAX_ORDER:t * CROSS_MAX_ORDER + self.order[t]])
                     .decode("ascii") for t in range(self.n_terms))

    # ------------------------------------------------------------ one example

    cdef int _add_tuple(self, const short* slots, int k) noexcept nogil:
        cdef void* grown
        cdef Py_ssize_t cap
        if self.n_tuples == self.tuples_cap:
            cap = 2 * self.tuples_cap
            grown = realloc(self.tuples, cap * CROSS_MAX_ORDER * sizeof(short))
            if grown == NULL:
                return -1
            self.tuples = <short*>grown
            grown = realloc(self.tuple_order, cap * sizeof(int))
            if grown == NULL:
                return -1
            self.tuple_order = <int*>grown
            self.tuples_cap = cap
        memcpy(self.tuples + self.n_tuples * CROSS_MAX_ORDER, slots, k * sizeof(short))
        self.tuple_order[self.n_tuples] = k
        self.n_tuples += 1
        return 0

    cdef int _add_pair(self, short a, short b) noexcept nogil:
        """The pair of slots ``a <= b`` unless already crossed for this example
        (with a wildcard, slots are characters)."""
        cdef short pair[2]
        cdef Py_ssize_t at = <Py_ssize_t>a * 256 + b
        if self.stamp[at] == self.row_stamp:
            return 0
        self.stamp[at] = self.row_stamp
        pair[0] = a
        pair[1] = b
        return self._add_tuple(pair, 2)

    cdef int _expand(self) noexcept nogil:
        """The concrete interactions of the example: the terms whose every
        group is present, wildcards expanded over the present groups."""
        cdef int t, p, k, i, j
        cdef const unsigned char* c
        cdef short slots[CROSS_MAX_ORDER]
        cdef short s, fixed
        cdef bint complete
        self.n_tuples = 0
        if self.wildcard:
            self.row_stamp += 1
            if self.row_stamp == 0:   # wrapped: forget every old stamp
                memset(self.stamp, 0, 65536 * sizeof(uint32_t))
                self.row_stamp = 1
        for t in range(self.n_terms):
            k = self.order[t]
            c = self.chars + t * CROSS_MAX_ORDER
            if k == 2 and (c[0] == CROSS_WILDCARD or c[1] == CROSS_WILDCARD):
                if c[0] == CROSS_WILDCARD and c[1] == CROSS_WILDCARD:
                    for i in range(self.n_present):
                        for j in range(i, self.n_present):
                            if self._add_pair(self.present[i], self.present[j]) != 0:
                                return -1
                    continue
                fixed = self.slot_of[c[1] if c[0] == CROSS_WILDCARD else c[0]]
                if self.count[fixed] == 0:
                    continue
                for i in range(self.n_present):
                    s = self.present[i]
                    if self._add_pair(s if s < fixed else fixed, fixed if s < fixed else s) != 0:
                        return -1
                continue
            complete = True
            for p in range(k):
                slots[p] = self.slot_of[c[p]]
                if self.count[slots[p]] == 0:
                    complete = False
                    break
            if not complete:
                continue
            if k == 2 and self.wildcard:
                if self._add_pair(slots[0], slots[1]) != 0:
                    return -1
            elif self._add_tuple(slots, k) != 0:
                return -1
        return 0

    cdef int64_t prepare(self, const unsigned char* ns, Py_ssize_t n) noexcept nogil:
        """Group the ``n`` features of one example by the namespace ids
        ``ns`` and list its concrete interactions; return the number of
        crossed features ``emit`` will write (``max_row + 1`` for any
        number beyond ``max_row``), or -1 when memory runs out."""
        cdef Py_ssize_t i
        cdef int j, r, q
        cdef short s, x
        cdef int64_t pos
        cdef double total = 0.0, product, comb, m
        cdef const short* tup
        cdef void* grown
        if n > self.grouped_cap:
            grown = realloc(self.grouped, 2 * n * sizeof(int64_t))
            if grown == NULL:
                return -1
            self.grouped = <int64_t*>grown
            self.grouped_cap = 2 * n
        self.n_present = 0
        for i in range(n):
            s = self.slot_of[ns[i]]
            if s < 0:
                continue
            if self.count[s] == 0:
                # Insertion into the sorted list of present slots.
                j = self.n_present
                while j > 0 and self.present[j - 1] > s:
                    self.present[j] = self.present[j - 1]
                    j -= 1
                self.present[j] = s
                self.n_present += 1
            self.count[s] += 1
        pos = 0
        for j in range(self.n_present):
            s = self.present[j]
            self.lo[s] = pos
            self.hi[s] = pos
            pos += self.count[s]
        for i in range(n):
            s = self.slot_of[ns[i]]
            if s >= 0:
                self.grouped[self.hi[s]] = i
                self.hi[s] += 1
        if self._expand() != 0:
            total = -1.0
        else:
            # Per tuple: the product, over runs of one group repeated r times
            # in a group of m features, of C(m + r - 1, r) (combinations with
            # repetition).  Doubles: exact while the total is below 2**53.
            for i in range(self.n_tuples):
                tup = self.tuples + i * CROSS_MAX_ORDER
                product = 1.0
                j = 0
                while j < self.tuple_order[i]:
                    x = tup[j]
                    r = 1
                    while j + r < self.tuple_order[i] and tup[j + r] == x:
                        r += 1
                    m = <double>self.count[x]
                    comb = 1.0
                    for q in range(1, r + 1):
                        comb = comb * (m + q - 1) / q
                    product *= comb
                    j += r
                total += product
                if total > <double>self.max_row:
                    break
        for j in range(self.n_present):
            self.count[self.present[j]] = 0
        if total < 0:
            return -1
        if total > <double>self.max_row:
            return self.max_row + 1
        return <int64_t>total

    cdef Py_ssize_t emit(self, const uint64_t* keys, const double* values,
                         uint64_t* out_keys, double* out_values) noexcept nogil:
        """Write the crossed features of the example last ``prepare``d (its
        ``keys`` and ``values``) to ``out_keys`` and ``out_values``, which
        have room for the count ``prepare`` returned; return that count."""
        cdef Py_ssize_t o = 0, i, f
        cdef int k, p
        cdef const short* tup
        cdef int64_t idx[CROSS_MAX_ORDER]
        cdef int64_t lo[CROSS_MAX_ORDER]
        cdef int64_t hi[CROSS_MAX_ORDER]
        cdef bint same[CROSS_MAX_ORDER]
        cdef uint64_t h[CROSS_MAX_ORDER]
        cdef double v[CROSS_MAX_ORDER]
        for i in range(self.n_tuples):
            tup = self.tuples + i * CROSS_MAX_ORDER
            k = self.tuple_order[i]
            for p in range(k):
                lo[p] = self.lo[tup[p]]
                hi[p] = self.hi[tup[p]]
                same[p] = p > 0 and tup[p] == tup[p - 1]
            # An odometer over the k groups; a repeated group starts at the
            # position of the one before it (combinations with repetition).
            p = 0
            idx[0] = lo[0]
            while True:
                if idx[p] >= hi[p]:
                    if p == 0:
                        break
                    p -= 1
                    idx[p] += 1
                    continue
                f = self.grouped[idx[p]]
                if p == 0:
                    h[0] = keys[f]
                    v[0] = values[f]
                else:
                    h[p] = cross_keys(h[p - 1], keys[f])
                    v[p] = v[p - 1] * values[f]
                if p == k - 1:
                    out_keys[o] = h[p]
                    out_values[o] = v[p]
                    o += 1
                    idx[p] += 1
                else:
                    p += 1
                    idx[p] = idx[p - 1] if same[p] else lo[p]
        return o


def cross_csr(Crosser crosser, const int64_t[::1] indptr, const uint64_t[::1] keys,
              const double[::1] values, const unsigned char[::1] namespaces,
              int64_t max_nnz=-1):
    """``(indptr, keys, values)`` of a CSR batch with the crossed features of
    each row appended to the row's own; ``namespaces[i]`` is the namespace
    id of feature ``i``.  The sizes are counted first: a row that would
    give more than ``crosser.max_row`` crossed features, or (``max_nnz`` >=
    0) a batch of more than ``max_nnz`` features in all, raises
    ``InteractionLimitError`` before anything is allocated."""
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1, r, n, total_in = keys.shape[0]
    cdef int64_t c, total = 0, bad_count = 0, start, stop, at
    cdef Py_ssize_t bad_row = -1
    cdef int status = 0
    if n_rows < 0:
        raise ValueError("indptr must have at least one entry")
    if values.shape[0] != total_in or namespaces.shape[0] != total_in:
        raise ValueError(f"keys, values and namespaces must have one entry per feature, got "
                         f"{total_in}, {values.shape[0]} and {namespaces.shape[0]}")
    if indptr[0] != 0 or indptr[n_rows] != total_in:
        raise ValueError("indptr must run from 0 to the number of features")
    for r in range(n_rows):
        if indptr[r + 1] < indptr[r]:
            raise ValueError(f"indptr decreases at row {r}")
    new_indptr = np.empty(n_rows + 1, dtype=np.int64)
    cdef int64_t[::1] out_ptr = new_indptr
    out_ptr[0] = 0
    cdef const unsigned char* ns_p = &namespaces[0] if total_in else NULL
    with nogil:
        for r in range(n_rows):
            start = indptr[r]
            stop = indptr[r + 1]
            c = crosser.prepare(ns_p + start if total_in else ns_p, stop - start)
            if c < 0:
                status = 1
                break
            if c > crosser.max_row:
                status = 2
                bad_row = r
                bad_count = c
                break
            total += (stop - start) + c
            out_ptr[r + 1] = total
            if max_nnz >= 0 and total > max_nnz:
                status = 3
                bad_count = total
                break
    if status == 1:
        raise MemoryError("out of memory while crossing the interactions")
    if status == 2:
        raise InteractionLimitError(
            f"row {bad_row}: the interactions give more than {crosser.max_row:,} features",
            row=int(bad_row), count=int(bad_count), limit=int(crosser.max_row))
    if status == 3:
        raise InteractionLimitError(
            f"the interactions give more than {max_nnz:,} features in the batch",
            row=None, count=int(bad_count), limit=int(max_nnz))
    out_keys = np.empty(total, dtype=np.uint64)
    out_values = np.empty(total, dtype=np.float64)
    cdef uint64_t[::1] ok = out_keys
    cdef double[::1] ov = out_values
    if total == 0:
        return new_indptr, out_keys, out_values
    with nogil:
        for r in range(n_rows):
            start = indptr[r]
            stop = indptr[r + 1]
            at = out_ptr[r]
            n = stop - start
            if n == 0:
                continue
            memcpy(&ok[at], &keys[start], n * sizeof(uint64_t))
            memcpy(&ov[at], &values[start], n * sizeof(double))
            if out_ptr[r + 1] - at == n:
                continue
            crosser.prepare(ns_p + start, n)
            crosser.emit(&keys[start], &values[start], &ok[at + n], &ov[at + n])
    return new_indptr, out_keys, out_values
