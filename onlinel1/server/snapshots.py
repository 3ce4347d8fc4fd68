"""Snapshots: the daemon's model on disk, written without stopping it.

A snapshot is a model file (docs/model-format.md; docs/snapshot-format.md
says what a snapshot adds) named ``snapshot-<sequence>.ol1`` in one
directory.  Writing is atomic and durable (temporary file, fsync, rename,
fsync of the directory), so a reader or a restarted daemon sees a whole
snapshot or none; the temporary files (``.snapshot-*.tmp``) never match
the snapshot pattern.  The newest ``keep`` snapshots are kept; the one just
written, the newest valid one, is never deleted.

``BackgroundWriter`` writes from a forked child process: the fork shares
the parent's memory copy-on-write, so learning pauses only for the fork
itself, not for encoding, checksumming and writing the file.  The child
streams the file (``model_file.save``: the store's columns in chunks of 64k
rows, hashed as they go), so it only reads the shared pages and allocates
a few chunks, never a copy of the model.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
import stat
import time
from typing import Any, Mapping

from onlinel1 import model_file
from onlinel1.learner import Learner

log = logging.getLogger("onlinel1.snapshots")

#: What a snapshot's name looks like (the sequence is zero-padded to 12
#: digits, and grows wider past 10^12).  A name alone proves nothing: see
#: ``SnapshotDir.listing``.
PATTERN = re.compile(r"^snapshot-(\d{12,})\.ol1$")
#: A cluster snapshot's shard file (onlinel1/cluster/manifest.py).
SHARD_PATTERN = re.compile(r"^snapshot-(\d{12,})\.shard-\d{4,}-of-\d{4,}\.ol1$")


def save(path: pathlib.Path, learner: Learner, names: Mapping[int, str] | None,
         extra: Mapping[str, Any]) -> int:
    """Write a snapshot of ``learner``: a model file, or, for a cluster's
    learner, its shard files and manifest (it has ``write_snapshot``)."""
    own = getattr(learner, "write_snapshot", None)
    if own is not None:
        return own(path, names, extra)
    return model_file.save(path, learner, names, extra)


def snapshot_name(seq: int) -> str:
    return f"snapshot-{seq:012d}.ol1"


def recorded_seq(path: pathlib.Path) -> int | None:
    """The sequence number a snapshot file records about itself, or None if
    it is not a snapshot this daemon writes (not a model file, or no
    snapshot record)."""
    try:
        header = model_file.read_header(path)
    except (model_file.ModelFileError, OSError):
        return None
    record = header.get("extra", {})
    record = record.get("snapshot") if isinstance(record, dict) else None
    seq = record.get("seq") if isinstance(record, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


#: (path, inode, size, mtime) -> the sequence the file records (None:
#: foreign), so that a listing reads each file's header once; and the
#: foreign names already reported.  Both are bounded.
_RECOGNISED: dict[tuple, int | None] = {}
_REPORTED: set[str] = set()
_CACHE_LIMIT = 4096


@dataclasses.dataclass
class Loaded:
    path: pathlib.Path
    seq: int
    learner: Learner
    names: dict[int, str]
    extra: dict[str, Any]


class SnapshotDir:
    """The snapshots in one directory: list, load the newest valid, write,
    and keep the newest ``keep``."""

    def __init__(self, directory: str | os.PathLike, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = pathlib.Path(directory)
        self.keep = keep

    def ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def listing(self) -> list[tuple[int, pathlib.Path]]:
        """(sequence, path) of every snapshot of this directory, oldest first.

        Only the daemon's own files count: a regular file named
        ``snapshot-<seq>.ol1`` (canonical width) whose header records that
        same ``seq``.  Anything else named like a snapshot (a directory, a
        file of other contents, a renamed copy) is foreign: reported once,
        never listed, pruned or resumed from."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = PATTERN.match(entry.name)
            if not match:
                continue
            seq = int(match.group(1))
            recorded = None
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if snapshot_name(seq) == entry.name and stat.S_ISREG(st.st_mode):
                key = (str(entry), st.st_ino, st.st_size, st.st_mtime_ns)
                if key not in _RECOGNISED:
                    if len(_RECOGNISED) >= _CACHE_LIMIT:
                        _RECOGNISED.clear()
                    _RECOGNISED[key] = recorded_seq(entry)
                recorded = _RECOGNISED[key]
            if recorded == seq:
                found.append((seq, entry))
            elif str(entry) not in _REPORTED:
                if len(_REPORTED) >= _CACHE_LIMIT:
                    _REPORTED.clear()
                _REPORTED.add(str(entry))
                log.warning("%s: %s is named like a snapshot but is not one this daemon wrote "
                            "(%s); it is ignored: never resumed from, pruned or overwritten",
                            self.directory, entry.name,
                            "not a regular file" if not stat.S_ISREG(st.st_mode) else
                            "its contents record no snapshot" if recorded is None else
                            f"it records snapshot {recorded}")
        return sorted(found)

    def next_seq(self) -> int:
        """One past the newest snapshot; a name taken by anything (a foreign
        file or directory) is skipped, never overwritten."""
        listing = self.listing()
        seq = listing[-1][0] + 1 if listing else 1
        while os.path.lexists(self.directory / snapshot_name(seq)):
            seq += 1
        return seq

    def load_newest_valid(self) -> tuple[Loaded | None, list[str]]:
        """The newest snapshot that verifies, and a message for each newer
        one that did not (torn, corrupt, unreadable)."""
        problems = []
        for seq, path in reversed(self.listing()):
            try:
                learner, names, extra = model_file.load(path)
            except (model_file.ModelFileError, OSError) as exc:
                problems.append(f"skipped {path.name}: {exc}")
                continue
            return Loaded(path, seq, learner, names, extra), problems
        return None, problems

    def remove_stale_temporaries(self) -> None:
        """Temporary files of writes that never finished (a crash)."""
        if not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            if entry.name.startswith(".snapshot-") and entry.name.endswith(".tmp"):
                try:
                    entry.unlink()
                    log.info("removed the unfinished snapshot write %s", entry.name)
                except OSError:
                    pass

    def prune(self, newest_valid: pathlib.Path) -> None:
        """Keep the newest ``keep`` snapshots; never delete ``newest_valid``.
        A cluster snapshot's shard files go with their manifest, and those
        of a cut whose manifest was never written (older than the newest)
        are deleted too."""
        listing = self.listing()
        for seq, path in listing[:-self.keep] if len(listing) > self.keep else []:
            if path != newest_valid:
                try:
                    path.unlink()
                except OSError as exc:
                    log.warning("could not delete old snapshot %s: %s", path.name, exc)
        kept = {seq for seq, path in self.listing()}
        newest = max(kept, default=0)
        for entry in self.directory.iterdir() if self.directory.is_dir() else ():
            match = SHARD_PATTERN.match(entry.name)
            if match and int(match.group(1)) not in kept and int(match.group(1)) < newest:
                try:
                    entry.unlink()
                except OSError as exc:
                    log.warning("could not delete old shard file %s: %s", entry.name, exc)


