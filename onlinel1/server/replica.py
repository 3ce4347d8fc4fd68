"""What kind of daemon this is: a trainer, or a predict-only replica.

The daemon asks its policy, never a flag: whether it binds a training
socket, which operations it refuses, and what it does between turns of
its loop.  A replica serves the models of a snapshot source (a model
file, a snapshot directory, or a trainer's directory of model folders;
see layout.py) and reloads each when a newer snapshot appears.
"""
from __future__ import annotations

import logging
import pathlib
import time
from typing import Any, Callable

from onlinel1 import model_file
from onlinel1.server import layout, protocol
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.snapshots import SnapshotDir
from onlinel1.warm_start import load_source

log = logging.getLogger("onlinel1.daemon")

#: Operations that change a model: a replica refuses them.
WRITES = frozenset({"learn", "snapshot", "create", "drop", "swap"})
RELOAD_CHECK_S = 1.0


class TrainingPolicy:
    mode = "training"
    accepts_training = True
    takes_snapshots = True

    def refuse(self, op: str) -> None:
        """Raise ``ProtocolError`` if this daemon does not do ``op``."""

    def turn(self, models: Any) -> None:
        """Between turns of the loop: nothing to do for a trainer."""


def source_version(path: pathlib.Path) -> Any:
    """Changes when ``path`` holds a newer model: a directory's newest
    snapshot sequence, a file's identity and size."""
    if path.is_dir():
        listing = SnapshotDir(path, 1).listing()
        return listing[-1][0] if listing else None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ReplicaPolicy:
    """Serve the models of ``source`` read-only; ``make_trainer(name,
    learner, names)`` builds a model the replica did not have."""

    mode = "predict-only"
    accepts_training = False
    takes_snapshots = False

    def __init__(self, source: str, make_trainer: Callable[..., Any]) -> None:
        self.source = source
        self.make_trainer = make_trainer
        self.versions: dict[str, Any] = {}
        self._next_check = time.monotonic() + RELOAD_CHECK_S

    def refuse(self, op: str) -> None:
        if op in WRITES:
            raise ProtocolError(protocol.READ_ONLY,
                                f"this is a predict-only replica: it does not {op}; "
                                f"send training and model changes to the trainer")

    def note_loaded(self, name: str, path: pathlib.Path) -> None:
        self.versions[name] = source_version(path)

    def turn(self, models: Any) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_S
        for name, path in layout.replica_sources(self.source).items():
            version = source_version(path)
            if version is None or version == self.versions.get(name):
                continue
            try:
                loaded = load_source(path)
            except (model_file.ModelFileError, OSError) as exc:
                log.warning("not reloading %s: %s", path, exc)
                continue
            if loaded is None:
                continue
            learner, names, file = loaded
            self.versions[name] = version
            trainer = models.find(name)
            if trainer is None:
                models.add(self.make_trainer(name, learner, names))
                log.info("serving model %s from %s (%d examples)", name, file,
                         learner.examples_seen)
            else:
                trainer.replace(learner, names)
                trainer.stats.reloads += 1
                log.info("model %s: reloaded from %s (%d examples)", name, file,
                         learner.examples_seen)
