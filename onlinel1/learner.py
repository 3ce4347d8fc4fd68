"""The Python API over the kernels: ``Learner``.

>>> import numpy as np
>>> from onlinel1 import Batch, Learner
>>> learner = Learner(loss="log", update="fobos", l1=1e-3, eta0=0.5)
>>> batch = Batch(indptr=[0, 2, 3], keys=[1, 7, 1], values=[1.0, 1.0, 1.0],
...               labels=[1, -1])
>>> result = learner.learn(batch)   # progressive (before-update) evaluation
>>> result.rows, round(result.loss, 4), result.accuracy
(2, 0.8335, 0.0)
>>> learner.predict(Batch([0, 1], [1], [1.0])).round(4)
array([0.4695])
>>> keys, weights = learner.weights()
>>> keys.tolist()
[1, 7]
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from onlinel1._kernels.sgd import RULES, SGDKernel
from onlinel1.batch import Batch, BatchError
from onlinel1.errors import NumericError, StoreFullError
from onlinel1.options import LearnerOptions
from onlinel1.result import LearnResult

__all__ = ["Learner", "BatchError", "NumericError", "StoreFullError"]

STATE_FORMAT = "onlinel1.learner"
STATE_VERSION = 1
#: The state column of the clock of each feature's last update, kept with
#: a memory budget or expiry (docs/algorithms.md, "The memory budget").
CLOCK_COLUMN = "last_update"


def state_columns(options: LearnerOptions) -> tuple[str, ...]:
    """The names of the per-feature state columns of a learner with
    ``options``: its rule's (``RuleSpec.state_for``), then the clock column if
    a memory budget or expiry is on."""
    columns = RULES[options.update].state_for(options)
    return columns + (CLOCK_COLUMN,) if options.budgeted else columns


class _Discarded:
    """The kernel of a learner whose batch failed part-way in a ``learn``
    with ``atomic=False``: every use raises, naming why."""

    def __init__(self, why: str) -> None:
        self._why = why

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(self._why)


class Learner:
    """Online sparse linear model with lazily applied L1/L2 SGD.

    Keyword arguments are those of :class:`onlinel1.options.LearnerOptions`
    (``loss``, ``update``, ``l1``, ``l2``, ``eta0``, ``schedule``,
    ``power_t``, ``decay_rate``, ``decay_steps``, ``origin``,
    ``fit_intercept``, ``minibatch``, ...); a bad one raises ``ValueError``
    naming it.  With ``minibatch=B`` > 1 the stream is learned in
    mini-batches of B rows (docs/algorithms.md, "Mini-batches"; ``flush``).
    """

    #: The rows of an incomplete mini-batch (``minibatch`` > 1), at most
    #: B - 1: they are learned when it is whole, or by ``flush``.
    _pending: Batch | None = None

    def __init__(self, options: LearnerOptions | None = None, **kwargs: Any) -> None:
        if options is not None and kwargs:
            raise ValueError("give either a LearnerOptions or keyword arguments, not both")
        self.options = options if options is not None else LearnerOptions(**kwargs)
        self._kernel = SGDKernel(self.options)
        self._progress = {"examples": 0, "weight_sum": 0.0, "loss_sum": 0.0, "correct": 0}
        self._dropped = (0, 0)
        self._pending = None

    def __repr__(self) -> str:
        o = self.options
        return (f"Learner(loss={o.loss!r}, update={o.update!r}, l1={o.l1!r}, l2={o.l2!r}, "
                f"examples={self.examples_seen}, nnz={self.nnz})")

    # ------------------------------------------------------------- learning

    def check(self, batch: Any, learning: bool = True) -> Batch:
        """Raise ``BatchError`` (or ``TypeError``) unless ``batch`` can be
        learned (``learning=True``: labels present and in range for the
        loss) or predicted; return it."""
        if not isinstance(batch, Batch):
            raise TypeError(f"batch must be an onlinel1.Batch, got {type(batch).__name__}")
        if learning and batch.labels is None:
            raise BatchError("labels: a batch to learn from needs labels", field="labels",
                             reason="missing")
        batch.check_finite()
        if learning and self.options.classification:
            batch.check_binary_labels()
        if learning and self.options.loss == "poisson":
            batch.check_count_labels()
        if learning and self.options.max_features > 0:
            self._check_budget(batch)
        return batch

    def _check_budget(self, batch: Batch) -> None:
        """Refuse a batch with a row of more distinct keys than
        ``max_features``: that example alone would not fit the budget."""
        n_max = self.options.max_features
        indptr = np.asarray(batch.indptr)
        for row in np.flatnonzero(np.diff(indptr) > n_max).tolist():
            distinct = np.unique(batch.keys[indptr[row]:indptr[row + 1]]).size
            if distinct > n_max:
                raise BatchError(f"keys: row {row} has {distinct} distinct features, more "
                                 f"than max_features={n_max} (the memory budget must hold "
                                 f"one example whole)", field="keys", row=int(row),
                                 reason="max_features")

    def learn(self, batch: Batch, *, check: bool = True,
              rows: tuple[int, int] | None = None,
              wake: tuple[int, int] | None = None, atomic: bool = True) -> LearnResult:
        """Learn the rows of ``batch`` in order; return a :class:`LearnResult`
        of them.

        The loss of each example is measured before the model learns from
        it (progressive validation): ``result.loss`` is the importance
        weighted mean, ``result.rows`` the rows learned, ``result.correct``
        the right predictions among them (None for the squared loss).  A
        malformed batch raises ``BatchError`` (a ``ValueError``) and changes
        nothing.  ``check=False`` skips that validation for a batch that
        already passed ``check``; ``rows=(start, stop)`` learns only those
        rows (the daemon checks a batch once, then learns it in slices this
        way).  ``wake=(fd, every)`` may stop early, after a whole row: every
        ``every`` features the learner polls the file descriptor ``fd`` and
        stops if it is readable (the daemon passes its request socket's);
        ``result.rows`` says how many rows were learned.

        The batch is atomic: an example that overflows raises
        ``NumericError`` (``StoreFullError`` if the store cannot grow) and
        the whole batch is undone, the model and its counts bit for bit as
        they were before it (docs/algorithms.md, "Atomic batches"); the
        exception's ``row`` is that example's index in the batch and its
        ``result`` counts no rows.  Inside a batch opened with ``begin``
        the caller decides instead (``commit`` or ``rollback``), and
        ``result`` counts the rows learned before the failing one.

        ``atomic=False`` (outside ``begin``) keeps no undo journal, for a
        caller that never goes on after a failure: ``onlinel1 train`` stops
        without saving.  The learner is then left part-way through the
        failing example and every later use of it raises ``RuntimeError``.
        The journal copies each slot an example changes (its cost at 13 M
        live features: benchmarks/results/atomic.md).
        """
        if check:
            self.check(batch, learning=True)
        start, stop = rows if rows is not None else (0, batch.n_rows)
        if self.options.minibatch > 1:
            run = lambda: self._learn_minibatches(batch, start, stop)   # noqa: E731
        else:
            run = lambda: self._learn_sequential(batch, start, stop, wake)   # noqa: E731
        if atomic or self._kernel.in_batch:
            return self._atomic(run)
        try:
            return run()
        except BaseException as exc:
            self._kernel = _Discarded(
                f"this learner is unusable: a batch learned with atomic=False failed part-way "
                f"({type(exc).__name__}: {exc}), and nothing was journaled to undo it")
            raise

    def _atomic(self, learn: Any) -> LearnResult:
        """``learn()`` as one batch: undone whole if it raises (unless the
        caller opened the batch with ``begin``: then it is the caller's)."""
        if self._kernel.in_batch:
            return learn()
        self.begin()
        try:
            result = learn()
        except (NumericError, StoreFullError) as exc:
            self.rollback()
            raise type(exc)(None, 0, (0.0, 0.0, 0), row=exc.row, reason=exc.reason) from None
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return result

    def _learn_sequential(self, batch: Batch, start: int, stop: int,
                          wake: tuple[int, int] | None) -> LearnResult:
        self._dropped = (self._kernel.evicted, self._kernel.expired)
        try:
            wake_fd, wake_every = wake if wake is not None else (-1, 1)
            loss_sum, weight_sum, correct, learned = self._kernel.learn(
                batch.indptr, batch.keys, batch.values, batch.labels, batch.weights,
                start, stop, wake_fd, wake_every)
        except (NumericError, StoreFullError) as exc:
            # The rows before the failing one are counted until the batch
            # is rolled back.
            exc.result = self._count(exc.learned, *exc.progress)
            raise
        return self._count(learned, loss_sum, weight_sum, correct)

    def begin(self) -> None:
        """Open a batch that spans several ``learn`` calls (the daemon learns
        a batch in slices): until ``commit``, ``rollback`` undoes every
        change since, weights, state, clocks and progress counts, bit for
        bit.  The undo journal costs at most the batch's touched slots, and
        never more than one copy of the weight store."""
        self._kernel.begin()
        self._saved = (dict(self._progress), self._pending)

    @property
    def in_batch(self) -> bool:
        """Whether a batch opened by ``begin`` is open."""
        return self._kernel.in_batch

    def commit(self) -> None:
        """Keep the open batch."""
        self._kernel.commit()

    def rollback(self) -> None:
        """Undo the open batch (MemoryError if memory ran out while it was
        journaled: then it cannot be undone)."""
        self._progress, self._pending = self._saved
        self._kernel.rollback()

    # ---------------------------------------------------------- mini-batches
    # docs/algorithms.md, "Mini-batches".  The stream is cut into
    # consecutive mini-batches of B rows whatever its cut into learn calls:
    # the rows of an incomplete one wait here (the weights do not change
    # until it is whole, so keeping them is exactly "margins at its start").

    @property
    def pending_rows(self) -> int:
        """Rows of an incomplete mini-batch waiting for the rest of it
        (0 with ``minibatch=1``)."""
        return 0 if self._pending is None else self._pending.n_rows

    def flush(self) -> LearnResult:
        """Learn the pending rows of an incomplete mini-batch now, as a
        short mini-batch of that many rows, and return their
        ``LearnResult`` (of no rows if none were pending).  The next row
        starts a new mini-batch.  ``train`` flushes at the end of its
        input; saving a model (its ``state`` or model file) flushes first."""
        pending = self._pending
        if pending is None:
            return LearnResult(0, 0.0, 0.0, 0 if self.options.classification else None)

        def learn() -> LearnResult:
            self._pending = None
            return self._learn_rows(pending, 0, pending.n_rows, pending.n_rows, 0)
        return self._atomic(learn)

    def _learn_rows(self, batch: Batch, start: int, stop: int, size: int,
                    offset: int) -> LearnResult:
        """Rows ``start:stop`` of ``batch`` as mini-batches of ``size``;
        an error's ``row`` is moved by ``offset`` (into the caller's batch)."""
        self._dropped = (self._kernel.evicted, self._kernel.expired)
        try:
            loss_sum, weight_sum, correct, learned = self._kernel.learn_minibatch(
                batch.indptr, batch.keys, batch.values, batch.labels, batch.weights,
                size, start, stop)
        except (NumericError, StoreFullError) as exc:
            exc.row = max(exc.row + offset, 0)
            exc.result = self._count(exc.learned, *exc.progress)
            raise
        return self._count(learned, loss_sum, weight_sum, correct)

    def _learn_minibatches(self, batch: Batch, start: int, stop: int) -> LearnResult:
        """``learn`` with ``minibatch`` > 1: the pending rows and the first
        of ``batch`` complete a mini-batch, the whole ones of the rest are
        learned in place, the last < B rows wait.  The result's ``rows``
        are the rows taken from ``batch`` (all of them; ``wake`` is not
        used), its sums those of the examples learned during the call."""
        size = self.options.minibatch
        taken = stop - start
        sums = [0, 0.0, 0.0, 0]

        def add(result: LearnResult) -> None:
            for i, v in enumerate((result.rows, result.loss_sum, result.weight_sum,
                                   result.correct or 0)):
                sums[i] += v

        if self._pending is not None:
            have = self._pending.n_rows
            take = min(size - have, taken)
            head = _concat(self._pending, batch.slice(start, start + take))
            start += take
            if head.n_rows < size:
                self._pending = head
                return LearnResult(taken, 0.0, 0.0, 0 if self.options.classification else None)
            self._pending = None
            try:
                add(self._learn_rows(head, 0, size, size, start - take - have))
            except (NumericError, StoreFullError) as exc:
                exc.result = LearnResult(0, 0.0, 0.0, exc.result.correct)
                raise
        whole = start + (stop - start) // size * size
        if whole > start:
            try:
                add(self._learn_rows(batch, start, whole, size, 0))
            except (NumericError, StoreFullError) as exc:
                exc.result = LearnResult(sums[0] + exc.result.rows, sums[1] + exc.result.loss_sum,
                                         sums[2] + exc.result.weight_sum,
                                         sums[3] + (exc.result.correct or 0))
                raise
        if stop > whole:
            self._pending = _concat(None, batch.slice(whole, stop))
        return LearnResult(taken, sums[1], sums[2],
                           sums[3] if self.options.classification else None)

    def _count(self, examples: int, loss_sum: float, weight_sum: float,
               correct: int) -> LearnResult:
        """Add one call's counts to the progress; return them as a LearnResult."""
        p = self._progress
        p["examples"] += examples
        p["loss_sum"] += loss_sum
        p["weight_sum"] += weight_sum
        p["correct"] += correct
        evicted, expired = self._dropped
        return LearnResult(examples, loss_sum, weight_sum,
                           correct if self.options.classification else None,
                           self._kernel.evicted - evicted, self._kernel.expired - expired)

    def predict(self, batch: Batch, *, check: bool = True) -> np.ndarray:
        """Probabilities of the positive class for the log loss, the mean
        ``exp(margin)`` for the poisson loss, margins ``b + sum_i w_i x_i``
        otherwise.  Labels, if any, are ignored.  ``check=False`` skips the
        validation of a batch already checked."""
        if check:
            self.check(batch, learning=False)
        out = self._kernel.margins(batch.indptr, batch.keys, batch.values,
                                   self.options.loss == "log")
        if self.options.loss == "poisson":
            with np.errstate(over="ignore"):
                np.exp(out, out=out)
        return out

    def decision_function(self, batch: Batch, *, check: bool = True) -> np.ndarray:
        """Margins ``b + sum_i w_i x_i`` of every row."""
        if check:
            self.check(batch, learning=False)
        return self._kernel.margins(batch.indptr, batch.keys, batch.values, False)

    # ---------------------------------------------------------------- model

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, weights)`` of the non-zero weights, sorted by key.

        The weights are those the next example would see (caught up to the
        current step)."""
        keys, w = self._kernel.current_weights()
        live = w != 0.0
        keys, w = keys[live], w[live]
        order = np.argsort(keys, kind="stable")
        return keys[order], w[order]

    def weights_of(self, keys: Any) -> np.ndarray:
        """The current weight of each of ``keys`` (0 for absent ones)."""
        return self._kernel.lookup(np.ascontiguousarray(keys, dtype=np.uint64))

    @property
    def intercept(self) -> float:
        return self._kernel.intercept

    @property
    def nnz(self) -> int:
        """Number of non-zero weights (the intercept not counted)."""
        return self._kernel.count_nonzero()

    @property
    def store_size(self) -> int:
        """Number of features held in the store (>= ``nnz``)."""
        return len(self._kernel.store)

    @property
    def memory_bytes(self) -> int:
        """Bytes allocated by the weight store."""
        return self._kernel.store.memory_bytes

    @property
    def evicted(self) -> int:
        """Features the memory budget (``max_features``) has evicted, over
        the model's whole life (docs/algorithms.md, "The memory budget")."""
        return self._kernel.evicted

    @property
    def expired(self) -> int:
        """Features dropped because they had not been updated for
        ``expire_after_examples`` examples, over the model's whole life."""
        return self._kernel.expired

    @property
    def examples_seen(self) -> int:
        return self._kernel.t

    @property
    def progress(self) -> dict[str, float]:
        """Progressive validation since the start: examples, mean loss,
        accuracy (classification only)."""
        p = self._progress
        out = {"examples": p["examples"],
               "loss": p["loss_sum"] / p["weight_sum"] if p["weight_sum"] > 0 else float("nan")}
        if self.options.classification:
            out["accuracy"] = p["correct"] / p["examples"] if p["examples"] else float("nan")
        return out

    @property
    def progress_sums(self) -> dict[str, float]:
        """The raw progressive-validation counters: examples, importance
        weighted ``loss_sum`` and ``weight_sum``, ``correct`` predictions."""
        return dict(self._progress)

    def learning_rate(self) -> float:
        """The schedule's step for the next example (for adagrad-fobos and
        ftrl, whose weights step per coordinate, it is the intercept's)."""
        o = self.options
        t = self._kernel.t + 1
        if o.schedule == "constant":
            return o.eta0
        if o.schedule == "invscaling":
            return o.eta0 / t ** o.power_t
        return o.eta0 * o.decay_rate ** (t / o.decay_steps)

    # ---------------------------------------------------------------- state

    @property
    def state(self) -> dict[str, Any]:
        """The complete state: options, clocks, counters and every
        per-feature array (copies).  ``Learner.from_state`` restores it
        bit-exactly.  With ``minibatch`` > 1 the pending rows of an
        incomplete mini-batch are learned first (``flush``): a state never
        holds rows."""
        self.flush()
        keys, w, aux = self._kernel.store.export()
        columns = state_columns(self.options)
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "options": self.options.to_state_dict(),
            "clocks": self._kernel.get_clocks(),
            "progress": dict(self._progress),
            "keys": keys,
            "weights": w,
            "columns": dict(zip(columns, aux)),
        }

    def with_options(self, options: LearnerOptions) -> "Learner":
        """A learner with other options that starts from this one's weights,
        intercept, example count and progress (its rule's per-feature state
        starts afresh: a new penalty clock at 0; with a memory budget or
        expiry, every feature counts as updated by the last example, and
        the budget's eviction runs at once if there are too many).  Pending
        rows of an incomplete mini-batch are learned first (``flush``)."""
        self.flush()
        new = Learner(options)
        keys, weights = self.weights()
        stored, columns = RULES[options.update].from_weights(weights, options)
        if options.budgeted:
            columns = list(columns) + [np.full(keys.size, float(self._kernel.t))]
        new._kernel.store.load(keys, stored, columns)
        new._kernel.set_clocks({"t": self._kernel.t, "scale": 1.0, "intercept": self.intercept,
                                "clock": 0.0, "clock_scale": 1.0,
                                "last_compact_t": self._kernel.t})
        new._progress = dict(self._progress)
        new._kernel.enforce_budget()
        return new

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Learner":
        """A learner that continues exactly where ``state`` was taken."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state: not a learner state (format {state.get('format')!r})")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state: unsupported version {state.get('version')!r} "
                             f"(this build reads version {STATE_VERSION})")
        learner = cls(LearnerOptions.from_dict(state["options"]))
        columns = state_columns(learner.options)
        given = state["columns"]
        if set(given) != set(columns):
            raise ValueError(f"state: columns {sorted(given)} do not match the rule's "
                             f"{sorted(columns)}")
        learner._kernel.store.load(state["keys"], state["weights"], [given[c] for c in columns])
        learner._kernel.set_clocks(state["clocks"])
        learner._progress = {k: state["progress"][k] for k in learner._progress}
        return learner

    # ------------------------------------------- pickling and scikit-learn

    def __eq__(self, other: object) -> bool:
        """Whether ``other`` holds the same state, bit for bit: options,
        clocks, progress counters, every stored feature's key, weight and
        rule state (whatever the order of the stores), and the pending
        rows of an incomplete mini-batch.  Equal learners go on to learn
        the same.  Nothing is flushed or changed."""
        if not isinstance(other, Learner):
            return NotImplemented
        return self is other or (self.options == other.options
                                 and self._state_bytes() == other._state_bytes())

    __hash__ = None  # type: ignore[assignment]   # a learner changes: no hash

    def _state_bytes(self) -> tuple:
        keys, w, aux = self._kernel.store.export()
        order = np.argsort(keys, kind="stable")
        clocks = self._kernel.get_clocks()
        pending = self._pending
        rows = None if pending is None else tuple(
            None if a is None else np.ascontiguousarray(a).tobytes()
            for a in (pending.indptr, pending.keys, pending.values, pending.labels,
                      pending.weights))
        return (tuple(sorted((k, repr(v)) for k, v in clocks.items())),
                tuple(sorted((k, repr(v)) for k, v in self._progress.items())),
                keys[order].tobytes(), w[order].tobytes(),
                tuple(np.ascontiguousarray(c)[order].tobytes() for c in aux), rows)

    def __getstate__(self) -> dict[str, Any]:
        """The pickled state: the bytes of this learner's model file
        (docs/model-format.md), so a pickle restores it bit for bit and is
        checked by the file's digest when it is read back."""
        from onlinel1 import model_file
        return {"model_file": model_file.encode(self)}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        from onlinel1 import model_file
        learner = model_file.decode(state["model_file"], source="pickled Learner")[0]
        self.__dict__.update(learner.__dict__)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The options as keyword arguments (``Learner(**get_params())`` is
        a fresh learner with the same settings), as scikit-learn's
        ``clone`` expects; ``deep`` is accepted and changes nothing."""
        return self.options.to_dict()


def _concat(first: Batch | None, second: Batch) -> Batch:
    """The rows of ``first`` (may be None) then those of ``second``, copied
    (the pending rows must not alias a caller's arrays)."""
    if first is None:
        return Batch(second.indptr - second.indptr[0], second.keys.copy(), second.values.copy(),
                     second.labels.copy(), None if second.weights is None else second.weights.copy())
    dtype = np.float64 if np.float64 in (first.values.dtype, second.values.dtype) \
        else np.float32
    indptr = np.concatenate([first.indptr, second.indptr[1:] - second.indptr[0] + first.indptr[-1]])
    weights = None
    if first.weights is not None or second.weights is not None:
        weights = np.concatenate([np.ones(first.n_rows) if first.weights is None else first.weights,
                                  np.ones(second.n_rows) if second.weights is None
                                  else second.weights])
    return Batch(indptr, np.concatenate([first.keys, second.keys]),
                 np.concatenate([first.values.astype(dtype, copy=False),
                                 second.values.astype(dtype, copy=False)]),
                 np.concatenate([first.labels, second.labels]), weights)