def snapshot_extra(seq: int, producers: Mapping[str, int], reason: str) -> dict[str, Any]:
    return {"snapshot": {"seq": seq, "reason": reason, "unix_time": time.time(),
                         "producers": dict(producers)}}


@dataclasses.dataclass
class Written:
    seq: int
    path: pathlib.Path
    ok: bool
    size: int
    pause_s: float
    duration_s: float
    reason: str
    error: str | None = None


class BackgroundWriter:
    """One snapshot at a time, written by a forked child."""

    def __init__(self, snapshots: SnapshotDir) -> None:
        self.snapshots = snapshots
        self.pid: int | None = None
        self.pending: Written | None = None
        self.started = 0.0
        self.report_fd = -1
        #: A snapshot written in this process (a cluster's), until polled.
        self.finished: Written | None = None

    @property
    def busy(self) -> bool:
        return self.pid is not None or self.finished is not None

    def start(self, learner: Learner, names: Mapping[int, str] | None,
              producers: Mapping[str, int], reason: str) -> Written:
        """Fork a child that writes the next snapshot; return its record
        (finished later by ``poll``)."""
        assert self.pid is None and self.finished is None, "a snapshot is already being written"
        seq = self.snapshots.next_seq()
        path = self.snapshots.directory / snapshot_name(seq)
        extra = snapshot_extra(seq, producers, reason)
        if getattr(learner, "write_snapshot", None) is not None:
            # A cluster's learner: its shards write their files in their own
            # processes, all at once; this process only waits (no fork: its
            # Ray connection must not be shared with a child).
            try:
                self.finished = write_now(self.snapshots, learner, names, producers, reason,
                                          seq)
            except Exception as exc:        # noqa: BLE001 - reported, as a child's would be
                self.finished = Written(seq, path, False, 0, 0.0, 0.0, reason,
                                        f"{type(exc).__name__}: {exc}")
            return self.finished
        read_end, write_end = os.pipe()
        began = time.perf_counter()
        pid = os.fork()
        if pid == 0:   # the child: write, report, and leave without any cleanup
            code = 1
            try:
                os.close(read_end)
                size = model_file.save(path, learner, names, extra)   # streams
                os.write(write_end, f"{size} {time.perf_counter() - began!r}".encode())
                code = 0
            except BaseException as exc:
                try:
                    os.write(write_end, f"error {type(exc).__name__}: {exc}".encode()[:4000])
                except BaseException:
                    pass
            finally:
                os._exit(code)
        pause = time.perf_counter() - began
        os.close(write_end)
        self.pid, self.started, self.report_fd = pid, began, read_end
        self.pending = Written(seq, path, False, 0, pause, 0.0, reason)
        return self.pending

    def poll(self, block: bool = False) -> Written | None:
        """The finished record once the child has exited, else None."""
        if self.finished is not None:
            record, self.finished = self.finished, None
            return record
        if self.pid is None:
            return None
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        record = self.pending
        self.pid, self.pending = None, None
        with os.fdopen(self.report_fd, "rb") as report:
            words = report.read().decode(errors="replace").split(" ", 1)
        code = os.waitstatus_to_exitcode(status)
        record.ok = code == 0 and len(words) == 2 and words[0] != "error"
        if record.ok:
            record.size, record.duration_s = int(words[0]), float(words[1])
            self.snapshots.prune(record.path)
        else:
            record.duration_s = time.perf_counter() - self.started
            record.error = (words[1] if words[0] == "error" and len(words) == 2
                            else f"the writer exited with status {code}")
        return record


def write_now(snapshots: SnapshotDir, learner: Learner, names: Mapping[int, str] | None,
              producers: Mapping[str, int], reason: str, seq: int | None = None) -> Written:
    """Write the next snapshot in this process (the final one at shutdown)."""
    seq = snapshots.next_seq() if seq is None else seq
    path = snapshots.directory / snapshot_name(seq)
    began = time.perf_counter()
    size = save(path, learner, names, snapshot_extra(seq, producers, reason))
    elapsed = time.perf_counter() - began
    snapshots.prune(path)
    return Written(seq, path, True, size, elapsed, elapsed, reason)
