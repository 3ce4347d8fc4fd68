"""``swap``: replace a named model's weights (and settings) by a model file
or snapshot on the daemon's host.

The file is loaded and verified first; then one assignment makes the new
model current, so every prediction is answered wholly by the old weights
or wholly by the new.  The model's counters carry on; with a snapshot
directory a snapshot of the new model is taken next."""
from __future__ import annotations

import pathlib
from typing import Any

from onlinel1 import model_file
from onlinel1.server import auth, protocol
from onlinel1.server.protocol import ProtocolError
from onlinel1.warm_start import load_source
from onlinel1.server.results import Result

OP = "swap"


def run(daemon: Any, msg: dict) -> Result:
    if auth.paths_shown(daemon.transport):
        return _swap(daemon, msg)
    try:
        return Result(auth.redacted_result(_swap(daemon, msg).value))
    except ProtocolError as exc:
        raise ProtocolError(exc.code, auth.redact_text(exc.message)) from None


def _swap(daemon: Any, msg: dict) -> Result:
    daemon.policy.refuse(OP)
    trainer = daemon.models.get(protocol.model_name(msg, required=True))
    path = msg.get("path")
    if not isinstance(path, str) or not path:
        raise ProtocolError(protocol.BAD_REQUEST,
                            "swap needs 'path': a model file or snapshot on the daemon's host")
    try:
        loaded = load_source(pathlib.Path(path))
    except FileNotFoundError:
        raise ProtocolError(protocol.BAD_REQUEST, f"{path}: no such file or directory") from None
    except (model_file.ModelFileError, OSError) as exc:
        raise ProtocolError(protocol.BAD_REQUEST, f"{path}: {exc}") from None
    if loaded is None:
        raise ProtocolError(protocol.BAD_REQUEST, f"{path}: no valid snapshot in this directory")
    learner, names, source = loaded
    swap_in = getattr(trainer.learner, "swap_in", None)
    if swap_in is not None:     # a cluster's model: its shards take the weights
        try:
            learner = swap_in(learner)
        except ValueError as exc:
            raise ProtocolError(protocol.BAD_REQUEST, f"{path}: {exc}") from None
    trainer.replace(learner, names)
    if trainer.schedule is not None:
        trainer.schedule.wanted = True
    daemon.log_model(trainer, f"swapped in {source}")
    return Result({"model": trainer.name, "examples": learner.examples_seen, "nnz": learner.nnz,
                   "path": str(source)})
