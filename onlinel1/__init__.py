"""onlinel1: an online-learning daemon for sparse linear models with L1.

The learning core: ``Learner`` (lazy per-feature SGD with cumulative L1,
FOBOS and their baselines) over ``Batch`` (examples in CSR form).
"""
from onlinel1.batch import Batch, BatchError
from onlinel1.learner import Learner, NumericError, StoreFullError
from onlinel1.options import LearnerOptions

__all__ = ["Batch", "BatchError", "Learner", "LearnerOptions", "NumericError", "StoreFullError"]
__version__ = "0.1.0"
