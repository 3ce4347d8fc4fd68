"""onlinel1: an online-learning daemon for sparse linear models with L1.

The learning core: ``Learner`` (lazy per-feature SGD with cumulative L1,
FOBOS and their baselines) over ``Batch`` (examples in CSR form).
"""
from onlinel1.batch import Batch
from onlinel1.errors import BatchError, NumericError, OptionError, StoreFullError
from onlinel1.learner import Learner
from onlinel1.options import LearnerOptions
from onlinel1.result import LearnResult

__all__ = ["Batch", "BatchError", "LearnResult", "Learner", "LearnerOptions", "NumericError",
           "OptionError", "StoreFullError", "load", "save"]


def save(learner: Learner, path, names=None) -> int:
    """Write ``learner`` to the model file ``path`` (docs/model-format.md,
    the format of ``onlinel1 train --save`` and of the daemon's snapshots),
    atomically; return its size in bytes.  ``names`` maps feature keys to
    the names of string features (``Batch.from_rows(..., names=names)``
    fills one) and is kept for the stored keys.  ``load(path)`` gives the
    learner back with exactly the saved state."""
    from onlinel1 import model_file
    return model_file.save(path, learner, names)


def load(path) -> Learner:
    """The learner saved in a model file (``save``, ``onlinel1 train
    --save``, a daemon's snapshot), with exactly the saved state."""
    from onlinel1 import model_file
    return model_file.load(path)[0]


__version__ = "0.1.0"
