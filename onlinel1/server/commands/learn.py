"""``learn``: an acknowledged training batch; the reply says what it cost.

While another batch is being learned (this request arrived between two of
its slices) the batch waits until that one is done: batches are never
interleaved."""
from __future__ import annotations

from typing import Any

from onlinel1.server import protocol
from onlinel1.server.results import Deferred, Result

OP = "learn"


def run(daemon: Any, msg: dict) -> Result | Deferred:
    daemon.policy.refuse(OP)
    trainer = daemon.models.get(protocol.model_name(msg))
    batch = trainer.decode(msg, learning=True)
    if daemon.in_batch:
        return Deferred(lambda replier: daemon.defer_learn(trainer, batch, replier))
    return Result(daemon.learn(trainer, batch))
