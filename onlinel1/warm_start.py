"""Starting a learner from a saved one: resume, ``--initial``, ``swap``.

The saved model carries its own learner settings.  Settings the user gave
explicitly (flags, a config file) must agree with them: a clash is refused,
naming each setting, unless the user forces it, in which case the saved
weights continue under the new settings (``Learner.with_options``).
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any, Mapping

from onlinel1 import model_file
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


class WarmStartError(ValueError):
    """A warm start that cannot be made; the message says why."""


def load_source(path: pathlib.Path) -> tuple[Learner, dict[int, str], pathlib.Path] | None:
    """(learner, names, file) of a model file or snapshot, or of the newest
    valid snapshot of a snapshot directory; None if the directory has none
    (the damaged ones logged).  ``FileNotFoundError`` and
    ``model_file.ModelFileError`` pass through."""
    from onlinel1.server.snapshots import SnapshotDir
    if path.is_dir():
        loaded, problems = SnapshotDir(path, 1).load_newest_valid()
        for problem in problems:
            log.warning("%s", problem)
        if loaded is None:
            return None
        return loaded.learner, loaded.names, loaded.path
    learner, names, _ = model_file.load(path)
    return learner, names, path


def load_initial(source: str, given: Mapping[str, Any], options: LearnerOptions,
                 force: bool) -> tuple[Learner, dict[int, str]]:
    """The learner of a warm start (``--initial``, Vowpal Wabbit's ``-i``): a
    model file, a snapshot, or the newest valid snapshot of a directory,
    checked against the explicitly ``given`` settings."""
    path = pathlib.Path(source)
    try:
        loaded = load_source(path)
    except FileNotFoundError:
        raise WarmStartError(f"--initial {source}: no such file or directory") from None
    except (model_file.ModelFileError, OSError) as exc:
        raise WarmStartError(f"--initial {source}: {exc}") from None
    if loaded is None:
        raise WarmStartError(f"--initial {source}: no valid snapshot in this directory")
    learner, names, file = loaded
    try:
        learner = continue_from(learner, given, options, str(file), force)
    except SettingsClash as exc:
        raise WarmStartError(f"--initial: {exc}; drop them, or pass --force-config to carry "
                             f"its weights over to the new settings") from None
    log.info("warm start from %s (%d examples, %d non-zero weights)", file,
             learner.examples_seen, learner.nnz)
    return learner, names
