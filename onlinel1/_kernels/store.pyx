# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sparse weight store: uint64 feature key -> weight and per-rule state.

Layout (pandas' khash tables and scikit-learn's WeightVector are the models):

* Live features are the dense rows ``0 .. n-1`` of parallel C arrays:
  ``keys`` (uint64), ``w`` (float64) and up to two per-rule state columns
  ``aux[0]``, ``aux[1]`` (float64; e.g. Tsuruoka's applied penalty ``q_i``
  and its origin).  Exporting the model is therefore a ``memcpy`` of the
  first ``n`` rows, never a Python loop.
* An index table of ``table_size`` (a power of two) uint32 row numbers,
  ``EMPTY`` where free, resolved by linear probing from ``fmix64(key)``.
  Four bytes a slot keep the probe sequence inside one or two cache lines.
* Deletion is *backward-shift* deletion (Knuth, TAOCP vol. 3, 6.4,
  Algorithm R): the entries after the hole that may move into it are moved
  back, so no tombstones ever build up and probe lengths stay those of a
  table that never saw a deletion.  The dense row of the removed key is
  filled with the last row (swap-remove) so rows stay contiguous.
* The table holds at most 70 % load (``MAX_LOAD_NUM / MAX_LOAD_DEN``) and
  grows by doubling; dense arrays grow by 1.5x.  ``shrink_to_fit`` gives
  memory back when pruning has emptied most of the store, so memory follows
  the number of live (non-zero) weights.

Everything a kernel calls is ``nogil`` and ``noexcept``: failures (out of
memory) are reported by return codes and turned into Python exceptions by
the caller.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

import numpy as np

cdef uint32_t EMPTY = 0xFFFFFFFFu
cdef Py_ssize_t MAX_ROWS = 0xFFFFFFFEu
cdef Py_ssize_t MIN_TABLE = 16
cdef Py_ssize_t MIN_ROWS = 16
cdef Py_ssize_t MAX_LOAD_NUM = 7
cdef Py_ssize_t MAX_LOAD_DEN = 10


