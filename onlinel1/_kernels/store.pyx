# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sparse weight store: uint64 feature key -> weight and per-rule state.

Layout (docs/algorithms.md, "The weight store"):

* One open-addressing table of ``capacity`` slots.  A slot is the key
  (uint64), the weight and the rule's ``n_aux`` state values (float64), side
  by side: 16, 24 or 32 bytes.  Looking a feature up, reading its weight
  and state and writing them back touch one slot, so a model far larger
  than the caches costs one memory miss per feature, not one per array.
* A slot's home is ``fmix64(key)`` reduced to ``[0, capacity)`` by a
  multiply-shift (Lemire), so the capacity need not be a power of two and
  the table can grow in steps of 4/3.  Collisions probe linearly.
* A key of 0 marks a free slot; the feature whose key is 0 is kept in one
  extra slot beside the table.
* Deletion is backward-shift deletion (Knuth, TAOCP vol. 3, 6.4,
  Algorithm R): the entries after the hole that may move into it are moved
  back, so no tombstones ever build up.
* The load stays at most 80 % (``MAX_LOAD_NUM / MAX_LOAD_DEN``); the table
  grows to 60 % load when it would pass that, and shrinks back to 60 % when
  pruning has brought the load under 20 %, so memory follows the number of
  live weights.  Growth reinserts the slots in table order; the homes are
  monotone in the hash, so the new table fills almost sequentially.
* Tables of 4 MiB and more are mapped with ``mmap`` and advised onto
  transparent huge pages (``madvise(MADV_HUGEPAGE)``) where the kernel
  allows it: past the caches a miss costs a TLB miss too, and huge pages
  remove most of those.  Where the advice fails the table simply uses
  ordinary pages.

Everything a kernel calls is ``nogil`` and ``noexcept``: failures (out of
memory) are reported by return codes and turned into Python exceptions by
the caller.  Slot addresses stay valid until the next ``reserve`` (which
may grow the table) or ``remove`` (which shifts entries).
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

import numpy as np

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    int madvise(void* addr, size_t length, int advice)
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
    void* MAP_FAILED
    int MADV_HUGEPAGE

cdef Py_ssize_t MIN_CAPACITY = 16
cdef Py_ssize_t MAX_LOAD_NUM = 4        # grow past 80 % load
cdef Py_ssize_t MAX_LOAD_DEN = 5
cdef Py_ssize_t TARGET_LOAD_NUM = 3     # ... to 60 %
cdef Py_ssize_t TARGET_LOAD_DEN = 5
cdef Py_ssize_t SHRINK_LOAD_NUM = 1     # shrink under 20 %
cdef Py_ssize_t SHRINK_LOAD_DEN = 5
cdef size_t MAP_THRESHOLD = 4 << 20     # bytes: map (huge pages) from here on
cdef size_t HUGE_PAGE = 2 << 20


cdef inline Py_ssize_t capacity_for(Py_ssize_t n) noexcept nogil:
    """Slots for ``n`` live features at the target load."""
    cdef Py_ssize_t cap = (n * TARGET_LOAD_DEN + TARGET_LOAD_NUM - 1) // TARGET_LOAD_NUM
    return cap if cap > MIN_CAPACITY else MIN_CAPACITY


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


