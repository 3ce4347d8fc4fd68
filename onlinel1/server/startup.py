"""Building a daemon from its settings: resume, warm start, replica wait.

A trainer with a snapshot directory resumes every model folder in it
(layout.py) from its newest valid snapshot.  The ``default`` model's
explicit settings (flags, config file) must agree with its snapshot's, as
they must with a warm start's model (``--initial``); a clash is refused
unless forced (warm_start.py).  A predict-only replica loads what its
source holds, waiting for the trainer's first snapshot if there is none
yet.  Every refusal is a ``StartupError`` whose message says what to do.
"""
from __future__ import annotations

import logging
import os
import pathlib
import time
from typing import Any, Callable, Mapping

from onlinel1 import model_file
from onlinel1.learner import Learner
from onlinel1.names import DEFAULT_MODEL
from onlinel1.options import LearnerOptions
from onlinel1.server import layout
from onlinel1.server.config import DaemonConfig
from onlinel1.server.daemon import Daemon
from onlinel1.server.models import Models
from onlinel1.server.replica import ReplicaPolicy
from onlinel1.server.snapshots import SnapshotDir
from onlinel1.warm_start import (SettingsClash, WarmStartError, continue_from, load_initial,
                                 load_source)

log = logging.getLogger("onlinel1.daemon")

REPLICA_WAIT_POLL_S = 1.0


class StartupError(Exception):
    """The daemon cannot start as configured; the message says why."""


def _resume_folder(directory: pathlib.Path, keep: int) -> Any:
    loaded, problems = SnapshotDir(directory, keep).load_newest_valid()
    for problem in problems:
        log.warning("%s", problem)
    if loaded is None:
        raise StartupError(f"{directory}: no snapshot verifies ({len(problems)} damaged); "
                           f"start with --no-resume for a new model")
    return loaded


def trainer(config: DaemonConfig, options: LearnerOptions, given: Mapping[str, Any], *,
            force: bool = False, initial: str | None = None, check: bool = False,
            metrics: Any = None) -> Daemon:
    """A training daemon: its ``default`` model from ``options`` (or resumed,
    or warm-started from ``initial``), and every other model of the
    snapshot directory resumed.  ``check``: create the folders, but move
    and delete nothing (a live trainer may own the directory)."""
    locked = -1
    if config.snapshot_dir and not check:
        # Before anything in the directory is read, moved or deleted.
        try:
            locked = layout.lock(config.snapshot_dir)
        except OSError as exc:
            raise StartupError(f"cannot use the snapshot directory: {exc}") from None
    try:
        daemon = _trainer(config, options, given, force, initial, check, metrics)
    except BaseException:
        if locked >= 0:
            os.close(locked)
        raise
    if locked >= 0:
        daemon.hold(locked)
    return daemon


def _trainer(config: DaemonConfig, options: LearnerOptions, given: Mapping[str, Any],
             force: bool, initial: str | None, check: bool, metrics: Any) -> Daemon:
    models = Models(config, metrics=metrics)
    resumed: dict[str, Any] = {}
    if config.snapshot_dir:
        root = pathlib.Path(config.snapshot_dir)
        folders = layout.model_folders(root)
        if layout.legacy_snapshots(root):
            if check:          # --check must not touch a live trainer's directory
                folders.setdefault(DEFAULT_MODEL, root)
            else:
                layout.migrate_legacy(root)
                folders = layout.model_folders(root)
        wanted = config.resume if config.resume is not None else bool(folders)
        if wanted and config.resume and not folders:
            raise StartupError(f"{root}: no snapshot to resume; start with --no-resume "
                               f"for a new model")
        if wanted and initial:
            raise StartupError(f"--initial {initial}: {root} has snapshots to resume; pass "
                               f"--no-resume to start from --initial instead")
        if wanted:
            resumed = {name: _resume_folder(folder, config.keep) for name, folder in folders.items()}
    elif config.resume:
        raise StartupError("--resume needs --snapshot-dir")
    if DEFAULT_MODEL in resumed:
        loaded = resumed.pop(DEFAULT_MODEL)
        try:
            learner = continue_from(loaded.learner, given, options, loaded.path.name, force,
                                    "snapshot")
        except SettingsClash as exc:
            raise StartupError(f"{exc}; drop them, or pass --force-config to carry its "
                               f"weights over to the new settings") from None
        default = models.make(DEFAULT_MODEL, learner, names=loaded.names,
                              producers=loaded.extra.get("snapshot", {}).get("producers", {}))
        log.info("resumed from %s (%d examples)", loaded.path, learner.examples_seen)
    elif initial:
        try:
            learner, names = load_initial(initial, given, options, force)
        except WarmStartError as exc:
            raise StartupError(str(exc)) from None
        default = models.make(DEFAULT_MODEL, learner, names=names)
    else:
        default = models.make(DEFAULT_MODEL, Learner(options))
    trainers = [default]
    for name, loaded in sorted(resumed.items()):
        trainers.append(models.make(name, loaded.learner, names=loaded.names,
                                    producers=loaded.extra.get("snapshot", {}).get("producers", {})))
        log.info("model %s resumed from %s (%d examples)", name, loaded.path,
                 loaded.learner.examples_seen)
    for t in trainers:
        try:
            models.add(t)
        except OSError as exc:
            raise StartupError(f"cannot use the snapshot directory: {exc}") from None
        if t.schedule is not None and not check:
            # Unfinished writes of a crashed run.
            t.schedule.directory.remove_stale_temporaries()
    return Daemon(models, config, metrics=metrics)


def replica(config: DaemonConfig, source: str, *, wait: bool,
            stopping: Callable[[], bool] = lambda: False, metrics: Any = None) -> Daemon | None:
    """A predict-only replica of ``source``; with ``wait``, an empty source
    directory is watched until a first snapshot appears (None if
    ``stopping()`` turns true meanwhile)."""
    path = pathlib.Path(source)
    if not path.exists():
        raise StartupError(f"{source}: no such file or directory")
    models = Models(config, snapshots=False, metrics=metrics)
    policy = ReplicaPolicy(source, lambda name, learner, names: models.make(
        name, learner, names=names))
    sources = layout.replica_sources(path)
    if not sources and wait:
        log.info("waiting for the first snapshot in %s", source)
        while not sources and not stopping():
            time.sleep(REPLICA_WAIT_POLL_S)   # polling the directory for a new file
            sources = layout.replica_sources(path)
        if stopping():
            return None
    for name, where in sources.items():
        try:
            loaded = load_source(where)
        except FileNotFoundError:
            raise StartupError(f"{where}: no such file or directory") from None
        except model_file.ModelFileError as exc:
            raise StartupError(str(exc)) from None
        if loaded is None:       # every snapshot there is damaged (logged)
            continue
        learner, names, _ = loaded
        models.add(models.make(name, learner, names=names))
        policy.note_loaded(name, where)
    if not len(models):
        raise StartupError(f"{source}: no valid snapshot to serve")
    return Daemon(models, config, policy, metrics=metrics)
