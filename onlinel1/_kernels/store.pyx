# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sparse weight store: uint64 feature key -> weight and per-rule state.

Layout (docs/algorithms.md, "The weight store"):

* One open-addressing table of slots.  A slot is the key's hash
  ``fmix64(key)`` (a bijection, so it *is* the key; the key is recovered
  with its inverse), the weight and the rule's ``n_aux`` state values
  (float64), side by side: 16, 24 or 32 bytes.  Looking a feature up,
  reading its weight and state and writing them back touch one slot, so a
  model far larger than the caches costs one memory miss per feature, not
  one per array.
* A hash's home is ``floor(h * capacity / 2^64)`` (Lemire's multiply-shift),
  monotone in the hash, so the capacity need not be a power of two.
  Collisions probe forward into an overflow run after the ``capacity``
  home slots; probes never wrap around.
* Ordered linear probing (Amble & Knuth 1974): the occupied slots are
  sorted by hash.  A search stops at its hash, at a free slot or at the
  first larger hash, so looking up an absent key is as cheap as a present
  one, and the table can run at a high load.  An insertion shifts the rest
  of its run forward by one slot; a deletion shifts the displaced slots
  after it back by one (no tombstones).  Either may move other slots.
* Hash 0 (key 0) marks a free slot; key 0 itself lives in one extra slot.
* The load stays at most 85 % (``MAX_LOAD_NUM / MAX_LOAD_DEN``); past it
  the table grows by a quarter, and when pruning brings the load under
  30 % it shrinks back to 80 %, so memory follows the number of live
  weights.  Tables under ``SMALL_CAPACITY`` slots run a third to a half
  full (built at 1/3, grown past 1/2, shrunk under 1/10): a small model's
  memory does not matter, its probes do.
  Growth copies the sorted slots into the new table in one sequential pass.
* Tables of 4 MiB and more are mapped with ``mmap`` and advised onto
  transparent huge pages (``madvise(MADV_HUGEPAGE)``) where the kernel
  allows it: past the caches a miss costs a TLB miss too, and huge pages
  remove most of those.  Where the advice fails the table simply uses
  ordinary pages.