cdef class WeightStore:
    """Open-addressing hash table from uint64 keys to (weight, state) slots.

    ``WeightStore(n_aux)`` holds a weight and ``n_aux`` (0 to 2) extra
    float64 state values per key.  The Python methods (``get``, ``set``,
    ``delete``, ``export``, ``column_chunks``, ``load``) are for tests,
    state and inspection; the kernels use the ``cdef`` functions directly.
    """

    def __cinit__(self, int n_aux=0):
        if n_aux < 0 or n_aux > STORE_MAX_AUX:
            raise ValueError(f"n_aux must be between 0 and {STORE_MAX_AUX}, got {n_aux}")
        self.n_aux = n_aux
        self.slot_size = 8 * (2 + n_aux)
        self.n = 0
        self.has_zero = False
        memset(self.zero_slot, 0, sizeof(self.zero_slot))
        self.slots = NULL
        self.capacity = 0
        if self._rebuild(MIN_CAPACITY) != 0:
            raise MemoryError("cannot allocate the weight store")

    def __dealloc__(self):
        table_free(self.slots, self.alloc_bytes, self.mapped)

    # ------------------------------------------------------------------ C API

    cdef int reserve(self, Py_ssize_t extra) noexcept nogil:
        """Make room for ``extra`` more keys without growing later.

        Kernels call this once per example, before they take slot
        addresses.  Returns 0, or -1 when memory runs out; the store is
        unchanged in that case."""
        cdef Py_ssize_t need = self.n + extra
        cdef Py_ssize_t grown
        if need * MAX_LOAD_DEN <= self.capacity * MAX_LOAD_NUM:
            return 0
        grown = self.capacity + self.capacity // 3
        if grown < capacity_for(need):
            grown = capacity_for(need)
        return self._rebuild(grown)

    cdef char* insert_new(self, uint64_t key) noexcept nogil:
        """Add ``key`` (known to be absent) with every value 0; return its
        slot.  The caller has reserved room."""
        cdef char* p
        cdef char* end
        if key == 0:
            memset(self.zero_slot, 0, sizeof(self.zero_slot))
            self.has_zero = True
            self.n += 1
            return <char*>self.zero_slot
        p = store_home(self, key)
        end = self.slots + self.capacity * self.slot_size
        while (<uint64_t*>p)[0] != 0:
            p += self.slot_size
            if p == end:
                p = self.slots
        memset(p + 8, 0, self.slot_size - 8)
        (<uint64_t*>p)[0] = key
        self.n += 1
        return p

    cdef void remove(self, char* slot) noexcept nogil:
        """Delete the key in ``slot``.  Entries after it in its cluster may
        move back by one or more slots (other slot addresses change)."""
        cdef Py_ssize_t size = self.slot_size
        cdef Py_ssize_t cap = self.capacity
        cdef Py_ssize_t hole, j, home
        cdef uint64_t k
        if slot == <char*>self.zero_slot:
            self.has_zero = False
            self.n -= 1
            return
        hole = (slot - self.slots) // size
        j = hole
        # Backward-shift deletion: walk the cluster after the hole and pull
        # back every entry whose home is not cyclically in (hole, j].
        while True:
            j += 1
            if j == cap:
                j = 0
            k = (<uint64_t*>(self.slots + j * size))[0]
            if k == 0:
                break
            home = <Py_ssize_t>onlinel1_home(fmix64(k), <uint64_t>cap)
            if hole <= j:
                if hole < home and home <= j:
                    continue
            elif hole < home or home <= j:
                continue
            memcpy(self.slots + hole * size, self.slots + j * size, size)
            hole = j
        (<uint64_t*>(self.slots + hole * size))[0] = 0
        self.n -= 1

    cdef char* next_live(self, Py_ssize_t* cursor) noexcept nogil:
        """The next live slot from ``cursor`` on (advancing it), or NULL at
        the end: the table in order, then the zero key's slot.  To delete
        while walking, call ``remove`` and then walk on from the same cursor
        value minus one (an entry may have moved into the hole)."""
        cdef Py_ssize_t i = cursor[0]
        cdef char* p
        while i < self.capacity:
            p = self.slots + i * self.slot_size
            i += 1
            if (<uint64_t*>p)[0] != 0:
                cursor[0] = i
                return p
        if i == self.capacity:
            cursor[0] = i + 1
            if self.has_zero:
                return <char*>self.zero_slot
        cursor[0] = self.capacity + 1
        return NULL

    cdef int shrink_to_fit(self) noexcept nogil:
        """Give memory back once pruning has emptied most of the store."""
        if self.capacity > MIN_CAPACITY and \
                self.n * SHRINK_LOAD_DEN < self.capacity * SHRINK_LOAD_NUM:
            return self._rebuild(capacity_for(self.n))
        return 0

    cdef int _rebuild(self, Py_ssize_t capacity) noexcept nogil:
        """Move every entry into a new table of ``capacity`` slots."""
        cdef size_t alloc_bytes
        cdef bint mapped
        cdef char* table = table_alloc(capacity * self.slot_size, &alloc_bytes, &mapped)
        cdef char* p
        cdef char* q
        cdef char* end
        cdef Py_ssize_t i, size = self.slot_size
        cdef uint64_t k
        if table == NULL:
            return -1
        end = table + capacity * size
        # In table order: homes are monotone in the hash, so the new table
        # is written almost sequentially.
        for i in range(self.capacity):
            p = self.slots + i * size
            k = (<uint64_t*>p)[0]
            if k == 0:
                continue
            q = table + <Py_ssize_t>onlinel1_home(fmix64(k), <uint64_t>capacity) * size
            while (<uint64_t*>q)[0] != 0:
                q += size
                if q == end:
                    q = table
            memcpy(q, p, size)
        table_free(self.slots, self.alloc_bytes, self.mapped)
        self.slots = table
        self.capacity = capacity
        self.alloc_bytes = alloc_bytes
        self.mapped = mapped
        return 0

    # ------------------------------------------------------------- Python API

    def __len__(self):
        return self.n

    def __contains__(self, key):
        return store_find(self, <uint64_t>key) != NULL

    @property
    def table_slots(self):
        """Number of slots in the table."""
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

    def shrink(self):
        """Release memory held for slots no longer in use."""
        if self.shrink_to_fit() != 0:
            raise MemoryError("cannot reallocate the weight store")

    def export(self):
        """Copies of the live entries: ``(keys, weights, [aux columns])``,
        in store order (deterministic for a given history)."""
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
        cdef int offset = 1 + column   # in 8-byte words; the key is word 0
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
                        kv[i] = 0 if p == <char*>self.zero_slot else (<uint64_t*>p)[0]
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
        cdef Py_ssize_t n = kv.shape[0], i
        cdef double* p
        cdef int n_aux = self.n_aux
        if wv.shape[0] != n:
            raise ValueError("keys and weights differ in length")
        if len(aux) != self.n_aux:
            raise ValueError(f"this store has {self.n_aux} state columns, got {len(aux)}")
        cols = [np.ascontiguousarray(c, dtype=np.float64) for c in aux]
        for c in cols:
            if c.ndim != 1 or c.shape[0] != n:
                raise ValueError("a state column is not a 1-D array as long as keys")
        if n and np.unique(np.asarray(kv)).size != n:
            raise ValueError("keys are not unique")
        av0 = cols[0] if n_aux > 0 else wv
        av1 = cols[1] if n_aux > 1 else wv
        table_free(self.slots, self.alloc_bytes, self.mapped)
        self.slots = NULL
        self.capacity = 0
        self.n = 0
        self.has_zero = False
        if self._rebuild(capacity_for(n)) != 0:
            raise MemoryError("cannot allocate the weight store")
        with nogil:
            for i in range(n):
                p = <double*>self.insert_new(kv[i])
                p[1] = wv[i]
                if n_aux > 0:
                    p[2] = av0[i]
                if n_aux > 1:
                    p[3] = av1[i]

    def check_invariants(self):
        """Raise AssertionError if the table is inconsistent (tests)."""
        cdef Py_ssize_t i, d, used = 0, home, dist, cap = self.capacity
        cdef uint64_t k
        for i in range(cap):
            k = (<uint64_t*>(self.slots + i * self.slot_size))[0]
            if k == 0:
                continue
            used += 1
            assert store_find(self, k) == self.slots + i * self.slot_size, \
                f"slot {i} not reachable from its home"
            # Every slot from the home to i is occupied (no hole in a probe).
            home = <Py_ssize_t>onlinel1_home(fmix64(k), <uint64_t>cap)
            dist = (i - home) % cap
            for d in range(dist):
                assert (<uint64_t*>(self.slots + ((home + d) % cap) * self.slot_size))[0] != 0, \
                    f"a free slot between the home of slot {i} and the slot"
        assert used + self.has_zero == self.n, f"{used} used slots (+zero key) for {self.n} keys"
        assert self.n * MAX_LOAD_DEN <= cap * MAX_LOAD_NUM or cap == MIN_CAPACITY, \
            "load factor above bound"
