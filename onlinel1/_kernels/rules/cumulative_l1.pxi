# Cumulative L1 penalty (Tsuruoka, Tsujii & Ananiadou, ACL 2009, section 3.3),
# exactly as scikit-learn's _plain_sgd runs it (l1penalty), plus L2 decay on
# the global scale for the elastic net.  u (k.clock) is the total penalty
# any weight could have received, q_i (aux column 0) the signed total w_i
# did receive.  After the gradient step, for every present i:
#     w_i > 0:  w_i <- max(0, w_i - (u + q_i))
#     w_i < 0:  w_i <- min(0, w_i + (u - q_i))
#     q_i += w_i(after) - w_i(before)
# Origin "start": every weight exists from step 0 (q_i = 0), as in the paper.
# Origin "first-seen": a feature owes only the penalty accrued since it was
# created; aux column 1 keeps u at creation, and u - u_origin replaces u.


cdef int cumulative_l1_step(SGDKernel k, const uint64_t* keys,
                            const floating* x, Py_ssize_t nnz,
                            Py_ssize_t* rows, double update,
                            double eta) noexcept nogil:
    cdef Py_ssize_t j, row
    cdef double* v
    cdef double* q
    cdef double* origin
    cdef double z, w, c, inv_c, step, age, u
    cdef bint first_seen = k.origin == ORIGIN_FIRST_SEEN
    if k.l2 > 0:
        decay_scale(k, 1.0 - eta * k.l2)
    v = k.store.w
    q = k.store.aux[0]
    origin = k.store.aux[1]
    c = k.scale
    inv_c = 1.0 / c
    if update != 0.0:
        step = update / c
        for j in range(nnz):
            row = row_for_update(k, keys[j], x[j], rows, j)
            if row >= 0:
                v[row] += x[j] * step
    k.clock += eta * k.l1
    u = k.clock
    # Branch-free form of the clip above (the sign of w_i is noise to a
    # branch predictor): with s = sign(z) and |q_i| <= u, both cases read
    #     w_i <- s max(0, |z| - (U_i + s q_i) / c)
    # and z = 0 stays 0.  (-a is exact, so this equals scikit-learn's
    # z - (u + q)/c and z + (u - q)/c.)
    for j in range(nnz):
        row = rows[j]
        if row < 0:
            continue
        age = u - origin[row] if first_seen else u
        z = v[row]
        w = fabs(z) - (age + copysign(1.0, z) * q[row]) * inv_c
        w = w if w > 0.0 else 0.0
        v[row] = copysign(w, z)
        q[row] += c * (v[row] - z)
    return 0
