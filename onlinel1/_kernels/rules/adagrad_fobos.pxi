# AdaGrad-FOBOS (Duchi, Hazan & Singer, JMLR 2011; docs/algorithms.md,
# "adagrad-fobos"): per-coordinate steps eta_i = eta0 / sqrt(delta + G_i),
# G_i (grad_sq_sum) the sum of coordinate i's squared gradients, then the
# FOBOS proximal step with eta_i.  An absent coordinate keeps its eta_i, so
# k skipped steps have a closed form (last_step: the example count at its
# last step).  A coordinate whose caught-up weight is exactly 0 starts
# afresh (G_i = 0), so zeros leave the store exactly.

# Whether an absent weight can reach 0 by its lazy penalty alone (then a
# periodic compaction removes it from the store).
cdef enum:
    adagrad_fobos_DECAYS_WHILE_ABSENT = 1

cdef struct adagrad_fobos_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w
    double grad_sq_sum  # G_i
    double last_step    # t at the coordinate's last step


cdef inline double adagrad_fobos_weight(SGDKernel k, adagrad_fobos_slot* p) noexcept nogil:
    cdef double v = p.w
    cdef double steps = <double>k.t - p.last_step
    cdef double eta_i, m, log_r
    if steps <= 0 or v == 0.0:
        return v
    eta_i = k.eta0 / sqrt(k.adagrad_delta + p.grad_sq_sum)
    if k.l2 == 0.0:
        m = fabs(v) - steps * eta_i * k.l1
    else:
        # r^k |w| - (l1/l2)(1 - r^k), r = 1/(1 + eta_i l2), without losing
        # digits when eta_i l2 is small.
        log_r = -log1p(eta_i * k.l2)
        m = exp(steps * log_r) * fabs(v) + (k.l1 / k.l2) * expm1(steps * log_r)
    m = m if m > 0.0 else 0.0
    return copysign(m, v)


cdef inline void adagrad_fobos_init(SGDKernel k, adagrad_fobos_slot* p) noexcept nogil:
    pass


cdef inline bint adagrad_fobos_prunable(SGDKernel k, adagrad_fobos_slot* p) noexcept nogil:
    # Right after its step the stored value is the weight; the periodic
    # compaction reads the caught-up weight instead (DECAYS_WHILE_ABSENT).
    return p.w == 0.0


cdef inline bint adagrad_fobos_needs_rebase(SGDKernel k) noexcept nogil:
    return False


cdef inline void adagrad_fobos_rebase(SGDKernel k) noexcept nogil:
    pass


cdef int adagrad_fobos_step(SGDKernel k, Step* st, const uint64_t* keys, const floating* x,
                            Py_ssize_t nnz, adagrad_fobos_slot** slots) noexcept nogil:
    cdef Py_ssize_t j
    cdef adagrad_fobos_slot* p
    cdef double w, m, eta_i, g
    # Catch the present features up to the previous example (idempotent, so
    # a repeated key is harmless); a zero weight starts afresh.  A new slot
    # (wnow 0) is one that starts afresh.
    for j in range(nnz):
        p = slots[j]
        if p != NULL:
            p.w = st.wnow[j]
            if st.wnow[j] == 0.0:
                p.grad_sq_sum = 0.0
            p.last_step = <double>k.t
    if st.gs == 0.0:
        return 0    # no gradient: this example's proximal step is caught up later
    # One gradient per coordinate: duplicates of a key add up.
    group_slots(<void**>slots, nnz, st, x)
    for j in range(nnz):
        if st.first[j] != j:
            continue
        p = slots[j]
        g = st.gsum[j]
        p.grad_sq_sum += g * g
        eta_i = k.eta0 / sqrt(k.adagrad_delta + p.grad_sq_sum)
        w = p.w - eta_i * g
        m = fabs(w) - eta_i * k.l1
        m = m if m > 0.0 else 0.0
        p.w = copysign(m / (1.0 + eta_i * k.l2), w)
        p.last_step = <double>(k.t + 1)
    return 0


adagrad_fobos_SPEC = RuleSpec(
    name="adagrad-fobos", kernels={"start": "adagrad_fobos", "first-seen": "adagrad_fobos"},
    state={"start": ("grad_sq_sum", "last_step"), "first-seen": ("grad_sq_sum", "last_step")},
    title="AdaGrad-FOBOS (Duchi et al. 2011): per-coordinate steps",
    options=("adagrad_delta",), validate=None, decays_while_absent=bool(adagrad_fobos_DECAYS_WHILE_ABSENT))


cdef int adagrad_fobos_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": each key caught up to the start (a
    # zero starts afresh); a key with a gradient takes G_i += g_i^2 of its
    # summed g_i = sum_b g_b s_b x, one step, the first proximal step; the
    # other proximal steps of the B are lazy (last_step).
    cdef Py_ssize_t u
    cdef adagrad_fobos_slot* p
    cdef double w, m, eta_i, g
    for u in range(mb.n_keys):
        p = <adagrad_fobos_slot*>mb.uslots[u]
        if p != NULL:
            p.w = mb.w0[u]
            if mb.w0[u] == 0.0:
                p.grad_sq_sum = 0.0
            p.last_step = <double>mb.t0
    mb_accumulate(mb, x, mb.gs, NULL)
    for u in range(mb.n_keys):
        p = <adagrad_fobos_slot*>mb.uslots[u]
        if p == NULL or not mb.grad[u]:
            continue
        g = mb.sum[u]
        p.grad_sq_sum += g * g
        eta_i = k.eta0 / sqrt(k.adagrad_delta + p.grad_sq_sum)
        w = p.w - eta_i * g
        m = fabs(w) - eta_i * k.l1
        m = m if m > 0.0 else 0.0
        p.w = copysign(m / (1.0 + eta_i * k.l2), w)
        p.last_step = <double>(mb.t0 + 1)
    return 0
