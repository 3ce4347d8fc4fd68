"""``drop``: remove a named model.  With a snapshot directory its final
snapshot is written first and its folder moved to ``DIR/.dropped/``.

The reply names the final snapshot's file, never its path; an error
moving the folder is answered with the paths redacted unless the requester
is a listed CURVE key (auth.py, as for ``config``)."""
from __future__ import annotations

from typing import Any

from onlinel1.server import auth, protocol
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
    try:
        daemon.models.remove(trainer.name)
    except OSError as exc:      # out of the daemon, but its folder is where it was
        message = (f"model {trainer.name!r} is dropped, but its snapshot folder could not be "
                   f"moved aside (a restart would bring it back): {exc}")
        raise protocol.ProtocolError(protocol.INTERNAL, message if auth.paths_shown(
            daemon.transport) else auth.redact_text(message)) from None
    daemon.log_model(trainer, "dropped")
    return Result({"model": trainer.name, "examples": trainer.learner.examples_seen,
                   "final_snapshot": written})
