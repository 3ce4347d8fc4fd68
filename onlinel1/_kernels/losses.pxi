# Losses (docs/algorithms.md, "Each example"): the value l(p, y) and g = dl/dp.
# Labels of the classification losses are -1/+1 here (the caller maps 0 to -1).

cdef enum:
    LOSS_LOG = 0
    LOSS_SQUARED = 1
    LOSS_HINGE = 2
    # Regression losses of counts and of quantiles (docs/algorithms.md,
    # "Each example"): the margin p is log of the mean for poisson, the
    # tau-quantile for quantile.
    LOSS_POISSON = 3
    LOSS_QUANTILE = 4


cdef inline bint loss_classifies(int loss) noexcept nogil:
    """Whether labels are classes (-1/+1, 0 read as -1): log and hinge."""
    return loss == LOSS_LOG or loss == LOSS_HINGE

# scikit-learn clips dl/dp to this magnitude (_sgd_fast MAX_DLOSS); so do we,
# so that one huge squared-loss residual cannot blow a weight to infinity.
cdef double MAX_DLOSS = 1e12


cdef inline double loss_value(int loss, double y, double p, double tau) noexcept nogil:
    cdef double z
    if loss == LOSS_POISSON:
        # Half the Poisson deviance: the negative log-likelihood of
        # y ~ Poisson(exp(p)) less its least value (at p = log y), so 0 for
        # a perfect prediction and never below 0.
        if y > 0:
            return exp(p) - y - y * (p - log(y))
        return exp(p)
    if loss == LOSS_QUANTILE:
        # The pinball loss at tau.
        return tau * (y - p) if y >= p else (1.0 - tau) * (p - y)
    if loss == LOSS_LOG:
        # log(1 + exp(-z)) without overflow for either sign of z = y p.
        z = y * p
        if z > 0:
            return log1p(exp(-z))
        return -z + log1p(exp(z))
    if loss == LOSS_SQUARED:
        return 0.5 * (p - y) * (p - y)
    z = 1.0 - y * p
    return z if z > 0 else 0.0


cdef inline double loss_gradient(int loss, double y, double p, double tau) noexcept nogil:
    cdef double z, e, g
    if loss == LOSS_POISSON:
        g = exp(p) - y
    elif loss == LOSS_QUANTILE:
        # A subgradient: 0 where p = y.
        g = -tau if y > p else (1.0 - tau) if y < p else 0.0
    elif loss == LOSS_LOG:
        # -y / (1 + exp(y p)), with exp of a non-positive argument only.
        z = y * p
        if z > 0:
            e = exp(-z)
            g = -y * e / (1.0 + e)
        else:
            g = -y / (1.0 + exp(z))
    elif loss == LOSS_SQUARED:
        g = p - y
    else:
        g = -y if y * p < 1.0 else 0.0
    if g > MAX_DLOSS:
        return MAX_DLOSS
    if g < -MAX_DLOSS:
        return -MAX_DLOSS
    return g
