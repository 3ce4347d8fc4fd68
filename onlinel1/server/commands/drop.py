"""``drop``: remove a named model.  With a snapshot directory its final
snapshot is written first and its folder moved to ``DIR/.dropped/``."""
from __future__ import annotations

from typing import Any

from onlinel1.server import protocol
from onlinel1.server.results import Result

OP = "drop"


def run(daemon: Any, msg: dict) -> Result:
    daemon.policy.refuse(OP)
    trainer = daemon.models.get(protocol.model_name(msg, required=True))
    written = None
    if trainer.schedule is not None:
        record = daemon.scheduler.write_now(trainer, "drop")
        written = record.path.name if record.ok else None
        daemon.scheduler.forget(trainer)
    daemon.models.remove(trainer.name)
    daemon.log_model(trainer, "dropped")
    return Result({"model": trainer.name, "examples": trainer.learner.examples_seen,
                   "final_snapshot": written})
