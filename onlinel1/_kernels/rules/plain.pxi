# Plain SGD, optionally with L2 weight decay (DESIGN.md section 3):
#     w_i <- (1 - eta_t l2) w_i - eta_t s g x_i
# The decay multiplies the global scale c (w = c v), so a step costs O(nnz)
# whatever the number of weights (scikit-learn's WeightVector trick).


cdef int plain_step(SGDKernel k, const uint64_t* keys, const floating* x,
                    Py_ssize_t nnz, Py_ssize_t* rows, double update,
                    double eta) noexcept nogil:
    cdef Py_ssize_t j, row
    cdef double* v
    cdef double step
    if k.l2 > 0:
        decay_scale(k, 1.0 - eta * k.l2)
    if update != 0.0:
        v = k.store.w
        step = update / k.scale
        for j in range(nnz):
            row = row_for_update(k, keys[j], x[j], rows, j)
            if row >= 0:
                v[row] += x[j] * step
    return 0
