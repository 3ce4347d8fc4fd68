# The sparse weight store: an open-addressing hash table of slots, each
# holding a feature's key (as its hash), its weight and its rule's state
# together, so a feature costs one memory miss.  See store.pyx and
# docs/algorithms.md ("The weight store") for the layout and invariants.
from libc.stdint cimport uint64_t

cdef enum:
    # The rule's state values (at most 2) and, with a memory budget or
    # expiry, the clock of the feature's last update.
    STORE_MAX_AUX = 3

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
    # `total` slots of `slot_size` bytes: the `capacity` home slots and an
    # overflow run after them (probes never wrap around).  Word 0 of a slot
    # is fmix64(key), 0 where the slot is free; the one key whose hash is 0
    # (key 0) lives in `zero_slot` instead.
    cdef char* slots
    cdef readonly Py_ssize_t capacity
    cdef Py_ssize_t total
    cdef readonly Py_ssize_t slot_size
    cdef readonly int n_aux
    # With a memory budget or expiry (docs/algorithms.md, "The memory
    # budget"): the slot's last word is the example count of the feature's
    # last update, and clock_word is its index (0: no clock).
    cdef readonly int clock_word
    cdef readonly Py_ssize_t n        # live features, the zero key included
    cdef bint has_zero
    cdef double zero_slot[2 + STORE_MAX_AUX]
    # After insert_new: the end of the run whose slots moved forward by
    # one (those that were in [new slot, shifted_end)), or NULL when the
    # table was rebuilt and every slot moved.
    cdef char* shifted_end
    cdef size_t alloc_bytes           # bytes behind `slots`
    cdef bint mapped                  # `slots` came from mmap (huge pages)

    cdef int reserve(self, Py_ssize_t extra) noexcept nogil
    cdef char* insert_new(self, uint64_t key) noexcept nogil
    cdef void remove(self, char* slot) noexcept nogil
    cdef char* next_live(self, Py_ssize_t* cursor) noexcept nogil
    cdef Py_ssize_t evict_oldest(self, Py_ssize_t count, double newest, double expired_upto,
                                 double* floor, Py_ssize_t* n_expired) noexcept nogil
    cdef int shrink_to_fit(self) noexcept nogil
    cdef int _rebuild(self, Py_ssize_t capacity) noexcept nogil
    cdef int _rebuild_into(self, Py_ssize_t capacity, Py_ssize_t overflow) noexcept nogil


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


cdef inline uint64_t unfmix64(uint64_t h) noexcept nogil:
    # The inverse of fmix64 (x ^= x >> 33 is its own inverse; the odd
    # multipliers are inverted modulo 2^64): a slot's key from its hash.
    h ^= h >> 33
    h *= <uint64_t>0x9cb4b2f8129337dbULL
    h ^= h >> 33
    h *= <uint64_t>0x4f74430c22a54005ULL
    h ^= h >> 33
    return h


cdef inline char* store_home(WeightStore s, uint64_t h) noexcept nogil:
    """Address of the home slot of the hash ``h``."""
    return s.slots + <Py_ssize_t>onlinel1_home(h, <uint64_t>s.capacity) * s.slot_size


cdef inline char* store_find(WeightStore s, uint64_t key) noexcept nogil:
    """The slot of ``key`` in ``s``, or NULL when absent.

    The slots are sorted by hash (ordered linear probing), so a probe from
    the home slot ends at the key's hash, at a free slot or at the first
    larger hash: a search for an absent key costs no more than a search
    for a present one."""
    cdef uint64_t h, k
    cdef char* p
    cdef char* end
    if key == 0:
        return <char*>s.zero_slot if s.has_zero else NULL
    h = fmix64(key)
    p = store_home(s, h)
    end = s.slots + s.total * s.slot_size
    while p != end:
        k = (<uint64_t*>p)[0]
        if k == h:
            return p
        if k - 1 >= h:          # free (k = 0) or a larger hash: absent
            return NULL
        p += s.slot_size
    return NULL


cdef inline void store_prefetch(WeightStore s, uint64_t key) noexcept nogil:
    """Start loading the home slot of ``key`` (and the cache line after
    it, where a probe or a slot straddling two lines continues)."""
    cdef char* p = store_home(s, fmix64(key))
    __builtin_prefetch(p)
    __builtin_prefetch(p + 64)
