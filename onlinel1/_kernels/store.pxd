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

cdef extern from *:
    """
    /* The undo journal is written once and read only by a rollback: on
       x86-64, non-temporal stores write it without reading its lines
       first (no read for ownership) and without evicting the weight
       table from the caches; elsewhere, plain stores. */
    #if defined(__x86_64__)
    #include <immintrin.h>
    static inline void onlinel1_stream64(void* dst, uint64_t v) {
        _mm_stream_si64((long long*)dst, (long long)v);
    }
    static inline void onlinel1_stream_fence(void) { _mm_sfence(); }
    #else
    static inline void onlinel1_stream64(void* dst, uint64_t v) { *(uint64_t*)dst = v; }
    static inline void onlinel1_stream_fence(void) { }
    #endif
    """
    void onlinel1_stream64(void* dst, uint64_t v) noexcept nogil
    void onlinel1_stream_fence() noexcept nogil


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
    # The undo journal of a batch (docs/algorithms.md, "Atomic batches"):
    # while `journaling`, every slot image a batch is about to change (a
    # kernel's step, `remove`) and every key it adds (`insert_new`, flag 0)
    # is appended; `rollback` replays them backwards.  Before a change of
    # every slot (an L2 scale fold, a clock rebase) the table is copied
    # once instead (`journal_freeze`) and journaling stops.
    cdef readonly bint journaling     # recording (a batch is open, not frozen)
    cdef readonly bint in_batch       # begin() was called, not yet commit/rollback
    cdef char* jbuf                   # records: slot images (word 0 the hash)
    cdef unsigned char* jflag         # 1: the key was present with that image
    cdef Py_ssize_t jn, jcap          # records held, and room for
    cdef Py_ssize_t jmark             # records before the freeze
    cdef bint jlost                   # out of memory while journaling
    cdef char* jcopy                  # the table at the freeze (NULL: none)
    cdef Py_ssize_t jc_capacity, jc_total, jc_n
    cdef bint jc_has_zero
    cdef double jc_zero[2 + STORE_MAX_AUX]

    cdef int journal_grow(self, Py_ssize_t extra) noexcept nogil
    cdef void journal_freeze(self) noexcept nogil

    cdef int reserve(self, Py_ssize_t extra) noexcept nogil
    cdef char* insert_new(self, uint64_t key) noexcept nogil
    cdef void remove(self, char* slot) noexcept nogil
    cdef char* next_live(self, Py_ssize_t* cursor) noexcept nogil
    cdef Py_ssize_t evict_oldest(self, Py_ssize_t count, double newest, double expired_upto,
                                 double* floor, Py_ssize_t* n_expired) noexcept nogil
    cdef int shrink_to_fit(self) noexcept nogil
    cdef int _rebuild(self, Py_ssize_t capacity) noexcept nogil
    cdef int _rebuild_into(self, Py_ssize_t capacity, Py_ssize_t overflow) noexcept nogil
    cdef int _grow_in_place(self, Py_ssize_t capacity, Py_ssize_t overflow) noexcept nogil


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


cdef inline char* store_probe(WeightStore s, uint64_t key, bint prefetch_run) noexcept nogil:
    """The slot of ``key`` in ``s``, or NULL when absent.

    The slots are sorted by hash (ordered linear probing), so a probe from
    the home slot ends at the key's hash, at a free slot or at the first
    larger hash: a search for an absent key costs no more than a search
    for a present one.  With ``prefetch_run`` (a constant at every call,
    so the test compiles away), a probe that stops at a larger hash starts
    loading the two cache lines after it: inserting the key there shifts
    the run after that slot, scanning it to its first free slot."""
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
            if prefetch_run and k != 0:
                __builtin_prefetch(p + 64)
                __builtin_prefetch(p + 128)
            return NULL
        p += s.slot_size
    return NULL


cdef inline char* store_find(WeightStore s, uint64_t key) noexcept nogil:
    """The slot of ``key`` in ``s``, or NULL when absent (store_probe)."""
    return store_probe(s, key, False)


cdef inline char* store_find_learning(WeightStore s, uint64_t key) noexcept nogil:
    """``store_find`` for a kernel that inserts the key if it is absent:
    the run its insertion will shift starts loading now, so that those
    misses overlap the rest of the example's lookups
    (benchmarks/results/tail_prefetch.md)."""
    return store_probe(s, key, True)


cdef inline int store_journal_reserve(WeightStore s, Py_ssize_t extra) noexcept nogil:
    """Room for ``extra`` more journal records; -1 when memory runs out.
    A journal that would outgrow the table is replaced by a copy of the
    table (``journal_freeze``): then journaling stops, so callers check
    ``s.journaling`` again before they put."""
    if s.jn + extra <= s.jcap:
        return 0
    if s.jn + extra > s.total:
        s.journal_freeze()
        return 0
    return s.journal_grow(extra)


cdef inline void store_journal_put(WeightStore s, const char* slot, unsigned char present) noexcept nogil:
    """Append the image of ``slot`` (room reserved by store_journal_reserve)."""
    cdef Py_ssize_t size = s.slot_size
    cdef char* rec = s.jbuf + s.jn * size
    cdef Py_ssize_t i
    for i in range(0, size, 8):       # 2 to 5 words: no memcpy call
        onlinel1_stream64(rec + i, (<const uint64_t*>(slot + i))[0])
    s.jflag[s.jn] = present
    s.jn += 1


cdef inline int store_journal_slots(WeightStore s, void** slots, Py_ssize_t n) noexcept nogil:
    """Within an open batch, journal the present ones of ``slots`` (NULL:
    absent) before a step changes them; -1 when memory runs out."""
    cdef Py_ssize_t j
    if not s.journaling:
        return 0
    if store_journal_reserve(s, n) != 0:
        return -1
    if s.journaling:            # not frozen by the reserve
        for j in range(n):
            if slots[j] != NULL:
                store_journal_put(s, <char*>slots[j], 1)
    return 0


cdef inline void store_prefetch(WeightStore s, uint64_t key) noexcept nogil:
    """Start loading the home slot of ``key`` (and the cache line after
    it, where a probe or a slot straddling two lines continues)."""
    cdef char* p = store_home(s, fmix64(key))
    __builtin_prefetch(p)
    __builtin_prefetch(p + 64)
