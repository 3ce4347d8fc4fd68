"""Starting a learner from a saved one: resume, ``--initial``, ``swap``.

The saved model carries its own learner settings.  Settings the user gave
explicitly (flags, a config file) must agree with them: a clash is refused,
naming each setting, unless the user forces it, in which case the saved
weights continue under the new settings (``Learner.with_options``).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from onlinel1.learner import Learner
from onlinel1.options import LearnerOptions

log = logging.getLogger("onlinel1")


class SettingsClash(ValueError):
    """Explicit settings that contradict a saved model's; ``clashes`` lists
    them as ``name=given (the model has saved)``."""

    def __init__(self, source: str, clashes: list[str]) -> None:
        super().__init__(f"{source} was trained with other settings: {'; '.join(clashes)}")
        self.source, self.clashes = source, clashes


def clashes(saved: LearnerOptions, given: Mapping[str, Any], options: LearnerOptions,
            noun: str = "model") -> list[str]:
    """The explicitly ``given`` settings whose value in ``options`` differs
    from ``saved``'s (the saved one called ``the <noun>``)."""
    return [f"{name}={given[name]!r} (the {noun} has {getattr(saved, name)!r})"
            for name in sorted(given) if getattr(saved, name) != getattr(options, name)]


def continue_from(learner: Learner, given: Mapping[str, Any], options: LearnerOptions,
                  source: str, force: bool, noun: str = "model") -> Learner:
    """``learner`` (loaded from ``source``) if ``given`` agrees with it;
    with ``force``, its weights under ``options``; else ``SettingsClash``."""
    found = clashes(learner.options, given, options, noun)
    if not found:
        return learner
    if not force:
        raise SettingsClash(source, found)
    log.warning("--force-config: the weights of %s continue under %s", source, "; ".join(found))
    return learner.with_options(options)
