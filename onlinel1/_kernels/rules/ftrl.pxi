# FTRL-Proximal (McMahan et al., KDD 2013, Algorithm 1).  Per coordinate
# z_i (the weight column) and n_i (aux column 0); alpha = eta0,
# beta = ftrl_beta, lambda1 = l1, lambda2 = l2.  The weight is a function of
# (z, n), read whenever needed; an absent coordinate does not change.


cdef inline double ftrl_weight(SGDKernel k, Py_ssize_t row) noexcept nogil:
    cdef double z = k.store.w[row]
    cdef double n = k.store.aux[0][row]
    cdef double m = fabs(z) - k.l1
    if m <= 0.0:
        return 0.0
    return -copysign(m, z) / ((k.ftrl_beta + sqrt(n)) / k.eta0 + k.l2)


cdef int ftrl_step(SGDKernel k, const uint64_t* keys, const floating* x,
                   Py_ssize_t nnz, Py_ssize_t* rows, const double* wnow,
                   double gs, Py_ssize_t* first, double* gsum,
                   Py_ssize_t* table) noexcept nogil:
    cdef Py_ssize_t j, row
    cdef double* z = k.store.w
    cdef double* n = k.store.aux[0]
    cdef double g, sigma, n_new, w
    if gs == 0.0:
        return 0
    for j in range(nnz):
        row_for_update(k, keys[j], x[j], rows, j)
    group_rows(rows, nnz, first, gsum, table, x, gs)
    for j in range(nnz):
        if first[j] != j:
            continue
        row = rows[j]
        g = gsum[j]
        w = ftrl_weight(k, row)        # the weight the margin used (z, n unchanged so far)
        n_new = n[row] + g * g
        sigma = (sqrt(n_new) - sqrt(n[row])) / k.eta0
        z[row] += g - sigma * w
        n[row] = n_new
    return 0
