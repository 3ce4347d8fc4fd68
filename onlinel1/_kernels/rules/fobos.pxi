# FOBOS (Duchi & Singer, JMLR 2009; docs/algorithms.md, "fobos"): a
# gradient step, then the proximal step of the regulariser with the same
# eta:
#     w <- sign(w) max(0, |w| - eta l1) / (1 + eta l2)
# Lazily: with A_t = prod_{j<=t} (1 + eta_j l2) and
# B_t = sum_{j<=t} eta_j A_{j-1} (k.clock_scale and k.clock), a feature
# stored as v = w A_a with clock B_a (last_clock) after step a has, after
# the proximal steps a+1..t of the examples it was absent from, the weight
#     sign(v) max(0, |v| - l1 (B_t - B_a)) / A_t
# A zero weight stays zero, so zeros leave the store.

# Whether an absent weight can reach 0 by its lazy penalty alone (then a
# periodic compaction removes it from the store).
cdef enum:
    fobos_DECAYS_WHILE_ABSENT = 1

cdef struct fobos_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w            # v = w A at the last step
    double last_clock   # B at the last step (NaN: being stepped now)


cdef inline double fobos_weight(SGDKernel k, fobos_slot* p) noexcept nogil:
    cdef double v = p.w
    cdef double m = fabs(v) - k.l1 * (k.clock - p.last_clock)
    m = m if m > 0.0 else 0.0          # branch-free (maxsd): signs are noise
    # A = 1 exactly while l2 = 0: no division on the common path.
    if k.clock_scale != 1.0:
        m /= k.clock_scale
    return copysign(m, v)


cdef inline void fobos_init(SGDKernel k, fobos_slot* p) noexcept nogil:
    p.last_clock = NAN      # caught up: the step sets its clock


cdef inline bint fobos_prunable(SGDKernel k, fobos_slot* p) noexcept nogil:
    return fobos_weight(k, p) == 0.0


cdef inline bint fobos_needs_rebase(SGDKernel k) noexcept nogil:
    return k.clock > k.rebase_at or k.clock_scale > k.rebase_at


cdef void fobos_rebase(SGDKernel k) noexcept nogil:
    # (v, B_i, B, A) -> (v / A, (B_i - B) / A, 0, 1) leaves every weight
    # sign(v) max(0, |v| - l1 (B - B_i)) / A unchanged.
    cdef Py_ssize_t cursor = 0
    cdef double a = k.clock_scale, b = k.clock
    cdef fobos_slot* p = <fobos_slot*>k.store.next_live(&cursor)
    while p != NULL:
        p.w /= a
        p.last_clock = (p.last_clock - b) / a
        p = <fobos_slot*>k.store.next_live(&cursor)
    k.clock = 0.0
    k.clock_scale = 1.0


cdef int fobos_step(SGDKernel k, Step* st, const uint64_t* keys, const floating* x,
                    Py_ssize_t nnz, fobos_slot** slots) noexcept nogil:
    cdef Py_ssize_t j
    cdef fobos_slot* p
    cdef double w, m, next_scale, next_clock, shrink, threshold
    # Materialise the caught-up weights of the present features (wnow, from
    # the margin) in real units, once per feature (NaN in the clock marks
    # "done").
    for j in range(nnz):
        p = slots[j]
        if p != NULL and p.last_clock == p.last_clock:
            p.w = st.wnow[j]
            p.last_clock = NAN
    if st.update != 0.0:
        for j in range(nnz):
            p = slots[j]
            if p != NULL:
                p.w += x[j] * st.update
    next_scale = k.clock_scale * (1.0 + st.eta * k.l2)
    next_clock = k.clock + st.eta * k.clock_scale
    threshold = st.eta * k.l1
    # w / (1 + eta l2) * A_t = w * A_{t-1}: store v without a division.
    shrink = k.clock_scale
    for j in range(nnz):
        p = slots[j]
        if p != NULL and p.last_clock != p.last_clock:
            w = p.w
            m = fabs(w) - threshold
            m = m if m > 0.0 else 0.0
            p.w = copysign(m * shrink, w)
            p.last_clock = next_clock
    k.clock_scale = next_scale
    k.clock = next_clock
    return 0


fobos_SPEC = RuleSpec(
    name="fobos", kernels={"start": "fobos", "first-seen": "fobos"},
    state={"start": ("last_clock",), "first-seen": ("last_clock",)},
    title="FOBOS (Duchi & Singer 2009)",
    options=(), validate=None, decays_while_absent=bool(fobos_DECAYS_WHILE_ABSENT))
# FOBOS with AdaGrad's per-coordinate steps is AdaGrad-FOBOS (docs/algorithms.md,
# "Adaptive steps"): adaptive=True runs that rule's kernel, bit for bit.
fobos_SPEC.add_adaptive({origin: ("adagrad_fobos", ("grad_sq_sum", "last_step"))
                         for origin in ("start", "first-seen")})


cdef int fobos_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": w0 + the summed gradient step,
    # then the B proximal steps: the first here, the other B - 1 lazily
    # (the key then reads as absent from steps 2..B).
    cdef Py_ssize_t b, u
    cdef fobos_slot* p
    cdef double w, m, next_scale, next_clock, shrink, threshold, eta
    for u in range(mb.n_keys):
        p = <fobos_slot*>mb.uslots[u]
        if p != NULL:
            p.w = mb.w0[u]
    mb_accumulate(mb, x, mb.upd, NULL)
    eta = mb.eta[0]
    next_scale = k.clock_scale * (1.0 + eta * k.l2)
    next_clock = k.clock + eta * k.clock_scale
    threshold = eta * k.l1
    shrink = k.clock_scale
    for u in range(mb.n_keys):
        p = <fobos_slot*>mb.uslots[u]
        if p != NULL:
            w = p.w + mb.sum[u]
            m = fabs(w) - threshold
            m = m if m > 0.0 else 0.0
            p.w = copysign(m * shrink, w)
            p.last_clock = next_clock
    k.clock_scale = next_scale
    k.clock = next_clock
    for b in range(1, mb.n_rows):
        eta = mb.eta[b]
        next_scale = k.clock_scale * (1.0 + eta * k.l2)
        next_clock = k.clock + eta * k.clock_scale
        k.clock_scale = next_scale
        k.clock = next_clock
    return 0
