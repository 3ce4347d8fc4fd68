# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# GENERATED from sgd.pyx.tp by setup.py: edit the template, not this file.
"""The learning kernel: lazy, per-feature SGD over a CSR batch.

The loop knows the schedule and the penalty; the store knows storage; each
rule (rules/*.pxi) knows its own state and arithmetic (scikit-learn's
_sgd_fast / WeightVector split, docs/algorithms.md).  For every example:

1. find the slot of every present feature in the store, once (the slots of
   the example three ahead are prefetched meanwhile, and the run an absent
   feature's insertion will shift);
2. the margin p = b + c * sum_i v_i x_i from the weights caught up to now;
3. the progressive loss and g = dl/dp (clipped like scikit-learn);
4. the features the step gives a weight get their slots; the rule's step
   applies the penalty;
5. pruning: a weight that is exactly zero, and whose state is that of an
   absent feature, leaves the store.

With a memory budget (``max_features``) or expiry (``expire_after_examples``)
every slot also keeps the example count of its feature's last update, after
the rule's state; step 4 first makes room within the budget, evicting the
least recently updated features, and a feature found expired is dropped
before it is read (docs/algorithms.md, "The memory budget").

Every per-example maintenance step (resetting the L2 scale, rebasing the
clocks) is triggered by the stream alone, never by batch boundaries, so any
cut of a stream into batches gives bit-identical weights.

``learn_minibatch`` runs the mini-batch loops at the end of this file
instead (docs/algorithms.md, "Mini-batches").

The whole batch runs without the GIL.  A batch is validated in full before
its first example touches a weight; a numeric failure in the middle (a
margin that overflows) stops before that example, leaving the model as it
was after the previous one.
"""
from libc.math cimport NAN, copysign, exp, expm1, fabs, isfinite, log, log1p, pow, sqrt
from libc.stdint cimport int64_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    enum: POLLIN

import numpy as np

from onlinel1.errors import NumericError, OptionError, StoreFullError

from onlinel1._kernels.store cimport (STORE_MAX_AUX, WeightStore, fmix64, store_find,
                                      store_find_learning,
                                      store_journal_slots, store_prefetch)

ctypedef fused floating:
    float
    double

include "losses.pxi"
include "schedules.pxi"

# Status codes of a batch.
cdef enum:
    OK = 0
    E_NOMEM = 1
    E_MARGIN = 2
    E_UPDATE = 3
    E_BUDGET = 4      # an example with more distinct features than max_features

LOSSES = {"log": LOSS_LOG, "squared": LOSS_SQUARED, "hinge": LOSS_HINGE,
          "poisson": LOSS_POISSON, "quantile": LOSS_QUANTILE}
SCHEDULES = {"constant": SCHEDULE_CONSTANT, "invscaling": SCHEDULE_INVSCALING,
             "exponential": SCHEDULE_EXPONENTIAL}
ORIGINS = ("start", "first-seen")


class RuleSpec:
    """What the Python side knows of one update rule; its file under
    ``onlinel1/_kernels/rules/`` defines it beside the rule's kernel.

    ``kernels`` and ``state`` map each penalty origin to the kernel that
    runs it and to the names of its per-feature state columns (as in the
    rule's paper); ``weight_column`` names what the slot's first value
    holds; ``options`` are the LearnerOptions fields the rule reads beyond
    the common ones; ``validate(options)`` raises ``ValueError`` for a
    setting the rule cannot run; ``from_weights(weights, options)`` gives
    the stored values and state columns of a model that reads back as
    ``weights`` (a warm start from another rule's weights).

    ``adaptive`` maps each penalty origin the rule runs with per-coordinate
    adaptive steps (``options.adaptive``, docs/algorithms.md, "Adaptive
    steps") to ``(kernel, state columns)``; a rule file adds its adaptive
    layout with ``add_adaptive``.  ``kernel_for(options)`` and
    ``state_for(options)`` pick the kernel and the columns of a learner."""

    def __init__(self, name, kernels, state, title, options=(), validate=None,
                 decays_while_absent=False, weight_column="w", from_weights=None):
        self.name, self.kernels, self.state, self.title = name, kernels, state, title
        self.options, self.decays_while_absent = tuple(options), decays_while_absent
        self.weight_column = weight_column
        self._validate, self._from_weights = validate, from_weights
        self.adaptive = {}

    def __repr__(self):
        return f"RuleSpec({self.name!r})"

    def add_adaptive(self, layouts):
        """Register ``{origin: (kernel, state columns)}`` for adaptive=True."""
        self.adaptive.update(layouts)

    def kernel_for(self, options):
        if getattr(options, "adaptive", False):
            return self.adaptive[options.origin][0]
        return self.kernels[options.origin]

    def state_for(self, options):
        if getattr(options, "adaptive", False):
            return self.adaptive[options.origin][1]
        return self.state[options.origin]

    def validate(self, options):
        if getattr(options, "adaptive", False):
            # The adaptive layout replaces the rule's step arithmetic (its
            # L2 is the implicit 1 / (1 + eta_i l2): no eta0 * l2 limit).
            _check_adaptive(self, options)
            return
        if self._validate is not None:
            self._validate(options)

    def from_weights(self, weights, options):
        if self._from_weights is not None and not getattr(options, "adaptive", False):
            return self._from_weights(weights, options)
        return weights, [np.zeros(weights.size) for _ in self.state_for(options)]


def _conflict(option, detail):
    """A rule's refusal of a setting (``OptionError``, reason "conflict"):
    the message is the option's name, then ``detail``."""
    return OptionError(f"{option} {detail}", option=option, reason="conflict", detail=detail)


def _check_adaptive(spec, o):
    # docs/algorithms.md, "Adaptive steps".
    if not spec.adaptive:
        takes = ", ".join(repr(name) for name, other in RULES.items() if other.adaptive)
        raise _conflict("adaptive", f"is not defined with update={o.update!r}: it takes "
                                    f"update={takes} (adagrad-fobos and ftrl adapt their steps "
                                    f"already)")
    if o.origin not in spec.adaptive:
        origins = ", ".join(repr(origin) for origin in spec.adaptive)
        raise _conflict("origin", f"must be {origins} with update={o.update!r} and adaptive "
                                  f"(with origin 'start' a new feature would owe l1 * "
                                  f"eta0 / sqrt(adagrad_delta) for every example before it), "
                                  f"got origin={o.origin!r}")
    n_state = len(spec.adaptive[o.origin][1])
    budgeted = o.max_features > 0 or o.expire_after_examples > 0
    if budgeted and n_state + 1 > STORE_MAX_AUX:
        budget = "max_features" if o.max_features > 0 else "expire_after_examples"
        raise _conflict("adaptive", f"cannot run with {budget} and update={o.update!r}: its slot "
                                    f"has {n_state} state words and the budget's clock would be "
                                    f"one more than the store's {STORE_MAX_AUX}")


def _check_l2_decay(o):
    # The decay factor 1 - eta*l2 of the global scale would reach zero or
    # below and wipe every weight; every schedule has eta_t <= eta0.
    if o.eta0 * o.l2 >= 1:
        raise _conflict("l2", f"* eta0 must be < 1 with update={o.update!r} (the decay "
                              f"1 - eta*l2 would reach 0), got l2={o.l2!r}, eta0={o.eta0!r}")


# What one example's step needs besides the rows (filled by the loop).
cdef struct Step:
    double update       # -eta g s: the gradient step is update * x_i
    double eta
    double gs           # g s
    double* wnow        # caught-up weight of each present feature (v units)
    signed char* sgn
    Py_ssize_t* first   # group_slots: first occurrence of each feature's slot
    double* gsum        # group_slots: its summed gradient
    Py_ssize_t* table   # group_slots: scratch hash table

# A batch's rows, as the loops read them.
cdef struct Rows:
    const int64_t* indptr
    Py_ssize_t n_rows
    const uint64_t* keys
    const double* labels
    const double* weights      # importance; NULL: all 1
    Py_ssize_t max_nnz
    int wake_fd
    int64_t wake_every
    # Mini-batch loops: per row (eta, g s, -eta g s) given by the caller
    # (a cluster shard applies what a worker computed from every shard's
    # weights; docs/scaling.md); NULL: computed here from the weights.
    const double* factors

# One mini-batch, as the mini-batch loops and the rules' <kernel>_mb_step
# read it (docs/algorithms.md, "Mini-batches"; the loops are at the end).
cdef struct MB:
    Py_ssize_t n_rows           # B of this mini-batch (the last may be short)
    const int64_t* indptr       # its rows' offsets, absolute into keys/values
    long long t0                # examples learned before it
    double* eta                 # per row: the schedule's eta of its step t0 + 1 + b
    double* gs                  # per row: g s (clipped loss gradient x importance)
    double* upd                 # per row: -eta g s
    double* coef                # per row: scratch for the rule's contribution factor
    Py_ssize_t n_keys           # distinct keys of the mini-batch, first-seen order
    uint64_t* ukeys
    void** uslots               # their slots (NULL: absent and given none)
    double* w0                  # caught-up weight at the mini-batch start (rule's units)
    double* sum                 # per key: the summed contributions (mb_accumulate)
    double* need                # per key: 1.0 if it gets a slot (non-zero value, g s != 0)
    signed char* grad           # per key: some row of it has g s != 0
    signed char* sgn            # per key: scratch (subgradient: sign of w0)
    Py_ssize_t* idx             # per entry of the mini-batch: its key's index

cdef class SGDKernel

# The per-example loop prefetches the home slots of the example this many
# ahead (benchmarks/ab_prefetch_rows.sh; results/prefetch_rows.md).
cdef enum:
    PREFETCH_ROWS = 3

# The functions of one kernel, chosen once when the learner is built.
cdef struct KernelOps:
    int (*learn_f32)(SGDKernel, Rows*, const float*, double*, Py_ssize_t*) noexcept nogil
    int (*learn_f64)(SGDKernel, Rows*, const double*, double*, Py_ssize_t*) noexcept nogil
    void (*margins_f32)(SGDKernel, const int64_t*, Py_ssize_t, const uint64_t*,
                        const float*, double*, bint) noexcept nogil
    void (*margins_f64)(SGDKernel, const int64_t*, Py_ssize_t, const uint64_t*,
                        const double*, double*, bint) noexcept nogil
    int (*mb_learn_f32)(SGDKernel, Rows*, const float*, Py_ssize_t, double*,
                        Py_ssize_t*, Py_ssize_t*) noexcept nogil
    int (*mb_learn_f64)(SGDKernel, Rows*, const double*, Py_ssize_t, double*,
                        Py_ssize_t*, Py_ssize_t*) noexcept nogil
    double (*weight)(SGDKernel, char*) noexcept nogil
    Py_ssize_t (*count_nonzero)(SGDKernel) noexcept nogil
    void (*compact)(SGDKernel) noexcept nogil
    bint decays_while_absent


