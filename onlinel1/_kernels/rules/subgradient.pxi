# Naive subgradient L1 (the baseline of Tsuruoka et al. 2009, section 3.1),
# with optional L2 decay:
#     w_i <- (1 - eta_t l2) w_i - eta_t (s g x_i + l1 sign(w_i))
# No clipping: a weight steps over zero and jitters around it instead of
# settling there.  Lazily, an absent feature is owed l1 * sum_j eta_j / c_j
# (in units of v, w = c v) in the direction of its sign at its last update;
# the clock T = sum_j eta_j / c_j and each feature's T at its last update
# (aux column 0) give that sum at the next touch.  The eager rule it equals
# applies -eta_j l1 sign_i to every weight at every step, sign_i being the
# sign the weight had after its last update (docs/algorithms.md).


cdef inline double subgradient_weight(SGDKernel k, Py_ssize_t row) noexcept nogil:
    cdef double v = k.store.w[row]
    cdef double owed = k.l1 * (k.clock - k.store.aux[0][row])
    # v - sign(v) owed, without a branch on the sign (0 stays 0).
    return v - ((v > 0.0) - (v < 0.0)) * owed


cdef int subgradient_step(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, Py_ssize_t* rows, const double* wnow,
                          signed char* sgn, double update, double eta) noexcept nogil:
    cdef Py_ssize_t j, row
    cdef double* v
    cdef double* last
    cdef double w, next_clock, step, penalty
    v = k.store.w
    last = k.store.aux[0]
    # Catch up every present feature once (wnow, from the margin; duplicates
    # of a key in one example are caught up once: NaN in the clock column
    # marks "done").  Before the decay: a scale reset rescales v and clocks.
    for j in range(nnz):
        sgn[j] = 0
        row = rows[j]
        if row >= 0 and last[row] == last[row]:
            w = wnow[j]
            v[row] = w
            last[row] = NAN
            sgn[j] = (w > 0.0) - (w < 0.0)
    if k.l2 > 0:
        decay_scale(k, 1.0 - eta * k.l2)
    if update != 0.0:
        step = update / k.scale
        for j in range(nnz):
            row = row_for_update(k, keys[j], x[j], rows, j)
            if row >= 0:
                v[row] += x[j] * step
    # The penalty of this step, with the sign the weight had before it.
    next_clock = k.clock + eta / k.scale
    penalty = eta * k.l1 / k.scale
    for j in range(nnz):
        row = rows[j]
        if row >= 0 and last[row] != last[row]:
            v[row] -= penalty * sgn[j]
            last[row] = next_clock
    k.clock = next_clock
    return 0
