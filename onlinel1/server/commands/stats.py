"""``stats``: one model's counters (stats.py), and the daemon's own."""
from __future__ import annotations

from typing import Any

from onlinel1.server import protocol
from onlinel1.server.results import Result

OP = "stats"


def run(daemon: Any, msg: dict) -> Result:
    trainer = daemon.models.get(protocol.model_name(msg))
    report = trainer.report()
    report["daemon"] = daemon.own_counters()
    return Result(report)