cdef class SGDKernel:
    """State and loops of one learner.  Use ``onlinel1.Learner``."""
    cdef readonly WeightStore store
    cdef readonly str kernel
    cdef KernelOps ops
    cdef int loss, schedule
    cdef double quantile_tau
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
    # The memory budget and expiry (docs/algorithms.md, "The memory
    # budget"): 0 is off.  clocked: the slots keep the clock of the last
    # update.  evicted, expired: features dropped so far.  evict_floor: a
    # lower bound of the clocks of the stored features (speed only).
    cdef readonly long long max_features, expire_after
    cdef readonly bint clocked
    cdef public long long evicted, expired
    cdef double evict_floor
    # The clocks and counters at ``begin`` (an open batch), for ``rollback``.
    cdef tuple saved

    def __init__(self, options):
        """A kernel for ``options`` (an ``onlinel1.options.LearnerOptions``)."""
        spec = RULES[options.update]
        self.kernel = spec.kernel_for(options)
        self.loss = LOSSES[options.loss]
        self.quantile_tau = getattr(options, "quantile_tau", 0.5)
        self.schedule = SCHEDULES[options.schedule]
        self.l1, self.l2, self.eta0 = options.l1, options.l2, options.eta0
        self.power_t, self.decay_rate = options.power_t, options.decay_rate
        self.decay_steps = options.decay_steps
        self.fit_intercept = options.fit_intercept
        self.rebase_at = options.rebase_at
        self.truncate_every, self.truncate_theta = options.truncate_every, options.truncate_theta
        self.adagrad_delta, self.ftrl_beta = options.adagrad_delta, options.ftrl_beta
        self.spred_init, self.spred_threshold = options.spred_init, options.spred_threshold
        self.max_features = options.max_features
        self.expire_after = options.expire_after_examples
        self.clocked = self.max_features > 0 or self.expire_after > 0
        self.evicted = 0
        self.expired = 0
        self.evict_floor = 0.0
        # Up to three state words, or two and the budget's clock (the
        # options refuse three with a budget).
        self.store = WeightStore(len(spec.state_for(options)), self.clocked)
        self.t = 0
        self.scale = 1.0
        self.intercept = 0.0
        self.clock = 0.0
        self.clock_scale = 1.0
        self.last_compact_t = 0
        if self.kernel == "plain":
            self.ops.learn_f32 = plain_learn_f32
            self.ops.learn_f64 = plain_learn_f64
            self.ops.margins_f32 = plain_margins_f32
            self.ops.margins_f64 = plain_margins_f64
            self.ops.mb_learn_f32 = plain_mb_learn_f32
            self.ops.mb_learn_f64 = plain_mb_learn_f64
            self.ops.weight = plain_weight_of
            self.ops.count_nonzero = plain_count_nonzero
            self.ops.compact = plain_compact
            self.ops.decays_while_absent = plain_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(plain_slot)
        elif self.kernel == "subgradient":
            self.ops.learn_f32 = subgradient_learn_f32
            self.ops.learn_f64 = subgradient_learn_f64
            self.ops.margins_f32 = subgradient_margins_f32
            self.ops.margins_f64 = subgradient_margins_f64
            self.ops.mb_learn_f32 = subgradient_mb_learn_f32
            self.ops.mb_learn_f64 = subgradient_mb_learn_f64
            self.ops.weight = subgradient_weight_of
            self.ops.count_nonzero = subgradient_count_nonzero
            self.ops.compact = subgradient_compact
            self.ops.decays_while_absent = subgradient_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(subgradient_slot)
        elif self.kernel == "cumulative_start":
            self.ops.learn_f32 = cumulative_start_learn_f32
            self.ops.learn_f64 = cumulative_start_learn_f64
            self.ops.margins_f32 = cumulative_start_margins_f32
            self.ops.margins_f64 = cumulative_start_margins_f64
            self.ops.mb_learn_f32 = cumulative_start_mb_learn_f32
            self.ops.mb_learn_f64 = cumulative_start_mb_learn_f64
            self.ops.weight = cumulative_start_weight_of
            self.ops.count_nonzero = cumulative_start_count_nonzero
            self.ops.compact = cumulative_start_compact
            self.ops.decays_while_absent = cumulative_start_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(cumulative_start_slot)
        elif self.kernel == "cumulative_first_seen":
            self.ops.learn_f32 = cumulative_first_seen_learn_f32
            self.ops.learn_f64 = cumulative_first_seen_learn_f64
            self.ops.margins_f32 = cumulative_first_seen_margins_f32
            self.ops.margins_f64 = cumulative_first_seen_margins_f64
            self.ops.mb_learn_f32 = cumulative_first_seen_mb_learn_f32
            self.ops.mb_learn_f64 = cumulative_first_seen_mb_learn_f64
            self.ops.weight = cumulative_first_seen_weight_of
            self.ops.count_nonzero = cumulative_first_seen_count_nonzero
            self.ops.compact = cumulative_first_seen_compact
            self.ops.decays_while_absent = cumulative_first_seen_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(cumulative_first_seen_slot)
        elif self.kernel == "cumulative_adaptive":
            self.ops.learn_f32 = cumulative_adaptive_learn_f32
            self.ops.learn_f64 = cumulative_adaptive_learn_f64
            self.ops.margins_f32 = cumulative_adaptive_margins_f32
            self.ops.margins_f64 = cumulative_adaptive_margins_f64
            self.ops.mb_learn_f32 = cumulative_adaptive_mb_learn_f32
            self.ops.mb_learn_f64 = cumulative_adaptive_mb_learn_f64
            self.ops.weight = cumulative_adaptive_weight_of
            self.ops.count_nonzero = cumulative_adaptive_count_nonzero
            self.ops.compact = cumulative_adaptive_compact
            self.ops.decays_while_absent = cumulative_adaptive_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(cumulative_adaptive_slot)
        elif self.kernel == "fobos":
            self.ops.learn_f32 = fobos_learn_f32
            self.ops.learn_f64 = fobos_learn_f64
            self.ops.margins_f32 = fobos_margins_f32
            self.ops.margins_f64 = fobos_margins_f64
            self.ops.mb_learn_f32 = fobos_mb_learn_f32
            self.ops.mb_learn_f64 = fobos_mb_learn_f64
            self.ops.weight = fobos_weight_of
            self.ops.count_nonzero = fobos_count_nonzero
            self.ops.compact = fobos_compact
            self.ops.decays_while_absent = fobos_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(fobos_slot)
        elif self.kernel == "truncated":
            self.ops.learn_f32 = truncated_learn_f32
            self.ops.learn_f64 = truncated_learn_f64
            self.ops.margins_f32 = truncated_margins_f32
            self.ops.margins_f64 = truncated_margins_f64
            self.ops.mb_learn_f32 = truncated_mb_learn_f32
            self.ops.mb_learn_f64 = truncated_mb_learn_f64
            self.ops.weight = truncated_weight_of
            self.ops.count_nonzero = truncated_count_nonzero
            self.ops.compact = truncated_compact
            self.ops.decays_while_absent = truncated_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(truncated_slot)
        elif self.kernel == "adagrad_fobos":
            self.ops.learn_f32 = adagrad_fobos_learn_f32
            self.ops.learn_f64 = adagrad_fobos_learn_f64
            self.ops.margins_f32 = adagrad_fobos_margins_f32
            self.ops.margins_f64 = adagrad_fobos_margins_f64
            self.ops.mb_learn_f32 = adagrad_fobos_mb_learn_f32
            self.ops.mb_learn_f64 = adagrad_fobos_mb_learn_f64
            self.ops.weight = adagrad_fobos_weight_of
            self.ops.count_nonzero = adagrad_fobos_count_nonzero
            self.ops.compact = adagrad_fobos_compact
            self.ops.decays_while_absent = adagrad_fobos_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(adagrad_fobos_slot)
        elif self.kernel == "ftrl":
            self.ops.learn_f32 = ftrl_learn_f32
            self.ops.learn_f64 = ftrl_learn_f64
            self.ops.margins_f32 = ftrl_margins_f32
            self.ops.margins_f64 = ftrl_margins_f64
            self.ops.mb_learn_f32 = ftrl_mb_learn_f32
            self.ops.mb_learn_f64 = ftrl_mb_learn_f64
            self.ops.weight = ftrl_weight_of
            self.ops.count_nonzero = ftrl_count_nonzero
            self.ops.compact = ftrl_compact
            self.ops.decays_while_absent = ftrl_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(ftrl_slot)
        elif self.kernel == "spred":
            self.ops.learn_f32 = spred_learn_f32
            self.ops.learn_f64 = spred_learn_f64
            self.ops.margins_f32 = spred_margins_f32
            self.ops.margins_f64 = spred_margins_f64
            self.ops.mb_learn_f32 = spred_mb_learn_f32
            self.ops.mb_learn_f64 = spred_mb_learn_f64
            self.ops.weight = spred_weight_of
            self.ops.count_nonzero = spred_count_nonzero
            self.ops.compact = spred_compact
            self.ops.decays_while_absent = spred_DECAYS_WHILE_ABSENT
            slot_bytes = sizeof(spred_slot)
        else:
            raise ValueError(f"no kernel {self.kernel!r}")
        # The clock sits right after the rule's slot (<kernel>_clock).
        assert self.store.slot_size == slot_bytes + 8 * self.clocked

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
        stopped early by ``wake_fd``).  Raises ``NumericError`` if an
        example overflows and ``StoreFullError`` if the store cannot grow,
        with ``row`` (the failing row of the batch), ``reason`` and
        ``learned`` (counted from ``start``); the examples before the
        failing one stay learned.
        """
        cdef const double[::1] s = weights if weights is not None else None
        cdef const float[::1] xf
        cdef const double[::1] xd
        cdef double out[3]
        cdef Py_ssize_t failed_at = -1
        cdef int status
        cdef Py_ssize_t i
        cdef Rows r
        cdef double dummy = 0.0
        cdef uint64_t no_key = 0
        cdef float no_f32 = 0.0
        if stop < 0:
            stop = indptr.shape[0] - 1
        if wake_every < 1:
            raise ValueError(f"wake_every must be at least 1, got {wake_every}")
        if not 0 <= start <= stop <= indptr.shape[0] - 1:
            raise ValueError(f"rows {start}:{stop} are not within the batch's "
                             f"{indptr.shape[0] - 1} rows")
        # indptr keeps its absolute offsets into keys and values.
        r.indptr = &indptr[start]
        r.n_rows = stop - start
        r.keys = &keys[0] if keys.shape[0] > 0 else &no_key
        r.labels = &labels[start] if stop > start else &dummy
        r.weights = &s[start] if s is not None and stop > start else NULL
        r.max_nnz = 0
        for i in range(r.n_rows):
            if r.indptr[i + 1] - r.indptr[i] > r.max_nnz:
                r.max_nnz = r.indptr[i + 1] - r.indptr[i]
        r.wake_fd = wake_fd
        r.wake_every = wake_every
        out[0] = out[1] = out[2] = 0.0
        if values.dtype == np.float32:
            xf = values
            with nogil:
                status = self.ops.learn_f32(self, &r, &xf[0] if xf.shape[0] > 0 else &no_f32,
                                            out, &failed_at)
        else:
            xd = values
            with nogil:
                status = self.ops.learn_f64(self, &r, &xd[0] if xd.shape[0] > 0 else &dummy,
                                            out, &failed_at)
        self._compact_if_due()
        progress = (out[0], out[1], <long long>out[2])
        if status == E_NOMEM:
            raise StoreFullError(None, failed_at, progress, row=start + failed_at,
                                 reason="store_full")
        if status == E_BUDGET:
            raise StoreFullError(
                f"example {start + failed_at} of the batch has more distinct features than "
                f"max_features={self.max_features}; it and the rest of the batch were not "
                f"learned, the {failed_at} before it were", failed_at, progress,
                row=start + failed_at, reason="max_features")
        if status == E_MARGIN or status == E_UPDATE:
            raise NumericError(None, failed_at, progress, row=start + failed_at,
                               reason="margin" if status == E_MARGIN else "update")
        return progress + (failed_at,)

    # ------------------------------------------------------ atomic batches

    def begin(self):
        """Open a batch: every change from here on (weights, state, keys
        added and removed, clocks) can be undone by ``rollback`` until
        ``commit`` (docs/algorithms.md, "Atomic batches")."""
        self.store.begin()
        self.saved = (self.t, self.scale, self.intercept, self.clock, self.clock_scale,
                      self.last_compact_t, self.evicted, self.expired, self.evict_floor)

    @property
    def in_batch(self):
        """Whether a batch is open (``begin`` without commit or rollback)."""
        return self.store.in_batch

    def commit(self):
        """Keep the open batch's changes."""
        self.store.commit()
        self.saved = None

    def rollback(self):
        """Undo the open batch: the model is bit for bit what it was at
        ``begin``."""
        saved, self.saved = self.saved, None
        self.store.rollback()
        (self.t, self.scale, self.intercept, self.clock, self.clock_scale,
         self.last_compact_t, self.evicted, self.expired, self.evict_floor) = saved

    def learn_minibatch(self, const int64_t[::1] indptr, const uint64_t[::1] keys,
                        values, const double[::1] labels, weights, Py_ssize_t minibatch,
                        Py_ssize_t start=0, Py_ssize_t stop=-1, factors=None):
        """Learn rows ``start:stop`` of a validated CSR batch as consecutive
        mini-batches of ``minibatch`` rows, the last one short if the rows
        do not divide evenly (docs/algorithms.md, "Mini-batches"; the
        caller, ``Learner``, keeps a partial mini-batch's rows until it is
        whole).  Returns what ``learn`` does.  A mini-batch with an
        example that overflows is not learned at all: the error's
        ``learned`` counts the rows of the mini-batches before it, its
        ``row`` is the failing example.

        ``factors``, an (n_rows, 3) array of every row's (eta, g s,
        -eta g s), replaces the rows' margins: a cluster shard applies what
        ``minibatch_factors`` computed from every shard's weights
        (docs/scaling.md); the labels are then not read and the sums
        returned are 0."""
        cdef const double[::1] s = weights if weights is not None else None
        cdef const double[:, ::1] f = factors if factors is not None else None
        cdef const float[::1] xf
        cdef const double[::1] xd
        cdef double out[3]
        cdef Py_ssize_t failed_at = -1, learned = 0
        cdef int status
        cdef Py_ssize_t i, b0, nnz
        cdef Rows r
        cdef double dummy = 0.0
        cdef uint64_t no_key = 0
        cdef float no_f32 = 0.0
        if stop < 0:
            stop = indptr.shape[0] - 1
        if minibatch < 1:
            raise ValueError(f"minibatch must be at least 1, got {minibatch}")
        if self.clocked:
            raise ValueError("the mini-batch loops do not run a memory budget or expiry")
        if not 0 <= start <= stop <= indptr.shape[0] - 1:
            raise ValueError(f"rows {start}:{stop} are not within the batch's "
                             f"{indptr.shape[0] - 1} rows")
        r.indptr = &indptr[start]
        r.n_rows = stop - start
        r.keys = &keys[0] if keys.shape[0] > 0 else &no_key
        r.labels = &labels[start] if stop > start else &dummy
        r.weights = &s[start] if s is not None and stop > start else NULL
        # max_nnz: the most entries of one mini-batch.
        r.max_nnz = 0
        b0 = 0
        while b0 < r.n_rows:
            i = b0 + minibatch if b0 + minibatch < r.n_rows else r.n_rows
            nnz = r.indptr[i] - r.indptr[b0]
            if nnz > r.max_nnz:
                r.max_nnz = nnz
            b0 = i
        r.wake_fd = -1
        r.wake_every = 1
        r.factors = NULL
        if f is not None:
            if f.shape[0] != indptr.shape[0] - 1 or f.shape[1] != 3:
                raise ValueError(f"factors: ({f.shape[0]}, {f.shape[1]}) for "
                                 f"{indptr.shape[0] - 1} rows (one (eta, g s, -eta g s) a row)")
            if stop > start:
                r.factors = &f[start, 0]
        out[0] = out[1] = out[2] = 0.0
        if values.dtype == np.float32:
            xf = values
            with nogil:
                status = self.ops.mb_learn_f32(self, &r, &xf[0] if xf.shape[0] > 0 else &no_f32,
                                               minibatch, out, &failed_at, &learned)
        else:
            xd = values
            with nogil:
                status = self.ops.mb_learn_f64(self, &r, &xd[0] if xd.shape[0] > 0 else &dummy,
                                               minibatch, out, &failed_at, &learned)
        self._compact_if_due()
        progress = (out[0], out[1], <long long>out[2])
        if status == E_NOMEM:
            raise StoreFullError(None, learned, progress, row=start + failed_at,
                                 reason="store_full")
        if status == E_MARGIN or status == E_UPDATE:
            raise NumericError(None, learned, progress, row=start + failed_at,
                               reason="margin" if status == E_MARGIN else "update")
        return progress + (learned,)

    def margins(self, const int64_t[::1] indptr, const uint64_t[::1] keys, values,
                bint probability=False):
        """``b + sum_i w_i x_i`` of every row, from the caught-up weights;
        with ``probability``, its logistic link 1 / (1 + exp(-margin))."""
        cdef Py_ssize_t n = indptr.shape[0] - 1
        out = np.empty(n, dtype=np.float64)
        cdef double[::1] o = out
        cdef const float[::1] xf
        cdef const double[::1] xd
        cdef uint64_t no_key = 0
        cdef float no_f32 = 0.0
        cdef double no_f64 = 0.0
        cdef const uint64_t* kp = &keys[0] if keys.shape[0] > 0 else &no_key
        if n == 0:
            return out
        if values.dtype == np.float32:
            xf = values
            with nogil:
                self.ops.margins_f32(self, &indptr[0], n, kp,
                                     &xf[0] if xf.shape[0] > 0 else &no_f32, &o[0], probability)
        else:
            xd = values
            with nogil:
                self.ops.margins_f64(self, &indptr[0], n, kp,
                                     &xd[0] if xd.shape[0] > 0 else &no_f64, &o[0], probability)
        return out

    def lookup(self, const uint64_t[::1] keys, bint raw=False):
        """Caught-up weight of each key (0 where absent); ``raw``: in the
        rule's units, before the L2 scale (what a mini-batch's margins sum,
        ``minibatch_factors``)."""
        out = np.zeros(keys.shape[0], dtype=np.float64)
        cdef double[::1] o = out
        cdef Py_ssize_t j
        cdef char* p
        cdef double scale = 1.0 if raw else self.scale
        with nogil:
            for j in range(keys.shape[0]):
                p = store_find(self.store, keys[j])
                if p != NULL:
                    o[j] = self.ops.weight(self, p) * scale
        return out

    def minibatch_factors(self, const int64_t[::1] indptr, const double[::1] w0, values,
                          const double[::1] labels, weights):
        """Step 2 of one mini-batch of all the given rows, from ``w0``, the
        raw start weight (``lookup(raw=True)``) of every entry: the rows'
        (eta, g s, -eta g s) as an (n_rows, 3) array, and the progressive
        (loss_sum, weight_sum, correct), at this kernel's clocks (t, scale,
        intercept: a cluster worker sets them from the shards').  The
        mini-batch loop runs the same code (mb_row_factors), so
        ``learn_minibatch(..., factors=)`` with these on the shards is that
        loop bit for bit.  An example that overflows raises
        ``NumericError`` with its row."""
        cdef Py_ssize_t n = indptr.shape[0] - 1, nnz, i
        cdef const double[::1] s = weights if weights is not None else None
        cdef const float[::1] xf
        cdef const double[::1] xd
        cdef MB mb
        cdef Rows r
        cdef double stats[3]
        cdef Py_ssize_t failed_at = 0
        cdef int status
        cdef float no_f32 = 0.0
        cdef double no_f64 = 0.0
        if n < 0 or indptr[0] != 0 or labels.shape[0] != n \
                or (s is not None and s.shape[0] != n):
            raise ValueError("minibatch_factors: indptr (from 0), labels and weights disagree")
        nnz = indptr[n] - indptr[0]
        if w0.shape[0] != nnz or values.shape[0] != nnz:
            raise ValueError(f"minibatch_factors: {w0.shape[0]} weights and "
                             f"{values.shape[0]} values for {nnz} entries")
        factors = np.zeros((n, 3), dtype=np.float64)
        cdef double[:, ::1] fv = factors
        idx = np.arange(nnz, dtype=np.intp)
        cdef Py_ssize_t[::1] iv = idx
        eta = np.empty(n + 1)
        gs = np.empty(n + 1)
        upd = np.empty(n + 1)
        cdef double[::1] ev = eta, gv = gs, uv = upd
        mb.n_rows = n
        mb.indptr = &indptr[0]
        mb.t0 = self.t
        mb.eta = &ev[0]
        mb.gs = &gv[0]
        mb.upd = &uv[0]
        mb.w0 = <double*>&w0[0] if nnz > 0 else &no_f64
        mb.idx = &iv[0] if nnz > 0 else NULL
        r.indptr = &indptr[0]
        r.n_rows = n
        r.labels = &labels[0] if n > 0 else &no_f64
        r.weights = &s[0] if s is not None and n > 0 else NULL
        r.factors = NULL
        if values.dtype == np.float32:
            xf = values
            with nogil:
                status = mb_row_factors(self, &mb, &r, &xf[0] if nnz > 0 else &no_f32, 0,
                                        stats, &failed_at)
        else:
            xd = values
            with nogil:
                status = mb_row_factors(self, &mb, &r, &xd[0] if nnz > 0 else &no_f64, 0,
                                        stats, &failed_at)
        if status != OK:
            raise NumericError(None, 0, (0.0, 0.0, 0), row=failed_at,
                               reason="margin" if status == E_MARGIN else "update")
        for i in range(n):
            fv[i, 0] = ev[i]
            fv[i, 1] = gv[i]
            fv[i, 2] = uv[i]
        return factors, (stats[0], stats[1], <long long>stats[2])

    def count_nonzero(self):
        """Number of stored features whose caught-up weight is not zero
        (no array is built: ``stats`` asks for it while serving)."""
        cdef Py_ssize_t count
        with nogil:
            count = self.ops.count_nonzero(self)
        return count

    def current_weights(self):
        """``(keys, weights)`` of every stored feature, caught up, in store
        order."""
        keys = np.concatenate([np.empty(0, np.uint64)] + list(self.store.column_chunks(-1)))
        w = np.empty(keys.size, dtype=np.float64)
        cdef double[::1] wv = w
        cdef Py_ssize_t cursor = 0, i = 0
        cdef char* p
        with nogil:
            p = self.store.next_live(&cursor)
            while p != NULL:
                wv[i] = self.ops.weight(self, p) * self.scale
                i += 1
                p = self.store.next_live(&cursor)
        return keys, w

    def compact(self):
        """Drop features whose caught-up weight is zero and whose state is
        that of an absent feature (exact: the model does not change)."""
        with nogil:
            self.ops.compact(self)
        self.last_compact_t = self.t

    def _compact_if_due(self):
        # Weights that decayed to zero while their feature was absent leave
        # the store here; amortised O(1) per example.  With a budget or
        # expiry the loop does it, after the example that makes it due (so
        # that the store's contents, which the budget counts, never depend
        # on where batches end).
        if not self.clocked and self.ops.decays_while_absent and \
                self.t - self.last_compact_t >= max(self.store.n, 4096):
            self.compact()
        else:
            self.store.shrink()

    # ---------------------------------------------------------------- state

    def enforce_budget(self):
        """Evict the least recently updated features down to the budget's
        low-water mark if the store holds more than ``max_features`` (after
        a warm start from another model's weights)."""
        cdef Py_ssize_t n_exp = 0, removed
        cdef Py_ssize_t target = budget_low_water(self.max_features)
        if self.max_features <= 0 or self.store.n <= self.max_features:
            return
        removed = self.store.evict_oldest(self.store.n - target, <double>(self.t + 1),
                                          expired_upto(self), &self.evict_floor, &n_exp)
        if removed < 0:
            raise MemoryError("cannot evict: out of memory")
        self.expired += n_exp
        self.evicted += removed - n_exp

    def get_clocks(self):
        clocks = {"t": self.t, "scale": self.scale, "intercept": self.intercept,
                  "clock": self.clock, "clock_scale": self.clock_scale,
                  "last_compact_t": self.last_compact_t}
        if self.clocked:
            # Only then: a model without a budget keeps version 1's header.
            clocks["evicted"] = self.evicted
            clocks["expired"] = self.expired
        return clocks

    def set_clocks(self, clocks):
        self.t = clocks["t"]
        self.scale = clocks["scale"]
        self.intercept = clocks["intercept"]
        self.clock = clocks["clock"]
        self.clock_scale = clocks["clock_scale"]
        self.last_compact_t = clocks["last_compact_t"]
        self.evicted = clocks.get("evicted", 0)
        self.expired = clocks.get("expired", 0)
        self.evict_floor = 0.0


