# FTRL-Proximal (McMahan et al., KDD 2013, Algorithm 1; docs/algorithms.md,
# "ftrl").  Per coordinate z_i and n_i; alpha = eta0, beta = ftrl_beta,
# lambda1 = l1, lambda2 = l2.  The weight is a function of (z, n), read
# whenever needed; an absent coordinate does not change.

# Whether an absent weight can reach 0 by its lazy penalty alone (then a
# periodic compaction removes it from the store).
cdef enum:
    ftrl_DECAYS_WHILE_ABSENT = 0

cdef struct ftrl_slot:
    uint64_t key_hash   # fmix64(key): the store's word 0
    double z
    double n


cdef inline double ftrl_weight(SGDKernel k, ftrl_slot* p) noexcept nogil:
    cdef double m = fabs(p.z) - k.l1
    if m <= 0.0:
        return 0.0
    return -copysign(m, p.z) / ((k.ftrl_beta + sqrt(p.n)) / k.eta0 + k.l2)


cdef inline void ftrl_init(SGDKernel k, ftrl_slot* p) noexcept nogil:
    pass


cdef inline bint ftrl_prunable(SGDKernel k, ftrl_slot* p) noexcept nogil:
    # A zero weight still has its n_i: only (z, n) = (0, 0) is absent.
    return p.z == 0.0 and p.n == 0.0


cdef inline bint ftrl_needs_rebase(SGDKernel k) noexcept nogil:
    return False


cdef inline void ftrl_rebase(SGDKernel k) noexcept nogil:
    pass


cdef int ftrl_step(SGDKernel k, Step* st, const uint64_t* keys, const floating* x,
                   Py_ssize_t nnz, ftrl_slot** slots) noexcept nogil:
    cdef Py_ssize_t j
    cdef ftrl_slot* p
    cdef double g, sigma, n_new, w
    if st.gs == 0.0:
        return 0
    group_slots(<void**>slots, nnz, st, x)
    for j in range(nnz):
        if st.first[j] != j:
            continue
        p = slots[j]
        g = st.gsum[j]
        w = ftrl_weight(k, p)        # the weight the margin used (z, n unchanged so far)
        n_new = p.n + g * g
        sigma = (sqrt(n_new) - sqrt(p.n)) / k.eta0
        p.z += g - sigma * w
        p.n = n_new
    return 0


def _ftrl_from_weights(weights, o):
    # z with n = 0 such that the weight read back is w.
    import numpy as np
    return -(weights * (o.ftrl_beta / o.eta0 + o.l2) + np.sign(weights) * o.l1), []


ftrl_SPEC = RuleSpec(
    name="ftrl", kernels={"start": "ftrl", "first-seen": "ftrl"},
    state={"start": ("n",), "first-seen": ("n",)}, weight_column="z",
    title="FTRL-Proximal (McMahan et al. 2013)",
    options=("ftrl_beta",), validate=None, decays_while_absent=bool(ftrl_DECAYS_WHILE_ABSENT),
    from_weights=_ftrl_from_weights)


cdef int ftrl_mb_step(SGDKernel k, MB* mb, const floating* x) noexcept nogil:
    # docs/algorithms.md, "Mini-batches": one FTRL step per key with a
    # gradient, with its summed g_i = sum_b g_b s_b x (FTRL has no penalty
    # while absent).
    cdef Py_ssize_t u
    cdef ftrl_slot* p
    cdef double g, sigma, n_new, w
    mb_accumulate(mb, x, mb.gs, NULL)
    for u in range(mb.n_keys):
        p = <ftrl_slot*>mb.uslots[u]
        if p == NULL or not mb.grad[u]:
            continue
        g = mb.sum[u]
        w = ftrl_weight(k, p)
        n_new = p.n + g * g
        sigma = (sqrt(n_new) - sqrt(p.n)) / k.eta0
        p.z += g - sigma * w
        p.n = n_new
    return 0
