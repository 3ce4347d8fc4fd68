"""``snapshot``: write a model's snapshot now; answered once it is on disk."""
from __future__ import annotations

from typing import Any

from onlinel1.server import protocol
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.results import Deferred

OP = "snapshot"


def run(daemon: Any, msg: dict) -> Deferred:
    daemon.policy.refuse(OP)
    trainer = daemon.models.get(protocol.model_name(msg))
    if trainer.schedule is None:
        raise ProtocolError(protocol.BAD_REQUEST,
                            "this daemon has no snapshot directory (start it with --snapshot-dir)")
    return Deferred(lambda replier: daemon.scheduler.request(trainer, replier))
