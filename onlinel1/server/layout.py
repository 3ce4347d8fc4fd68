"""The snapshot directory of a daemon: one folder per model.

    DIR/
      default/snapshot-000000000012.ol1
      clicks/snapshot-000000000003.ol1
      .dropped/clicks-1764633600123/...     (a dropped model, kept for the operator)

A model's folder is ``DIR/<name>`` (model names can never be paths:
onlinel1/names.py).  Daemons before named models wrote the snapshots of
their one model straight into ``DIR``; those are the ``default`` model's,
and a trainer moves them into ``DIR/default/`` when it starts.
"""
from __future__ import annotations

import fcntl
import logging
import os
import pathlib
import time

from onlinel1.names import DEFAULT_MODEL, MODEL_NAME_RE
from onlinel1.server.snapshots import PATTERN, SnapshotDir

log = logging.getLogger("onlinel1.daemon")

DROPPED = ".dropped"
LOCK = ".lock"


class DirectoryInUse(OSError):
    """Another live process holds the snapshot directory's lock."""


def lock(root: str | os.PathLike) -> int:
    """Take the exclusive lock of ``root`` (``flock`` on ``root/.lock``,
    created if need be) and return its descriptor, to keep open as long as
    the daemon runs: the kernel drops the lock when the process ends, so a
    crash never leaves a stale one.  ``DirectoryInUse`` names the holder."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        raise DirectoryInUse(f"{root} is in use by another onlinel1 trainer (pid {holder}): two "
                             f"trainers on one snapshot directory would prune each other's "
                             f"snapshots; stop it, or give this one another --snapshot-dir")
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def model_dir(root: str | os.PathLike, name: str) -> pathlib.Path:
    return pathlib.Path(root) / name


def has_snapshots(directory: pathlib.Path) -> bool:
    return bool(SnapshotDir(directory, 1).listing())


def legacy_snapshots(root: str | os.PathLike) -> list[pathlib.Path]:
    """Snapshot files straight in ``root`` (the layout of one-model daemons)."""
    return [path for _, path in SnapshotDir(root, 1).listing()]


def model_folders(root: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Every folder of ``root`` named like a model that holds snapshots."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for entry in sorted(root.iterdir()):
        if MODEL_NAME_RE.fullmatch(entry.name) and entry.is_dir() and has_snapshots(entry):
            found[entry.name] = entry
    return found


def migrate_legacy(root: str | os.PathLike) -> int:
    """Move one-model snapshots of ``root`` into ``root/default``; return how
    many (renames on one file system: each is atomic)."""
    moved = legacy_snapshots(root)
    if not moved:
        return 0
    target = model_dir(root, DEFAULT_MODEL)
    target.mkdir(parents=True, exist_ok=True)
    for path in moved:
        os.replace(path, target / path.name)
    log.info("moved %d snapshot(s) of %s into %s/ (one folder per model)", len(moved), root,
             target.name)
    return len(moved)


def move_aside(root: str | os.PathLike, name: str) -> pathlib.Path | None:
    """Move a dropped model's folder to ``root/.dropped/<name>-<unix ms>``
    (so a restart does not bring it back, and nothing is deleted)."""
    source = model_dir(root, name)
    if not source.exists():
        return None
    target = pathlib.Path(root) / DROPPED / f"{name}-{int(time.time() * 1000)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


def replica_sources(source: str | os.PathLike) -> dict[str, pathlib.Path]:
    """What a predict-only replica of ``source`` serves: a model file (as the
    default model), a one-model snapshot directory (default), or each model
    folder of a daemon's snapshot directory."""
    path = pathlib.Path(source)
    if not path.is_dir():
        return {DEFAULT_MODEL: path}
    if any(PATTERN.match(entry.name) for entry in path.iterdir()):
        return {DEFAULT_MODEL: path}
    return model_folders(path)
