# spred: the Hadamard product parametrisation w = a b with the penalty
# (l1/2)(a^2 + b^2) (Hoff 2017; Ziyin & Wang, ICML 2023), plain SGD on
# (a, b).  The decay (1 - eta l1) of every a and b is a global scale c
# (k.clock_scale): a = c a', b = c b' with a' in the weight column and b' in
# aux column 0, so w = c^2 a' b'.  New features start at (a, b) =
# (spred_init, 0): weight 0, off the saddle at a = b = 0.  |w| at or below
# spred_threshold reads as 0 and leaves the store (docs/algorithms.md).

# Rescale (a', b') when c falls below this (w carries c^2).
cdef double SPRED_RESET = 1e-4


cdef inline double spred_weight(SGDKernel k, Py_ssize_t row) noexcept nogil:
    cdef double c = k.clock_scale
    cdef double w = c * c * k.store.w[row] * k.store.aux[0][row]
    return w if fabs(w) > k.spred_threshold else 0.0


cdef int spred_step(SGDKernel k, const uint64_t* keys, const floating* x,
                    Py_ssize_t nnz, Py_ssize_t* rows, double gs, double eta,
                    Py_ssize_t* first, double* gsum, Py_ssize_t* table) noexcept nogil:
    cdef Py_ssize_t j, row, n = k.store.n
    cdef double* a = k.store.w
    cdef double* b = k.store.aux[0]
    cdef double c_old = k.clock_scale
    cdef double c_new = c_old * (1.0 - eta * k.l1)
    cdef double ratio = c_old / c_new
    cdef double a_old, g
    # A present feature whose weight reads as 0 starts afresh, as a new one:
    # (a, b) = (init, 0).  So dropping such a feature from the store is exact.
    for j in range(nnz):
        row = rows[j]
        if row >= 0 and spred_weight(k, row) == 0.0:
            a[row] = k.spred_init / c_old
            b[row] = 0.0
    if gs != 0.0:
        for j in range(nnz):
            row_for_update(k, keys[j], x[j], rows, j)     # new rows: init_new_row
        group_rows(rows, nnz, first, gsum, table, x, gs)
        # Simultaneous step from the old (a, b), in units of the new scale:
        # a_new = c_new a' - eta g b  ->  a' -= eta g b' c_old / c_new.
        for j in range(nnz):
            if first[j] != j:
                continue
            row = rows[j]
            g = eta * gsum[j] * ratio
            a_old = a[row]
            a[row] = a_old - g * b[row]
            b[row] = b[row] - g * a_old
    k.clock_scale = c_new
    if c_new < SPRED_RESET:
        for row in range(n):
            a[row] *= c_new
            b[row] *= c_new
        k.clock_scale = 1.0
    return 0
