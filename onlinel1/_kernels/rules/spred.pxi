# spred: the Hadamard product parametrisation w = a b with the penalty
# (l1/2)(a^2 + b^2) (Hoff 2017; Ziyin & Wang, ICML 2023; docs/algorithms.md,
# "spred"), plain SGD on (a, b).  The decay (1 - eta l1) of every a and b
# is a global scale c (k.clock_scale): a = c a', b = c b', so
# w = c^2 a' b'.  New features start at (a, b) = (spred_init, 0): weight 0,
# off the saddle at a = b = 0.  |w| at or below spred_threshold reads as 0
# and leaves the store.

# Whether an absent weight can reach 0 by its lazy penalty alone (then a
# periodic compaction removes it from the store).
cdef enum:
    spred_DECAYS_WHILE_ABSENT = 1

cdef struct spred_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double a            # a'
    double b            # b'

# Rescale (a', b') when c falls below this (w carries c^2).
cdef double SPRED_RESET = 1e-4


cdef inline double spred_weight(SGDKernel k, spred_slot* p) noexcept nogil:
    cdef double c = k.clock_scale
    cdef double w = c * c * p.a * p.b
    return w if fabs(w) > k.spred_threshold else 0.0


cdef inline void spred_init(SGDKernel k, spred_slot* p) noexcept nogil:
    p.a = k.spred_init / k.clock_scale   # (a, b) = (init, 0)


cdef inline bint spred_prunable(SGDKernel k, spred_slot* p) noexcept nogil:
    return spred_weight(k, p) == 0.0


cdef inline bint spred_needs_rebase(SGDKernel k) noexcept nogil:
    return False


cdef inline void spred_rebase(SGDKernel k) noexcept nogil:
    pass


cdef int spred_step(SGDKernel k, Step* st, const uint64_t* keys, const floating* x,
                    Py_ssize_t nnz, spred_slot** slots) noexcept nogil:
    cdef Py_ssize_t j, cursor
    cdef spred_slot* p
    cdef double c_old = k.clock_scale
    cdef double c_new = c_old * (1.0 - st.eta * k.l1)
    cdef double ratio = c_old / c_new
    cdef double a_old, g
    # A present feature whose weight reads as 0 starts afresh, as a new one:
    # (a, b) = (init, 0).  So dropping such a feature from the store is exact.
    for j in range(nnz):
        p = slots[j]
        if p != NULL and spred_weight(k, p) == 0.0:
            p.a = k.spred_init / c_old
            p.b = 0.0
    if st.gs != 0.0:
        group_slots(<void**>slots, nnz, st, x)
        # Simultaneous step from the old (a, b), in units of the new scale:
        # a_new = c_new a' - eta g b  ->  a' -= eta g b' c_old / c_new.
        for j in range(nnz):
            if st.first[j] != j:
                continue
            p = slots[j]
            g = st.eta * st.gsum[j] * ratio
            a_old = p.a
            p.a = a_old - g * p.b
            p.b = p.b - g * a_old
    k.clock_scale = c_new
    if c_new < SPRED_RESET:
        cursor = 0
        p = <spred_slot*>k.store.next_live(&cursor)
        while p != NULL:
            p.a *= c_new
            p.b *= c_new
            p = <spred_slot*>k.store.next_live(&cursor)
        k.clock_scale = 1.0
    return 0


def _spred_validate(o):
    if o.l2 > 0:
        raise _conflict("l2", "must be 0 with update='spred' (it has no L2 term)")
    if o.eta0 * o.l1 >= 1:
        raise _conflict("l1", f"* eta0 must be < 1 with update='spred' (the decay 1 - eta*l1 "
                              f"of a and b would reach 0), got l1={o.l1!r}, eta0={o.eta0!r}")


def _spred_from_weights(weights, o):
    # a = sqrt|w|, b = sign(w) sqrt|w|, at scale 1.
    import numpy as np
    a = np.sqrt(np.abs(weights))
    return a, [np.sign(weights) * a]


spred_SPEC = RuleSpec(
    name="spred", kernels={"start": "spred", "first-seen": "spred"},
    state={"start": ("b",), "first-seen": ("b",)}, weight_column="a",
    title="spred (w = a*b; Ziyin & Wang 2023)",
    options=("spred_init", "spred_threshold"), validate=_spred_validate,
    decays_while_absent=bool(spred_DECAYS_WHILE_ABSENT), from_weights=_spred_from_weights)


cdef int spred_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": the B decays (1 - eta_b l1) of the
    # scale, then per key with a gradient the simultaneous step from the
    # start (a, b) with h_i = sum_b eta_b (g_b s_b x):
    #     a <- C a - h b,  b <- C b - h a,  C the product of the decays.
    # In units of the scale: a' -= h R b' with R = c_start / c_end.
    cdef Py_ssize_t j, u, cursor
    cdef spred_slot* p
    cdef double c_old = k.clock_scale, c_new, ratio = 1.0, a_old, g
    for u in range(mb.n_keys):
        p = <spred_slot*>mb.uslots[u]
        if p != NULL and spred_weight(k, p) == 0.0:
            p.a = k.spred_init / c_old
            p.b = 0.0
    mb_accumulate(mb, x, mb.gs, mb.eta)
    for j in range(mb.n_rows):
        c_old = k.clock_scale
        c_new = c_old * (1.0 - mb.eta[j] * k.l1)
        ratio *= c_old / c_new
        k.clock_scale = c_new
        # A fold within the mini-batch rescales every (a', b'), these too;
        # the last step's waits until after the update (as the sequential
        # rule's, so B = 1 is its arithmetic).
        if j + 1 < mb.n_rows and c_new < SPRED_RESET:
            spred_fold(k)
    for u in range(mb.n_keys):
        p = <spred_slot*>mb.uslots[u]
        if p == NULL or not mb.grad[u]:
            continue
        g = mb.sum[u] * ratio
        a_old = p.a
        p.a = a_old - g * p.b
        p.b = p.b - g * a_old
    if k.clock_scale < SPRED_RESET:
        spred_fold(k)
    return 0


cdef void spred_fold(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef double c = k.clock_scale
    cdef spred_slot* p = <spred_slot*>k.store.next_live(&cursor)
    while p != NULL:
        p.a *= c
        p.b *= c
        p = <spred_slot*>k.store.next_live(&cursor)
    k.clock_scale = 1.0
