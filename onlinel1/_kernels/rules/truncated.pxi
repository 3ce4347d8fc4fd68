# Truncated gradient (Langford, Li & Zhang, JMLR 2009; Vowpal Wabbit's
# --l1; docs/algorithms.md, "truncated").  Every K-th example, every
# weight with |w| <= theta shrinks by eta_t l1 K towards 0 (and stops
# there).  Lazily: the clock T (k.clock) sums eta_j K over those examples;
# a feature stored with clock T_a (last_clock) owes l1 (T - T_a) if
# |w| <= theta.  Truncation only shrinks a weight, so one above theta is
# never truncated while absent and one below stays below.

# Whether an absent weight can reach 0 by its lazy penalty alone (then a
# periodic compaction removes it from the store).
cdef enum:
    truncated_DECAYS_WHILE_ABSENT = 1

cdef struct truncated_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w
    double last_clock   # T at the last step (NaN: being stepped now)


cdef inline double truncated_weight(SGDKernel k, truncated_slot* p) noexcept nogil:
    cdef double v = p.w
    cdef double m
    if fabs(v) > k.truncate_theta:
        return v
    m = fabs(v) - k.l1 * (k.clock - p.last_clock)
    m = m if m > 0.0 else 0.0
    return copysign(m, v)


cdef inline void truncated_init(SGDKernel k, truncated_slot* p) noexcept nogil:
    p.last_clock = NAN


cdef inline bint truncated_prunable(SGDKernel k, truncated_slot* p) noexcept nogil:
    return truncated_weight(k, p) == 0.0


cdef inline bint truncated_needs_rebase(SGDKernel k) noexcept nogil:
    return k.clock > k.rebase_at


cdef void truncated_rebase(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef truncated_slot* p = <truncated_slot*>k.store.next_live(&cursor)
    while p != NULL:
        p.last_clock -= k.clock
        p = <truncated_slot*>k.store.next_live(&cursor)
    k.clock = 0.0


cdef int truncated_step(SGDKernel k, Step* st, const uint64_t* keys, const floating* x,
                        Py_ssize_t nnz, truncated_slot** slots) noexcept nogil:
    cdef Py_ssize_t j
    cdef truncated_slot* p
    cdef double w, m, shrink = 0.0, next_clock = k.clock
    cdef bint boundary = (k.t + 1) % k.truncate_every == 0
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
    if boundary:
        shrink = st.eta * k.l1 * k.truncate_every
        next_clock = k.clock + st.eta * k.truncate_every
    for j in range(nnz):
        p = slots[j]
        if p != NULL and p.last_clock != p.last_clock:
            w = p.w
            if boundary and fabs(w) <= k.truncate_theta:
                m = fabs(w) - shrink
                p.w = copysign(m if m > 0.0 else 0.0, w)
            p.last_clock = next_clock
    k.clock = next_clock
    return 0


def _truncated_validate(o):
    if o.l2 > 0:
        raise _conflict("l2", "must be 0 with update='truncated' (it has no L2 term)")


truncated_SPEC = RuleSpec(
    name="truncated", kernels={"start": "truncated", "first-seen": "truncated"},
    state={"start": ("last_clock",), "first-seen": ("last_clock",)},
    title="truncated gradient (Langford et al. 2009; Vowpal Wabbit's --l1)",
    options=("truncate_every", "truncate_theta"), validate=_truncated_validate,
    decays_while_absent=bool(truncated_DECAYS_WHILE_ABSENT))


cdef int truncated_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": w0 + the summed gradient step,
    # then the truncations of the B steps: the first here, the rest lazily.
    cdef Py_ssize_t b, u
    cdef truncated_slot* p
    cdef double w, m, shrink = 0.0, next_clock = k.clock
    cdef bint boundary = (mb.t0 + 1) % k.truncate_every == 0
    for u in range(mb.n_keys):
        p = <truncated_slot*>mb.uslots[u]
        if p != NULL:
            p.w = mb.w0[u]
    mb_accumulate(mb, x, mb.upd, NULL)
    if boundary:
        shrink = mb.eta[0] * k.l1 * k.truncate_every
        next_clock = k.clock + mb.eta[0] * k.truncate_every
    for u in range(mb.n_keys):
        p = <truncated_slot*>mb.uslots[u]
        if p != NULL:
            w = p.w + mb.sum[u]
            if boundary and fabs(w) <= k.truncate_theta:
                m = fabs(w) - shrink
                w = copysign(m if m > 0.0 else 0.0, w)
            p.w = w
            p.last_clock = next_clock
    k.clock = next_clock
    for b in range(1, mb.n_rows):
        if (mb.t0 + 1 + b) % k.truncate_every == 0:
            k.clock = k.clock + mb.eta[b] * k.truncate_every
    return 0