# ------------------------------------------------------------ helpers

include "scaled.pxi"

cdef inline bint state_finite(SGDKernel k, void** slots, Py_ssize_t n) noexcept nogil:
    """Whether the intercept, the rule's clocks and the stored weight (word
    1) of each present slot are finite: x * 0 is NaN exactly for an
    infinite or NaN x, so one sum and one test (docs/algorithms.md,
    "Numerics").  A clock that overflowed (a huge step summed into it)
    would make every stored clock -inf or NaN at the next rebase."""
    cdef double acc = k.intercept * 0.0 + k.clock * 0.0 + k.clock_scale * 0.0
    cdef Py_ssize_t j
    for j in range(n):
        if slots[j] != NULL:
            acc += (<double*>slots[j])[1] * 0.0
    return acc == acc


cdef inline bint readable(int fd) noexcept nogil:
    """Whether ``fd`` polls readable right now (a syscall, no waiting)."""
    cdef pollfd p
    p.fd = fd
    p.events = POLLIN
    p.revents = 0
    return poll(&p, 1, 0) > 0 and (p.revents & POLLIN) != 0


cdef inline Py_ssize_t group_table_size(Py_ssize_t max_nnz) noexcept nogil:
    cdef Py_ssize_t size = 16
    while size < 2 * max_nnz:
        size *= 2
    return size


