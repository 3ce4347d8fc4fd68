# Step sizes (docs/algorithms.md, "Notation"); t counts examples from 1.

cdef enum:
    SCHEDULE_CONSTANT = 0
    SCHEDULE_INVSCALING = 1
    SCHEDULE_EXPONENTIAL = 2


cdef inline double step_size(int schedule, double eta0, double power_t,
                             double decay_rate, double decay_steps,
                             long long t) noexcept nogil:
    if schedule == SCHEDULE_CONSTANT:
        return eta0
    if schedule == SCHEDULE_INVSCALING:
        # eta0 / t^power_t, as scikit-learn's "invscaling".
        return eta0 / pow(<double>t, power_t)
    # Tsuruoka et al. 2009, section 4: eta0 * alpha^(t/N).
    return eta0 * pow(decay_rate, <double>t / decay_steps)
