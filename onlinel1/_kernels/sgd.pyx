# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The learning kernel: one pass of lazy, per-feature SGD over a CSR batch.

The loop knows the schedule and the penalty; the store knows storage
(scikit-learn's _sgd_fast / WeightVector split).  For every example:

1. find the row of every present feature in the store, once;
2. the margin p = b + c * sum_i v_i x_i from the weights caught up to now;
3. the progressive loss and g = dl/dp (clipped like scikit-learn);
4. the rule's step (rules/*.pxi), which inserts features it gives a
   non-zero weight and applies the penalty;
5. pruning: a weight that is exactly zero, and whose state is that of an
   absent feature, leaves the store.

Every per-example maintenance step (resetting the L2 scale, rebasing the
clocks) is triggered by the stream alone, never by batch boundaries, so any
cut of a stream into batches gives bit-identical weights.

The whole batch runs without the GIL.  A batch is validated in full before
its first example touches a weight; a numeric failure in the middle (a
margin that overflows) stops before that example, leaving the model as it
was after the previous one.
"""
from libc.math cimport INFINITY, NAN, copysign, exp, expm1, fabs, isfinite, log1p, pow, sqrt
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    enum: POLLIN

import numpy as np

from onlinel1.errors import NumericError, StoreFullError

from onlinel1._kernels.store cimport WeightStore, fmix64, store_find

ctypedef fused floating:
    float
    double

include "losses.pxi"
include "schedules.pxi"

cdef enum:
    RULE_PLAIN = 0
    RULE_SUBGRADIENT = 1
    RULE_CUMULATIVE = 2
    RULE_FOBOS = 3
    RULE_TRUNCATED = 4
    RULE_ADAGRAD_FOBOS = 5
    RULE_FTRL = 6
    RULE_SPRED = 7

cdef enum:
    ORIGIN_START = 0
    ORIGIN_FIRST_SEEN = 1

# Status codes of a batch.
cdef enum:
    OK = 0
    E_NOMEM = 1
    E_MARGIN = 2
    E_UPDATE = 3

# scikit-learn resets its weight scale below this (WeightVector, float64).
cdef double SCALE_RESET = 1e-9

LOSSES = {"log": LOSS_LOG, "squared": LOSS_SQUARED, "hinge": LOSS_HINGE}
RULES = {"plain": RULE_PLAIN, "subgradient": RULE_SUBGRADIENT,
         "cumulative": RULE_CUMULATIVE, "fobos": RULE_FOBOS, "truncated": RULE_TRUNCATED,
         "adagrad-fobos": RULE_ADAGRAD_FOBOS, "ftrl": RULE_FTRL, "spred": RULE_SPRED}
SCHEDULES = {"constant": SCHEDULE_CONSTANT, "invscaling": SCHEDULE_INVSCALING,
             "exponential": SCHEDULE_EXPONENTIAL}
ORIGINS = {"start": ORIGIN_START, "first-seen": ORIGIN_FIRST_SEEN}

# Names of the per-feature state columns of each rule (store aux columns).
STATE_COLUMNS = {
    ("plain", "start"): (), ("plain", "first-seen"): (),
    ("subgradient", "start"): ("last_clock",), ("subgradient", "first-seen"): ("last_clock",),
    ("cumulative", "start"): ("applied_penalty",),
    ("cumulative", "first-seen"): ("applied_penalty", "penalty_origin"),
    ("fobos", "start"): ("last_clock",), ("fobos", "first-seen"): ("last_clock",),
    ("truncated", "start"): ("last_clock",), ("truncated", "first-seen"): ("last_clock",),
    ("adagrad-fobos", "start"): ("grad_sq_sum", "last_step"),
    ("adagrad-fobos", "first-seen"): ("grad_sq_sum", "last_step"),
    ("ftrl", "start"): ("n",), ("ftrl", "first-seen"): ("n",),
    ("spred", "start"): ("b",), ("spred", "first-seen"): ("b",),
}
# What the weight column holds where it is not the weight itself.
WEIGHT_COLUMN = {"ftrl": "z", "spred": "a"}


cdef class SGDKernel:
    """State and loops of one learner.  Use ``onlinel1.Learner``."""
    cdef readonly WeightStore store
    cdef int loss, rule, schedule, origin
    cdef double l1, l2, eta0, power_t, decay_rate, decay_steps
    cdef bint fit_intercept
    cdef double rebase_at
    cdef long long truncate_every
    cdef double truncate_theta, adagrad_delta, ftrl_beta, spred_init, spred_threshold
    # Clocks.  t: examples learned.  scale: c in w = c v.  clock: u for
    # cumulative L1, T for subgradient, B for FOBOS.  clock_scale: A (FOBOS).
    cdef public long long t
    cdef public double scale
    cdef public double intercept
    cdef public double clock
    cdef public double clock_scale
    cdef public long long last_compact_t

    def __init__(self, str loss, str rule, str schedule, str origin,
                 double l1, double l2, double eta0, double power_t,
                 double decay_rate, double decay_steps, bint fit_intercept,
                 double rebase_at, long long truncate_every=1,
                 double truncate_theta=INFINITY, double adagrad_delta=1e-8,
                 double ftrl_beta=1.0, double spred_init=1.0,
                 double spred_threshold=1e-6):
        self.loss = LOSSES[loss]
        self.rule = RULES[rule]
        self.schedule = SCHEDULES[schedule]
        self.origin = ORIGINS[origin]
        self.l1, self.l2, self.eta0, self.power_t = l1, l2, eta0, power_t
        self.decay_rate, self.decay_steps = decay_rate, decay_steps
        self.fit_intercept = fit_intercept
        self.rebase_at = rebase_at
        self.truncate_every, self.truncate_theta = truncate_every, truncate_theta
        self.adagrad_delta, self.ftrl_beta = adagrad_delta, ftrl_beta
        self.spred_init, self.spred_threshold = spred_init, spred_threshold
        self.store = WeightStore(len(STATE_COLUMNS[(rule, origin)]))
        self.t = 0
        self.scale = 1.0
        self.intercept = 0.0
        self.clock = 0.0
        self.clock_scale = 1.0
        self.last_compact_t = 0

    # ------------------------------------------------------------- learning

    def learn(self, const int64_t[::1] indptr, const uint64_t[::1] keys,
              values, const double[::1] labels, weights, Py_ssize_t start=0,
              Py_ssize_t stop=-1, int wake_fd=-1, int64_t wake_every=4096):
        """Learn rows ``start:stop`` (default: all) of a validated CSR batch
        in order, without copying or re-basing any array.

        With ``wake_fd >= 0``, after each row that brings the features
        learned since the last look to ``wake_every`` or more, the kernel
        polls ``wake_fd`` (no waiting) and stops after that row if it is
        readable: the daemon's way to answer a request in the middle of a
        batch.

        Returns ``(loss_sum, weight_sum, n_correct, n_learned)``: the
        progressive (before-update) evaluation, importance-weighted, of the
        ``n_learned`` rows learned from ``start`` (all of them, unless
        stopped early by ``wake_fd``).  Raises
        ``NumericError`` (with ``.learned``, counted from ``start``) if an
        example overflows and ``MemoryError`` if the store cannot grow; the
        examples before the failing one stay learned.
        """
        cdef const double[::1] s = weights if weights is not None else None
        cdef double out[3]
        cdef Py_ssize_t failed_at = -1
        cdef int status
        cdef Py_ssize_t max_nnz = 0, i
        if stop < 0:
            stop = indptr.shape[0] - 1
        if wake_every < 1:
            raise ValueError(f"wake_every must be at least 1, got {wake_every}")
        if not 0 <= start <= stop <= indptr.shape[0] - 1:
            raise ValueError(f"rows {start}:{stop} are not within the batch's "
                             f"{indptr.shape[0] - 1} rows")
        # Row views; indptr keeps its absolute offsets into keys and values.
        indptr = indptr[start:stop + 1]
        labels = labels[start:stop]
        if s is not None:
            s = s[start:stop]
        for i in range(indptr.shape[0] - 1):
            if indptr[i + 1] - indptr[i] > max_nnz:
                max_nnz = indptr[i + 1] - indptr[i]
        out[0] = out[1] = out[2] = 0.0
        if values.dtype == np.float32:
            status = self._run_f32(indptr, keys, values, labels, s, max_nnz, out, &failed_at,
                                   wake_fd, wake_every)
        else:
            status = self._run_f64(indptr, keys, values, labels, s, max_nnz, out, &failed_at,
                                   wake_fd, wake_every)
        self._compact_if_due()
        progress = (out[0], out[1], <long long>out[2])
        if status == E_NOMEM:
            raise StoreFullError(
                f"example {failed_at} of the batch: the weight store cannot grow; "
                f"it and the rest of the batch were not learned, the {failed_at} "
                f"before it were", failed_at, progress)
        if status == E_MARGIN or status == E_UPDATE:
            what = "margin" if status == E_MARGIN else "weight update"
            raise NumericError(
                f"example {failed_at} of the batch: the {what} is not finite "
                f"(feature values or importance too large?); it and the rest "
                f"of the batch were not learned, the {failed_at} before it were",
                failed_at, progress)
        return progress + (failed_at,)

    cdef int _run_f32(self, const int64_t[::1] indptr, const uint64_t[::1] keys,
                      const float[::1] values, const double[::1] labels,
                      const double[::1] s, Py_ssize_t max_nnz, double* out,
                      Py_ssize_t* failed_at, int wake_fd, int64_t wake_every):
        cdef int status
        with nogil:
            status = learn_rows(self, indptr, keys, values, labels, s, max_nnz, out, failed_at,
                                wake_fd, wake_every)
        return status

    cdef int _run_f64(self, const int64_t[::1] indptr, const uint64_t[::1] keys,
                      const double[::1] values, const double[::1] labels,
                      const double[::1] s, Py_ssize_t max_nnz, double* out,
                      Py_ssize_t* failed_at, int wake_fd, int64_t wake_every):
        cdef int status
        with nogil:
            status = learn_rows(self, indptr, keys, values, labels, s, max_nnz, out, failed_at,
                                wake_fd, wake_every)
        return status

    def margins(self, const int64_t[::1] indptr, const uint64_t[::1] keys, values,
                bint probability=False):
        """``b + sum_i w_i x_i`` of every row, from the caught-up weights;
        with ``probability``, its logistic link 1 / (1 + exp(-margin))."""
        cdef Py_ssize_t n = indptr.shape[0] - 1
        out = np.empty(n, dtype=np.float64)
        cdef double[::1] o = out
        cdef const float[::1] xf
        cdef const double[::1] xd
        if values.dtype == np.float32:
            xf = values
            with nogil:
                margins_rows(self, indptr, keys, xf, o, probability)
        else:
            xd = values
            with nogil:
                margins_rows(self, indptr, keys, xd, o, probability)
        return out

    def lookup(self, const uint64_t[::1] keys):
        """Caught-up weight of each key (0 where absent)."""
        out = np.zeros(keys.shape[0], dtype=np.float64)
        cdef double[::1] o = out
        cdef Py_ssize_t j, row
        with nogil:
            for j in range(keys.shape[0]):
                row = store_find(self.store, keys[j])
                if row >= 0:
                    o[j] = weight_now(self, row) * self.scale
        return out

    def count_nonzero(self):
        """Number of stored features whose caught-up weight is not zero
        (no array is built: ``stats`` asks for it while serving)."""
        cdef Py_ssize_t row, count = 0
        with nogil:
            for row in range(self.store.n):
                if weight_now(self, row) != 0.0:
                    count += 1
        return count

    def current_weights(self):
        """``(keys, weights)`` of every stored row, caught up, store order."""
        keys, w, aux = self.store.export()
        cdef double[::1] wv = w
        cdef Py_ssize_t row
        for row in range(wv.shape[0]):
            wv[row] = weight_now(self, row) * self.scale
        return keys, w

    def compact(self):
        """Drop rows whose caught-up weight is zero and whose state is that
        of an absent feature (exact: the model does not change)."""
        cdef Py_ssize_t row
        cdef double w
        with nogil:
            row = self.store.n - 1
            while row >= 0:
                # Only FOBOS decays absent weights to an exact zero; for the
                # other rules a stored zero is already pruned at its touch.
                w = weight_now(self, row) if decays_while_absent(self) else self.store.w[row]
                if prunable(self, row, w):
                    self.store.remove_row(row)
                row -= 1
            self.store.shrink_to_fit()
        self.last_compact_t = self.t

    def _compact_if_due(self):
        # FOBOS weights that decayed to zero while their feature was absent
        # leave the store here; amortised O(1) per example.
        if decays_while_absent(self) and self.t - self.last_compact_t >= max(self.store.n, 4096):
            self.compact()
        elif self.store.n * 4 < self.store.cap:
            self.store.shrink()

    # ---------------------------------------------------------------- state

    def get_clocks(self):
        return {"t": self.t, "scale": self.scale, "intercept": self.intercept,
                "clock": self.clock, "clock_scale": self.clock_scale,
                "last_compact_t": self.last_compact_t}

    def set_clocks(self, clocks):
        self.t = clocks["t"]
        self.scale = clocks["scale"]
        self.intercept = clocks["intercept"]
        self.clock = clocks["clock"]
        self.clock_scale = clocks["clock_scale"]
        self.last_compact_t = clocks["last_compact_t"]


# ---------------------------------------------------------------- helpers

cdef inline double weight_now(SGDKernel k, Py_ssize_t row) noexcept nogil:
    """Stored weight of ``row`` caught up to now, in units of v (w = c v)."""
    if k.rule == RULE_FOBOS:
        return fobos_weight(k, row)
    if k.rule == RULE_SUBGRADIENT:
        return subgradient_weight(k, row)
    if k.rule == RULE_TRUNCATED:
        return truncated_weight(k, row)
    if k.rule == RULE_ADAGRAD_FOBOS:
        return adagrad_fobos_weight(k, row)
    if k.rule == RULE_FTRL:
        return ftrl_weight(k, row)
    if k.rule == RULE_SPRED:
        return spred_weight(k, row)
    return k.store.w[row]


cdef inline bint decays_while_absent(SGDKernel k) noexcept nogil:
    """Rules whose absent weights reach (or read as) an exact 0, which a
    periodic compaction removes from the store."""
    return (k.rule == RULE_FOBOS or k.rule == RULE_TRUNCATED or
            k.rule == RULE_ADAGRAD_FOBOS or k.rule == RULE_SPRED)


cdef inline bint prunable(SGDKernel k, Py_ssize_t row, double w) noexcept nogil:
    """A zero weight whose state equals that of an absent feature."""
    if w != 0.0:
        return False
    if k.rule == RULE_CUMULATIVE and k.origin == ORIGIN_START:
        # Paper semantics: a zeroed weight keeps owing u + q_i; only
        # q_i == 0 is indistinguishable from a feature never seen.
        return k.store.aux[0][row] == 0.0
    if k.rule == RULE_FTRL:
        # A zero weight still has its n_i: only (z, n) = (0, 0) is absent.
        return k.store.w[row] == 0.0 and k.store.aux[0][row] == 0.0
    return True


cdef inline void init_new_row(SGDKernel k, Py_ssize_t row) noexcept nogil:
    if k.rule == RULE_SUBGRADIENT or k.rule == RULE_FOBOS or k.rule == RULE_TRUNCATED:
        k.store.aux[0][row] = NAN   # caught up: the step sets its clock
    elif k.rule == RULE_SPRED:
        k.store.w[row] = k.spred_init / k.clock_scale   # (a, b) = (init, 0)
    elif k.rule == RULE_CUMULATIVE and k.origin == ORIGIN_FIRST_SEEN:
        k.store.aux[1][row] = k.clock   # penalty origin: u before this step


cdef inline Py_ssize_t row_for_update(SGDKernel k, uint64_t key, double x,
                                      Py_ssize_t* rows, Py_ssize_t j) noexcept nogil:
    """Row of feature j for a gradient step, inserting it if it is new.

    A new feature with value 0 gets no weight and is not inserted (that is
    exact: its state would be that of an absent feature)."""
    cdef Py_ssize_t row = rows[j]
    if row < 0 and x != 0.0:
        row = store_find(k.store, key)       # the key may repeat within the example
        if row < 0:
            row = k.store.insert_new(key)
            init_new_row(k, row)
        rows[j] = row
    return row


cdef void decay_scale(SGDKernel k, double factor) noexcept nogil:
    """L2 weight decay on the global scale; rescale v when c gets tiny."""
    cdef Py_ssize_t row, n = k.store.n
    cdef double c
    cdef double* last
    cdef double* v = k.store.w
    k.scale *= factor if factor > 0.0 else 0.0
    if k.scale < SCALE_RESET:
        c = k.scale
        for row in range(n):
            v[row] *= c
        if k.rule == RULE_SUBGRADIENT:
            # The subgradient clock counts in units of v: rescale it too.
            last = k.store.aux[0]
            for row in range(n):
                last[row] *= c
            k.clock *= c
        k.scale = 1.0


cdef void rebase_clocks(SGDKernel k) noexcept nogil:
    """Move the origin of the running sums back to 0 (DESIGN.md section 4).

    Differences of large doubles lose digits; every stored clock moves with
    the global one, so each feature's owed penalty keeps the precision of
    its own age rather than that of the whole stream."""
    cdef Py_ssize_t row, n = k.store.n
    cdef double* col
    cdef double* v = k.store.w
    cdef double a, b
    if k.rule == RULE_CUMULATIVE and k.origin == ORIGIN_FIRST_SEEN:
        col = k.store.aux[1]
        for row in range(n):
            col[row] -= k.clock
        k.clock = 0.0
    elif k.rule == RULE_SUBGRADIENT or k.rule == RULE_TRUNCATED:
        col = k.store.aux[0]
        for row in range(n):
            col[row] -= k.clock
        k.clock = 0.0
    elif k.rule == RULE_FOBOS:
        # (v, B_i, B, A) -> (v / A, (B_i - B) / A, 0, 1) leaves every
        # weight sign(v) max(0, |v| - l1 (B - B_i)) / A unchanged.
        col = k.store.aux[0]
        a = k.clock_scale
        b = k.clock
        for row in range(n):
            v[row] /= a
            col[row] = (col[row] - b) / a
        k.clock = 0.0
        k.clock_scale = 1.0


cdef inline bint needs_rebase(SGDKernel k) noexcept nogil:
    if k.rule == RULE_CUMULATIVE:
        return k.origin == ORIGIN_FIRST_SEEN and k.clock > k.rebase_at
    if k.rule == RULE_SUBGRADIENT or k.rule == RULE_TRUNCATED:
        return k.clock > k.rebase_at
    if k.rule == RULE_FOBOS:
        return k.clock > k.rebase_at or k.clock_scale > k.rebase_at
    return False


# ------------------------------------------------------- repeated keys

cdef inline Py_ssize_t group_table_size(Py_ssize_t max_nnz) noexcept nogil:
    cdef Py_ssize_t size = 16
    while size < 2 * max_nnz:
        size *= 2
    return size


cdef void group_rows(const Py_ssize_t* rows, Py_ssize_t nnz, Py_ssize_t* first,
                     double* gsum, Py_ssize_t* table, const floating* x,
                     double gs) noexcept nogil:
    """For the rules that take one gradient per coordinate: first[j] is the
    index of the first occurrence of rows[j] in this example (-1 if the
    feature has no row), and gsum[first] = gs * (sum of its values)."""
    cdef Py_ssize_t size = group_table_size(nnz)
    cdef Py_ssize_t mask = size - 1
    cdef Py_ssize_t j, i, row
    for i in range(size):
        table[i] = -1
    for j in range(nnz):
        row = rows[j]
        if row < 0:
            first[j] = -1
            continue
        i = <Py_ssize_t>(fmix64(<uint64_t>row) & <uint64_t>mask)
        while table[i] >= 0 and rows[table[i]] != row:
            i = (i + 1) & mask
        if table[i] < 0:
            table[i] = j
            first[j] = j
            gsum[j] = gs * x[j]
        else:
            first[j] = table[i]
            gsum[table[i]] += gs * x[j]


# ------------------------------------------------------------ prefetching

cdef extern from *:
    void __builtin_prefetch(const void* addr) nogil


cdef inline void prefetch_slots(WeightStore s, const uint64_t* keys, Py_ssize_t nnz) noexcept nogil:
    cdef Py_ssize_t j, mask = s.table_size - 1
    for j in range(nnz):
        __builtin_prefetch(&s.table[<Py_ssize_t>(fmix64(keys[j]) & <uint64_t>mask)])


cdef inline void prefetch_rows(WeightStore s, const uint64_t* keys, Py_ssize_t nnz) noexcept nogil:
    cdef Py_ssize_t j, a, mask = s.table_size - 1
    cdef uint32_t row
    for j in range(nnz):
        row = s.table[<Py_ssize_t>(fmix64(keys[j]) & <uint64_t>mask)]
        if row < <uint32_t>s.n:          # a hint only: the row may move before it is used
            __builtin_prefetch(&s.keys[row])
            __builtin_prefetch(&s.w[row])
            for a in range(s.n_aux):
                __builtin_prefetch(&s.aux[a][row])


# ------------------------------------------------------------ batch loops

cdef inline double margin_stored(SGDKernel k, const uint64_t* keys, const floating* x,
                                 Py_ssize_t nnz, Py_ssize_t* rows, double* wnow) noexcept nogil:
    """sum_i v_i x_i where the stored value is the weight (times the scale)."""
    cdef Py_ssize_t j, row
    cdef double acc = 0.0
    cdef double* v = k.store.w
    for j in range(nnz):
        row = store_find(k.store, keys[j])
        rows[j] = row
        if row >= 0:
            wnow[j] = v[row]
            acc += v[row] * x[j]
    return acc


cdef inline double margin_caught_up(SGDKernel k, const uint64_t* keys, const floating* x,
                                    Py_ssize_t nnz, Py_ssize_t* rows, double* wnow) noexcept nogil:
    """sum_i w_i x_i with every weight caught up to now; the weights are
    kept in ``wnow`` for the step (FOBOS and others materialise them)."""
    cdef Py_ssize_t j, row
    cdef double acc = 0.0
    for j in range(nnz):
        row = store_find(k.store, keys[j])
        rows[j] = row
        if row >= 0:
            wnow[j] = weight_now(k, row)
            acc += wnow[j] * x[j]
    return acc


cdef inline double weight_after_step(SGDKernel k, Py_ssize_t row) noexcept nogil:
    """A present feature's weight right after its step: the stored value
    (its clock is now), but for spred's threshold."""
    if k.rule == RULE_SPRED:
        return spred_weight(k, row)
    return k.store.w[row]

cdef inline bint readable(int fd) noexcept nogil:
    """Whether ``fd`` polls readable right now (a syscall, no waiting)."""
    cdef pollfd p
    p.fd = fd
    p.events = POLLIN
    p.revents = 0
    return poll(&p, 1, 0) > 0 and (p.revents & POLLIN) != 0


cdef int learn_rows(SGDKernel k, const int64_t[::1] indptr,
                    const uint64_t[::1] keys, const floating[::1] values,
                    const double[::1] labels, const double[::1] s,
                    Py_ssize_t max_nnz, double* out,
                    Py_ssize_t* failed_at, int wake_fd, int64_t wake_every) noexcept nogil:
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, row, start, n_cand
    cdef Py_ssize_t* rows = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    cdef signed char* sgn = <signed char*>malloc(max_nnz + 1)
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef double* wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    cdef Py_ssize_t* first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    cdef double* gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    cdef Py_ssize_t table_size = group_table_size(max_nnz)
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(table_size * sizeof(Py_ssize_t))
    cdef const uint64_t* kp
    cdef const floating* xp
    cdef double y, weight, p, acc, g, gs, eta, update, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef int status = OK
    if rows == NULL or sgn == NULL or cand == NULL or wnow == NULL or first == NULL \
            or gsum == NULL or table == NULL:
        free(rows); free(sgn); free(cand); free(wnow); free(first); free(gsum); free(table)
        failed_at[0] = 0
        return E_NOMEM
    for i in range(n_rows):
        start = indptr[i]
        nnz = indptr[i + 1] - start
        kp = &keys[start] if nnz > 0 else NULL
        xp = &values[start] if nnz > 0 else NULL
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch (DESIGN.md section 5): the index-table slots of example
        # i + 2, and the rows that the table gives for example i + 1, so
        # that their cache misses overlap this example's work.
        if i + 2 < n_rows:
            prefetch_slots(k.store, &keys[indptr[i + 2]], indptr[i + 3] - indptr[i + 2])
        if i + 1 < n_rows:
            prefetch_rows(k.store, &keys[indptr[i + 1]], indptr[i + 2] - indptr[i + 1])
        y = labels[i]
        if k.loss != LOSS_SQUARED and y == 0.0:
            y = -1.0
        weight = s[i] if s is not None else 1.0

        # 1-2. Find every present feature once; the margin.  The rules whose
        # stored value is the weight get a loop without the rule dispatch.
        max_x = 0.0
        for j in range(nnz):
            if fabs(xp[j]) > max_x:
                max_x = fabs(xp[j])
        if k.rule == RULE_PLAIN or k.rule == RULE_CUMULATIVE:
            acc = margin_stored(k, kp, xp, nnz, rows, wnow)
        else:
            acc = margin_caught_up(k, kp, xp, nnz, rows, wnow)
        p = acc * k.scale + k.intercept
        if not isfinite(p):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, p)
        eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                        k.decay_steps, k.t + 1)
        update = -eta * g * weight
        gs = g * weight
        if not isfinite(update) or not isfinite(update / k.scale * max_x) \
                or not isfinite(gs * max_x):
            status = E_UPDATE
            break
        loss_sum += weight * loss_value(k.loss, y, p)
        weight_sum += weight
        if k.loss != LOSS_SQUARED and (p > 0) == (y > 0):
            n_correct += 1

        # 4. The rule's step.
        if k.rule == RULE_CUMULATIVE:
            cumulative_l1_step(k, kp, xp, nnz, rows, update, eta)
        elif k.rule == RULE_FOBOS:
            fobos_step(k, kp, xp, nnz, rows, wnow, update, eta)
        elif k.rule == RULE_SUBGRADIENT:
            subgradient_step(k, kp, xp, nnz, rows, wnow, sgn, update, eta)
        elif k.rule == RULE_TRUNCATED:
            truncated_step(k, kp, xp, nnz, rows, wnow, update, eta)
        elif k.rule == RULE_ADAGRAD_FOBOS:
            adagrad_fobos_step(k, kp, xp, nnz, rows, wnow, gs, first, gsum, table)
        elif k.rule == RULE_FTRL:
            ftrl_step(k, kp, xp, nnz, rows, wnow, gs, first, gsum, table)
        elif k.rule == RULE_SPRED:
            spred_step(k, kp, xp, nnz, rows, gs, eta, first, gsum, table)
        else:
            plain_step(k, kp, xp, nnz, rows, update, eta)
        if k.fit_intercept:
            k.intercept += update
        k.t += 1
        if needs_rebase(k):
            rebase_clocks(k)

        # 5. Pruning.  Rows move when one is removed, so first collect the
        # keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            row = rows[j]
            if row >= 0 and prunable(k, row, weight_after_step(k, row)):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            row = store_find(k.store, cand[j])
            if row >= 0 and prunable(k, row, weight_after_step(k, row)):
                k.store.remove_row(row)

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if wake_fd >= 0:
            since_check += nnz
            if since_check >= wake_every:
                since_check = 0
                if readable(wake_fd):
                    n_done = i + 1
                    break
    free(rows); free(sgn); free(cand); free(wnow); free(first); free(gsum); free(table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void margins_rows(SGDKernel k, const int64_t[::1] indptr,
                       const uint64_t[::1] keys, const floating[::1] values,
                       double[::1] out, bint probability) noexcept nogil:
    cdef Py_ssize_t i, j, row
    cdef double acc, e
    for i in range(indptr.shape[0] - 1):
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            row = store_find(k.store, keys[j])
            if row >= 0:
                acc += weight_now(k, row) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


include "rules/plain.pxi"
include "rules/subgradient.pxi"
include "rules/cumulative_l1.pxi"
include "rules/fobos.pxi"
include "rules/truncated.pxi"
include "rules/adagrad_fobos.pxi"
include "rules/ftrl.pxi"
include "rules/spred.pxi"