cdef void group_slots(void** slots, Py_ssize_t nnz, Step* st, const floating* x) noexcept nogil:
    """For the rules that take one gradient per coordinate: st.first[j] is
    the index of the first occurrence of slots[j] in this example (-1 if the
    feature has no slot), and st.gsum[first] = gs * (sum of its values)."""
    cdef Py_ssize_t size = group_table_size(nnz)
    cdef Py_ssize_t mask = size - 1
    cdef Py_ssize_t j, i
    cdef Py_ssize_t* table = st.table
    cdef void* slot
    for i in range(size):
        table[i] = -1
    for j in range(nnz):
        slot = slots[j]
        if slot == NULL:
            st.first[j] = -1
            continue
        i = <Py_ssize_t>(fmix64(<uint64_t><size_t>slot) & <uint64_t>mask)
        while table[i] >= 0 and slots[table[i]] != slot:
            i = (i + 1) & mask
        if table[i] < 0:
            table[i] = j
            st.first[j] = j
            st.gsum[j] = st.gs * x[j]
        else:
            st.first[j] = table[i]
            st.gsum[table[i]] += st.gs * x[j]


cdef void mb_accumulate(MB* mb, const floating* x, const double* coef,
                       const double* outer) noexcept nogil:
    """mb.sum[u] = the sum, over the mini-batch's entries of key u in
    example order, of x * coef[row] (outer NULL) or of
    outer[row] * (coef[row] * x) (docs/algorithms.md, "Mini-batches")."""
    cdef Py_ssize_t u, b, j
    cdef const int64_t* indptr = mb.indptr
    cdef int64_t base = indptr[0]
    cdef double* total = mb.sum
    cdef const Py_ssize_t* idx = mb.idx
    for u in range(mb.n_keys):
        total[u] = 0.0
    for b in range(mb.n_rows):
        if outer == NULL:
            for j in range(indptr[b], indptr[b + 1]):
                total[idx[j - base]] += x[j] * coef[b]
        else:
            for j in range(indptr[b], indptr[b + 1]):
                total[idx[j - base]] += outer[b] * (coef[b] * x[j])


# ------------------------------------------------------------ the memory budget
# docs/algorithms.md, "The memory budget".

cdef inline Py_ssize_t budget_low_water(long long n) noexcept nogil:
    """The store's size after an eviction round: the budget less 1/8 of
    it (at least 1), so that a round is due once per n/8 new features."""
    cdef long long step = n // 8
    return <Py_ssize_t>(n - (step if step > 1 else 1))


cdef inline double expired_upto(SGDKernel k) noexcept nogil:
    """The clocks of the expired features are at most this (-1: none)."""
    return <double>(k.t - k.expire_after) if k.expire_after > 0 else -1.0


cdef int make_room(SGDKernel k, const uint64_t* keys, const floating* x, Py_ssize_t nnz,
                   void** slots, Step* st) noexcept nogil:
    """Before the example's new features get their slots: if they would
    take the store past max_features, evict the least recently updated
    features that are not in the example (their clocks are below the
    example's, which the loop has set) down to the low-water mark, then
    find the example's slots again (removals move slots).  Returns OK,
    E_BUDGET (the example alone has more than max_features distinct
    features) or E_NOMEM."""
    cdef Py_ssize_t j, i, m = 0, present = 0, target, removed, n_exp = 0
    cdef Py_ssize_t size, mask
    cdef Py_ssize_t* table = st.table
    cdef signed char* counted = st.sgn
    cdef long long n_max = k.max_features
    for j in range(nnz):
        if slots[j] == NULL and x[j] != 0.0:
            m += 1
    if m == 0 or k.store.n + m <= n_max:
        return OK
    # Repeated keys: count each feature once (a new one if any of its
    # values is not 0, as insert_new does).
    m = 0
    size = group_table_size(nnz)
    mask = size - 1
    for i in range(size):
        table[i] = -1
    for j in range(nnz):
        i = <Py_ssize_t>(fmix64(keys[j]) & <uint64_t>mask)
        while table[i] >= 0 and keys[table[i]] != keys[j]:
            i = (i + 1) & mask
        if table[i] < 0:
            table[i] = j
            counted[j] = 0
            if slots[j] != NULL:
                present += 1
        if slots[j] == NULL and x[j] != 0.0 and not counted[table[i]]:
            counted[table[i]] = 1
            m += 1
    if k.store.n + m <= n_max:
        return OK
    if present + m > n_max:
        return E_BUDGET
    target = budget_low_water(n_max)
    if target > n_max - m:
        target = n_max - m
    if target < present:
        target = present
    removed = k.store.evict_oldest(k.store.n - target, <double>(k.t + 1), expired_upto(k),
                                   &k.evict_floor, &n_exp)
    if removed < 0:
        return E_NOMEM
    k.expired += n_exp
    k.evicted += removed - n_exp
    for j in range(nnz):
        if slots[j] != NULL:
            slots[j] = <void*>store_find(k.store, keys[j])
    return OK


cdef inline Py_ssize_t sweep_period(SGDKernel k) noexcept nogil:
    """Examples between two sweeps of the store with a budget or expiry:
    at least 4096 and, as the compaction, the store's size, but no more
    than the expiry (amortised O(1) slot visits per example, or per new
    feature with expiry)."""
    cdef Py_ssize_t period = k.store.n
    if k.expire_after > 0 and k.expire_after < period:
        period = <Py_ssize_t>k.expire_after
    return period if period > 4096 else 4096


# ------------------------------------------------------------ the rules
include "rules/plain.pxi"
include "rules/subgradient.pxi"
include "rules/cumulative_l1.pxi"
include "rules/cumulative_adaptive.pxi"
include "rules/fobos.pxi"
include "rules/truncated.pxi"
include "rules/adagrad_fobos.pxi"
include "rules/ftrl.pxi"
include "rules/spred.pxi"

#: Every update rule, by the name options and the command line use.
RULES = {spec.name: spec for spec in (plain_SPEC, subgradient_SPEC, cumulative_SPEC, cumulative_SPEC, fobos_SPEC, truncated_SPEC, adagrad_fobos_SPEC, ftrl_SPEC, spred_SPEC, )}

# Names of the per-feature state columns of each (rule, origin).
STATE_COLUMNS = {(name, origin): spec.state[origin] for name, spec in RULES.items()
                 for origin in ORIGINS}


# ------------------------------------------------------------ one loop per kernel

# ---- plain

cdef inline double* plain_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(plain_slot))


cdef inline bint plain_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - plain_clock(p)[0] >= <double>k.expire_after


cdef plain_slot* plain_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    plain_slot** slots, plain_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <plain_slot*>store_find(k.store, keys[i])
    return NULL


cdef int plain_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, plain_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef plain_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <plain_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <plain_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            plain_init(k, p)
            if k.clocked:
                plain_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <plain_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <plain_slot*>store_find(k.store, keys[j])
    return 0


cdef double plain_weight_of(SGDKernel k, char* p) noexcept nogil:
    if plain_expired(k, p):
        return 0.0
    return plain_weight(k, <plain_slot*>p)


cdef Py_ssize_t plain_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and plain_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and plain_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void plain_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if plain_expired(k, p):
            gone = True
            k.expired += 1
        elif plain_DECAYS_WHILE_ABSENT:
            gone = plain_weight(k, <plain_slot*>p) == 0.0
        else:
            gone = plain_prunable(k, <plain_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int plain_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef plain_slot** slots = <plain_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef plain_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or plain_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <plain_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and plain_expired(k, p):
                    p = plain_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = plain_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <plain_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = plain_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    plain_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if plain_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        plain_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if plain_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            plain_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and plain_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <plain_slot*>store_find(k.store, cand[j])
            if p != NULL and plain_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            plain_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void plain_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef plain_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <plain_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and plain_expired(k, p)):
                acc += plain_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int plain_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef plain_slot** slots = <plain_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef plain_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or plain_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <plain_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and plain_expired(k, p):
                    p = plain_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = plain_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <plain_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = plain_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    plain_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if plain_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        plain_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if plain_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            plain_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and plain_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <plain_slot*>store_find(k.store, cand[j])
            if p != NULL and plain_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            plain_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void plain_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef plain_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <plain_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and plain_expired(k, p)):
                acc += plain_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- subgradient

cdef inline double* subgradient_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(subgradient_slot))


cdef inline bint subgradient_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - subgradient_clock(p)[0] >= <double>k.expire_after


cdef subgradient_slot* subgradient_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    subgradient_slot** slots, subgradient_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <subgradient_slot*>store_find(k.store, keys[i])
    return NULL


cdef int subgradient_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, subgradient_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef subgradient_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <subgradient_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <subgradient_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            subgradient_init(k, p)
            if k.clocked:
                subgradient_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <subgradient_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <subgradient_slot*>store_find(k.store, keys[j])
    return 0


cdef double subgradient_weight_of(SGDKernel k, char* p) noexcept nogil:
    if subgradient_expired(k, p):
        return 0.0
    return subgradient_weight(k, <subgradient_slot*>p)


cdef Py_ssize_t subgradient_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and subgradient_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and subgradient_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void subgradient_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if subgradient_expired(k, p):
            gone = True
            k.expired += 1
        elif subgradient_DECAYS_WHILE_ABSENT:
            gone = subgradient_weight(k, <subgradient_slot*>p) == 0.0
        else:
            gone = subgradient_prunable(k, <subgradient_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int subgradient_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef subgradient_slot** slots = <subgradient_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef subgradient_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or subgradient_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <subgradient_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and subgradient_expired(k, p):
                    p = subgradient_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = subgradient_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <subgradient_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = subgradient_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    subgradient_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if subgradient_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        subgradient_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if subgradient_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            subgradient_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and subgradient_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <subgradient_slot*>store_find(k.store, cand[j])
            if p != NULL and subgradient_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            subgradient_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void subgradient_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef subgradient_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <subgradient_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and subgradient_expired(k, p)):
                acc += subgradient_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int subgradient_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef subgradient_slot** slots = <subgradient_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef subgradient_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or subgradient_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <subgradient_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and subgradient_expired(k, p):
                    p = subgradient_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = subgradient_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <subgradient_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = subgradient_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    subgradient_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if subgradient_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        subgradient_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if subgradient_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            subgradient_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and subgradient_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <subgradient_slot*>store_find(k.store, cand[j])
            if p != NULL and subgradient_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            subgradient_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void subgradient_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef subgradient_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <subgradient_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and subgradient_expired(k, p)):
                acc += subgradient_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- cumulative_start

cdef inline double* cumulative_start_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(cumulative_start_slot))


cdef inline bint cumulative_start_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - cumulative_start_clock(p)[0] >= <double>k.expire_after


