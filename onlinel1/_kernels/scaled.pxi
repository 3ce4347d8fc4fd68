# The global weight scale of L2 decay (docs/algorithms.md, "plain"): every
# stored value is v with w = c v, so multiplying all weights by
# (1 - eta_t l2) is one multiplication of c, O(1) per example whatever the
# model's size (scikit-learn's WeightVector does the same).  When c gets
# tiny, it is folded into every stored v and reset to 1.

# scikit-learn resets its weight scale below this (WeightVector, float64).
cdef double SCALE_RESET = 1e-9


cdef inline double scale_decay(SGDKernel k, double factor) noexcept nogil:
    """c *= factor (clipped at 0).  If c fell under SCALE_RESET, fold it
    into the stored weights (word 1 of every slot), reset it to 1 and
    return the factor the weights were multiplied by; else return 1."""
    cdef Py_ssize_t cursor = 0
    cdef char* p
    cdef double c
    k.scale *= factor if factor > 0.0 else 0.0
    if k.scale >= SCALE_RESET:
        return 1.0
    c = k.scale
    k.store.journal_freeze()    # every slot changes: copy the table once
    p = k.store.next_live(&cursor)
    while p != NULL:
        (<double*>p)[1] *= c
        p = k.store.next_live(&cursor)
    k.scale = 1.0
    return c
