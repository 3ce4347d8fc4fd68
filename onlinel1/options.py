"""Learner options: the one place that validates settings and builds a learner.

The CLI, the daemon, snapshots and the tests all go through
``LearnerOptions`` so that a setting means the same everywhere and a bad one
is refused with the same message: an ``OptionError`` (a ``ValueError``)
whose ``option`` and ``reason`` say which setting and why.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from onlinel1._kernels.sgd import ORIGINS, RULES
from onlinel1._kernels.sgd import SCHEDULES as _SCHEDULES
from onlinel1.errors import OptionError

LOSSES = ("log", "squared", "hinge", "poisson", "quantile")
#: Other names of a loss (Vowpal Wabbit's ``--loss_function logistic``),
#: accepted wherever a loss is named and stored as the name they stand for.
LOSS_ALIASES = {"logistic": "log"}
#: Every name ``loss`` accepts.
LOSS_NAMES = LOSSES + tuple(LOSS_ALIASES)
#: The update rules, from the registry of onlinel1/_kernels/sgd.pyx.tp.
UPDATES = tuple(RULES)
SCHEDULES = tuple(_SCHEDULES)

#: The settings of the memory budget (docs/algorithms.md, "The memory budget").
BUDGET_FIELDS = ("max_features", "expire_after_examples")

#: How examples become features (docs/formats.md): set in the readers and
#: the daemon's row decoding, written to model files only where they are on.
FEATURE_FIELDS = ("interactions", "namespaced_integers")

#: Running sums (penalty clocks) are rebased when they pass this value.
DEFAULT_REBASE_AT = float(2**20)


def _bad(option: str, reason: str, detail: str) -> OptionError:
    """The error for ``option``: the message is its name, then ``detail``."""
    return OptionError(f"{option} {detail}", option=option, reason=reason, detail=detail)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, "type", f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise _bad(name, "not_finite", f"must be finite, got {value!r}")
    return value


def _minibatch(value: Any) -> int:
    """The ``minibatch`` option: an integer >= 1 (an integral float is
    taken as its int; bools and strings are refused)."""
    given = value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif not isinstance(value, (bool, int)) and hasattr(value, "__index__"):
        value = value.__index__()       # a numpy integer
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad("minibatch", "type", f"must be an integer >= 1, got {given!r}")
    if value < 1:
        raise _bad("minibatch", "range", f"must be an integer >= 1, got {given!r}")
    return value


def _count(name: str, value: Any) -> int:
    """An integer >= 0 (0: off); an integral float is taken as its int."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "type", f"must be an integer >= 0 (0: off), got {value!r}")
    if value < 0:
        raise _bad(name, "range", f"must be an integer >= 0 (0: off), got {value!r}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise _bad(name, "choice", f"must be one of {options}, got {value!r}")
    return value


#: What ``l1`` and ``l2`` are under each rule (docs/algorithms.md):
#: ``"example"``, a penalty every example applies (scaled by its step, as
#: scikit-learn's ``alpha`` and Vowpal Wabbit's ``--l1`` with SGD);
#: ``"total"``, one penalty on the whole stream's objective (FTRL's lambda1
#: and lambda2, never multiplied by the number of examples); ``None``, the
#: rule refuses a value > 0.
PENALTY_SCOPE = {
    "plain": {"l1": None, "l2": "example"},
    "subgradient": {"l1": "example", "l2": "example"},
    "cumulative": {"l1": "example", "l2": "example"},
    "fobos": {"l1": "example", "l2": "example"},
    "truncated": {"l1": "example", "l2": None},
    "adagrad-fobos": {"l1": "example", "l2": "example"},
    "ftrl": {"l1": "total", "l2": "total"},
    "spred": {"l1": "example", "l2": None},
}

#: The longest interaction and its wildcard (onlinel1/_kernels/interactions.pyx).
MAX_INTERACTION_ORDER = 8
INTERACTION_WILDCARD = ":"


def penalty_help(name: str) -> str:
    """What ``name`` (``"l1"`` or ``"l2"``) means under each rule, from
    ``PENALTY_SCOPE``: the text of ``--help`` and of the docs' table."""
    groups: dict[Any, list[str]] = {}
    for rule in UPDATES:
        groups.setdefault(PENALTY_SCOPE[rule][name], []).append(rule)
    total = {"l1": "FTRL's lambda1: a weight is 0 while its |z|, about the sum of its "
                   "gradients, is at most l1",
             "l2": "FTRL's lambda2, added to the rate of every coordinate"}[name]
    words = {"example": f"per example (each example's step applies eta * {name})",
             "total": f"a total over the whole stream, not multiplied by the number of "
                      f"examples ({total})",
             None: "must be 0"}
    parts = [f"{words[scope]} for {', '.join(rules)}"
             for scope, rules in groups.items()]
    return "; ".join(parts)


def normalise_interactions(value: Any) -> tuple[str, ...]:
    """The interactions ``value`` (a list of strings of namespace
    characters, Vowpal Wabbit's ``-q ab``, ``--cubic abc``), checked and in
    canonical form: the characters of each sorted (``ba`` crosses what
    ``ab`` does), repeats dropped, in the order given.  A character is a
    namespace's first byte: printable ASCII (``' '`` is the default
    namespace) except ``|``; ``:`` is the wildcard (every namespace of the
    example), allowed in interactions of two only.  ``OptionError`` names
    the one at fault."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _bad("interactions", "type",
                   f"must be a list of strings of namespace characters such as ['ab'], "
                   f"got {value!r}")
    out: list[str] = []
    for term in value:
        if not isinstance(term, str):
            raise _bad("interactions", "type", f"must be strings, got {term!r}")
        if not 2 <= len(term) <= MAX_INTERACTION_ORDER:
            raise _bad("interactions", "range",
                       f"must cross 2 to {MAX_INTERACTION_ORDER} namespaces, got {term!r}")
        bad = [c for c in term if not (" " <= c <= "~") or c == "|"]
        if bad:
            raise _bad("interactions", "choice",
                       f"{term!r}: {bad[0]!r} cannot start a namespace (a namespace is "
                       f"named by its first character: printable ASCII but '|', ' ' for "
                       f"the default namespace, ':' for any)")
        if INTERACTION_WILDCARD in term and len(term) != 2:
            raise _bad("interactions", "range",
                       f"{term!r}: the wildcard ':' goes in interactions of two namespaces")
        term = "".join(sorted(term))
        if term not in out:
            out.append(term)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class LearnerOptions:
    """Every setting of a learner, validated on construction.

    loss: ``log`` (labels -1/+1 or 0/1), ``squared``, ``hinge``,
        ``poisson`` (counts: labels >= 0, the margin is the log of the
        mean) or ``quantile`` (the pinball loss at ``quantile_tau``).
    quantile_tau: the quantile of ``quantile``, in (0, 1) (0.5: the median).
    update: ``plain`` (SGD, L2 if ``l2`` > 0), ``subgradient`` (naive L1
        subgradient), ``cumulative`` (Tsuruoka et al. 2009) or ``fobos``
        (Duchi & Singer 2009).  Any of them with ``l2`` > 0 adds L2 (the
        elastic net where ``l1`` > 0 too).
    l1, l2: penalty strengths, per example (scikit-learn's ``alpha``
        share) for every rule but ``ftrl``, whose ``l1`` and ``l2`` are its
        lambda1 and lambda2, totals over the stream (``PENALTY_SCOPE``).
    eta0, schedule, power_t, decay_rate, decay_steps: the step size
        ``eta0`` (constant), ``eta0 / t**power_t`` (invscaling) or
        ``eta0 * decay_rate**(t / decay_steps)`` (exponential).
    origin: where the cumulative penalty of a new feature starts: ``start``
        (paper semantics) or ``first-seen`` (for endless streams).
    fit_intercept: learn an unpenalised bias term.
    truncate_every, truncate_theta: K and theta of ``truncated``.
    adagrad_delta: delta of ``adagrad-fobos``'s eta0 / sqrt(delta + G_i).
    ftrl_beta: beta of ``ftrl`` (its alpha is eta0).
    spred_init, spred_threshold: the start (a, b) = (spred_init, 0) of a new
        feature under ``spred``, and the |w| at or below which it is zero.
    max_features: the memory budget, the most features the model holds (0:
        no bound); past it the least recently updated are evicted.
    expire_after_examples: a feature not updated for this many examples is
        dropped (0: never).
    interactions: namespaces to cross, Vowpal Wabbit's ``-q ab`` (a list of
        strings of namespace characters; ``normalise_interactions``).  The
        VW reader and the daemon's row decoding cross them; a ``Batch`` of
        keys is learned as it is.
    namespaced_integers: an integer feature name in a named namespace is
        offset by the namespace's hash (VW's rule), so ``|user 42 |ad 42``
        gives two keys; off, integer names are their own keys everywhere.
    minibatch: B, the examples of one mini-batch (docs/algorithms.md,
        "Mini-batches"): their margins use the weights at its start, each
        key then takes one update with the summed gradients and its rule's
        penalty of the B steps.  1 (the default) is the sequential rule.
        ``Learner`` keeps the rows of an incomplete mini-batch until it is
        whole (``Learner.flush`` learns them as a short one).  Not with a
        memory budget or expiry.
    adaptive: AdaGrad's per-coordinate steps eta0 / sqrt(adagrad_delta +
        G_i) for ``cumulative`` (origin ``first-seen``; not with a memory
        budget or expiry) and ``fobos`` (which is then ``adagrad-fobos``);
        the schedule then sets only the intercept's step
        (docs/algorithms.md, "Adaptive steps").

    ``loss`` may be given as ``logistic`` (VW's name): it is stored as ``log``.

    docs/algorithms.md has the exact update of every rule.
    """

    loss: str = "log"
    quantile_tau: float = 0.5
    # The defaults were chosen by benchmarks/bench_defaults.py beside Vowpal
    # Wabbit's (README, "Defaults"): AdaGrad steps with FOBOS's L1.
    update: str = "adagrad-fobos"
    l1: float = 1e-4
    l2: float = 0.0
    eta0: float = 0.05
    schedule: str = "constant"
    power_t: float = 0.5
    decay_rate: float = 0.85
    decay_steps: float = 100_000.0
    origin: str = "first-seen"
    fit_intercept: bool = True
    truncate_every: int = 1
    truncate_theta: float = float("inf")
    adagrad_delta: float = 1e-8
    ftrl_beta: float = 1.0
    spred_init: float = 1.0
    spred_threshold: float = 1e-6
    rebase_at: float = DEFAULT_REBASE_AT
    max_features: int = 0
    expire_after_examples: int = 0
    interactions: tuple[str, ...] = ()
    namespaced_integers: bool = False
    minibatch: int = 1
    adaptive: bool = False

    def __post_init__(self) -> None:
        _choice("loss", self.loss, LOSS_NAMES)
        object.__setattr__(self, "loss", LOSS_ALIASES.get(self.loss, self.loss))
        object.__setattr__(self, "interactions", normalise_interactions(self.interactions))
        if not isinstance(self.namespaced_integers, bool):
            raise _bad("namespaced_integers", "type",
                       f"must be True or False, got {self.namespaced_integers!r}")
        _choice("update", self.update, UPDATES)
        if not isinstance(self.adaptive, bool):
            raise _bad("adaptive", "type", f"must be True or False, got {self.adaptive!r}")
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("origin", self.origin, ORIGINS)
        numbers = {f: _number(f, getattr(self, f)) for f in
                   ("l1", "l2", "eta0", "power_t", "decay_rate", "decay_steps", "rebase_at",
                    "adagrad_delta", "ftrl_beta", "spred_init", "spred_threshold",
                    "quantile_tau")}
        for name, value in numbers.items():
            object.__setattr__(self, name, value)
        if not 0 < self.quantile_tau < 1:
            raise _bad("quantile_tau", "range",
                       f"must be in (0, 1) (the quantile), got {self.quantile_tau!r}")
        theta = self.truncate_theta
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta != theta \
                or theta <= 0:
            kind = "type" if isinstance(theta, bool) or not isinstance(theta, (int, float)) \
                else "range"
            raise _bad("truncate_theta", kind, f"must be a number > 0 (inf: no limit), got {theta!r}")
        object.__setattr__(self, "truncate_theta", float(theta))
        every = self.truncate_every
        if isinstance(every, float) and every.is_integer():
            every = int(every)
        if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every < 2**63:
            kind = "type" if isinstance(every, bool) or not isinstance(every, int) else "range"
            raise _bad("truncate_every", kind,
                       f"must be an integer from 1 to 2^63-1, got {self.truncate_every!r}")
        object.__setattr__(self, "truncate_every", every)
        for name in ("max_features", "expire_after_examples"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))
        object.__setattr__(self, "minibatch", _minibatch(self.minibatch))
        if self.minibatch > 1 and self.budgeted:
            budget = "max_features" if self.max_features > 0 else "expire_after_examples"
            raise _bad("minibatch", "conflict",
                       f"must be 1 with {budget} (the memory budget and expiry run the "
                       f"sequential rule only), got minibatch={self.minibatch!r}")
        if self.adagrad_delta <= 0:
            raise _bad("adagrad_delta", "range", f"must be > 0, got {self.adagrad_delta!r}")
        if self.ftrl_beta < 0:
            raise _bad("ftrl_beta", "range", f"must be >= 0, got {self.ftrl_beta!r}")
        if self.spred_init <= 0:
            raise _bad("spred_init", "range", f"must be > 0, got {self.spred_init!r}")
        if self.spred_threshold < 0:
            raise _bad("spred_threshold", "range", f"must be >= 0, got {self.spred_threshold!r}")
        if not isinstance(self.fit_intercept, bool):
            raise _bad("fit_intercept", "type",
                       f"must be True or False, got {self.fit_intercept!r}")
        if self.l1 < 0:
            raise _bad("l1", "range", f"must be >= 0, got {self.l1!r}")
        if self.l2 < 0:
            raise _bad("l2", "range", f"must be >= 0, got {self.l2!r}")
        if self.eta0 <= 0:
            raise _bad("eta0", "range", f"must be > 0, got {self.eta0!r}")
        if self.power_t < 0:
            raise _bad("power_t", "range", f"must be >= 0, got {self.power_t!r}")
        if not 0 < self.decay_rate <= 1:
            raise _bad("decay_rate", "range", f"must be in (0, 1], got {self.decay_rate!r}")
        if self.decay_steps <= 0:
            raise _bad("decay_steps", "range", f"must be > 0, got {self.decay_steps!r}")
        if self.rebase_at <= 1:
            raise _bad("rebase_at", "range", f"must be > 1, got {self.rebase_at!r}")
        # What only one rule needs: its own file checks it (rules/*.pxi).
        RULES[self.update].validate(self)

    @property
    def classification(self) -> bool:
        """Whether labels are classes (-1/+1 or 0/1): the log and hinge losses."""
        return self.loss in ("log", "hinge")

    @property
    def budgeted(self) -> bool:
        """Whether a memory budget or expiry is on (then every stored
        feature keeps the clock of its last update)."""
        return self.max_features > 0 or self.expire_after_examples > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_state_dict(self) -> dict[str, Any]:
        """``to_dict`` for model files and states: the budget's and the
        features' settings only where they are on, so that a model without
        them writes the header files had before they existed (and older
        readers, which refuse an unknown option, read it)."""
        values = self.to_dict()
        for name in BUDGET_FIELDS + FEATURE_FIELDS:
            if not values[name]:
                del values[name]
        if values["minibatch"] == 1:
            del values["minibatch"]     # the sequential rule: the header of before
        if values["loss"] != "quantile":
            del values["quantile_tau"]  # only the quantile loss has one
        if not values["adaptive"]:
            del values["adaptive"]      # the rule's own steps: the header of before
        if "interactions" in values:
            values["interactions"] = list(values["interactions"])
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "LearnerOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OptionError(f"unknown learner option(s): {', '.join(unknown)}",
                              option=unknown[0], reason="unknown")
        return cls(**values)
