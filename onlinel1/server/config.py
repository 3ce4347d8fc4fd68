"""Daemon settings: defaults, the TOML config file, and their validation.

A config file has a ``[daemon]`` table (the keys of ``DaemonConfig``) and a
``[learner]`` table (the keys of ``LearnerOptions``)::

    [daemon]
    train_endpoint = "tcp://127.0.0.1:5555"
    request_endpoint = "tcp://127.0.0.1:5556"
    log_level = "info"

    [learner]
    update = "fobos"
    l1 = 1e-5

Command-line flags override the file; the file overrides the defaults.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Mapping

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

LOG_LEVELS = ("debug", "info", "warning", "error")
ENDPOINT_SCHEMES = ("tcp://", "ipc://")
#: Integer settings and their ranges: every value outside is refused before
#: anything is bound (ZeroMQ's socket options are C ints; a slice is an
#: int64 count of features).
LIMITS = {"max_message_bytes": (1, 1 << 30), "high_water_mark": (1, 1 << 20),
          "max_connections": (1, 1 << 16),
          "window_examples": (1, 1 << 40), "slice_nnz": (1, 1 << 30), "keep": (1, 100_000),
          "training_io_nice": (0, 19), "snapshot_every_examples": (0, 1 << 62)}
MAX_SNAPSHOT_SECONDS = 365 * 24 * 3600
#: The bounds of one message (docs/protocol.md, "Limits"): integer ranges as
#: in LIMITS, and the magnitudes a batch may carry: each at least its low end
#: (an importance of 1 and labels of -1/+1 always pass), ``inf`` allowed
#: (only "finite" is then checked, as before these bounds).
MESSAGE_LIMITS = {"max_request_rows": (1, 1 << 31), "max_reply_bytes": (1, 1 << 30)}
MAGNITUDES = {"max_abs_value": 0.0, "max_importance": 1.0, "max_abs_label": 1.0}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


def check_endpoint(name: str, value: object) -> str:
    """``value`` if it is an endpoint the daemon can bind and clients can
    reach: ``tcp://HOST:PORT`` (HOST a name, an address, ``[v6]`` or ``*``;
    PORT 1-65535) or ``ipc://PATH``; else ``ConfigError`` naming ``name``."""
    example = "such as tcp://127.0.0.1:5555 or ipc:///run/onlinel1/train.sock"
    if not isinstance(value, str) or not value.startswith(ENDPOINT_SCHEMES):
        why = ("inproc:// reaches only threads of the daemon itself"
               if isinstance(value, str) and value.startswith("inproc://") else "")
        raise ConfigError(f"{name} must be a ZeroMQ endpoint {example}, got {value!r}"
                          + (f" ({why})" if why else ""))
    if value.startswith("ipc://"):
        if len(value) == len("ipc://") or "\0" in value:
            raise ConfigError(f"{name}: an ipc:// endpoint needs a path, got {value!r}")
        return value
    host, sep, port = value[len("tcp://"):].rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be tcp://HOST:PORT with a port from 1 to 65535 (a "
                          f"fixed one: producers and clients must know it), got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    """Everything about the daemon that is not the learner."""

    train_endpoint: str = "tcp://127.0.0.1:5555"
    request_endpoint: str = "tcp://127.0.0.1:5556"
    log_level: str = "info"
    #: Largest message accepted, in bytes.
    max_message_bytes: int = 64 * 1024 * 1024
    #: Rows one train, learn or predict message may hold (a row-wise one is
    #: refused before it is decoded): bounds the 24 bytes a row costs.
    max_request_rows: int = 1 << 20
    #: Largest reply sent; a predict reply beyond it is a too_large error.
    max_reply_bytes: int = 64 * 1024 * 1024
    #: Largest |feature value| of a training or prediction batch.
    max_abs_value: float = 1e6
    #: Largest importance of a training example.
    max_importance: float = 1e3
    #: Largest |label| of a training example (binding for the squared loss).
    max_abs_label: float = 1e6
    #: Messages queued per connection, each way, before its peer is held
    #: back (ZeroMQ's RCVHWM and SNDHWM); a reply past it is dropped and
    #: counted.  With ``max_connections`` it bounds the memory the sockets
    #: can hold (admission.memory_bound; README "Admission and memory bounds").
    high_water_mark: int = 2
    #: Connections each socket holds at most; past it a handshake is
    #: refused (counted in ``connections_refused``) and the peer retries.
    max_connections: int = 64
    #: Examples covered by the recent-window progressive loss in stats.
    window_examples: int = 10_000
    #: A training batch is learned in slices of about this many features:
    #: after each, the learner looks at the request socket and, if a
    #: request is waiting, answers it before going on.
    slice_nnz: int = 8_192
    #: The share of the loop's time that training keeps when requests and
    #: training both wait (0.05-0.95): requests waiting beside training
    #: spend a credit of (1 - F) / F seconds per second learned, at least
    #: one request a turn (server/fairness.py).
    training_share: float = 0.5
    #: Nice value of the I/O thread that reads the training stream (0-19;
    #: 0 leaves it alone).  Under CPU contention, replies go first.  10,
    #: not 19: at 19 (a CFS weight of 15 against 1024) a predict flood
    #: starved the reader, so training had no message waiting and lost its
    #: share (README, "Fair scheduling"); at 10 (weight 110) it keeps up.
    training_io_nice: int = 10
    #: Directory of the snapshots; None: no snapshots.
    snapshot_dir: str | None = None
    #: Take a snapshot every this many seconds (0: never on a timer).
    snapshot_every_seconds: float = 0.0
    #: Take a snapshot every this many examples learned (0: never by count).
    snapshot_every_examples: int = 0
    #: Snapshots kept in the directory (the newest valid one is never deleted).
    keep: int = 5
    #: Resume from the newest valid snapshot; None: when the directory has any.
    resume: bool | None = None
    #: Remember the names of string features sent row-wise (for inspect/export).
    keep_names: bool = False
    #: Skip a batch whose ``seq`` is not above its producer's last one (a
    #: resend); without it such a batch is learned, counted and logged.
    dedupe_seq: bool = False
    #: HOST:PORT of the HTTP endpoint (/metrics, /healthz, /readyz, the
    #: status page); None: no HTTP.  A bare PORT means 127.0.0.1.
    http_endpoint: str | None = None
    #: The daemon's CURVE secret key file (``onlinel1 keygen``'s PATH.key);
    #: with ``curve_allow``, both sockets are CURVE servers (server/auth.py).
    curve_secret_key: str | None = None
    #: The client public keys admitted: a folder of ``*.pub`` files, or one
    #: ``.pub`` file; read at start.
    curve_allow: str | None = None
    #: Allow endpoints off loopback without CURVE (and HTTP off loopback);
    #: logged as a WARNING at every start.
    insecure: bool = False

    def __post_init__(self) -> None:
        for name in ("train_endpoint", "request_endpoint"):
            check_endpoint(name, getattr(self, name))
        if self.train_endpoint == self.request_endpoint:
            raise ConfigError("train_endpoint and request_endpoint must differ")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        if isinstance(self.snapshot_every_seconds, bool) or \
                not isinstance(self.snapshot_every_seconds, (int, float)) or \
                not 0 <= self.snapshot_every_seconds <= MAX_SNAPSHOT_SECONDS:
            raise ConfigError(f"snapshot_every_seconds must be a number from 0 to "
                              f"{MAX_SNAPSHOT_SECONDS}, got {self.snapshot_every_seconds!r}")
        if isinstance(self.training_share, bool) or \
                not isinstance(self.training_share, (int, float)) or \
                not 0.05 <= self.training_share <= 0.95:
            raise ConfigError(f"training_share must be a number from 0.05 to 0.95, "
                              f"got {self.training_share!r}")
        if self.snapshot_dir is not None and (not isinstance(self.snapshot_dir, str)
                                              or not self.snapshot_dir.strip()
                                              or "\0" in self.snapshot_dir):
            raise ConfigError(f"snapshot_dir must be a directory path (leave it out for no "
                              f"snapshots), got {self.snapshot_dir!r}")
        for name in ("resume",):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("keep_names", "dedupe_seq"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.http_endpoint is not None:
            from onlinel1.server.http import parse_http_endpoint
            try:
                parse_http_endpoint(self.http_endpoint)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"http_endpoint: {exc}") from None
        if self.snapshot_dir is None and (self.snapshot_every_seconds or self.snapshot_every_examples):
            raise ConfigError("snapshot_every_seconds / snapshot_every_examples need snapshot_dir")
        self._check_message_limits()
        from onlinel1.server.auth import check_config   # CURVE and the loopback rule
        problem = check_config(self)
        if problem:
            raise ConfigError(problem)

    def _check_message_limits(self) -> None:
        for name, (low, high) in MESSAGE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        for name, low in MAGNITUDES.items():
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, (int, float)) \
                and not math.isnan(value)
            if not number or (value <= low if low == 0.0 else value < low):
                raise ConfigError(f"{name} must be a number {'above' if low == 0.0 else 'of at least'} "
                                  f"{low:g} (inf: no bound but finite), got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DaemonConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown daemon setting(s): {', '.join(unknown)}")
        return cls(**values)


def read_config_file(path: str | pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(daemon, learner)`` tables of a TOML config file."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    unknown = sorted(set(data) - {"daemon", "learner"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)} "
                          f"(expected [daemon] and [learner])")
    daemon, learner = data.get("daemon", {}), data.get("learner", {})
    for name, table in (("daemon", daemon), ("learner", learner)):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
    return daemon, learner
