"""Cluster snapshots (docs/snapshot-format.md, "Cluster snapshots").

A cut at mini-batch n is one model file per shard (that shard's keys, its
clocks, ``extra.cluster_shard``), written by the shards themselves, side
by side, then the manifest, written last and atomically: a model file of
no rows, named like any snapshot, whose clocks and progress are the
model's and whose ``extra.cluster`` lists the shard files (name, size,
rows) and the partition table.  Until the manifest's rename the cut does
not exist; a reader (``model_file.load``) that opens a manifest loads and
verifies every shard file and merges them into one learner, so a single
process, a replica and ``predict --model`` load a cluster snapshot as
they load their own.
"""
from __future__ import annotations

import contextlib
import contextvars
import pathlib
from typing import Any, Iterator, Mapping

import numpy as np

from onlinel1 import model_file
from onlinel1.learner import Learner, state_columns

#: The shard files of the manifest ``snapshot-<seq>.ol1``.
SHARD_SUFFIX = ".shard-{index:04d}-of-{shards:04d}.ol1"


def shard_path(manifest: pathlib.Path, index: int, shards: int) -> pathlib.Path:
    manifest = pathlib.Path(manifest)
    return manifest.with_name(manifest.name[:-len(".ol1")]
                              + SHARD_SUFFIX.format(index=index, shards=shards))


def shard_files(manifest: pathlib.Path) -> list[pathlib.Path]:
    """The shard files next to ``manifest`` (by name: for deleting)."""
    manifest = pathlib.Path(manifest)
    stem = manifest.name[:-len(".ol1")]
    return sorted(manifest.parent.glob(f"{stem}.shard-*-of-*.ol1"))


def write(path: str | pathlib.Path, learner: Any, names: Mapping[int, str] | None,
          extra: Mapping[str, Any]) -> int:
    """Write the cut of a ``ClusterLearner`` between batches: the shard
    files, then the manifest at ``path``; the bytes written.  The head's
    replay log is trimmed to the mini-batches after the cut."""
    path = pathlib.Path(path)
    learner.flush()
    kernel = learner._kernel
    if kernel.in_batch:
        raise RuntimeError("a cluster snapshot is cut between batches")
    shards, n = kernel.shards, kernel.n
    owner_names: list[dict[int, str]] = [{} for _ in range(shards)]
    if names:
        keys = np.fromiter(names.keys(), dtype=np.uint64, count=len(names))
        for key, s in zip(keys.tolist(), kernel.partitioner.shard_of(keys).tolist()):
            owner_names[s][key] = names[key]
    files = [shard_path(path, s, shards) for s in range(shards)]
    record = {"shards": shards, "minibatches": n, "manifest": path.name}
    written = kernel.call_all("save", [(str(files[s]), owner_names[s],
                                        {"cluster_shard": dict(record, index=s)})
                                       for s in range(shards)])
    head = Learner(learner.options)
    head._kernel.set_clocks(kernel.get_clocks())
    head._progress = dict(learner._progress)
    cluster = {"partitioner": kernel.partitioner.to_dict(), "minibatches": n,
               "shards": [{"file": f.name, "size": size, "rows": rows}
                          for f, (size, rows) in zip(files, written)]}
    size = model_file.save(path, head, None, dict(extra, cluster=cluster))
    kernel.cut([str(f) for f in files], n)
    return size + sum(w[0] for w in written)


def read(path: str | pathlib.Path) -> dict[str, Any]:
    """The ``cluster`` record of a manifest (unverified header)."""
    header = model_file.read_header(path)
    record = header.get("extra", {}).get("cluster")
    if not isinstance(record, dict):
        raise model_file.ModelFileError(f"{path}: not a cluster snapshot's manifest")
    return record


#: Set by ``deferred()``: a manifest loads as its head only (see ``merge``).
_DEFERRED: contextvars.ContextVar[bool] = contextvars.ContextVar("deferred", default=False)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within it, ``model_file.load`` of a manifest verifies the shard files
    (digest, cut) but merges nothing: it returns the head (clocks, progress,
    no features) with ``deferred_shards`` = {path, files, minibatches,
    partitioner}, so that a cluster's shards load their own files and no
    process holds the whole model (``onlinel1 cluster start`` resuming)."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def _shard_entries(path: pathlib.Path, extra: dict[str, Any],
                   source: str) -> tuple[list[pathlib.Path], int]:
    record = extra["cluster"]
    try:
        entries = list(record["shards"])
        n = int(record["minibatches"])
    except (KeyError, TypeError, ValueError):
        raise model_file.ModelFileError(f"{source}: a malformed cluster manifest") from None
    files = []
    for index, entry in enumerate(entries):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise model_file.ModelFileError(f"{source}: shard {index}: a bad file name")
        files.append(path.with_name(name))
    return files, n


def _check_shard(source: str, name: str, index: int, n: int, head: Learner,
                 header: Mapping[str, Any]) -> None:
    mine = header.get("extra", {}).get("cluster_shard", {})
    t = header.get("clocks", {}).get("t")
    if mine.get("index") != index or mine.get("minibatches") != n \
            or header.get("options") != head.options.to_state_dict() \
            or t != head.examples_seen:
        raise model_file.ModelFileError(f"{source}: shard file {name} is not of this cut "
                                        f"(shard {mine.get('index')}, mini-batch "
                                        f"{mine.get('minibatches')}, {t} examples)")


def merge(path: str | pathlib.Path, head: Learner, extra: dict[str, Any],
          source: str) -> tuple[Learner, dict[int, str], dict[str, Any]]:
    """The whole model of the manifest at ``path`` (already loaded as
    ``head``, ``extra``): every shard file loaded, verified and checked
    against the manifest, merged (within ``deferred()``: verified and
    checked only)."""
    path = pathlib.Path(path)
    files, n = _shard_entries(path, extra, source)
    parts, names = [], {}
    for index, file in enumerate(files):
        try:
            if _DEFERRED.get():
                _check_shard(source, file.name, index, n, head, model_file.verify(file))
                continue
            learner, shard_names, shard_extra = model_file.load_file(file)
        except FileNotFoundError:
            raise model_file.ModelFileError(f"{source}: its shard file {file.name} is "
                                            f"missing") from None
        _check_shard(source, file.name, index, n, head,
                     {"extra": shard_extra, "clocks": learner._kernel.get_clocks(),
                      "options": learner.options.to_state_dict()})
        parts.append(learner._kernel.store.export())
        names.update(shard_names)
    if _DEFERRED.get():
        head.deferred_shards = {"path": str(path), "files": [str(f) for f in files],
                                "minibatches": n, "partitioner": extra["cluster"]["partitioner"]}
        return head, {}, extra
    merged = Learner(head.options)
    columns = state_columns(head.options)
    if parts:
        merged._kernel.store.load(np.concatenate([p[0] for p in parts]),
                                  np.concatenate([p[1] for p in parts]),
                                  [np.concatenate([p[2][i] for p in parts])
                                   for i in range(len(columns))])
    merged._kernel.set_clocks(head._kernel.get_clocks())
    merged._progress = dict(head._progress)
    return merged, names, extra