cdef cumulative_start_slot* cumulative_start_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    cumulative_start_slot** slots, cumulative_start_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <cumulative_start_slot*>store_find(k.store, keys[i])
    return NULL


cdef int cumulative_start_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, cumulative_start_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef cumulative_start_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <cumulative_start_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <cumulative_start_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            cumulative_start_init(k, p)
            if k.clocked:
                cumulative_start_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <cumulative_start_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <cumulative_start_slot*>store_find(k.store, keys[j])
    return 0


cdef double cumulative_start_weight_of(SGDKernel k, char* p) noexcept nogil:
    if cumulative_start_expired(k, p):
        return 0.0
    return cumulative_start_weight(k, <cumulative_start_slot*>p)


cdef Py_ssize_t cumulative_start_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and cumulative_start_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and cumulative_start_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void cumulative_start_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if cumulative_start_expired(k, p):
            gone = True
            k.expired += 1
        elif cumulative_start_DECAYS_WHILE_ABSENT:
            gone = cumulative_start_weight(k, <cumulative_start_slot*>p) == 0.0
        else:
            gone = cumulative_start_prunable(k, <cumulative_start_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int cumulative_start_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef cumulative_start_slot** slots = <cumulative_start_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef cumulative_start_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or cumulative_start_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_start_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and cumulative_start_expired(k, p):
                    p = cumulative_start_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_start_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_start_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_start_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    cumulative_start_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if cumulative_start_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        cumulative_start_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if cumulative_start_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_start_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and cumulative_start_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_start_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_start_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            cumulative_start_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void cumulative_start_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef cumulative_start_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <cumulative_start_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and cumulative_start_expired(k, p)):
                acc += cumulative_start_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int cumulative_start_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef cumulative_start_slot** slots = <cumulative_start_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef cumulative_start_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or cumulative_start_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_start_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and cumulative_start_expired(k, p):
                    p = cumulative_start_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_start_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_start_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_start_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    cumulative_start_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if cumulative_start_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        cumulative_start_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if cumulative_start_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_start_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and cumulative_start_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_start_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_start_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            cumulative_start_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void cumulative_start_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef cumulative_start_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <cumulative_start_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and cumulative_start_expired(k, p)):
                acc += cumulative_start_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- cumulative_first_seen

cdef inline double* cumulative_first_seen_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(cumulative_first_seen_slot))


cdef inline bint cumulative_first_seen_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - cumulative_first_seen_clock(p)[0] >= <double>k.expire_after


cdef cumulative_first_seen_slot* cumulative_first_seen_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    cumulative_first_seen_slot** slots, cumulative_first_seen_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <cumulative_first_seen_slot*>store_find(k.store, keys[i])
    return NULL


cdef int cumulative_first_seen_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, cumulative_first_seen_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef cumulative_first_seen_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <cumulative_first_seen_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <cumulative_first_seen_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            cumulative_first_seen_init(k, p)
            if k.clocked:
                cumulative_first_seen_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <cumulative_first_seen_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <cumulative_first_seen_slot*>store_find(k.store, keys[j])
    return 0


cdef double cumulative_first_seen_weight_of(SGDKernel k, char* p) noexcept nogil:
    if cumulative_first_seen_expired(k, p):
        return 0.0
    return cumulative_first_seen_weight(k, <cumulative_first_seen_slot*>p)


cdef Py_ssize_t cumulative_first_seen_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and cumulative_first_seen_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and cumulative_first_seen_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void cumulative_first_seen_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if cumulative_first_seen_expired(k, p):
            gone = True
            k.expired += 1
        elif cumulative_first_seen_DECAYS_WHILE_ABSENT:
            gone = cumulative_first_seen_weight(k, <cumulative_first_seen_slot*>p) == 0.0
        else:
            gone = cumulative_first_seen_prunable(k, <cumulative_first_seen_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int cumulative_first_seen_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef cumulative_first_seen_slot** slots = <cumulative_first_seen_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef cumulative_first_seen_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or cumulative_first_seen_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_first_seen_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and cumulative_first_seen_expired(k, p):
                    p = cumulative_first_seen_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_first_seen_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_first_seen_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_first_seen_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    cumulative_first_seen_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if cumulative_first_seen_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        cumulative_first_seen_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if cumulative_first_seen_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_first_seen_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and cumulative_first_seen_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_first_seen_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_first_seen_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            cumulative_first_seen_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void cumulative_first_seen_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef cumulative_first_seen_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <cumulative_first_seen_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and cumulative_first_seen_expired(k, p)):
                acc += cumulative_first_seen_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int cumulative_first_seen_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef cumulative_first_seen_slot** slots = <cumulative_first_seen_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef cumulative_first_seen_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or cumulative_first_seen_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_first_seen_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and cumulative_first_seen_expired(k, p):
                    p = cumulative_first_seen_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_first_seen_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_first_seen_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_first_seen_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    cumulative_first_seen_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if cumulative_first_seen_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        cumulative_first_seen_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if cumulative_first_seen_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_first_seen_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and cumulative_first_seen_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_first_seen_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_first_seen_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            cumulative_first_seen_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void cumulative_first_seen_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef cumulative_first_seen_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <cumulative_first_seen_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and cumulative_first_seen_expired(k, p)):
                acc += cumulative_first_seen_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- cumulative_adaptive

cdef inline double* cumulative_adaptive_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(cumulative_adaptive_slot))


cdef inline bint cumulative_adaptive_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - cumulative_adaptive_clock(p)[0] >= <double>k.expire_after


cdef cumulative_adaptive_slot* cumulative_adaptive_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    cumulative_adaptive_slot** slots, cumulative_adaptive_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <cumulative_adaptive_slot*>store_find(k.store, keys[i])
    return NULL


cdef int cumulative_adaptive_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, cumulative_adaptive_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef cumulative_adaptive_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <cumulative_adaptive_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <cumulative_adaptive_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            cumulative_adaptive_init(k, p)
            if k.clocked:
                cumulative_adaptive_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <cumulative_adaptive_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <cumulative_adaptive_slot*>store_find(k.store, keys[j])
    return 0


cdef double cumulative_adaptive_weight_of(SGDKernel k, char* p) noexcept nogil:
    if cumulative_adaptive_expired(k, p):
        return 0.0
    return cumulative_adaptive_weight(k, <cumulative_adaptive_slot*>p)


cdef Py_ssize_t cumulative_adaptive_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and cumulative_adaptive_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and cumulative_adaptive_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void cumulative_adaptive_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if cumulative_adaptive_expired(k, p):
            gone = True
            k.expired += 1
        elif cumulative_adaptive_DECAYS_WHILE_ABSENT:
            gone = cumulative_adaptive_weight(k, <cumulative_adaptive_slot*>p) == 0.0
        else:
            gone = cumulative_adaptive_prunable(k, <cumulative_adaptive_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int cumulative_adaptive_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef cumulative_adaptive_slot** slots = <cumulative_adaptive_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef cumulative_adaptive_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or cumulative_adaptive_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_adaptive_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and cumulative_adaptive_expired(k, p):
                    p = cumulative_adaptive_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_adaptive_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_adaptive_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_adaptive_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    cumulative_adaptive_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if cumulative_adaptive_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        cumulative_adaptive_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if cumulative_adaptive_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_adaptive_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and cumulative_adaptive_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_adaptive_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_adaptive_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            cumulative_adaptive_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void cumulative_adaptive_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef cumulative_adaptive_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <cumulative_adaptive_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and cumulative_adaptive_expired(k, p)):
                acc += cumulative_adaptive_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int cumulative_adaptive_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef cumulative_adaptive_slot** slots = <cumulative_adaptive_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef cumulative_adaptive_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or cumulative_adaptive_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_adaptive_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and cumulative_adaptive_expired(k, p):
                    p = cumulative_adaptive_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_adaptive_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <cumulative_adaptive_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = cumulative_adaptive_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    cumulative_adaptive_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if cumulative_adaptive_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        cumulative_adaptive_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if cumulative_adaptive_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_adaptive_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and cumulative_adaptive_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_adaptive_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_adaptive_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            cumulative_adaptive_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void cumulative_adaptive_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef cumulative_adaptive_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <cumulative_adaptive_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and cumulative_adaptive_expired(k, p)):
                acc += cumulative_adaptive_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- fobos

cdef inline double* fobos_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(fobos_slot))


cdef inline bint fobos_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - fobos_clock(p)[0] >= <double>k.expire_after


cdef fobos_slot* fobos_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    fobos_slot** slots, fobos_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <fobos_slot*>store_find(k.store, keys[i])
    return NULL


cdef int fobos_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, fobos_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef fobos_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <fobos_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <fobos_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            fobos_init(k, p)
            if k.clocked:
                fobos_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <fobos_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <fobos_slot*>store_find(k.store, keys[j])
    return 0


cdef double fobos_weight_of(SGDKernel k, char* p) noexcept nogil:
    if fobos_expired(k, p):
        return 0.0
    return fobos_weight(k, <fobos_slot*>p)


cdef Py_ssize_t fobos_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and fobos_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and fobos_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void fobos_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if fobos_expired(k, p):
            gone = True
            k.expired += 1
        elif fobos_DECAYS_WHILE_ABSENT:
            gone = fobos_weight(k, <fobos_slot*>p) == 0.0
        else:
            gone = fobos_prunable(k, <fobos_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int fobos_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef fobos_slot** slots = <fobos_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef fobos_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or fobos_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <fobos_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and fobos_expired(k, p):
                    p = fobos_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <fobos_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    fobos_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if fobos_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        fobos_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            fobos_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and fobos_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and fobos_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            fobos_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void fobos_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef fobos_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <fobos_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and fobos_expired(k, p)):
                acc += fobos_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int fobos_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef fobos_slot** slots = <fobos_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef fobos_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or fobos_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <fobos_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and fobos_expired(k, p):
                    p = fobos_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <fobos_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    fobos_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if fobos_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        fobos_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            fobos_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and fobos_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and fobos_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            fobos_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void fobos_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef fobos_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <fobos_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and fobos_expired(k, p)):
                acc += fobos_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- truncated

cdef inline double* truncated_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(truncated_slot))


cdef inline bint truncated_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - truncated_clock(p)[0] >= <double>k.expire_after


cdef truncated_slot* truncated_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    truncated_slot** slots, truncated_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <truncated_slot*>store_find(k.store, keys[i])
    return NULL


cdef int truncated_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, truncated_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef truncated_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <truncated_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <truncated_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            truncated_init(k, p)
            if k.clocked:
                truncated_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <truncated_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <truncated_slot*>store_find(k.store, keys[j])
    return 0


cdef double truncated_weight_of(SGDKernel k, char* p) noexcept nogil:
    if truncated_expired(k, p):
        return 0.0
    return truncated_weight(k, <truncated_slot*>p)


cdef Py_ssize_t truncated_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and truncated_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and truncated_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void truncated_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if truncated_expired(k, p):
            gone = True
            k.expired += 1
        elif truncated_DECAYS_WHILE_ABSENT:
            gone = truncated_weight(k, <truncated_slot*>p) == 0.0
        else:
            gone = truncated_prunable(k, <truncated_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int truncated_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef truncated_slot** slots = <truncated_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef truncated_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or truncated_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <truncated_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and truncated_expired(k, p):
                    p = truncated_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = truncated_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <truncated_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = truncated_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    truncated_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if truncated_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        truncated_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if truncated_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            truncated_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and truncated_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <truncated_slot*>store_find(k.store, cand[j])
            if p != NULL and truncated_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            truncated_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void truncated_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef truncated_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <truncated_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and truncated_expired(k, p)):
                acc += truncated_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int truncated_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef truncated_slot** slots = <truncated_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef truncated_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or truncated_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <truncated_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and truncated_expired(k, p):
                    p = truncated_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = truncated_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <truncated_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = truncated_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    truncated_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if truncated_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        truncated_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if truncated_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            truncated_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and truncated_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <truncated_slot*>store_find(k.store, cand[j])
            if p != NULL and truncated_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            truncated_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void truncated_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef truncated_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <truncated_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and truncated_expired(k, p)):
                acc += truncated_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- adagrad_fobos

