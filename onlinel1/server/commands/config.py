"""``config``: a model's learner settings and the daemon's.

The daemon's file system paths (``snapshot_dir``, the CURVE key files, an
``ipc://`` endpoint's path, any absolute path) are shown only to a
requester that CURVE admitted with a key of the allow list; to everyone
else each is ``"<redacted>"`` (server/auth.py, ``redacted``).  Without
CURVE, that is every requester.
"""
from __future__ import annotations

from typing import Any

import onlinel1
from onlinel1.server import auth, protocol
from onlinel1.server.results import Result

OP = "config"


def run(daemon: Any, msg: dict) -> Result:
    trainer = daemon.models.get(protocol.model_name(msg))
    settings = daemon.config.to_dict()
    transport = daemon.transport
    keys = getattr(transport, "keys", None)
    if keys is None or not keys.admits(getattr(transport, "current_user", None)):
        settings = auth.redacted(settings)
    return Result({"learner": trainer.learner.options.to_dict(), "daemon": settings,
                   "model": trainer.name, "version": f"onlinel1 {onlinel1.__version__}",
                   "protocol": protocol.VERSION})
