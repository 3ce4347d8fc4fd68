# The cumulative L1 penalty with per-coordinate adaptive steps
# (update=cumulative, adaptive=True; docs/algorithms.md, "Adaptive steps").
# Tsuruoka et al.'s clip with a per-coordinate total penalty u_i that grows
# by l1 * eta_i per step, eta_i = eta0 / sqrt(delta + G_i) (AdaGrad's step,
# 0 while G_i = 0).  A coordinate's eta_i is constant while it is absent,
# so the penalty it missed is closed form: u_i(t) = u_i(a) + l1 eta_i (t - a),
# and so is its L2 decay w_i(t) = w_i(a) / (1 + eta_i l2)^(t - a).  Origin
# first-seen only: a weight that is exactly 0 leaves the store, and one
# that comes back starts afresh (G_i = u_i = q_i = 0), so after every step
# a stored weight has q_i = -sign(w_i) u_i(a) and the slot keeps u_i(a)
# instead of q_i.  Three state words (a 40-byte slot, the store's most), so
# a memory budget (its clock would be a fourth word) is refused.

cdef enum:
    cumulative_adaptive_DECAYS_WHILE_ABSENT = 0

cdef struct cumulative_adaptive_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double w                    # w_i after its last step
    double grad_sq_sum          # G_i
    double cumulative_penalty   # u_i at its last step (= |q_i|)
    double last_step            # t of its last step


cdef inline double cumad_eta(SGDKernel k, double grad_sq_sum) noexcept nogil:
    """eta_i = eta0 / sqrt(delta + G_i); 0 before the coordinate's first
    gradient (a weight loaded from another model takes no penalty until then)."""
    if grad_sq_sum > 0.0:
        return k.eta0 / sqrt(k.adagrad_delta + grad_sq_sum)
    return 0.0


cdef inline double cumad_decay(SGDKernel k, double w, double eta_i, double steps) noexcept nogil:
    """w / (1 + eta_i l2)^steps."""
    if k.l2 == 0.0 or w == 0.0 or eta_i == 0.0 or steps <= 0.0:
        return w
    if steps == 1.0:
        return w / (1.0 + eta_i * k.l2)
    return w * exp(-steps * log1p(eta_i * k.l2))


cdef inline double cumulative_adaptive_weight(SGDKernel k,
                                              cumulative_adaptive_slot* p) noexcept nogil:
    if k.l2 == 0.0:
        return p.w      # L1 is applied at present steps only: as stored
    return cumad_decay(k, p.w, cumad_eta(k, p.grad_sq_sum), <double>k.t - p.last_step)


cdef inline void cumulative_adaptive_init(SGDKernel k, cumulative_adaptive_slot* p) noexcept nogil:
    p.last_step = <double>k.t


cdef inline bint cumulative_adaptive_prunable(SGDKernel k,
                                              cumulative_adaptive_slot* p) noexcept nogil:
    return p.w == 0.0


cdef inline bint cumulative_adaptive_needs_rebase(SGDKernel k) noexcept nogil:
    return False    # last_step is the example count: exact up to 2^53


cdef inline void cumulative_adaptive_rebase(SGDKernel k) noexcept nogil:
    pass


cdef inline void cumad_update(SGDKernel k, cumulative_adaptive_slot* p, double w_start,
                              double steps_before, double g, double n_steps,
                              double now) noexcept nogil:
    """One update of coordinate p whose weight caught up to the start of
    the update is w_start, absent for steps_before steps since its last
    one: G_i += g^2, then n_steps decays and penalty steps with the new
    eta_i, the gradient step and the clip (docs/algorithms.md, "Adaptive
    steps"; n_steps = 1 sequentially, B in a mini-batch)."""
    cdef double grad_sq_sum, u_before, eta_before, eta_i, z, u, q, m
    if w_start == 0.0:
        # Never seen, pruned, or decayed to 0: starts afresh.
        grad_sq_sum = 0.0
        u_before = 0.0
        eta_before = 0.0
    else:
        grad_sq_sum = p.grad_sq_sum
        u_before = p.cumulative_penalty
        eta_before = cumad_eta(k, grad_sq_sum)
    grad_sq_sum += g * g
    eta_i = cumad_eta(k, grad_sq_sum)
    z = cumad_decay(k, w_start, eta_i, n_steps) - eta_i * g
    u = u_before + k.l1 * (eta_before * steps_before + eta_i * n_steps)
    # q_i = -sign(w) u_i(a); the clip w <- s max(0, |z| - (u_i + s q_i)),
    # s = sign(z) (z = 0 gives 0).
    q = -copysign(u_before, w_start)
    m = fabs(z) - (u + copysign(1.0, z) * q)
    m = m if m > 0.0 else 0.0
    p.w = copysign(m, z)
    p.grad_sq_sum = grad_sq_sum
    p.cumulative_penalty = u
    p.last_step = now


cdef int cumulative_adaptive_step(SGDKernel k, Step* st, const uint64_t* keys,
                                  const floating* x, Py_ssize_t nnz,
                                  cumulative_adaptive_slot** slots) noexcept nogil:
    cdef Py_ssize_t j
    cdef cumulative_adaptive_slot* p
    # One gradient per coordinate (duplicates of a key add up); every
    # present coordinate takes its step and its clip, gradient or not.
    group_slots(<void**>slots, nnz, st, x)
    for j in range(nnz):
        if st.first[j] != j:
            continue
        p = slots[j]
        cumad_update(k, p, st.wnow[j], <double>k.t - p.last_step, st.gsum[j], 1.0,
                     <double>(k.t + 1))
    return 0


cdef int cumulative_adaptive_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": each key caught up to the start,
    # G_i += S_i^2 of its summed g_i, then the B decays and penalty steps
    # with the new eta_i, its summed gradient step and one clip.
    cdef Py_ssize_t u
    cdef cumulative_adaptive_slot* p
    cdef double n_steps = <double>mb.n_rows
    mb_accumulate(mb, x, mb.gs, NULL)
    for u in range(mb.n_keys):
        p = <cumulative_adaptive_slot*>mb.uslots[u]
        if p == NULL:
            continue
        cumad_update(k, p, mb.w0[u], <double>mb.t0 - p.last_step, mb.sum[u], n_steps,
                     <double>(mb.t0 + mb.n_rows))
    return 0


cumulative_SPEC.add_adaptive({
    "first-seen": ("cumulative_adaptive",
                   ("grad_sq_sum", "cumulative_penalty", "last_step")),
})
