"""``list``: the daemon's models, by name."""
from __future__ import annotations

from typing import Any

from onlinel1.server.results import Result

OP = "list"


def run(daemon: Any, msg: dict) -> Result:
    return Result({"models": [
        {"model": t.name, "loss": t.learner.options.loss, "update": t.learner.options.update,
         "examples": t.learner.examples_seen, "nnz": t.learner.nnz,
         "store_features": t.learner.store_size}
        for t in daemon.models]})
