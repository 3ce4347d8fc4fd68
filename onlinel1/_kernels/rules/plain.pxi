# Plain SGD, optionally with L2 weight decay (docs/algorithms.md, "plain"):
#     w_i <- (1 - eta_t l2) w_i - eta_t s g x_i
# The decay multiplies the global scale c (w = c v, scaled.pxi), so a step
# costs O(nnz) whatever the number of weights.

# Whether an absent weight can reach 0 by its lazy penalty alone (then a
# periodic compaction removes it from the store).
cdef enum:
    plain_DECAYS_WHILE_ABSENT = 0

cdef struct plain_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w            # v, with the weight w = c v


cdef inline double plain_weight(SGDKernel k, plain_slot* p) noexcept nogil:
    return p.w


cdef inline void plain_init(SGDKernel k, plain_slot* p) noexcept nogil:
    pass


cdef inline bint plain_prunable(SGDKernel k, plain_slot* p) noexcept nogil:
    return p.w == 0.0


cdef inline bint plain_needs_rebase(SGDKernel k) noexcept nogil:
    return False


cdef inline void plain_rebase(SGDKernel k) noexcept nogil:
    pass


cdef int plain_step(SGDKernel k, Step* st, const uint64_t* keys, const floating* x,
                    Py_ssize_t nnz, plain_slot** slots) noexcept nogil:
    cdef Py_ssize_t j
    cdef plain_slot* p
    cdef double step
    if k.l2 > 0:
        scale_decay(k, 1.0 - st.eta * k.l2)
    if st.update != 0.0:
        step = st.update / k.scale
        for j in range(nnz):
            p = slots[j]
            if p != NULL:
                p.w += x[j] * step
    return 0


def _plain_validate(o):
    if o.l1 > 0:
        raise _conflict("l1", "must be 0 with update='plain' (it has no L1 penalty); "
                              "use update='subgradient', 'cumulative' or 'fobos' for L1")
    _check_l2_decay(o)


plain_SPEC = RuleSpec(
    name="plain", kernels={"start": "plain", "first-seen": "plain"},
    state={"start": (), "first-seen": ()},
    title="plain SGD (L2 weight decay if --l2 > 0)",
    options=(), validate=_plain_validate, decays_while_absent=bool(plain_DECAYS_WHILE_ABSENT))


cdef int plain_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": the B decays of the scale, then
    # each key's summed step sum_b x (-eta_b g_b s_b) / c, c after the decays.
    cdef Py_ssize_t b, u
    cdef plain_slot* p
    if k.l2 > 0:
        for b in range(mb.n_rows):
            scale_decay(k, 1.0 - mb.eta[b] * k.l2)
    for b in range(mb.n_rows):
        mb.coef[b] = mb.upd[b] / k.scale
    mb_accumulate(mb, x, mb.coef, NULL)
    for u in range(mb.n_keys):
        p = <plain_slot*>mb.uslots[u]
        if p != NULL:
            p.w += mb.sum[u]
    return 0
