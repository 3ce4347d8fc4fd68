"""The request operations, one module each (docs/protocol.md).

Each module names its operation (``OP``) and defines ``run(daemon, msg)``,
which returns a ``Result``, returns a ``Deferred`` (answered later), or
raises ``ProtocolError``.  ``daemon`` is the controller (daemon.py): its
``models``, ``policy``, ``scheduler`` and ``config``.
"""
from __future__ import annotations

from onlinel1.server.commands import (config, create, drop, health, learn, list_models, predict,
                                      snapshot, stats, swap)

COMMANDS = {module.OP: module.run
            for module in (predict, learn, stats, health, config, snapshot,
                           create, drop, list_models, swap)}

__all__ = ["COMMANDS"]