cdef inline double* adagrad_fobos_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(adagrad_fobos_slot))


cdef inline bint adagrad_fobos_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - adagrad_fobos_clock(p)[0] >= <double>k.expire_after


cdef adagrad_fobos_slot* adagrad_fobos_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    adagrad_fobos_slot** slots, adagrad_fobos_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <adagrad_fobos_slot*>store_find(k.store, keys[i])
    return NULL


cdef int adagrad_fobos_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, adagrad_fobos_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef adagrad_fobos_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <adagrad_fobos_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <adagrad_fobos_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            adagrad_fobos_init(k, p)
            if k.clocked:
                adagrad_fobos_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <adagrad_fobos_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <adagrad_fobos_slot*>store_find(k.store, keys[j])
    return 0


cdef double adagrad_fobos_weight_of(SGDKernel k, char* p) noexcept nogil:
    if adagrad_fobos_expired(k, p):
        return 0.0
    return adagrad_fobos_weight(k, <adagrad_fobos_slot*>p)


cdef Py_ssize_t adagrad_fobos_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and adagrad_fobos_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and adagrad_fobos_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void adagrad_fobos_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if adagrad_fobos_expired(k, p):
            gone = True
            k.expired += 1
        elif adagrad_fobos_DECAYS_WHILE_ABSENT:
            gone = adagrad_fobos_weight(k, <adagrad_fobos_slot*>p) == 0.0
        else:
            gone = adagrad_fobos_prunable(k, <adagrad_fobos_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int adagrad_fobos_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef adagrad_fobos_slot** slots = <adagrad_fobos_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef adagrad_fobos_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or adagrad_fobos_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <adagrad_fobos_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and adagrad_fobos_expired(k, p):
                    p = adagrad_fobos_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = adagrad_fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <adagrad_fobos_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = adagrad_fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    adagrad_fobos_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if adagrad_fobos_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        adagrad_fobos_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if adagrad_fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            adagrad_fobos_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and adagrad_fobos_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <adagrad_fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and adagrad_fobos_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            adagrad_fobos_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void adagrad_fobos_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef adagrad_fobos_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <adagrad_fobos_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and adagrad_fobos_expired(k, p)):
                acc += adagrad_fobos_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int adagrad_fobos_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef adagrad_fobos_slot** slots = <adagrad_fobos_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef adagrad_fobos_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or adagrad_fobos_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <adagrad_fobos_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and adagrad_fobos_expired(k, p):
                    p = adagrad_fobos_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = adagrad_fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <adagrad_fobos_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = adagrad_fobos_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    adagrad_fobos_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if adagrad_fobos_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        adagrad_fobos_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if adagrad_fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            adagrad_fobos_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and adagrad_fobos_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <adagrad_fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and adagrad_fobos_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            adagrad_fobos_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void adagrad_fobos_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef adagrad_fobos_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <adagrad_fobos_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and adagrad_fobos_expired(k, p)):
                acc += adagrad_fobos_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- ftrl

cdef inline double* ftrl_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(ftrl_slot))


cdef inline bint ftrl_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - ftrl_clock(p)[0] >= <double>k.expire_after


cdef ftrl_slot* ftrl_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    ftrl_slot** slots, ftrl_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <ftrl_slot*>store_find(k.store, keys[i])
    return NULL


cdef int ftrl_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, ftrl_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef ftrl_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <ftrl_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <ftrl_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            ftrl_init(k, p)
            if k.clocked:
                ftrl_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <ftrl_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <ftrl_slot*>store_find(k.store, keys[j])
    return 0


cdef double ftrl_weight_of(SGDKernel k, char* p) noexcept nogil:
    if ftrl_expired(k, p):
        return 0.0
    return ftrl_weight(k, <ftrl_slot*>p)


cdef Py_ssize_t ftrl_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and ftrl_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and ftrl_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void ftrl_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if ftrl_expired(k, p):
            gone = True
            k.expired += 1
        elif ftrl_DECAYS_WHILE_ABSENT:
            gone = ftrl_weight(k, <ftrl_slot*>p) == 0.0
        else:
            gone = ftrl_prunable(k, <ftrl_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int ftrl_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef ftrl_slot** slots = <ftrl_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef ftrl_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or ftrl_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <ftrl_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and ftrl_expired(k, p):
                    p = ftrl_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = ftrl_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <ftrl_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = ftrl_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    ftrl_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if ftrl_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        ftrl_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if ftrl_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            ftrl_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and ftrl_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <ftrl_slot*>store_find(k.store, cand[j])
            if p != NULL and ftrl_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            ftrl_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void ftrl_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef ftrl_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <ftrl_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and ftrl_expired(k, p)):
                acc += ftrl_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int ftrl_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef ftrl_slot** slots = <ftrl_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef ftrl_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or ftrl_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <ftrl_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and ftrl_expired(k, p):
                    p = ftrl_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = ftrl_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <ftrl_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = ftrl_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    ftrl_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if ftrl_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        ftrl_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if ftrl_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            ftrl_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and ftrl_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <ftrl_slot*>store_find(k.store, cand[j])
            if p != NULL and ftrl_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            ftrl_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void ftrl_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef ftrl_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <ftrl_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and ftrl_expired(k, p)):
                acc += ftrl_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc

# ---- spred

cdef inline double* spred_clock(void* p) noexcept nogil:
    """The clock of the feature's last update: the slot's word after the
    rule's state (only where the kernel is clocked)."""
    return <double*>(<char*>p + sizeof(spred_slot))


cdef inline bint spred_expired(SGDKernel k, void* p) noexcept nogil:
    """Whether the feature in ``p`` was last updated expire_after or more
    examples ago: it reads as absent, and leaves the store when found."""
    return k.expire_after > 0 and <double>k.t - spred_clock(p)[0] >= <double>k.expire_after


cdef spred_slot* spred_drop_expired(SGDKernel k, const uint64_t* keys, Py_ssize_t j,
                                    spred_slot** slots, spred_slot* p) noexcept nogil:
    """Remove the expired slot ``p`` of feature j (it is then a feature
    never seen) and find the slots of the features before it again (the
    removal may have moved them).  Returns NULL."""
    cdef Py_ssize_t i
    k.store.remove(<char*>p)
    k.expired += 1
    for i in range(j):
        if slots[i] != NULL:
            slots[i] = <spred_slot*>store_find(k.store, keys[i])
    return NULL


cdef int spred_insert_new(SGDKernel k, const uint64_t* keys, const floating* x,
                          Py_ssize_t nnz, spred_slot** slots) noexcept nogil:
    """Give a slot to every feature of the example that has none and a
    non-zero value (a new feature with value 0 gets no weight: not
    inserting it is exact, its state would be that of an absent one).
    An insertion shifts the rest of its run by one slot: the addresses of
    the example's slots there move with it (after a growth of the table,
    every slot is found again).  Returns -1 when memory runs out
    (the slots made so far hold zeros: the same as absent features)."""
    cdef Py_ssize_t j, i, size
    cdef spred_slot* p
    cdef char* moved_end
    cdef char* q
    cdef uintptr_t span
    cdef bint rebuilt = False
    for j in range(nnz):
        if slots[j] != NULL or x[j] == 0.0:
            continue
        p = <spred_slot*>store_find(k.store, keys[j])   # the key may repeat
        if p == NULL:
            p = <spred_slot*>k.store.insert_new(keys[j])
            if p == NULL:
                return -1
            spred_init(k, p)
            if k.clocked:
                spred_clock(p)[0] = <double>(k.t + 1)
            moved_end = k.store.shifted_end
            if moved_end == NULL:
                rebuilt = True
            elif not rebuilt and moved_end != <char*>p:
                # The slots that were in [p, moved_end) are one slot on
                # (branch-free: which ones is noise to a branch predictor;
                # one unsigned compare of the offset from p tests both
                # ends, and NULL's offset is out of range).  Nothing moved
                # when the new key took a free slot.
                size = k.store.slot_size
                span = <uintptr_t>moved_end - <uintptr_t>p
                for i in range(nnz):
                    q = <char*>slots[i]
                    slots[i] = <spred_slot*>(q + size * ((<uintptr_t>q - <uintptr_t>p) < span))
        slots[j] = p
    if rebuilt:
        for j in range(nnz):
            if slots[j] != NULL:
                slots[j] = <spred_slot*>store_find(k.store, keys[j])
    return 0


cdef double spred_weight_of(SGDKernel k, char* p) noexcept nogil:
    if spred_expired(k, p):
        return 0.0
    return spred_weight(k, <spred_slot*>p)


cdef Py_ssize_t spred_count_nonzero(SGDKernel k) noexcept nogil:
    """Stored features whose caught-up weight is not zero: one pass over
    the table in memory order, the rule's catch-up inlined (a call through
    ``ops.weight`` and ``next_live`` per slot cost three times as much at
    13 M features; train's progress and summary ask for it)."""
    cdef Py_ssize_t size = k.store.slot_size, count = 0
    cdef char* p = k.store.slots
    cdef char* end = k.store.slots + k.store.total * size
    while p != end:
        if (<uint64_t*>p)[0] != 0 and spred_weight_of(k, p) != 0.0:
            count += 1
        p += size
    if k.store.has_zero and spred_weight_of(k, <char*>k.store.zero_slot) != 0.0:
        count += 1
    return count


cdef void spred_compact(SGDKernel k) noexcept nogil:
    cdef Py_ssize_t cursor = 0
    cdef char* p = k.store.next_live(&cursor)
    cdef bint gone
    while p != NULL:
        if spred_expired(k, p):
            gone = True
            k.expired += 1
        elif spred_DECAYS_WHILE_ABSENT:
            gone = spred_weight(k, <spred_slot*>p) == 0.0
        else:
            gone = spred_prunable(k, <spred_slot*>p)
        if gone:
            k.store.remove(p)
            cursor -= 1         # an entry may have moved into the hole
        p = k.store.next_live(&cursor)
    k.store.shrink_to_fit()


