# FOBOS (Duchi & Singer, JMLR 2009): a gradient step, then the proximal step
# of the regulariser with the same eta:
#     w <- sign(w) max(0, |w| - eta l1) / (1 + eta l2)
# Lazily: with A_t = prod_{j<=t} (1 + eta_j l2) and
# B_t = sum_{j<=t} eta_j A_{j-1} (k.clock_scale and k.clock), a feature
# stored as v = w A_a with clock B_a (aux column 0) after step a has, after
# the proximal steps a+1..t of the examples it was absent from, the weight
#     sign(v) max(0, |v| - l1 (B_t - B_a)) / A_t
# (DESIGN.md section 3).  A zero weight stays zero, so zeros leave the store.


cdef inline double fobos_weight(SGDKernel k, Py_ssize_t row) noexcept nogil:
    cdef double v = k.store.w[row]
    cdef double m = fabs(v) - k.l1 * (k.clock - k.store.aux[0][row])
    m = m if m > 0.0 else 0.0          # branch-free (maxsd): signs are noise
    # A = 1 exactly while l2 = 0: no division on the common path.
    if k.clock_scale != 1.0:
        m /= k.clock_scale
    return copysign(m, v)


cdef int fobos_step(SGDKernel k, const uint64_t* keys, const floating* x,
                    Py_ssize_t nnz, Py_ssize_t* rows, const double* wnow,
                    double update, double eta) noexcept nogil:
    cdef Py_ssize_t j, row
    cdef double* v = k.store.w
    cdef double* last = k.store.aux[0]
    cdef double w, m, next_scale, next_clock, shrink, threshold
    # Materialise the caught-up weights of the present features (wnow, from
    # the margin) in real units, once per feature (NaN in the clock column
    # marks "done").
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
    next_scale = k.clock_scale * (1.0 + eta * k.l2)
    next_clock = k.clock + eta * k.clock_scale
    threshold = eta * k.l1
    # w / (1 + eta l2) * A_t = w * A_{t-1}: store v without a division.
    shrink = k.clock_scale
    for j in range(nnz):
        row = rows[j]
        if row >= 0 and last[row] != last[row]:
            w = v[row]
            m = fabs(w) - threshold
            m = m if m > 0.0 else 0.0
            v[row] = copysign(m * shrink, w)
            last[row] = next_clock
    k.clock_scale = next_scale
    k.clock = next_clock
    return 0
