"""``snapshot``: write a model's snapshot now; answered once it is on disk.

The reply's ``path`` (and any path in an error message) is shown only to
a requester CURVE admitted with a listed key (auth.py, as for ``config``)."""
from __future__ import annotations

from typing import Any

from onlinel1.server import auth, protocol
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.results import Deferred

OP = "snapshot"


def run(daemon: Any, msg: dict) -> Deferred:
    daemon.policy.refuse(OP)
    trainer = daemon.models.get(protocol.model_name(msg))
    if trainer.schedule is None:
        raise ProtocolError(protocol.BAD_REQUEST,
                            "this daemon has no snapshot directory (start it with --snapshot-dir)")
    # The requester is known now, not when the write is done.
    shown = auth.paths_shown(daemon.transport)
    return Deferred(lambda replier: daemon.scheduler.request(
        trainer, replier if shown else auth.RedactingReplier(replier)))