Everything a kernel calls is ``nogil`` and ``noexcept``: failures (out of
memory) are reported by return codes and turned into Python exceptions by
the caller.  Slot addresses stay valid until the next ``reserve`` (which
may grow the table), ``insert_new`` or ``remove`` (which shift slots).
"""
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memmove, memset

import numpy as np

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    int madvise(void* addr, size_t length, int advice)
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
    void* MAP_FAILED
    int MADV_HUGEPAGE
    # Linux (pyconfig.h defines _GNU_SOURCE): a mapping grown, its pages kept.
    void* mremap(void* old_address, size_t old_size, size_t new_size, int flags)
    int MREMAP_MAYMOVE

cdef Py_ssize_t MIN_CAPACITY = 16
# Past 85 % load the table grows by a quarter (to 68 %); a table built
# whole (load, shrink) starts at 80 %.  Measured at 5.8 M live features
# (docs/algorithms.md, "The weight store"): a lookup slows with the load
# (18 M feature-updates/s at 60 %, 14 M/s at 80 %), memory falls with it.
# A small table (under SMALL_CAPACITY slots, a few MiB) runs at a third to
# a half full instead: there the probes, not the memory, are what costs.
cdef Py_ssize_t MAX_LOAD_NUM = 17       # grow past 85 % load
cdef Py_ssize_t MAX_LOAD_DEN = 20
cdef Py_ssize_t TARGET_LOAD_NUM = 4     # tables built whole: 80 %
cdef Py_ssize_t TARGET_LOAD_DEN = 5
cdef Py_ssize_t SHRINK_LOAD_NUM = 3     # shrink under 30 %
cdef Py_ssize_t SHRINK_LOAD_DEN = 10
cdef Py_ssize_t SMALL_CAPACITY = 1 << 17  # below: grow past 1/2, build at 1/3, shrink under 1/10
cdef size_t MAP_THRESHOLD = 4 << 20     # bytes: map (huge pages) from here on
cdef size_t HUGE_PAGE = 2 << 20
cdef Py_ssize_t GROW_BLOCK = 4096       # entries a block of _grow_in_place's moves
# The undo journal's buffer is kept for the next batch up to this size.
cdef Py_ssize_t JOURNAL_KEEP_BYTES = 16 << 20
# evict_oldest's histogram of clocks: at most this many buckets (4 MiB).
cdef int64_t EVICT_BUCKETS = 1 << 20


cdef inline Py_ssize_t capacity_for(Py_ssize_t n) noexcept nogil:
    """Home slots for ``n`` live features at the target load."""
    cdef Py_ssize_t cap = (n * TARGET_LOAD_DEN + TARGET_LOAD_NUM - 1) // TARGET_LOAD_NUM
    if 3 * n < SMALL_CAPACITY:
        cap = 3 * n
    elif cap < SMALL_CAPACITY:
        cap = SMALL_CAPACITY
    return cap if cap > MIN_CAPACITY else MIN_CAPACITY


cdef inline bint over_max_load(Py_ssize_t n, Py_ssize_t capacity) noexcept nogil:
    if capacity < SMALL_CAPACITY:
        return 2 * n > capacity
    return n * MAX_LOAD_DEN > capacity * MAX_LOAD_NUM


cdef inline bint under_shrink_load(Py_ssize_t n, Py_ssize_t capacity) noexcept nogil:
    if capacity <= SMALL_CAPACITY:
        return 10 * n < capacity
    return n * SHRINK_LOAD_DEN < capacity * SHRINK_LOAD_NUM


cdef inline Py_ssize_t overflow_for(Py_ssize_t capacity) noexcept nogil:
    """Slots after the home slots, where the last runs continue.  A run
    that would pass them doubles them instead (keys built to collide can
    make it as long as the number of keys, never longer)."""
    return 64 + capacity // 256


cdef char* table_alloc(size_t nbytes, size_t* alloc_bytes, bint* mapped) noexcept nogil:
    """Zeroed memory for a table; huge pages where it is large enough."""
    cdef void* p
    if nbytes >= MAP_THRESHOLD:
        nbytes = (nbytes + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE
        p = mmap(NULL, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if p != MAP_FAILED:
            madvise(p, nbytes, MADV_HUGEPAGE)   # advice only: fails harmlessly
            alloc_bytes[0] = nbytes
            mapped[0] = True
            return <char*>p
    p = calloc(nbytes, 1)
    alloc_bytes[0] = nbytes
    mapped[0] = False
    return <char*>p


cdef void table_free(char* p, size_t nbytes, bint mapped) noexcept nogil:
    if p == NULL:
        return
    if mapped:
        munmap(p, nbytes)
    else:
        free(p)


cdef inline uint64_t slot_hash(const char* p) noexcept nogil:
    return (<const uint64_t*>p)[0]


cdef inline Py_ssize_t next_place(uint64_t h, Py_ssize_t capacity, Py_ssize_t last) noexcept nogil:
    """The slot of hash ``h`` in a table of ``capacity`` home slots built in
    hash order, the one before at ``last``: its home, or right after."""
    cdef Py_ssize_t home = <Py_ssize_t>onlinel1_home(h, <uint64_t>capacity)
    return home if home > last else last + 1


cdef class WeightStore:
    """Open-addressing hash table from uint64 keys to (weight, state) slots.

    ``WeightStore(n_aux)`` holds a weight and ``n_aux`` (0 to 3; 0 to 2 with a clock) extra
    float64 state values per key.  ``WeightStore(n_aux, clocked=True)``
    adds one more, last: the clock of the feature's last update (an
    example count, for the memory budget and expiry; ``evict_oldest``),
    which the Python methods treat as state column ``n_aux + 1``.  The Python methods (``get``, ``set``,
    ``delete``, ``export``, ``column_chunks``, ``load``) are for tests,
    state and inspection; the kernels use the ``cdef`` functions directly.
    """

    def __cinit__(self, int n_aux=0, bint clocked=False):
        if n_aux < 0 or n_aux + clocked > STORE_MAX_AUX:    # the clock takes one word
            raise ValueError(f"n_aux must be between 0 and {STORE_MAX_AUX - clocked}"
                             f"{' with a clock' if clocked else ''}, got {n_aux}")
        self.n_aux = n_aux + clocked
        self.clock_word = 1 + self.n_aux if clocked else 0
        self.slot_size = 8 * (2 + self.n_aux)
        self.n = 0
        self.has_zero = False
        memset(self.zero_slot, 0, sizeof(self.zero_slot))
        self.slots = NULL
        self.capacity = 0
        self.total = 0
        self.journaling = self.in_batch = self.jlost = False
        self.jbuf = NULL
        self.jflag = NULL
        self.jcopy = NULL
        self.jn = self.jcap = self.jmark = 0
        if self._rebuild(MIN_CAPACITY) != 0:
            raise MemoryError("cannot allocate the weight store")

    def __dealloc__(self):
        table_free(self.slots, self.alloc_bytes, self.mapped)
        free(self.jbuf)
        free(self.jflag)
        free(self.jcopy)

    # ------------------------------------------------------------------ C API

    cdef int reserve(self, Py_ssize_t extra) noexcept nogil:
        """Make room for ``extra`` more keys within the load bound.

        Kernels call this once per example, before they take slot
        addresses.  Returns 0, or -1 when memory runs out; the store is
        unchanged in that case."""
        cdef Py_ssize_t need = self.n + extra
        cdef Py_ssize_t grown
        if not over_max_load(need, self.capacity):
            return 0
        grown = self.capacity + self.capacity // 4
        if grown < capacity_for(need):
            grown = capacity_for(need)
        return self._rebuild(grown)

    cdef char* insert_new(self, uint64_t key) noexcept nogil:
        """Add ``key`` (known to be absent) with every value 0; return its
        slot, or NULL when memory runs out.  The slots after it in its run
        move forward by one slot: those that were in ``[slot,
        shifted_end)``; ``shifted_end`` is NULL if the table had to grow,
        which moves every slot."""
        cdef Py_ssize_t size = self.slot_size
        cdef uint64_t h, k
        cdef char* p
        cdef char* e
        cdef char* end
        cdef bint rebuilt = False
        cdef uint64_t absent[2 + STORE_MAX_AUX]
        if self.journaling:
            if store_journal_reserve(self, 1) != 0:
                return NULL
            if self.journaling:
                absent[0] = fmix64(key) if key != 0 else 0
                store_journal_put(self, <char*>absent, 0)
        if key == 0:
            memset(self.zero_slot, 0, sizeof(self.zero_slot))
            self.has_zero = True
            self.n += 1
            self.shifted_end = <char*>self.zero_slot
            return <char*>self.zero_slot
        h = fmix64(key)
        while True:
            end = self.slots + self.total * size
            # The first slot that is free or holds a larger hash.
            p = store_home(self, h)
            while p != end:
                k = slot_hash(p)
                if k == 0 or k > h:
                    break
                p += size
            # The end of the run from there: its slots move forward by one.
            e = p
            while e != end and slot_hash(e) != 0:
                e += size
            if e != end:
                break
            # The run reaches the end of the overflow slots: more of them.
            if self._rebuild_into(self.capacity, 2 * (self.total - self.capacity)) != 0:
                return NULL
            rebuilt = True
        self.shifted_end = NULL if rebuilt else e
        if e != p:
            memmove(p + size, p, e - p)
        memset(p + 8, 0, size - 8)
        (<uint64_t*>p)[0] = h
        self.n += 1
        return p

    cdef void remove(self, char* slot) noexcept nogil:
        """Delete the key in ``slot``.  The displaced slots after it (those
        not at their home) move back by one."""
        cdef Py_ssize_t size = self.slot_size
        cdef char* q
        cdef char* end
        cdef uint64_t k
        if self.journaling:
            if store_journal_reserve(self, 1) != 0:
                self.jlost = True
            elif self.journaling:
                store_journal_put(self, slot, 1)
        if slot == <char*>self.zero_slot:
            self.has_zero = False
            self.n -= 1
            return
        end = self.slots + self.total * size
        q = slot + size
        while q != end:
            k = slot_hash(q)
            if k == 0 or store_home(self, k) == q:
                break
            q += size
        if q != slot + size:
            memmove(slot, slot + size, q - (slot + size))
        (<uint64_t*>(q - size))[0] = 0
        self.n -= 1

    cdef char* next_live(self, Py_ssize_t* cursor) noexcept nogil:
        """The next live slot from ``cursor`` on (advancing it), or NULL at
        the end: the table in order (ascending hash), then the zero key's
        slot.  To delete while walking, call ``remove`` and then walk on
        from the same cursor value minus one (the next slot may have moved
        into the hole)."""
        cdef Py_ssize_t i = cursor[0]
        cdef char* p
        while i < self.total:
            p = self.slots + i * self.slot_size
            i += 1
            if slot_hash(p) != 0:
                cursor[0] = i
                return p
        if i == self.total:
            cursor[0] = i + 1
            if self.has_zero:
                return <char*>self.zero_slot
        cursor[0] = self.total + 1
        return NULL

    cdef Py_ssize_t evict_oldest(self, Py_ssize_t count, double newest, double expired_upto,
                                 double* floor, Py_ssize_t* n_expired) noexcept nogil:
        """Remove the ``count`` slots that come first in the order (clock,
        hash) among those whose clock is below ``newest`` (the features of
        the example being learned have clock ``newest`` and stay); return
        how many were removed (``count``, fewer only if there are not that
        many), or -1 when memory runs out (nothing removed).
        ``n_expired`` counts the removed whose clock is at most
        ``expired_upto``.  ``floor`` is a lower bound of the clocks below
        ``newest`` (0 is always one); it is raised to the clock of the last
        slot removed.  docs/algorithms.md, "The memory budget".

        A counting selection: a histogram of the clocks in [lo, hi] (at
        most EVICT_BUCKETS buckets) finds the bucket of the count-th
        smallest clock, and is narrowed to it until a bucket is one clock
        value c (one pass when the clocks span at most EVICT_BUCKETS
        examples).  Then one pass removes every slot with a clock below c
        and, walking in ascending hash (the table's order, the zero key
        first), the first ones with clock c."""
        cdef int cw = self.clock_word
        cdef Py_ssize_t size = self.slot_size
        cdef int64_t lo, hi, span, width, c, nb, b, i
        cdef Py_ssize_t need = count, cum, removed = 0, taken = 0, expired = 0
        cdef uint32_t* hist
        cdef char* p
        cdef double* zero = self.zero_slot
        if count <= 0 or cw == 0:
            return 0
        lo = <int64_t>floor[0]
        hi = <int64_t>newest - 1
        while hi > lo:
            span = hi - lo + 1
            width = (span + EVICT_BUCKETS - 1) // EVICT_BUCKETS
            nb = (span + width - 1) // width
            hist = <uint32_t*>calloc(nb, sizeof(uint32_t))
            if hist == NULL:
                return -1
            if self.has_zero:
                c = <int64_t>zero[cw]
                if lo <= c <= hi:
                    hist[(c - lo) // width] += 1
            for i in range(self.total):
                p = self.slots + i * size
                if slot_hash(p) != 0:
                    c = <int64_t>(<double*>p)[cw]
                    if lo <= c <= hi:
                        hist[(c - lo) // width] += 1
            cum = 0
            b = 0
            while b < nb - 1 and cum + hist[b] < need:
                cum += hist[b]
                b += 1
            free(hist)
            need -= cum
            lo = lo + b * width
            if lo + width - 1 < hi:
                hi = lo + width - 1
        # Remove every clock below lo, and the first `need` at lo.
        if self.has_zero and removed < count:
            c = <int64_t>zero[cw]
            if c < lo or (c == lo and taken < need):
                taken += c == lo
                expired += zero[cw] <= expired_upto
                self.remove(<char*>zero)
                removed += 1
        i = 0
        while i < self.total and removed < count:
            p = self.slots + i * size
            if slot_hash(p) != 0:
                c = <int64_t>(<double*>p)[cw]
                if c < lo or (c == lo and taken < need):
                    taken += c == lo
                    expired += (<double*>p)[cw] <= expired_upto
                    self.remove(p)      # the next slot may move into this one
                    removed += 1
                    continue
            i += 1
        floor[0] = <double>lo
        n_expired[0] = expired
        return removed

    cdef int journal_grow(self, Py_ssize_t extra) noexcept nogil:
        """Room for ``extra`` more records (by half again at least)."""
        cdef Py_ssize_t cap = self.jcap + self.jcap // 2
        cdef char* buf
        cdef unsigned char* flag
        if cap < self.jn + extra:
            cap = self.jn + extra
        if cap < 1024:
            cap = 1024
        buf = <char*>realloc(self.jbuf, cap * self.slot_size)
        if buf == NULL:
            return -1
        self.jbuf = buf
        flag = <unsigned char*>realloc(self.jflag, cap)
        if flag == NULL:
            return -1
        self.jflag = flag
        self.jcap = cap
        return 0

    cdef void journal_freeze(self) noexcept nogil:
        """About to change every slot: copy the table once (the journal up
        to here, replayed on that copy, undoes the batch) and stop
        journaling.  Out of memory, the batch cannot be undone (jlost)."""
        cdef size_t nbytes = self.total * self.slot_size
        if not self.journaling:
            return
        self.journaling = False
        self.jmark = self.jn
        self.jcopy = <char*>malloc(nbytes if nbytes > 0 else 1)
        if self.jcopy == NULL:
            self.jlost = True
            return
        memcpy(self.jcopy, self.slots, nbytes)
        self.jc_capacity = self.capacity
        self.jc_total = self.total
        self.jc_n = self.n
        self.jc_has_zero = self.has_zero
        memcpy(self.jc_zero, self.zero_slot, sizeof(self.zero_slot))

    cdef int shrink_to_fit(self) noexcept nogil:
        """Give memory back once pruning has emptied most of the store."""
        cdef Py_ssize_t overflow = self.total - self.capacity
        # Never more home slots than now: the store only lost entries.
        cdef Py_ssize_t capacity = min(capacity_for(self.n), self.capacity)
        if capacity + overflow_for(capacity) >= self.total:
            return 0            # a rebuild would not give anything back
        if (self.capacity > MIN_CAPACITY and under_shrink_load(self.n, self.capacity)) or \
                overflow > 2 * max(overflow_for(self.capacity), self.n):
            return self._rebuild(capacity)
        return 0

    cdef int _rebuild(self, Py_ssize_t capacity) noexcept nogil:
        return self._rebuild_into(capacity, overflow_for(capacity))

    cdef int _rebuild_into(self, Py_ssize_t capacity, Py_ssize_t overflow) noexcept nogil:
        """Move every entry into a new table of ``capacity`` home slots and
        at least ``overflow`` slots after them: one pass in hash order, each
        slot at its home or right after the previous one.  A mapped table
        that grows is grown in place (``_grow_in_place``)."""
        cdef size_t alloc_bytes
        cdef bint mapped
        cdef Py_ssize_t size = self.slot_size
        cdef Py_ssize_t total, i, pos, last
        cdef char* table
        cdef char* p
        cdef uint64_t k
        cdef int status
        if self.mapped and capacity >= self.capacity:
            status = self._grow_in_place(capacity, overflow)
            if status != 1:
                return status
        while True:
            total = capacity + overflow
            table = table_alloc(total * size, &alloc_bytes, &mapped)
            if table == NULL:
                return -1
            last = -1
            for i in range(self.total):
                p = self.slots + i * size
                k = slot_hash(p)
                if k == 0:
                    continue
                pos = next_place(k, capacity, last)
                if pos >= total:
                    break
                memcpy(table + pos * size, p, size)
                last = pos
            else:
                break
            # The last run did not fit in the overflow slots: more of them.
            table_free(table, alloc_bytes, mapped)
            overflow *= 2
        table_free(self.slots, self.alloc_bytes, self.mapped)
        self.slots = table
        self.capacity = capacity
        self.total = total
        self.alloc_bytes = alloc_bytes
        self.mapped = mapped
        return 0

    cdef int _grow_in_place(self, Py_ssize_t capacity, Py_ssize_t overflow) noexcept nogil:
        """``_rebuild_into`` for a mapped table that grows: the mapping is
        extended (``mremap``: its pages are kept, only the new ones are
        fresh, zeroed by the kernel), and the entries move right to their
        new places, the last one first.  Returns 0, -1 out of memory (the
        store unchanged), or 1 when it cannot (the caller rebuilds).

        The new place of the entry of rank r (in hash order) is
        ``P_r = max(home'_r, P_{r-1} + 1)``; with ``capacity`` not smaller,
        ``home'_r >= home_r``, so ``P_r`` is at or after its old place
        (by induction on r), and after every later entry has moved, the
        slots from the old place up to ``P_r`` are free.  The recurrence
        runs forwards; the moves, backwards: a first pass keeps ``P`` at
        the start of every block of GROW_BLOCK entries, and each block,
        the last first, recomputes its places from there and moves its
        entries in reverse (docs/algorithms.md, "The weight store")."""
        cdef Py_ssize_t size = self.slot_size
        cdef Py_ssize_t n_blocks = (self.n + GROW_BLOCK - 1) // GROW_BLOCK + 1
        cdef Py_ssize_t* start = <Py_ssize_t*>malloc(n_blocks * sizeof(Py_ssize_t))
        cdef Py_ssize_t* before = <Py_ssize_t*>malloc(n_blocks * sizeof(Py_ssize_t))
        cdef Py_ssize_t* old_at = <Py_ssize_t*>malloc(GROW_BLOCK * sizeof(Py_ssize_t))
        cdef Py_ssize_t* new_at = <Py_ssize_t*>malloc(GROW_BLOCK * sizeof(Py_ssize_t))
        cdef Py_ssize_t i, b, m, r, last, total, w, words = size // 8
        cdef size_t nbytes
        cdef uint64_t k
        cdef uint64_t* src
        cdef uint64_t* dst
        cdef char* table
        if start == NULL or before == NULL or old_at == NULL or new_at == NULL:
            free(start); free(before); free(old_at); free(new_at)
            return -1
        # 1. The places, forwards: the last one, and P before each block
        # (r: the entries left in the current block).
        last = -1
        r = 0
        b = 0
        for i in range(self.total):
            k = slot_hash(self.slots + i * size)
            if k == 0:
                continue
            if r == 0:
                start[b] = i
                before[b] = last
                b += 1
                r = GROW_BLOCK
            last = next_place(k, capacity, last)
            r -= 1
        total = capacity + overflow
        while last >= total:        # the last run passes the overflow slots
            overflow *= 2
            total = capacity + overflow
        nbytes = (total * size + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE
        table = <char*>MAP_FAILED
        if nbytes >= self.alloc_bytes:     # (a table that shrinks is rebuilt)
            table = <char*>mremap(self.slots, self.alloc_bytes, nbytes, MREMAP_MAYMOVE)
        if table == <char*>MAP_FAILED:
            free(start); free(before); free(old_at); free(new_at)
            return 1
        madvise(table, nbytes, MADV_HUGEPAGE)
        # 2. The moves, backwards, block by block.
        while b > 0:
            b -= 1
            last = before[b]
            m = 0
            i = start[b]
            while m < GROW_BLOCK and i < self.total:
                k = slot_hash(table + i * size)
                if k != 0:
                    last = next_place(k, capacity, last)
                    old_at[m] = i
                    new_at[m] = last
                    m += 1
                i += 1
            while m > 0:
                m -= 1
                if new_at[m] != old_at[m]:
                    src = <uint64_t*>(table + old_at[m] * size)
                    dst = <uint64_t*>(table + new_at[m] * size)
                    for w in range(words):      # a few words: no memcpy call
                        dst[w] = src[w]
                        src[w] = 0
        free(start); free(before); free(old_at); free(new_at)
        self.slots = table
        self.capacity = capacity
        self.total = total
        self.alloc_bytes = nbytes
        return 0

    # ------------------------------------------------------------- Python API

    def __len__(self):
        return self.n

    def __contains__(self, key):
        return store_find(self, <uint64_t>key) != NULL

    @property
    def table_slots(self):
        """Number of home slots in the table (the overflow run not counted)."""
        return self.capacity

    @property
    def huge_pages(self):
        """Whether the table was mapped and advised onto huge pages."""
        return bool(self.mapped)

    @property
    def memory_bytes(self):
        """Bytes allocated by the store (the table and the zero key's slot)."""
        return self.alloc_bytes + sizeof(self.zero_slot)

    def get(self, key, default=None):
        """Weight and state of ``key`` as a tuple, or ``default``."""
        cdef double* p = <double*>store_find(self, <uint64_t>key)
        if p == NULL:
            return default
        return tuple(p[1 + a] for a in range(1 + self.n_aux))

    def set(self, key, double weight, *aux):
        """Insert or overwrite ``key``; ``aux`` gives the state values."""
        if len(aux) > self.n_aux:
            raise ValueError(f"this store has {self.n_aux} state columns, got {len(aux)}")
        values = [float(a) for a in aux]    # convert before changing anything
        cdef uint64_t k = key
        cdef double* p = <double*>store_find(self, k)
        if p == NULL:
            if self.reserve(1) != 0:
                raise MemoryError("cannot grow the weight store")
            p = <double*>self.insert_new(k)
            if p == NULL:
                raise MemoryError("cannot grow the weight store")
        p[1] = weight
        for a, value in enumerate(values):
            p[2 + a] = value

    def delete(self, key):
        """Remove ``key``; return whether it was present."""
        cdef char* p = store_find(self, <uint64_t>key)
        if p == NULL:
            return False
        self.remove(p)
        return True

    def rebuild(self, double load):
        """Rebuild the table at the given load (live features / home
        slots, at most the growth bound 0.85): for benchmarks of the
        trade between speed and memory.  Learning goes on from there."""
        if not 0 < load <= <double>MAX_LOAD_NUM / MAX_LOAD_DEN:
            raise ValueError(f"load must be in (0, {MAX_LOAD_NUM / MAX_LOAD_DEN}], got {load}")
        cdef Py_ssize_t capacity = max(MIN_CAPACITY, <Py_ssize_t>(self.n / load) + 1)
        if over_max_load(self.n, capacity):
            raise ValueError(f"load {load} is over the bound of a table of {capacity} slots "
                             f"(a half below {SMALL_CAPACITY} slots)")
        if self._rebuild(capacity) != 0:
            raise MemoryError("cannot reallocate the weight store")

    # ------------------------------------------------- atomic batches

    def begin(self):
        """Start journaling a batch: until ``commit``, ``rollback`` can
        undo every change (docs/algorithms.md, "Atomic batches")."""
        if self.in_batch:
            raise RuntimeError("a batch is already open")
        self.jn = self.jmark = 0
        self.jlost = False
        self.in_batch = self.journaling = True

    def commit(self):
        """Keep the changes since ``begin``; drop the journal."""
        self._close_journal()

    def rollback(self):
        """Undo every change since ``begin``: the live keys and their
        slots' contents are those at ``begin`` again, bit for bit (the
        table may keep a larger size).  Raises MemoryError if that cannot
        be done (memory ran out while journaling or now)."""
        cdef Py_ssize_t r, upto
        cdef int failed = 0
        cdef char* rec
        cdef char* p
        cdef uint64_t h, key
        cdef Py_ssize_t size = self.slot_size
        if not self.in_batch:
            raise RuntimeError("no batch is open")
        self.journaling = False
        if self.jlost:
            self._close_journal()
            raise MemoryError("memory ran out while journaling the batch: it cannot be undone")
        with nogil:
            onlinel1_stream_fence()     # the journal's streamed stores are visible
            upto = self.jn
            if self.jcopy != NULL:
                table_free(self.slots, self.alloc_bytes, self.mapped)
                self.slots = self.jcopy
                self.jcopy = NULL
                self.alloc_bytes = self.jc_total * size
                self.mapped = False
                self.capacity = self.jc_capacity
                self.total = self.jc_total
                self.n = self.jc_n
                self.has_zero = self.jc_has_zero
                memcpy(self.zero_slot, self.jc_zero, sizeof(self.zero_slot))
                upto = self.jmark
            r = upto - 1
            while r >= 0:
                rec = self.jbuf + r * size
                h = slot_hash(rec)
                key = unfmix64(h) if h != 0 else 0
                p = store_find(self, key)
                if self.jflag[r] == 0:
                    if p != NULL:
                        self.remove(p)
                else:
                    if p == NULL:
                        if self.reserve(1) != 0:
                            failed = 1
                            break
                        p = self.insert_new(key)
                        if p == NULL:
                            failed = 1
                            break
                    memcpy(p + 8, rec + 8, size - 8)
                r -= 1
        self._close_journal()
        if failed:
            raise MemoryError("memory ran out while undoing the batch")

    def _close_journal(self):
        self.in_batch = self.journaling = self.jlost = False
        self.jn = self.jmark = 0
        free(self.jcopy)
        self.jcopy = NULL
        if self.jcap * self.slot_size > JOURNAL_KEEP_BYTES:
            # A large batch's journal is given back, not kept for the next.
            free(self.jbuf)
            free(self.jflag)
            self.jbuf = NULL
            self.jflag = NULL
            self.jcap = 0

    @property
    def journal_bytes(self):
        """Bytes held by the undo journal (records, and the table copy
        of a frozen batch)."""
        cdef size_t copy = self.jc_total * self.slot_size if self.jcopy != NULL else 0
        return self.jcap * (self.slot_size + 1) + copy

    def shrink(self):
        """Release memory held for slots no longer in use."""
        if self.shrink_to_fit() != 0:
            raise MemoryError("cannot reallocate the weight store")

    def export(self):
        """Copies of the live entries: ``(keys, weights, [aux columns])``,
        in store order (ascending hash, then key 0)."""
        keys = np.concatenate([np.empty(0, np.uint64)] + list(self.column_chunks(-1)))
        cols = [np.concatenate([np.empty(0, np.float64)] + list(self.column_chunks(c)))
                for c in range(1 + self.n_aux)]
        return keys, cols[0], cols[1:]

    def column_chunks(self, int column, Py_ssize_t chunk_rows=1 << 16):
        """Yield one column of the live entries as arrays of at most
        ``chunk_rows`` values (copies): ``column`` -1 is the keys, 0 the
        stored weight, 1..n_aux the state columns.  Every column comes in
        the same order, that of ``export``, so that a writer can stream a
        model one column at a time in bounded memory.  The store must not
        change while a generator is being consumed."""
        if column < -1 or column > self.n_aux:
            raise ValueError(f"column must be -1 (keys) to {self.n_aux}, got {column}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        cdef Py_ssize_t cursor = 0, count, left = self.n, i
        cdef char* p
        cdef uint64_t[::1] kv
        cdef double[::1] dv
        cdef int offset = 1 + column   # in 8-byte words; the hash is word 0
        while left > 0:
            count = min(chunk_rows, left)
            if column == -1:
                out = np.empty(count, dtype=np.uint64)
                kv = out
            else:
                out = np.empty(count, dtype=np.float64)
                dv = out
            with nogil:
                for i in range(count):
                    p = self.next_live(&cursor)
                    if column == -1:
                        kv[i] = 0 if p == <char*>self.zero_slot else unfmix64(slot_hash(p))
                    else:
                        dv[i] = (<double*>p)[offset]
            left -= count
            yield out

    def load(self, keys, weights, aux=()):
        """Replace the contents with the given entries."""
        cdef const uint64_t[::1] kv = np.ascontiguousarray(keys, dtype=np.uint64)
        cdef const double[::1] wv = np.ascontiguousarray(weights, dtype=np.float64)
        cdef const double[::1] av0
        cdef const double[::1] av1
        cdef const double[::1] av2
        cdef Py_ssize_t n = kv.shape[0], i, j, pos, last
        cdef double* p
        cdef int n_aux = self.n_aux
        cdef uint64_t h
        if wv.shape[0] != n:
            raise ValueError("keys and weights differ in length")
        if len(aux) != self.n_aux:
            raise ValueError(f"this store has {self.n_aux} state columns, got {len(aux)}")
        cols = [np.ascontiguousarray(c, dtype=np.float64) for c in aux]
        for c in cols:
            if c.ndim != 1 or c.shape[0] != n:
                raise ValueError("a state column is not a 1-D array as long as keys")
        # The hashes in ascending order: the table is written in one pass,
        # and a repeated key shows as two equal neighbours.
        hashes = np.empty(n, dtype=np.uint64)
        cdef uint64_t[::1] hv = hashes
        with nogil:
            for i in range(n):
                hv[i] = fmix64(kv[i])
        order_array = np.argsort(hashes, kind="stable")
        cdef const Py_ssize_t[::1] order = order_array.astype(np.intp)
        for i in range(1, n):
            if hv[order[i]] == hv[order[i - 1]]:
                raise ValueError("keys are not unique")
        av0 = cols[0] if n_aux > 0 else wv
        av1 = cols[1] if n_aux > 1 else wv
        av2 = cols[2] if n_aux > 2 else wv
        table_free(self.slots, self.alloc_bytes, self.mapped)
        self.slots = NULL
        self.capacity = 0
        self.total = 0
        self.n = 0
        self.has_zero = False
        if self._rebuild(capacity_for(n)) != 0:
            raise MemoryError("cannot allocate the weight store")
        with nogil:
            last = -1
            for i in range(n):
                j = order[i]
                h = hv[j]
                if h == 0:
                    p = self.zero_slot
                    self.has_zero = True
                else:
                    pos = next_place(h, self.capacity, last)
                    if pos >= self.total:
                        break
                    last = pos
                    p = <double*>(self.slots + pos * self.slot_size)
                    (<uint64_t*>p)[0] = h
                p[1] = wv[j]
                if n_aux > 0:
                    p[2] = av0[j]
                if n_aux > 1:
                    p[3] = av1[j]
                if n_aux > 2:
                    p[4] = av2[j]
                self.n += 1
        if self.n != n:
            # Only with a pathological run past the overflow slots: insert
            # the rest one by one (the table grows as needed).
            for i in range(self.n, n):
                j = order[i]
                p = <double*>self.insert_new(kv[j])
                if p == NULL:
                    raise MemoryError("cannot allocate the weight store")
                p[1] = wv[j]
                if n_aux > 0:
                    p[2] = av0[j]
                if n_aux > 1:
                    p[3] = av1[j]
                if n_aux > 2:
                    p[4] = av2[j]

    def check_invariants(self):
        """Raise AssertionError if the table is inconsistent (tests)."""
        cdef Py_ssize_t i, j, used = 0, home
        cdef uint64_t k, prev = 0
        cdef char* p
        for i in range(self.total):
            p = self.slots + i * self.slot_size
            k = slot_hash(p)
            if k == 0:
                continue
            used += 1
            home = <Py_ssize_t>onlinel1_home(k, <uint64_t>self.capacity)
            assert home <= i, f"slot {i} is before its home {home}"
            assert k > prev, f"slot {i}: hashes are not in ascending order"
            prev = k
            # Every slot from the home to i is occupied (no hole in a probe).
            for j in range(home, i):
                assert slot_hash(self.slots + j * self.slot_size) != 0, \
                    f"a free slot between the home of slot {i} and the slot"
            assert store_find(self, unfmix64(k)) == p, f"slot {i} not found by its key"
        assert used + self.has_zero == self.n, f"{used} used slots (+zero key) for {self.n} keys"
        assert not over_max_load(self.n, self.capacity), "load factor above bound"
        assert self.total >= self.capacity + overflow_for(self.capacity)
