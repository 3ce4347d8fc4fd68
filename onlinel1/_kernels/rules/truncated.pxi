# Truncated gradient (Langford, Li & Zhang, JMLR 2009; Vowpal Wabbit's
# --l1).  Every K-th example, every weight with |w| <= theta shrinks by
# eta_t l1 K towards 0 (and stops there).  Lazily: the clock T (k.clock)
# sums eta_j K over those examples; a feature stored with clock T_a (aux
# column 0) owes l1 (T - T_a) if |w| <= theta.  Truncation only shrinks a
# weight, so one above theta is never truncated while absent and one below
# stays below (docs/algorithms.md).


cdef inline double truncated_weight(SGDKernel k, Py_ssize_t row) noexcept nogil:
    cdef double v = k.store.w[row]
    cdef double m
    if fabs(v) > k.truncate_theta:
        return v
    m = fabs(v) - k.l1 * (k.clock - k.store.aux[0][row])
    m = m if m > 0.0 else 0.0
    return copysign(m, v)


cdef int truncated_step(SGDKernel k, const uint64_t* keys, const floating* x,
                        Py_ssize_t nnz, Py_ssize_t* rows, const double* wnow,
                        double update, double eta) noexcept nogil:
    cdef Py_ssize_t j, row
    cdef double* v = k.store.w
    cdef double* last = k.store.aux[0]
    cdef double w, m, shrink = 0.0, next_clock = k.clock
    cdef bint boundary = (k.t + 1) % k.truncate_every == 0
    for j in range(nnz):
        row = rows[j]
        if row >= 0 and last[row] == last[row]:
            v[row] = wnow[j]
            last[row] = NAN
    if update != 0.0:
        for j in range(nnz):
            row = row_for_update(k, keys[j], x[j], rows, j)
            if row >= 0:
                v[row] += x[j] * update
    if boundary:
        shrink = eta * k.l1 * k.truncate_every
        next_clock = k.clock + eta * k.truncate_every
    for j in range(nnz):
        row = rows[j]
        if row >= 0 and last[row] != last[row]:
            w = v[row]
            if boundary and fabs(w) <= k.truncate_theta:
                m = fabs(w) - shrink
                v[row] = copysign(m if m > 0.0 else 0.0, w)
            last[row] = next_clock
    k.clock = next_clock
    return 0
