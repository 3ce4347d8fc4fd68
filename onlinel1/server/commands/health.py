"""``health``: alive, in which mode, and how far the model has come."""
from __future__ import annotations

from typing import Any

from onlinel1.server import protocol
from onlinel1.server.results import Result

OP = "health"


def run(daemon: Any, msg: dict) -> Result:
    name = protocol.model_name(msg)
    trainer = daemon.models.find(name)
    if trainer is None and "model" in msg:
        trainer = daemon.models.get(name)          # unknown_model
    result = {"status": "ok", "mode": daemon.policy.mode, "uptime_s": round(daemon.uptime(), 3),
              "examples": trainer.learner.examples_seen if trainer is not None else 0,
              "models": len(daemon.models)}
    return Result(result)
