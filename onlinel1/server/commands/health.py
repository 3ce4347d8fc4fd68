"""``health``: alive, in which mode, and how far the model has come;
``degraded`` (with the problems) while a model's snapshots fail."""
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
    problems = [f"model {t.name}: its last snapshot failed" for t in daemon.models
                if t.schedule is not None and t.schedule.failing]
    result = {"status": "degraded" if problems else "ok", "mode": daemon.policy.mode,
              "uptime_s": round(daemon.uptime(), 3),
              "examples": trainer.learner.examples_seen if trainer is not None else 0,
              "models": len(daemon.models)}
    if problems:
        result["problems"] = problems
    return Result(result)
