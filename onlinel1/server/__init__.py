"""The daemon: one module per concern.

``transport.py`` owns the sockets, ``daemon.py`` is the controller (the
event loop and dispatch), ``commands/`` holds one module per request
operation, ``trainer.py`` is one named model (learner, counters, snapshot
schedule), ``models.py`` the set of them, ``scheduler.py`` decides when
snapshots are written and ``snapshots.py`` writes them, ``layout.py`` is
the snapshot directory's folder per model, ``replica.py`` the trainer and
predict-only policies, ``startup.py`` builds a daemon from its settings
(resume, warm start, replica wait), ``protocol.py`` decodes and encodes
messages (docs/protocol.md), ``stats.py`` counts, ``config.py`` holds the
settings and the config file, ``http.py`` serves /metrics, the probes and
the status page (``status_page.html``) from its own threads, reading the
loop through ``Daemon.ask``, and ``metrics.py`` keeps the latency
histograms.
"""
from typing import Any

from onlinel1.server.config import ConfigError, DaemonConfig, read_config_file

__all__ = ["ConfigError", "Daemon", "DaemonConfig", "read_config_file"]


def __getattr__(name: str) -> Any:
    # The daemon (ZeroMQ, asyncio, every command module) is imported when
    # first asked for, so that the settings alone (the CLI's flags and
    # their defaults) cost no more than config.py.
    if name == "Daemon":
        from onlinel1.server.daemon import Daemon
        return Daemon
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
