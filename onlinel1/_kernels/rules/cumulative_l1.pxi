# Cumulative L1 penalty (Tsuruoka, Tsujii & Ananiadou, ACL 2009, section
# 3.3; docs/algorithms.md, "cumulative"), exactly as scikit-learn's
# _plain_sgd runs it (l1penalty), plus L2 decay on the global scale for the
# elastic net.  u (k.clock) is the total penalty any weight could have
# received, q_i (applied_penalty) the signed total w_i did receive.  After
# the gradient step, for every present i:
#     w_i > 0:  w_i <- max(0, w_i - (u + q_i))
#     w_i < 0:  w_i <- min(0, w_i + (u - q_i))
#     q_i += w_i(after) - w_i(before)
# Origin "start": every weight exists from step 0 (q_i = 0), as in the
# paper.  Origin "first-seen": a feature owes only the penalty accrued
# since it was created; penalty_origin keeps u at creation, and
# u - penalty_origin replaces u.  Two kernels, one per origin: the start
# one has no origin to store.

cdef enum:
    cumulative_start_DECAYS_WHILE_ABSENT = 0
    cumulative_first_seen_DECAYS_WHILE_ABSENT = 0

cdef struct cumulative_start_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w                # v, w = c v
    double applied_penalty  # q_i

cdef struct cumulative_first_seen_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w
    double applied_penalty
    double penalty_origin   # u when the feature was created

ctypedef fused cumulative_slot:
    cumulative_start_slot
    cumulative_first_seen_slot


cdef inline double cumulative_start_weight(SGDKernel k, cumulative_start_slot* p) noexcept nogil:
    return p.w

cdef inline double cumulative_first_seen_weight(SGDKernel k,
                                                cumulative_first_seen_slot* p) noexcept nogil:
    return p.w


cdef inline void cumulative_start_init(SGDKernel k, cumulative_start_slot* p) noexcept nogil:
    pass

cdef inline void cumulative_first_seen_init(SGDKernel k,
                                            cumulative_first_seen_slot* p) noexcept nogil:
    p.penalty_origin = k.clock   # u before this step


cdef inline bint cumulative_start_prunable(SGDKernel k, cumulative_start_slot* p) noexcept nogil:
    # Paper semantics: a zeroed weight keeps owing u + q_i; only q_i == 0
    # is indistinguishable from a feature never seen.
    return p.w == 0.0 and p.applied_penalty == 0.0

cdef inline bint cumulative_first_seen_prunable(SGDKernel k,
                                                cumulative_first_seen_slot* p) noexcept nogil:
    # A zero weight that returns starts afresh: the same as a new feature.
    return p.w == 0.0


cdef inline bint cumulative_start_needs_rebase(SGDKernel k) noexcept nogil:
    return False    # u is the paper's u: every stored q_i is relative to it

cdef inline bint cumulative_first_seen_needs_rebase(SGDKernel k) noexcept nogil:
    return k.clock > k.rebase_at


cdef inline void cumulative_start_rebase(SGDKernel k) noexcept nogil:
    pass

cdef void cumulative_first_seen_rebase(SGDKernel k) noexcept nogil:
    # docs/algorithms.md, "Numerics": every origin moves with u.
    cdef Py_ssize_t cursor = 0
    cdef cumulative_first_seen_slot* p = \
        <cumulative_first_seen_slot*>k.store.next_live(&cursor)
    while p != NULL:
        p.penalty_origin -= k.clock
        p = <cumulative_first_seen_slot*>k.store.next_live(&cursor)
    k.clock = 0.0


cdef inline int cumulative_step(SGDKernel k, Step* st, const uint64_t* keys,
                                const floating* x, Py_ssize_t nnz,
                                cumulative_slot** slots) noexcept nogil:
    cdef Py_ssize_t j
    cdef cumulative_slot* p
    cdef double z, w, c, inv_c, step, age, u
    if k.l2 > 0:
        scale_decay(k, 1.0 - st.eta * k.l2)
    c = k.scale
    inv_c = 1.0 / c
    if st.update != 0.0:
        step = st.update / c
        for j in range(nnz):
            p = slots[j]
            if p != NULL:
                p.w += x[j] * step
    k.clock += st.eta * k.l1
    u = k.clock
    # Branch-free form of the clip above (the sign of w_i is noise to a
    # branch predictor): with s = sign(z) and |q_i| <= u, both cases read
    #     w_i <- s max(0, |z| - (U_i + s q_i) / c)
    # and z = 0 stays 0.  (-a is exact, so this equals scikit-learn's
    # z - (u + q)/c and z + (u - q)/c.)
    for j in range(nnz):
        p = slots[j]
        if p == NULL:
            continue
        if cumulative_slot is cumulative_first_seen_slot:
            age = u - p.penalty_origin
        else:
            age = u
        z = p.w
        w = fabs(z) - (age + copysign(1.0, z) * p.applied_penalty) * inv_c
        w = w if w > 0.0 else 0.0
        p.w = copysign(w, z)
        p.applied_penalty += c * (p.w - z)
    return 0


cdef int cumulative_start_step(SGDKernel k, Step* st, const uint64_t* keys,
                               const floating* x, Py_ssize_t nnz,
                               cumulative_start_slot** slots) noexcept nogil:
    return cumulative_step(k, st, keys, x, nnz, slots)

cdef int cumulative_first_seen_step(SGDKernel k, Step* st, const uint64_t* keys,
                                    const floating* x, Py_ssize_t nnz,
                                    cumulative_first_seen_slot** slots) noexcept nogil:
    return cumulative_step(k, st, keys, x, nnz, slots)


cumulative_SPEC = RuleSpec(
    name="cumulative",
    kernels={"start": "cumulative_start", "first-seen": "cumulative_first_seen"},
    state={"start": ("applied_penalty",), "first-seen": ("applied_penalty", "penalty_origin")},
    title="cumulative L1 penalty (Tsuruoka et al. 2009)",
    options=("origin",), validate=_check_l2_decay, decays_while_absent=False)


cdef inline int cumulative_mb(SGDKernel k, MB* mb, const floating* x,
                              cumulative_slot* kind) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": the B decays and the B steps of u,
    # each key's summed gradient step, then the clip once with u at the end.
    cdef Py_ssize_t b, u
    cdef cumulative_slot* p
    cdef double z, w, c, inv_c, age, total
    for b in range(mb.n_rows):
        if k.l2 > 0:
            scale_decay(k, 1.0 - mb.eta[b] * k.l2)
        k.clock += mb.eta[b] * k.l1
    c = k.scale
    inv_c = 1.0 / c
    for b in range(mb.n_rows):
        mb.coef[b] = mb.upd[b] / c
    mb_accumulate(mb, x, mb.coef, NULL)
    total = k.clock
    for u in range(mb.n_keys):
        p = <cumulative_slot*>mb.uslots[u]
        if p == NULL:
            continue
        p.w += mb.sum[u]
        if cumulative_slot is cumulative_first_seen_slot:
            age = total - p.penalty_origin
        else:
            age = total
        z = p.w
        w = fabs(z) - (age + copysign(1.0, z) * p.applied_penalty) * inv_c
        w = w if w > 0.0 else 0.0
        p.w = copysign(w, z)
        p.applied_penalty += c * (p.w - z)
    return 0


cdef int cumulative_start_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    return cumulative_mb(k, mb, x, <cumulative_start_slot*>NULL)

cdef int cumulative_first_seen_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    return cumulative_mb(k, mb, x, <cumulative_first_seen_slot*>NULL)
