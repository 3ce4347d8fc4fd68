"""When each model's snapshots are written, one at a time.

Each model has its own directory and schedule (``Trainer.schedule``): a
snapshot is due every ``snapshot_every_seconds`` (if the model learned
since the last one), every ``snapshot_every_examples``, or when a client
asked.  Writes are forked children (snapshots.py) and at most one runs at
a time across all models, so the memory that copy-on-write may duplicate
is bounded by one model's; due models are served in turn.
"""
from __future__ import annotations

import logging
import pathlib
import time
from typing import Iterable

from onlinel1.server import protocol
from onlinel1.server.config import DaemonConfig
from onlinel1.server.results import Replier
from onlinel1.server.snapshots import Written, write_now
from onlinel1.server.trainer import Trainer

log = logging.getLogger("onlinel1.daemon")


class SnapshotScheduler:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        #: The trainer whose snapshot is being written, if any.
        self.busy: Trainer | None = None
        self._turn = 0

    def request(self, trainer: Trainer, replier: Replier | None = None) -> None:
        """Write ``trainer``'s next snapshot soon; answer ``replier`` (if
        any) when done."""
        trainer.schedule.wanted = True
        if replier is not None:
            trainer.schedule.waiters.append(replier)

    def _due(self, trainer: Trainer) -> bool:
        s, c = trainer.schedule, self.config
        if s is None:
            return False
        if s.wanted:
            return True
        t = trainer.learner.examples_seen
        if c.snapshot_every_seconds and time.monotonic() - s.last_time >= c.snapshot_every_seconds:
            return t != s.last_t
        return bool(c.snapshot_every_examples) and t - s.last_t >= c.snapshot_every_examples

    def turn(self, trainers: list[Trainer]) -> None:
        """Between batches: collect a finished write, start a due one."""
        if self.busy is not None:
            record = self.busy.schedule.writer.poll()
            if record is None:
                return
            trainer, self.busy = self.busy, None
            self._done(trainer, record, trainer.schedule.writing_for)
            trainer.schedule.writing_for = []
        n = len(trainers)
        for i in range(n):
            trainer = trainers[(self._turn + i) % n]
            if self._due(trainer):
                self._turn = (self._turn + i + 1) % n
                self._start(trainer)
                return

    def _start(self, trainer: Trainer) -> None:
        s = trainer.schedule
        reason = "request" if s.wanted else "periodic"
        s.writing_for, s.waiters = s.waiters, []
        s.wanted = False
        s.last_time = time.monotonic()
        s.last_t = trainer.learner.examples_seen
        try:
            s.directory.ensure()        # recreated if someone removed it
            s.writer.start(trainer.learner, trainer.names, trainer.stats.producers, reason)
        except OSError as exc:   # no directory, or fork failed (memory, process limits)
            self._done(trainer, Written(0, pathlib.Path(""), False, 0, 0.0, 0.0, reason,
                                        f"cannot start the writer: {exc}"), s.writing_for)
            s.writing_for = []
            return
        self.busy = trainer

    def forget(self, trainer: Trainer) -> None:
        """``trainer`` is dropped: wait for its write, fail its waiters."""
        s = trainer.schedule
        if s is None:
            return
        if self.busy is trainer:
            s.writer.poll(block=True)
            self.busy = None
        for replier in s.waiters + s.writing_for:
            replier.error(protocol.UNKNOWN_MODEL, f"model {trainer.name!r} was dropped")
        s.waiters, s.writing_for = [], []

    def write_now(self, trainer: Trainer, reason: str) -> Written:
        """Write ``trainer``'s next snapshot in this process, now."""
        if self.busy is trainer:
            record = trainer.schedule.writer.poll(block=True)
            self.busy = None
            self._done(trainer, record, trainer.schedule.writing_for)
            trainer.schedule.writing_for = []
        s = trainer.schedule
        s.last_t = trainer.learner.examples_seen
        try:
            s.directory.ensure()
            return write_now(s.directory, trainer.learner, trainer.names,
                             trainer.stats.producers, reason)
        except OSError as exc:
            return Written(0, pathlib.Path(""), False, 0, 0.0, 0.0, reason, str(exc))

    def final(self, trainers: Iterable[Trainer]) -> bool:
        """The shutdown snapshot of every model; whether all were written."""
        ok = True
        if self.busy is not None:
            trainer, self.busy = self.busy, None
            record = trainer.schedule.writer.poll(block=True)
            self._done(trainer, record, trainer.schedule.writing_for)
            trainer.schedule.writing_for = []
        for trainer in trainers:
            if trainer.schedule is None:
                continue
            waiters, trainer.schedule.waiters = trainer.schedule.waiters, []
            record = self.write_now(trainer, "shutdown")
            self._done(trainer, record, waiters)
            ok = ok and record.ok
        return ok

    def _done(self, trainer: Trainer, record: Written, waiters: list[Replier]) -> None:
        s = trainer.schedule
        s.failing = not record.ok
        if record.ok:
            trainer.stats.last_snapshot = {
                "seq": record.seq, "file": record.path.name, "unix_time": round(time.time(), 3),
                "size": record.size, "duration_s": round(record.duration_s, 6),
                "pause_s": round(record.pause_s, 6), "reason": record.reason,
                "examples": s.last_t}
            log.info("%ssnapshot %s written (%d bytes, %.3f s, learning paused %.1f ms)",
                     _model_prefix(trainer), record.path.name, record.size, record.duration_s,
                     1000 * record.pause_s)
        else:
            trainer.stats.snapshots_failed += 1
            log.error("%ssnapshot %s failed: %s", _model_prefix(trainer), record.path.name,
                      record.error)
        for replier in waiters:
            if record.ok:
                replier.result({"file": record.path.name, "seq": record.seq, "size": record.size,
                                "examples": s.last_t, "model": trainer.name,
                                "path": str(record.path)})
            else:
                replier.error(protocol.INTERNAL, f"the snapshot failed: {record.error}")


def _model_prefix(trainer: Trainer) -> str:
    return f"model {trainer.name}: "