cdef int spred_learn_f32(SGDKernel k, Rows* r, const float* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef spred_slot** slots = <spred_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const float* xp
    cdef spred_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or spred_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <spred_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and spred_expired(k, p):
                    p = spred_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = spred_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <spred_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = spred_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    spred_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if spred_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        spred_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if spred_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            spred_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and spred_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <spred_slot*>store_find(k.store, cand[j])
            if p != NULL and spred_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            spred_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void spred_margins_f32(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const float* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef spred_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <spred_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and spred_expired(k, p)):
                acc += spred_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


cdef int spred_learn_f64(SGDKernel k, Rows* r, const double* values, double* out,
                             Py_ssize_t* failed_at) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t n_done = n_rows
    cdef int64_t since_check = 0
    cdef Py_ssize_t i, j, nnz, start, n_cand
    cdef spred_slot** slots = <spred_slot**>malloc((max_nnz + 1) * sizeof(void*))
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Step st
    cdef const uint64_t* kp
    cdef const double* xp
    cdef spred_slot* p
    cdef double y, weight, margin, acc, g, max_x, loss_sum = 0.0
    cdef double weight_sum = 0.0, n_correct = 0.0
    cdef double now
    cdef int status = OK
    cdef bint expiring = k.expire_after > 0
    cdef bint sweeping = k.clocked and (expiring or spred_DECAYS_WHILE_ABSENT)
    st.wnow = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.sgn = <signed char*>malloc(max_nnz + 1)
    st.first = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    st.gsum = <double*>malloc((max_nnz + 1) * sizeof(double))
    st.table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    if slots == NULL or cand == NULL or st.wnow == NULL or st.sgn == NULL or st.first == NULL \
            or st.gsum == NULL or st.table == NULL:
        free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
        free(st.table)
        failed_at[0] = 0
        return E_NOMEM
    i = 0
    for i in range(n_rows):
        start = r.indptr[i]
        nnz = r.indptr[i + 1] - start
        kp = r.keys + start
        xp = values + start
        if k.store.reserve(nnz) != 0:
            status = E_NOMEM
            break
        # Prefetch the home slots of the example PREFETCH_ROWS ahead, so
        # that its cache misses overlap the work of the ones before it
        # (docs/algorithms.md, "The weight store").
        if i + PREFETCH_ROWS < n_rows:
            for j in range(r.indptr[i + PREFETCH_ROWS], r.indptr[i + PREFETCH_ROWS + 1]):
                store_prefetch(k.store, r.keys[j])
        y = r.labels[i]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[i] if r.weights != NULL else 1.0

        # 1-2. Find every present feature once; the margin.  With expiry,
        # an expired feature leaves the store before it is read (its own
        # loop, so that the loop without expiry is as it was).
        acc = 0.0
        max_x = 0.0
        if expiring:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <spred_slot*>store_find_learning(k.store, kp[j])
                if p != NULL and spred_expired(k, p):
                    p = spred_drop_expired(k, kp, j, slots, p)
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = spred_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        else:
            for j in range(nnz):
                if fabs(xp[j]) > max_x:
                    max_x = fabs(xp[j])
                p = <spred_slot*>store_find_learning(k.store, kp[j])
                slots[j] = p
                if p != NULL:
                    st.wnow[j] = spred_weight(k, p)
                    acc += st.wnow[j] * xp[j]
                else:
                    st.wnow[j] = 0.0
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            status = E_MARGIN
            break

        # 3. Progressive loss and the gradient.
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        st.eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                           k.decay_steps, k.t + 1)
        st.update = -st.eta * g * weight
        st.gs = g * weight
        if not isfinite(st.update) or not isfinite(st.update / k.scale * max_x) \
                or not isfinite(st.gs * max_x):
            status = E_UPDATE
            break
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            loss_sum += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        weight_sum += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            n_correct += 1

        # Within a batch (SGDKernel.begin), the slots this example changes
        # are journaled first, so that a failure later in the batch undoes
        # it (docs/algorithms.md, "Atomic batches"); the keys it adds are
        # journaled by the store.
        if store_journal_slots(k.store, <void**>slots, nnz) != 0:
            status = E_NOMEM
            break

        # 4. The rule's step, after the features it gives a weight have
        # their slots (every rule steps only features with a gradient).
        # With a budget, the example's features are updated now (their
        # clocks), and room is made for the new ones first.
        if k.clocked:
            now = <double>(k.t + 1)
            for j in range(nnz):
                if slots[j] != NULL:
                    spred_clock(slots[j])[0] = now
        if st.gs != 0.0:
            if k.max_features > 0:
                status = make_room(k, kp, xp, nnz, <void**>slots, &st)
                if status != OK:
                    break
            if spred_insert_new(k, kp, xp, nnz, slots) != 0:
                status = E_NOMEM
                break
        spred_step(k, &st, kp, xp, nnz, slots)
        if k.fit_intercept:
            k.intercept += st.update
        # A finite update can still overflow a stored weight, the
        # intercept or the rule's clock (state_finite): the example is
        # refused (its batch undone), not stored for the next example to
        # trip on.
        if not state_finite(k, <void**>slots, nnz):
            status = E_UPDATE
            break
        k.t += 1
        if spred_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            spred_rebase(k)

        # 5. Pruning.  Entries move when one is removed, so first collect
        # the keys, then find each again.
        n_cand = 0
        for j in range(nnz):
            p = slots[j]
            if p != NULL and spred_prunable(k, p):
                cand[n_cand] = kp[j]
                n_cand += 1
        for j in range(n_cand):
            p = <spred_slot*>store_find(k.store, cand[j])
            if p != NULL and spred_prunable(k, p):
                k.store.remove(<char*>p)

        # With a budget or expiry, the periodic sweep (expired features,
        # weights that decayed to zero) is due after a count of examples.
        if sweeping and k.t - k.last_compact_t >= sweep_period(k):
            spred_compact(k)
            k.last_compact_t = k.t

        # 6. Every wake_every features, stop early if wake_fd is readable
        # (the daemon's request socket has something: it answers, then
        # learns on).  The rows so far are learned completely.
        if r.wake_fd >= 0:
            since_check += nnz
            if since_check >= r.wake_every:
                since_check = 0
                if readable(r.wake_fd):
                    n_done = i + 1
                    break
    free(slots); free(cand); free(st.wnow); free(st.sgn); free(st.first); free(st.gsum)
    free(st.table)
    failed_at[0] = i if status != OK else n_done
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef void spred_margins_f64(SGDKernel k, const int64_t* indptr, Py_ssize_t n_rows,
                                const uint64_t* keys, const double* values, double* out,
                                bint probability) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef spred_slot* p
    cdef double acc, e
    cdef bint expiring = k.expire_after > 0
    for i in range(n_rows):
        if i + 1 < n_rows:
            for j in range(indptr[i + 1], indptr[i + 2]):
                store_prefetch(k.store, keys[j])
        acc = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            p = <spred_slot*>store_find(k.store, keys[j])
            if p != NULL and not (expiring and spred_expired(k, p)):
                acc += spred_weight(k, p) * values[j]
        acc = acc * k.scale + k.intercept
        if probability:
            # 1 / (1 + exp(-p)) with exp of a non-positive argument only.
            if acc >= 0:
                acc = 1.0 / (1.0 + exp(-acc))
            else:
                e = exp(acc)
                acc = e / (1.0 + e)
        out[i] = acc


def loss_terms(str loss, double y, double p, double tau=0.5):
    """``(l(p, y), dl/dp)`` of ``loss`` as the kernels compute them (the
    gradient clipped like scikit-learn's; classification labels -1/+1):
    for the tests, which check them against finite differences."""
    cdef int code = LOSSES[loss]
    return loss_value(code, y, p, tau), loss_gradient(code, y, p, tau)


