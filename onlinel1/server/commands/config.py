"""``config``: a model's learner settings and the daemon's."""
from __future__ import annotations

from typing import Any

import onlinel1
from onlinel1.server import protocol
from onlinel1.server.results import Result

OP = "config"


def run(daemon: Any, msg: dict) -> Result:
    trainer = daemon.models.get(protocol.model_name(msg))
    return Result({"learner": trainer.learner.options.to_dict(), "daemon": daemon.config.to_dict(),
                   "model": trainer.name, "version": f"onlinel1 {onlinel1.__version__}",
                   "protocol": protocol.VERSION})
