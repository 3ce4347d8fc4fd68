# AdaGrad-FOBOS (Duchi, Hazan & Singer, JMLR 2011): per-coordinate steps
# eta_i = eta0 / sqrt(delta + G_i), G_i the sum of coordinate i's squared
# gradients (aux column 0), then the FOBOS proximal step with eta_i.  An
# absent coordinate keeps its eta_i, so k skipped steps have a closed form
# (aux column 1: the example count at its last step).  A coordinate whose
# caught-up weight is exactly 0 starts afresh (G_i = 0), so zeros leave the
# store exactly (docs/algorithms.md).


cdef inline double adagrad_fobos_weight(SGDKernel k, Py_ssize_t row) noexcept nogil:
    cdef double v = k.store.w[row]
    cdef double steps = <double>k.t - k.store.aux[1][row]
    cdef double eta_i, m, log_r
    if steps <= 0 or v == 0.0:
        return v
    eta_i = k.eta0 / sqrt(k.adagrad_delta + k.store.aux[0][row])
    if k.l2 == 0.0:
        m = fabs(v) - steps * eta_i * k.l1
    else:
        # r^k |w| - (l1/l2)(1 - r^k), r = 1/(1 + eta_i l2), without losing
        # digits when eta_i l2 is small.
        log_r = -log1p(eta_i * k.l2)
        m = exp(steps * log_r) * fabs(v) + (k.l1 / k.l2) * expm1(steps * log_r)
    m = m if m > 0.0 else 0.0
    return copysign(m, v)


cdef int adagrad_fobos_step(SGDKernel k, const uint64_t* keys, const floating* x,
                            Py_ssize_t nnz, Py_ssize_t* rows, const double* wnow,
                            double gs, Py_ssize_t* first, double* gsum,
                            Py_ssize_t* table) noexcept nogil:
    cdef Py_ssize_t j, row
    cdef double* v = k.store.w
    cdef double* G = k.store.aux[0]
    cdef double* last = k.store.aux[1]
    cdef double w, m, eta_i, g
    # Catch the present features up to the previous example (idempotent, so
    # a repeated key is harmless); a zero weight starts afresh.
    for j in range(nnz):
        row = rows[j]
        if row >= 0:
            v[row] = wnow[j]
            if wnow[j] == 0.0:
                G[row] = 0.0
            last[row] = <double>k.t
    if gs == 0.0:
        return 0    # no gradient: this example's proximal step is caught up later
    for j in range(nnz):
        row = row_for_update(k, keys[j], x[j], rows, j)
        if row >= 0:
            last[row] = <double>k.t
    # One gradient per coordinate: duplicates of a key add up.
    group_rows(rows, nnz, first, gsum, table, x, gs)
    for j in range(nnz):
        if first[j] != j:
            continue
        row = rows[j]
        g = gsum[j]
        G[row] += g * g
        eta_i = k.eta0 / sqrt(k.adagrad_delta + G[row])
        w = v[row] - eta_i * g
        m = fabs(w) - eta_i * k.l1
        m = m if m > 0.0 else 0.0
        v[row] = copysign(m / (1.0 + eta_i * k.l2), w)
        last[row] = <double>(k.t + 1)
    return 0
