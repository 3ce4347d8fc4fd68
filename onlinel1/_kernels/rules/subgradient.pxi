# Naive subgradient L1 (the baseline of Tsuruoka et al. 2009, section 3.1;
# docs/algorithms.md, "subgradient"), with optional L2 decay:
#     w_i <- (1 - eta_t l2) w_i - eta_t (s g x_i + l1 sign(w_i))
# No clipping: a weight steps over zero and jitters around it instead of
# settling there.  Lazily, an absent feature is owed l1 * sum_j eta_j / c_j
# (in units of v, w = c v) in the direction of its sign at its last update;
# the clock T = sum_j eta_j / c_j (k.clock) and each feature's T at its
# last update (last_clock) give that sum at the next touch.

# Whether an absent weight can reach 0 by its lazy penalty alone (then a
# periodic compaction removes it from the store).
cdef enum:
    subgradient_DECAYS_WHILE_ABSENT = 0

cdef struct subgradient_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w            # v, w = c v
    double last_clock   # T at the feature's last update (NaN: caught up this step)


cdef inline double subgradient_weight(SGDKernel k, subgradient_slot* p) noexcept nogil:
    cdef double v = p.w
    cdef double owed = k.l1 * (k.clock - p.last_clock)
    # v - sign(v) owed, without a branch on the sign (0 stays 0).
    return v - ((v > 0.0) - (v < 0.0)) * owed


cdef inline void subgradient_init(SGDKernel k, subgradient_slot* p) noexcept nogil:
    p.last_clock = NAN      # caught up: the step sets its clock


cdef inline bint subgradient_prunable(SGDKernel k, subgradient_slot* p) noexcept nogil:
    # The stored v: a weight caught up to 0 but stored non-zero would go on
    # past zero while absent, so only a stored 0 (sign 0) is that of an
    # absent feature.
    return p.w == 0.0


cdef inline bint subgradient_needs_rebase(SGDKernel k) noexcept nogil:
    return k.clock > k.rebase_at


cdef void subgradient_rebase(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef subgradient_slot* p = <subgradient_slot*>k.store.next_live(&cursor)
    while p != NULL:
        p.last_clock -= k.clock
        p = <subgradient_slot*>k.store.next_live(&cursor)
    k.clock = 0.0


cdef int subgradient_step(SGDKernel k, Step* st, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, subgradient_slot** slots) noexcept nogil:
    cdef Py_ssize_t j, cursor
    cdef subgradient_slot* p
    cdef signed char* sgn = st.sgn
    cdef double w, next_clock, step, penalty, c
    # Catch up every present feature once (wnow, from the margin; duplicates
    # of a key in one example are caught up once: NaN in the clock marks
    # "done").  Before the decay: a scale reset rescales v and clocks.
    for j in range(nnz):
        sgn[j] = 0
        p = slots[j]
        if p != NULL and p.last_clock == p.last_clock:
            w = st.wnow[j]
            p.w = w
            p.last_clock = NAN
            sgn[j] = (w > 0.0) - (w < 0.0)
    if k.l2 > 0:
        c = scale_decay(k, 1.0 - st.eta * k.l2)
        if c != 1.0:
            # The clock counts in units of v: rescale it and every stored one.
            cursor = 0
            p = <subgradient_slot*>k.store.next_live(&cursor)
            while p != NULL:
                p.last_clock *= c
                p = <subgradient_slot*>k.store.next_live(&cursor)
            k.clock *= c
    if st.update != 0.0:
        step = st.update / k.scale
        for j in range(nnz):
            p = slots[j]
            if p != NULL:
                p.w += x[j] * step
    # The penalty of this step, with the sign the weight had before it.
    next_clock = k.clock + st.eta / k.scale
    penalty = st.eta * k.l1 / k.scale
    for j in range(nnz):
        p = slots[j]
        if p != NULL and p.last_clock != p.last_clock:
            p.w -= penalty * sgn[j]
            p.last_clock = next_clock
    k.clock = next_clock
    return 0


subgradient_SPEC = RuleSpec(
    name="subgradient", kernels={"start": "subgradient", "first-seen": "subgradient"},
    state={"start": ("last_clock",), "first-seen": ("last_clock",)},
    title="naive subgradient L1 (the baseline; weights jitter around 0)",
    options=(), validate=_check_l2_decay, decays_while_absent=bool(subgradient_DECAYS_WHILE_ABSENT))


cdef int subgradient_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": each key caught up to the start,
    # its sign then frozen for the B steps' penalties (as while absent),
    # the summed gradient step in units of the scale after the B decays.
    cdef Py_ssize_t b, u, cursor
    cdef subgradient_slot* p
    cdef double v, c, penalty = 0.0
    for u in range(mb.n_keys):
        mb.sgn[u] = 0
        p = <subgradient_slot*>mb.uslots[u]
        if p != NULL:
            v = mb.w0[u]
            p.w = v
            p.last_clock = NAN
            mb.sgn[u] = (v > 0.0) - (v < 0.0)
    for b in range(mb.n_rows):
        if k.l2 > 0:
            c = scale_decay(k, 1.0 - mb.eta[b] * k.l2)
            if c != 1.0:
                cursor = 0
                p = <subgradient_slot*>k.store.next_live(&cursor)
                while p != NULL:
                    p.last_clock *= c
                    p = <subgradient_slot*>k.store.next_live(&cursor)
                k.clock *= c
                penalty *= c
        penalty += mb.eta[b] * k.l1 / k.scale
        k.clock = k.clock + mb.eta[b] / k.scale
    for b in range(mb.n_rows):
        mb.coef[b] = mb.upd[b] / k.scale
    mb_accumulate(mb, x, mb.coef, NULL)
    for u in range(mb.n_keys):
        p = <subgradient_slot*>mb.uslots[u]
        if p != NULL:
            p.w += mb.sum[u]
            p.w -= penalty * mb.sgn[u]
            p.last_clock = k.clock
    return 0
