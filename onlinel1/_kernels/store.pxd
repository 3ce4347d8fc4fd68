# The sparse weight store: an open-addressing hash table from uint64 feature
# keys to rows of dense, parallel arrays (weight plus up to two per-rule state
# columns).  See store.pyx for the layout and the invariants.
from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    STORE_MAX_AUX = 2


cdef class WeightStore:
    # Dense rows 0..n-1, in parallel arrays of capacity `cap`.
    cdef uint64_t* keys
    cdef double* w
    cdef double* aux[STORE_MAX_AUX]
    cdef readonly int n_aux
    cdef readonly Py_ssize_t n
    cdef readonly Py_ssize_t cap
    # Index table: power-of-two many uint32 row numbers, EMPTY where free.
    cdef uint32_t* table
    cdef Py_ssize_t table_size

    cdef Py_ssize_t find(self, uint64_t key) noexcept nogil
    cdef int reserve(self, Py_ssize_t extra) noexcept nogil
    cdef Py_ssize_t insert_new(self, uint64_t key) noexcept nogil
    cdef void remove_row(self, Py_ssize_t row) noexcept nogil
    cdef int shrink_to_fit(self) noexcept nogil
    cdef Py_ssize_t _slot_of(self, Py_ssize_t row) noexcept nogil
    cdef int _resize_rows(self, Py_ssize_t new_cap) noexcept nogil
    cdef int _rebuild_table(self, Py_ssize_t size) noexcept nogil


# The lookup every kernel does for every feature, defined here so that the
# C compiler inlines it into the kernels (a cdef method call would go
# through the class's vtable, an indirect call per feature).

cdef inline uint64_t fmix64(uint64_t k) noexcept nogil:
    # MurmurHash3's 64-bit finaliser: a bijection that spreads the small,
    # sequential integer keys of svmlight files over the whole table.
    k ^= k >> 33
    k *= <uint64_t>0xff51afd7ed558ccdULL
    k ^= k >> 33
    k *= <uint64_t>0xc4ceb9fe1a85ec53ULL
    k ^= k >> 33
    return k


cdef inline Py_ssize_t store_find(WeightStore s, uint64_t key) noexcept nogil:
    """Row of ``key`` in ``s``, or -1 when absent."""
    cdef Py_ssize_t mask = s.table_size - 1
    cdef Py_ssize_t i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
    cdef uint32_t row
    while True:
        row = s.table[i]
        if row == <uint32_t>0xFFFFFFFFu:    # EMPTY
            return -1
        if s.keys[row] == key:
            return row
        i = (i + 1) & mask