cdef inline Py_ssize_t table_size_for(Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t size = MIN_TABLE
    while rows * MAX_LOAD_DEN > size * MAX_LOAD_NUM:
        size *= 2
    return size


cdef class WeightStore:
    """Open-addressing hash table from uint64 keys to weight rows.

    ``WeightStore(n_aux)`` holds a weight and ``n_aux`` (0 to 2) extra
    float64 state columns per key.  The Python methods (``get``, ``set``,
    ``delete``, ``export``, ``load``) are for tests, state and inspection;
    the kernels use the ``cdef`` methods directly.
    """

    def __cinit__(self, int n_aux=0):
        if n_aux < 0 or n_aux > STORE_MAX_AUX:
            raise ValueError(f"n_aux must be between 0 and {STORE_MAX_AUX}, got {n_aux}")
        self.n_aux = n_aux
        self.n = 0
        self.cap = 0
        self.keys = NULL
        self.w = NULL
        self.aux[0] = NULL
        self.aux[1] = NULL
        self.table = NULL
        self.table_size = 0
        if self._resize_rows(MIN_ROWS) != 0 or self._rebuild_table(MIN_TABLE) != 0:
            raise MemoryError("cannot allocate the weight store")

    def __dealloc__(self):
        free(self.keys)
        free(self.w)
        free(self.aux[0])
        free(self.aux[1])
        free(self.table)

    # ------------------------------------------------------------------ C API

    cdef Py_ssize_t find(self, uint64_t key) noexcept nogil:
        """Row of ``key``, or -1 when absent (kernels use ``store_find``)."""
        return store_find(self, key)

    cdef int reserve(self, Py_ssize_t extra) noexcept nogil:
        """Make room for ``extra`` more rows without reallocating later.

        Kernels call this once per example, before they take pointers into
        the arrays.  Returns 0, or -1 when memory (or the uint32 row space)
        runs out; the store is unchanged in that case.
        """
        cdef Py_ssize_t need = self.n + extra
        cdef Py_ssize_t new_cap
        if need > MAX_ROWS:
            return -1
        if need > self.cap:
            new_cap = self.cap + self.cap // 2
            if new_cap < need:
                new_cap = need
            if new_cap > MAX_ROWS:
                new_cap = MAX_ROWS
            if self._resize_rows(new_cap) != 0:
                return -1
        if need * MAX_LOAD_DEN > self.table_size * MAX_LOAD_NUM:
            if self._rebuild_table(table_size_for(need)) != 0:
                return -1
        return 0

    cdef Py_ssize_t insert_new(self, uint64_t key) noexcept nogil:
        """Append ``key`` (known to be absent) as a zero row; return the row.

        The caller has reserved room.  Every column of the row starts at 0.
        """
        cdef Py_ssize_t mask = self.table_size - 1
        cdef Py_ssize_t i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
        cdef Py_ssize_t row = self.n
        cdef int a
        while self.table[i] != EMPTY:
            i = (i + 1) & mask
        self.table[i] = <uint32_t>row
        self.keys[row] = key
        self.w[row] = 0.0
        for a in range(self.n_aux):
            self.aux[a][row] = 0.0
        self.n += 1
        return row

    cdef void remove_row(self, Py_ssize_t row) noexcept nogil:
        """Delete the key in ``row``; the last row moves into its place."""
        cdef Py_ssize_t mask = self.table_size - 1
        cdef Py_ssize_t hole = self._slot_of(row)
        cdef Py_ssize_t j = hole
        cdef Py_ssize_t home
        cdef Py_ssize_t last = self.n - 1
        cdef uint32_t r
        cdef int a
        # Backward-shift deletion: walk the cluster after the hole and pull
        # back every entry whose home slot is not cyclically in (hole, j].
        self.table[hole] = EMPTY
        while True:
            j = (j + 1) & mask
            r = self.table[j]
            if r == EMPTY:
                break
            home = <Py_ssize_t>(fmix64(self.keys[r]) & <uint64_t>mask)
            if hole <= j:
                if hole < home and home <= j:
                    continue
            elif hole < home or home <= j:
                continue
            self.table[hole] = r
            self.table[j] = EMPTY
            hole = j
        # Swap-remove in the dense arrays.
        if row != last:
            self.table[self._slot_of(last)] = <uint32_t>row
            self.keys[row] = self.keys[last]
            self.w[row] = self.w[last]
            for a in range(self.n_aux):
                self.aux[a][row] = self.aux[a][last]
        self.n -= 1

    cdef int shrink_to_fit(self) noexcept nogil:
        """Give memory back once pruning has emptied most of the store."""
        cdef Py_ssize_t want_cap = self.n + self.n // 2
        cdef Py_ssize_t want_table = table_size_for(self.n)
        if want_cap < MIN_ROWS:
            want_cap = MIN_ROWS
        if self.cap > 4 * want_cap:
            if self._resize_rows(want_cap) != 0:
                return -1
        if self.table_size > 4 * want_table:
            if self._rebuild_table(want_table) != 0:
                return -1
        return 0

    # -------------------------------------------------------------- internals

    cdef Py_ssize_t _slot_of(self, Py_ssize_t row) noexcept nogil:
        cdef Py_ssize_t mask = self.table_size - 1
        cdef Py_ssize_t i = <Py_ssize_t>(fmix64(self.keys[row]) & <uint64_t>mask)
        while self.table[i] != <uint32_t>row:
            i = (i + 1) & mask
        return i

    cdef int _resize_rows(self, Py_ssize_t new_cap) noexcept nogil:
        cdef void* p
        cdef int a
        p = realloc(self.keys, new_cap * sizeof(uint64_t))
        if p == NULL:
            return -1
        self.keys = <uint64_t*>p
        p = realloc(self.w, new_cap * sizeof(double))
        if p == NULL:
            return -1
        self.w = <double*>p
        for a in range(self.n_aux):
            p = realloc(self.aux[a], new_cap * sizeof(double))
            if p == NULL:
                return -1
            self.aux[a] = <double*>p
        self.cap = new_cap
        return 0

    cdef int _rebuild_table(self, Py_ssize_t size) noexcept nogil:
        cdef uint32_t* table = <uint32_t*>malloc(size * sizeof(uint32_t))
        cdef Py_ssize_t mask = size - 1
        cdef Py_ssize_t row, i
        if table == NULL:
            return -1
        memset(table, 0xFF, size * sizeof(uint32_t))
        for row in range(self.n):
            i = <Py_ssize_t>(fmix64(self.keys[row]) & <uint64_t>mask)
            while table[i] != EMPTY:
                i = (i + 1) & mask
            table[i] = <uint32_t>row
        free(self.table)
        self.table = table
        self.table_size = size
        return 0

    # ------------------------------------------------------------- Python API

    def __len__(self):
        return self.n

    def __contains__(self, key):
        return self.find(<uint64_t>key) >= 0

    @property
    def table_slots(self):
        """Number of slots in the index table (a power of two)."""
        return self.table_size

    @property
    def memory_bytes(self):
        """Bytes allocated by the store: dense rows plus the index table."""
        return self.cap * (sizeof(uint64_t) + (1 + self.n_aux) * sizeof(double)) \
            + self.table_size * sizeof(uint32_t)

    def get(self, key, default=None):
        """Weight and state of ``key`` as a tuple, or ``default``."""
        cdef Py_ssize_t row = self.find(<uint64_t>key)
        if row < 0:
            return default
        return (self.w[row],) + tuple(self.aux[a][row] for a in range(self.n_aux))

    def set(self, key, double weight, *aux):
        """Insert or overwrite ``key``; ``aux`` gives the state columns."""
        if len(aux) > self.n_aux:
            raise ValueError(f"this store has {self.n_aux} state columns, got {len(aux)}")
        values = [float(a) for a in aux]    # convert before changing anything
        cdef uint64_t k = key
        cdef Py_ssize_t row = self.find(k)
        if row < 0:
            if self.reserve(1) != 0:
                raise MemoryError("cannot grow the weight store")
            row = self.insert_new(k)
        self.w[row] = weight
        for a, value in enumerate(values):
            self.aux[a][row] = value

    def delete(self, key):
        """Remove ``key``; return whether it was present."""
        cdef Py_ssize_t row = self.find(<uint64_t>key)
        if row < 0:
            return False
        self.remove_row(row)
        return True

    def shrink(self):
        """Release memory held for rows and slots no longer in use."""
        if self.shrink_to_fit() != 0:
            raise MemoryError("cannot reallocate the weight store")

    def export(self):
        """Copies of the live rows: ``(keys, weights, [aux columns])``.

        Rows are in store order (deterministic for a given history)."""
        cdef Py_ssize_t n = self.n
        keys = np.empty(n, dtype=np.uint64)
        w = np.empty(n, dtype=np.float64)
        cdef uint64_t[::1] kv = keys
        cdef double[::1] wv = w
        cdef double[::1] av
        if n:
            memcpy(&kv[0], self.keys, n * sizeof(uint64_t))
            memcpy(&wv[0], self.w, n * sizeof(double))
        aux = []
        for a in range(self.n_aux):
            col = np.empty(n, dtype=np.float64)
            av = col
            if n:
                memcpy(&av[0], self.aux[a], n * sizeof(double))
            aux.append(col)
        return keys, w, aux

    def column_chunks(self, int column, Py_ssize_t chunk_rows=1 << 16):
        """Yield one column of the live rows as arrays of at most
        ``chunk_rows`` entries (copies): ``column`` -1 is the keys, 0 the
        stored weight column, 1..n_aux the state columns.  Every column
        comes in the same row order, that of ``export``, so that a writer
        can stream a model one column at a time in bounded memory.  The
        store must not change while a generator is being consumed."""
        if column < -1 or column > self.n_aux:
            raise ValueError(f"column must be -1 (keys) to {self.n_aux}, got {column}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        cdef Py_ssize_t start = 0, count
        cdef uint64_t[::1] kv
        cdef double[::1] dv
        while start < self.n:
            count = min(chunk_rows, self.n - start)
            if column == -1:
                out = np.empty(count, dtype=np.uint64)
                kv = out
                memcpy(&kv[0], self.keys + start, count * sizeof(uint64_t))
            else:
                out = np.empty(count, dtype=np.float64)
                dv = out
                memcpy(&dv[0], (self.w if column == 0 else self.aux[column - 1]) + start,
                       count * sizeof(double))
            yield out
            start += count

    def load(self, keys, weights, aux=()):
        """Replace the contents with the given rows (in that order)."""
        cdef const uint64_t[::1] kv = np.ascontiguousarray(keys, dtype=np.uint64)
        cdef const double[::1] wv = np.ascontiguousarray(weights, dtype=np.float64)
        cdef const double[::1] av
        cdef Py_ssize_t n = kv.shape[0]
        cdef Py_ssize_t row
        if wv.shape[0] != n:
            raise ValueError("keys and weights differ in length")
        if len(aux) != self.n_aux:
            raise ValueError(f"this store has {self.n_aux} state columns, got {len(aux)}")
        if n > MAX_ROWS:
            raise ValueError("too many rows for one store")
        cols = [np.ascontiguousarray(c, dtype=np.float64) for c in aux]
        for c in cols:
            if c.ndim != 1 or c.shape[0] != n:
                raise ValueError("a state column is not a 1-D array as long as keys")
        if len(np.unique(np.asarray(kv))) != n:
            raise ValueError("keys are not unique")
        self.n = 0
        if self._resize_rows(max(n + n // 2, MIN_ROWS)) != 0:
            raise MemoryError("cannot allocate the weight store")
        if n:
            memcpy(self.keys, &kv[0], n * sizeof(uint64_t))
            memcpy(self.w, &wv[0], n * sizeof(double))
            for a in range(self.n_aux):
                av = cols[a]
                memcpy(self.aux[a], &av[0], n * sizeof(double))
        self.n = n
        if self._rebuild_table(table_size_for(n)) != 0:
            raise MemoryError("cannot allocate the weight store")

    def check_invariants(self):
        """Raise AssertionError if the table and the rows disagree (tests)."""
        cdef Py_ssize_t i, used = 0, row
        for i in range(self.table_size):
            if self.table[i] != EMPTY:
                used += 1
                assert self.table[i] < self.n, "table points past the live rows"
        assert used == self.n, f"{used} table slots for {self.n} rows"
        for row in range(self.n):
            assert self.find(self.keys[row]) == row, f"row {row} not reachable"
        assert self.n * MAX_LOAD_DEN <= self.table_size * MAX_LOAD_NUM, "load factor above bound"
