"""The daemon: ZeroMQ sockets, the wire protocol, stats and configuration.

``protocol.py`` decodes and encodes messages (docs/protocol.md),
``daemon.py`` is the event loop, ``stats.py`` its counters and
``config.py`` its settings and config file.
"""
from onlinel1.server.config import ConfigError, DaemonConfig, read_config_file
from onlinel1.server.daemon import Daemon

__all__ = ["ConfigError", "Daemon", "DaemonConfig", "read_config_file"]