def entry_margins(const int64_t[::1] indptr, const double[::1] w, values, double scale,
                  double intercept, bint probability=False):
    """The margins (or, with ``probability``, their logistic link) of the
    rows ``indptr`` from ``w``, the raw weight of every entry
    (``SGDKernel.lookup(raw=True)``), summed in entry order and then
    scaled, as ``SGDKernel.margins`` sums them: a cluster answers
    ``predict`` from its shards' weights with this, bit for bit the
    single process's prediction (docs/scaling.md)."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, j
    # float32 values widen exactly, as they do in SGDKernel.margins.
    cdef const double[::1] x = np.ascontiguousarray(values, dtype=np.float64)
    cdef double acc, e
    if n < 0 or indptr[0] != 0 or w.shape[0] != indptr[n] or x.shape[0] != indptr[n]:
        raise ValueError("entry_margins: indptr (from 0), weights and values disagree")
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            acc = 0.0
            for j in range(indptr[i], indptr[i + 1]):
                acc += w[j] * x[j]
            acc = acc * scale + intercept
            if probability:
                if acc >= 0:
                    acc = 1.0 / (1.0 + exp(-acc))
                else:
                    e = exp(acc)
                    acc = e / (1.0 + e)
            o[i] = acc
    return out


cdef int mb_row_factors(SGDKernel k, MB* mb, Rows* r, const floating* values, Py_ssize_t b0,
                        double* stats, Py_ssize_t* failed_at) noexcept nogil:
    """Step 2 of a mini-batch (rows b0 .. b0 + mb.n_rows of r): each row's
    margin from the start weights mb.w0[mb.idx[entry]], its eta of step
    t0 + 1 + b, g s and -eta g s into mb, and the progressive sums (loss,
    weight, correct) into stats.  OK, or E_MARGIN / E_UPDATE with the row
    in failed_at.  The mini-batch loop and a cluster worker
    (SGDKernel.minibatch_factors) both run this, so their factors agree
    bit for bit."""
    cdef Py_ssize_t b, j
    cdef int64_t lo, hi, base = mb.indptr[0]
    cdef double y, weight, acc, max_x, margin, g, eta, upd, gs
    stats[0] = stats[1] = stats[2] = 0.0
    for b in range(mb.n_rows):
        lo = mb.indptr[b]
        hi = mb.indptr[b + 1]
        y = r.labels[b0 + b]
        if loss_classifies(k.loss) and y == 0.0:
            y = -1.0
        weight = r.weights[b0 + b] if r.weights != NULL else 1.0
        acc = 0.0
        max_x = 0.0
        for j in range(lo, hi):
            if fabs(values[j]) > max_x:
                max_x = fabs(values[j])
            acc += mb.w0[mb.idx[j - base]] * values[j]
        margin = acc * k.scale + k.intercept
        if not isfinite(margin):
            failed_at[0] = b0 + b
            return E_MARGIN
        g = loss_gradient(k.loss, y, margin, k.quantile_tau)
        eta = step_size(k.schedule, k.eta0, k.power_t, k.decay_rate,
                        k.decay_steps, k.t + 1 + b)
        upd = -eta * g * weight
        gs = g * weight
        if not isfinite(upd) or not isfinite(upd / k.scale * max_x) \
                or not isfinite(gs * max_x):
            failed_at[0] = b0 + b
            return E_UPDATE
        mb.eta[b] = eta
        mb.upd[b] = upd
        mb.gs[b] = gs
        if weight != 0.0:       # 0 * an infinite loss is no loss, not NaN
            stats[0] += weight * loss_value(k.loss, y, margin, k.quantile_tau)
        stats[1] += weight
        if loss_classifies(k.loss) and (margin > 0) == (y > 0):
            stats[2] += 1
    return OK


cdef void mb_flags(MB* mb, const floating* values) noexcept nogil:
    """Which keys some row with g s != 0 touches (mb.grad), and which of
    them a non-zero value gives a slot (mb.need)."""
    cdef Py_ssize_t b, j, u
    cdef int64_t base = mb.indptr[0]
    for b in range(mb.n_rows):
        if mb.gs[b] != 0.0:
            for j in range(mb.indptr[b], mb.indptr[b + 1]):
                u = mb.idx[j - base]
                mb.grad[u] = 1
                if values[j] != 0.0:
                    mb.need[u] = 1.0


# ============================================================ mini-batch loops
# docs/algorithms.md, "Mini-batches".  For each mini-batch of B rows:
# 1. its distinct keys (first-seen order), each found once and caught up to
#    the mini-batch's start (w0);
# 2. every row's margin from w0, its progressive loss, g, and its eta of
#    step t0 + 1 + b (the loss's clipping and the importance weight as in
#    the sequential loop);
# 3. slots for the keys with a non-zero value in a row with g s != 0;
# 4. the rule's <kernel>_mb_step: the per-key sums of the contributions in
#    example order, one update per touched key, the lazy penalty of the B
#    steps (rules/*.pxi);
# 5. the intercept takes the sum of the rows' -eta g s; t += B; rebase;
#    pruning of the touched keys whose state is that of an absent one.
# With B = 1 every step is the sequential loop's arithmetic in the same
# order, so the weights are bit for bit those of <kernel>_learn (for examples
# without a key repeated in them).  No budget or expiry here (the options
# refuse them with minibatch > 1).


cdef int plain_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef plain_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <plain_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = plain_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if plain_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <plain_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        plain_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if plain_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            plain_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <plain_slot*>mb.uslots[u]
            if p != NULL and plain_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <plain_slot*>store_find(k.store, cand[j])
            if p != NULL and plain_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int plain_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef plain_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <plain_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = plain_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if plain_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <plain_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        plain_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if plain_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            plain_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <plain_slot*>mb.uslots[u]
            if p != NULL and plain_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <plain_slot*>store_find(k.store, cand[j])
            if p != NULL and plain_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int subgradient_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef subgradient_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <subgradient_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = subgradient_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if subgradient_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <subgradient_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        subgradient_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if subgradient_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            subgradient_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <subgradient_slot*>mb.uslots[u]
            if p != NULL and subgradient_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <subgradient_slot*>store_find(k.store, cand[j])
            if p != NULL and subgradient_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int subgradient_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef subgradient_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <subgradient_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = subgradient_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if subgradient_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <subgradient_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        subgradient_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if subgradient_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            subgradient_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <subgradient_slot*>mb.uslots[u]
            if p != NULL and subgradient_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <subgradient_slot*>store_find(k.store, cand[j])
            if p != NULL and subgradient_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int cumulative_start_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef cumulative_start_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <cumulative_start_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = cumulative_start_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if cumulative_start_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <cumulative_start_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        cumulative_start_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if cumulative_start_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_start_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <cumulative_start_slot*>mb.uslots[u]
            if p != NULL and cumulative_start_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_start_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_start_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int cumulative_start_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef cumulative_start_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <cumulative_start_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = cumulative_start_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if cumulative_start_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <cumulative_start_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        cumulative_start_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if cumulative_start_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_start_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <cumulative_start_slot*>mb.uslots[u]
            if p != NULL and cumulative_start_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_start_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_start_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int cumulative_first_seen_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef cumulative_first_seen_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <cumulative_first_seen_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = cumulative_first_seen_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if cumulative_first_seen_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <cumulative_first_seen_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        cumulative_first_seen_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if cumulative_first_seen_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_first_seen_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <cumulative_first_seen_slot*>mb.uslots[u]
            if p != NULL and cumulative_first_seen_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_first_seen_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_first_seen_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int cumulative_first_seen_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef cumulative_first_seen_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <cumulative_first_seen_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = cumulative_first_seen_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if cumulative_first_seen_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <cumulative_first_seen_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        cumulative_first_seen_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if cumulative_first_seen_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_first_seen_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <cumulative_first_seen_slot*>mb.uslots[u]
            if p != NULL and cumulative_first_seen_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_first_seen_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_first_seen_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int cumulative_adaptive_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef cumulative_adaptive_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <cumulative_adaptive_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = cumulative_adaptive_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if cumulative_adaptive_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <cumulative_adaptive_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        cumulative_adaptive_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if cumulative_adaptive_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_adaptive_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <cumulative_adaptive_slot*>mb.uslots[u]
            if p != NULL and cumulative_adaptive_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_adaptive_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_adaptive_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int cumulative_adaptive_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef cumulative_adaptive_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <cumulative_adaptive_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = cumulative_adaptive_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if cumulative_adaptive_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <cumulative_adaptive_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        cumulative_adaptive_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if cumulative_adaptive_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            cumulative_adaptive_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <cumulative_adaptive_slot*>mb.uslots[u]
            if p != NULL and cumulative_adaptive_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <cumulative_adaptive_slot*>store_find(k.store, cand[j])
            if p != NULL and cumulative_adaptive_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int fobos_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef fobos_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <fobos_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = fobos_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if fobos_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <fobos_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        fobos_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            fobos_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <fobos_slot*>mb.uslots[u]
            if p != NULL and fobos_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and fobos_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int fobos_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef fobos_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <fobos_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = fobos_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if fobos_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <fobos_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        fobos_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            fobos_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <fobos_slot*>mb.uslots[u]
            if p != NULL and fobos_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and fobos_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int truncated_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef truncated_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <truncated_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = truncated_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if truncated_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <truncated_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        truncated_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if truncated_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            truncated_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <truncated_slot*>mb.uslots[u]
            if p != NULL and truncated_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <truncated_slot*>store_find(k.store, cand[j])
            if p != NULL and truncated_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int truncated_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef truncated_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <truncated_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = truncated_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if truncated_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <truncated_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        truncated_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if truncated_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            truncated_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <truncated_slot*>mb.uslots[u]
            if p != NULL and truncated_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <truncated_slot*>store_find(k.store, cand[j])
            if p != NULL and truncated_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int adagrad_fobos_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef adagrad_fobos_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <adagrad_fobos_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = adagrad_fobos_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if adagrad_fobos_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <adagrad_fobos_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        adagrad_fobos_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if adagrad_fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            adagrad_fobos_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <adagrad_fobos_slot*>mb.uslots[u]
            if p != NULL and adagrad_fobos_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <adagrad_fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and adagrad_fobos_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int adagrad_fobos_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef adagrad_fobos_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <adagrad_fobos_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = adagrad_fobos_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if adagrad_fobos_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <adagrad_fobos_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        adagrad_fobos_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if adagrad_fobos_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            adagrad_fobos_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <adagrad_fobos_slot*>mb.uslots[u]
            if p != NULL and adagrad_fobos_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <adagrad_fobos_slot*>store_find(k.store, cand[j])
            if p != NULL and adagrad_fobos_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int ftrl_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef ftrl_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <ftrl_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = ftrl_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if ftrl_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <ftrl_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        ftrl_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if ftrl_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            ftrl_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <ftrl_slot*>mb.uslots[u]
            if p != NULL and ftrl_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <ftrl_slot*>store_find(k.store, cand[j])
            if p != NULL and ftrl_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int ftrl_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef ftrl_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <ftrl_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = ftrl_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if ftrl_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <ftrl_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        ftrl_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if ftrl_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            ftrl_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <ftrl_slot*>mb.uslots[u]
            if p != NULL and ftrl_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <ftrl_slot*>store_find(k.store, cand[j])
            if p != NULL and ftrl_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int spred_mb_learn_f32(SGDKernel k, Rows* r, const float* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef spred_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <spred_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = spred_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if spred_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <spred_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        spred_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if spred_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            spred_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <spred_slot*>mb.uslots[u]
            if p != NULL and spred_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <spred_slot*>store_find(k.store, cand[j])
            if p != NULL and spred_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status


cdef int spred_mb_learn_f64(SGDKernel k, Rows* r, const double* values, Py_ssize_t B,
                                double* out, Py_ssize_t* failed_at,
                                Py_ssize_t* learned) noexcept nogil:
    cdef Py_ssize_t n_rows = r.n_rows, max_nnz = r.max_nnz
    cdef Py_ssize_t b0 = 0, nb, b, j, u, i, n_cand, size, mask
    cdef int64_t base
    cdef MB mb
    cdef spred_slot* p
    cdef uint64_t key
    cdef double total
    cdef double loss_sum = 0.0, weight_sum = 0.0, n_correct = 0.0
    cdef double b_loss, b_weight, b_correct
    cdef double stats[3]
    cdef int status = OK
    cdef uint64_t* cand = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    cdef Py_ssize_t* table = <Py_ssize_t*>malloc(group_table_size(max_nnz) * sizeof(Py_ssize_t))
    mb.eta = <double*>malloc((B + 1) * sizeof(double))
    mb.gs = <double*>malloc((B + 1) * sizeof(double))
    mb.upd = <double*>malloc((B + 1) * sizeof(double))
    mb.coef = <double*>malloc((B + 1) * sizeof(double))
    mb.ukeys = <uint64_t*>malloc((max_nnz + 1) * sizeof(uint64_t))
    mb.uslots = <void**>malloc((max_nnz + 1) * sizeof(void*))
    mb.w0 = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.sum = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.need = <double*>malloc((max_nnz + 1) * sizeof(double))
    mb.grad = <signed char*>malloc(max_nnz + 1)
    mb.sgn = <signed char*>malloc(max_nnz + 1)
    mb.idx = <Py_ssize_t*>malloc((max_nnz + 1) * sizeof(Py_ssize_t))
    learned[0] = 0
    if cand == NULL or table == NULL or mb.eta == NULL or mb.gs == NULL or mb.upd == NULL \
            or mb.coef == NULL or mb.ukeys == NULL or mb.uslots == NULL or mb.w0 == NULL \
            or mb.sum == NULL or mb.need == NULL or mb.grad == NULL or mb.sgn == NULL \
            or mb.idx == NULL:
        status = E_NOMEM
        failed_at[0] = 0
        n_rows = 0
    while b0 < n_rows:
        nb = B if b0 + B <= n_rows else n_rows - b0
        mb.n_rows = nb
        mb.indptr = r.indptr + b0
        mb.t0 = k.t
        base = mb.indptr[0]

        # 1. The distinct keys, each found and caught up once.
        size = group_table_size(mb.indptr[nb] - base)
        mask = size - 1
        for i in range(size):
            table[i] = -1
        mb.n_keys = 0
        for j in range(base, mb.indptr[nb]):
            key = r.keys[j]
            i = <Py_ssize_t>(fmix64(key) & <uint64_t>mask)
            while table[i] >= 0 and mb.ukeys[table[i]] != key:
                i = (i + 1) & mask
            if table[i] < 0:
                table[i] = mb.n_keys
                mb.ukeys[mb.n_keys] = key
                mb.n_keys += 1
            mb.idx[j - base] = table[i]
        # Room first: growing the table moves every slot.
        if k.store.reserve(mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break
        for u in range(mb.n_keys):
            if u + 4 < mb.n_keys:
                store_prefetch(k.store, mb.ukeys[u + 4])
            p = <spred_slot*>store_find(k.store, mb.ukeys[u])
            mb.uslots[u] = <void*>p
            mb.w0[u] = spred_weight(k, p) if p != NULL else 0.0
            mb.need[u] = 0.0
            mb.grad[u] = 0

        # 2. Margins from the start weights; losses; gradients (or the
        # factors a cluster worker computed the same way: mb_row_factors).
        if r.factors == NULL:
            status = mb_row_factors(k, &mb, r, values, b0, stats, failed_at)
            b_loss = stats[0]
            b_weight = stats[1]
            b_correct = stats[2]
        else:
            for b in range(nb):
                mb.eta[b] = r.factors[3 * (b0 + b)]
                mb.gs[b] = r.factors[3 * (b0 + b) + 1]
                mb.upd[b] = r.factors[3 * (b0 + b) + 2]
            b_loss = b_weight = b_correct = 0.0
        mb_flags(&mb, values)
        if status != OK:
            break

        # Within a batch (SGDKernel.begin), the slots this mini-batch
        # changes are journaled first (docs/algorithms.md, "Atomic batches").
        if store_journal_slots(k.store, mb.uslots, mb.n_keys) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 3. Slots for the keys the mini-batch gives a weight.
        if spred_insert_new(k, mb.ukeys, mb.need, mb.n_keys,
                                 <spred_slot**>mb.uslots) != 0:
            status = E_NOMEM
            failed_at[0] = b0
            break

        # 4. The rule's one update per key, the penalty of the B steps.
        spred_mb_step(k, &mb, values)

        # 5. Intercept, clocks, pruning.
        if k.fit_intercept:
            total = 0.0
            for b in range(nb):
                total += mb.upd[b]
            k.intercept += total
        # As in the sequential loop: a weight, intercept or clock the update
        # made infinite refuses the mini-batch (its batch is undone).
        if not state_finite(k, mb.uslots, mb.n_keys):
            status = E_UPDATE
            failed_at[0] = b0
            break
        k.t += nb
        if spred_needs_rebase(k):
            k.store.journal_freeze()    # every slot changes: copy the table once
            spred_rebase(k)
        n_cand = 0
        for u in range(mb.n_keys):
            p = <spred_slot*>mb.uslots[u]
            if p != NULL and spred_prunable(k, p):
                cand[n_cand] = mb.ukeys[u]
                n_cand += 1
        for j in range(n_cand):
            p = <spred_slot*>store_find(k.store, cand[j])
            if p != NULL and spred_prunable(k, p):
                k.store.remove(<char*>p)
        loss_sum += b_loss
        weight_sum += b_weight
        n_correct += b_correct
        b0 += nb
        learned[0] = b0
    free(cand); free(table); free(mb.eta); free(mb.gs); free(mb.upd); free(mb.coef)
    free(mb.ukeys); free(mb.uslots); free(mb.w0); free(mb.sum); free(mb.need); free(mb.grad)
    free(mb.sgn); free(mb.idx)
    if status == OK:
        failed_at[0] = learned[0]
    out[0] = loss_sum
    out[1] = weight_sum
    out[2] = n_correct
    return status
