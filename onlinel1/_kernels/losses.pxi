# Losses (docs/algorithms.md, "Each example"): the value l(p, y) and g = dl/dp.
# Labels of the classification losses are -1/+1 here (the caller maps 0 to -1).

cdef enum:
    LOSS_LOG = 0
    LOSS_SQUARED = 1
    LOSS_HINGE = 2

# scikit-learn clips dl/dp to this magnitude (_sgd_fast MAX_DLOSS); so do we,
# so that one huge squared-loss residual cannot blow a weight to infinity.
cdef double MAX_DLOSS = 1e12


cdef inline double loss_value(int loss, double y, double p) noexcept nogil:
    cdef double z
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


cdef inline double loss_gradient(int loss, double y, double p) noexcept nogil:
    cdef double z, e, g
    if loss == LOSS_LOG:
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
