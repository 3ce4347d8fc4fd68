"""The daemon's named models: find, add, create, drop.

Each model is a ``Trainer`` with its own learner settings, counters,
producers' sequence numbers and (with a snapshot directory) its own folder
``DIR/<name>/`` (layout.py).  A message without a ``model`` field is for
``default``.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

from onlinel1.learner import Learner
from onlinel1.server import layout, protocol
from onlinel1.server.config import DaemonConfig
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.snapshots import SnapshotDir
from onlinel1.server.trainer import Trainer

log = logging.getLogger("onlinel1.daemon")

#: Models one daemon holds at most (each costs a little even when empty).
MAX_MODELS = 256


class Models:
    def __init__(self, config: DaemonConfig, snapshots: bool = True, metrics: Any = None) -> None:
        self.config = config
        self.metrics = metrics
        #: Whether models get snapshot folders (a replica's do not).
        self.snapshots = snapshots and config.snapshot_dir is not None
        self._trainers: dict[str, Trainer] = {}

    def __iter__(self) -> Iterator[Trainer]:
        return iter(sorted(self._trainers.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._trainers)

    def find(self, name: str) -> Trainer | None:
        return self._trainers.get(name)

    def get(self, name: str) -> Trainer:
        """The model ``name``, or ``ProtocolError(unknown_model)``."""
        trainer = self._trainers.get(name)
        if trainer is None:
            known = ", ".join(sorted(self._trainers)) or "none"
            raise ProtocolError(protocol.UNKNOWN_MODEL,
                                f"no model named {name!r} (this daemon has: {known})")
        return trainer

    def snapshot_dir(self, name: str) -> SnapshotDir | None:
        if not self.snapshots:
            return None
        return SnapshotDir(layout.model_dir(self.config.snapshot_dir, name), self.config.keep)

    def make(self, name: str, learner: Learner, *, names: dict[int, str] | None = None,
             producers: dict[str, int] | None = None) -> Trainer:
        """A trainer for ``name`` (not yet added)."""
        return Trainer(name, learner, self.config, names=names, producers=producers,
                       snapshots=self.snapshot_dir(name), metrics=self.metrics)

    def add(self, trainer: Trainer) -> Trainer:
        if trainer.name in self._trainers:
            raise ProtocolError(protocol.MODEL_EXISTS, f"a model named {trainer.name!r} exists")
        if len(self._trainers) >= MAX_MODELS:
            raise ProtocolError(protocol.BAD_REQUEST,
                                f"this daemon holds {MAX_MODELS} models, its limit: drop one first")
        if trainer.schedule is not None:
            trainer.schedule.directory.ensure()
        self._trainers[trainer.name] = trainer
        return trainer

    def remove(self, name: str) -> Trainer:
        """Take ``name`` out; its snapshot folder is moved aside
        (``DIR/.dropped/``), never deleted."""
        trainer = self.get(name)
        del self._trainers[name]
        if self.metrics is not None:
            self.metrics.forget(name)
        if self.snapshots:
            moved = layout.move_aside(self.config.snapshot_dir, name)
            if moved is not None:
                log.info("model %s dropped; its snapshots are in %s", name, moved)
        return trainer
