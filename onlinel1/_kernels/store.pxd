# The sparse weight store: an open-addressing hash table of slots, each
# holding a feature's key, its weight and its rule's state together (one
# cache line, one miss per feature).  See store.pyx and docs/algorithms.md
# section "The weight store" for the layout and the invariants.
from libc.stdint cimport uint64_t

cdef enum:
    STORE_MAX_AUX = 2
    # A slot: uint64 key, then 1 + n_aux float64 (weight, then state).
    STORE_MAX_SLOT_BYTES = 8 * (2 + STORE_MAX_AUX)

cdef extern from *:
    """
    /* Lemire's multiply-shift range reduction: a hash in [0, 2^64) to a
       slot in [0, n), monotone in the hash, for any table size n. */
    static inline uint64_t onlinel1_home(uint64_t h, uint64_t n) {
        return (uint64_t)(((unsigned __int128)h * n) >> 64);
    }
    """
    uint64_t onlinel1_home(uint64_t h, uint64_t n) noexcept nogil
    void __builtin_prefetch(const void* addr) noexcept nogil


cdef class WeightStore:
    # `capacity` slots of `slot_size` bytes; a key of 0 marks a free slot,
    # so the one feature whose key is 0 lives in `zero_slot` instead.
    cdef char* slots
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t slot_size
    cdef readonly int n_aux
    cdef readonly Py_ssize_t n        # live features, the zero key included
    cdef bint has_zero
    cdef double zero_slot[2 + STORE_MAX_AUX]
    cdef size_t alloc_bytes           # bytes behind `slots`
    cdef bint mapped                  # `slots` came from mmap (huge pages)

    cdef int reserve(self, Py_ssize_t extra) noexcept nogil
    cdef char* insert_new(self, uint64_t key) noexcept nogil
    cdef void remove(self, char* slot) noexcept nogil
    cdef char* next_live(self, Py_ssize_t* cursor) noexcept nogil
    cdef int shrink_to_fit(self) noexcept nogil
    cdef int _rebuild(self, Py_ssize_t capacity) noexcept nogil


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


cdef inline char* store_home(WeightStore s, uint64_t key) noexcept nogil:
    """Address of the first slot probed for ``key`` (its home slot)."""
    return s.slots + <Py_ssize_t>onlinel1_home(fmix64(key), <uint64_t>s.capacity) * s.slot_size


cdef inline char* store_find(WeightStore s, uint64_t key) noexcept nogil:
    """The slot of ``key`` in ``s``, or NULL when absent.  Linear probing
    from the home slot; a free slot (key 0) ends the search."""
    cdef char* p
    cdef char* end
    cdef uint64_t k
    if key == 0:
        return <char*>s.zero_slot if s.has_zero else NULL
    p = store_home(s, key)
    end = s.slots + s.capacity * s.slot_size
    while True:
        k = (<uint64_t*>p)[0]
        if k == key:
            return p
        if k == 0:
            return NULL
        p += s.slot_size
        if p == end:
            p = s.slots


cdef inline void store_prefetch(WeightStore s, uint64_t key) noexcept nogil:
    """Start loading the home slot of ``key`` into the cache."""
    __builtin_prefetch(store_home(s, key))
