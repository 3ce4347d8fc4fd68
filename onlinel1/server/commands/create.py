"""``create``: a new named model with its own learner settings.

With a snapshot directory, the new model's first snapshot is written
before the reply, so a model that was acknowledged survives a restart."""
from __future__ import annotations

from typing import Any

from onlinel1.learner import Learner
from onlinel1.options import LearnerOptions
from onlinel1.server import protocol
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.results import Result

OP = "create"


def run(daemon: Any, msg: dict) -> Result:
    daemon.policy.refuse(OP)
    name = protocol.model_name(msg, required=True)
    settings = msg.get("learner", {})
    if not isinstance(settings, dict):
        raise ProtocolError(protocol.BAD_REQUEST, "learner must be a map of learner settings")
    if daemon.models.find(name) is not None:
        raise ProtocolError(protocol.MODEL_EXISTS, f"a model named {name!r} exists")
    try:
        options = LearnerOptions.from_dict(settings)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(protocol.BAD_REQUEST, f"learner: {exc}") from None
    trainer = daemon.models.add(daemon.models.make(name, Learner(options)))
    if trainer.schedule is not None:
        record = daemon.scheduler.write_now(trainer, "create")
        if not record.ok:
            daemon.models.remove(name)
            raise ProtocolError(protocol.INTERNAL,
                                f"model {name!r} not created: its first snapshot failed: "
                                f"{record.error}")
    daemon.log_model(trainer, "created")
    return Result({"model": name, "learner": options.to_dict()})
