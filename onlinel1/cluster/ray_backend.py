"""The shards and workers as Ray actors (docs/scaling.md, "On Ray").

Shards are named, detached actors (``onlinel1.<cluster>.shard.<i>`` in
the ``onlinel1`` namespace) that Ray restarts when they die
(``max_restarts=-1``); a call in flight when one dies is not retried by
Ray (``max_task_retries=0``): the head sees ``RayActorError``, restores
the restarted shard from its last snapshot and replays (kernel.py), so no
mini-batch is applied twice or lost.  Workers are stateless actors that
run ``step.Stepper`` against the shards.  Actors reserve no CPU
(``num_cpus=0``): on one machine they share its cores with the head.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Sequence

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from onlinel1.cluster.partition import Partitioner
from onlinel1.cluster.shard import ShardState
from onlinel1.cluster.step import MiniBatch, ShardsLost, Stepper
from onlinel1.options import LearnerOptions

NAMESPACE = "onlinel1"
#: How long one call may take before its shard counts as lost.
CALL_TIMEOUT_S = 600.0


def actor_name(cluster: str, role: str, index: int | None = None) -> str:
    return f"onlinel1.{cluster}.{role}" + ("" if index is None else f".{index}")


def _unwrap(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


class RayCalls:
    """``step.ShardCalls`` over shard actors."""

    def __init__(self, handles: Sequence[Any]) -> None:
        self.handles = list(handles)
        self.shards = len(self.handles)

    def call(self, method: str, args: Sequence[tuple],
             only: Sequence[int] | None = None) -> list[Any]:
        shards = list(only) if only is not None else list(range(self.shards))
        refs = [getattr(self.handles[s], method).remote(*a) for s, a in zip(shards, args)]
        out: list[Any] = []
        for s, ref in zip(shards, refs):
            try:
                out.append(ray.get(ref, timeout=CALL_TIMEOUT_S))
            except (RayActorError, GetTimeoutError) as exc:
                out.append(ShardsLost([s], f"{type(exc).__name__}: {exc}".splitlines()[0]))
            except RayTaskError as exc:     # ShardOrderError, or another error of the shard
                out.append(_unwrap(exc))
        return out


@ray.remote
class WeightShard(ShardState):
    """A shard (shard.py) as an actor."""

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class WorkerActor:
    """Runs mini-batches (step.py) against the named shard actors."""

    def __init__(self, cluster: str, options: dict, partitioner: dict) -> None:
        shards = Partitioner.from_dict(partitioner).shards
        handles = [ray.get_actor(actor_name(cluster, "shard", s), namespace=NAMESPACE)
                   for s in range(shards)]
        self.calls = RayCalls(handles)
        self.stepper = Stepper(LearnerOptions.from_dict(options),
                               Partitioner.from_dict(partitioner))

    def step(self, n: int, mb: MiniBatch) -> dict[str, Any]:
        return self.stepper.step(self.calls, n, MiniBatch(*mb))

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class RecordActor:
    """What ``onlinel1 cluster status`` and ``stop`` read: the head's
    process, endpoints and sizes."""

    def __init__(self, record: dict) -> None:
        self.record = dict(record)

    def get(self) -> dict:
        return dict(self.record)


class RayWorkers:
    """``kernel.Workers`` over worker actors, taken in turn (the head
    waits for each mini-batch: the next one's margins need its updates)."""

    def __init__(self, handles: Sequence[Any]) -> None:
        self.handles = list(handles)
        self.turn = 0

    def step(self, n: int, mb: MiniBatch) -> dict[str, Any]:
        last: BaseException | None = None
        for _ in range(2 * len(self.handles) + 2):
            worker = self.handles[self.turn % len(self.handles)]
            self.turn += 1
            try:
                return ray.get(worker.step.remote(n, tuple(mb)), timeout=CALL_TIMEOUT_S)
            except RayTaskError as exc:
                raise _unwrap(exc) from None
            except (RayActorError, GetTimeoutError) as exc:     # a worker died: the next one
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"no worker ran mini-batch {n}: {last}")


class RayCluster:
    """The actors of one cluster: started (``create``) or found
    (``attach``), and removed (``kill``)."""

    def __init__(self, name: str, shards: list[Any], workers: list[Any], record: Any) -> None:
        self.name, self.shard_handles, self.worker_handles, self.record = \
            name, shards, workers, record

    @classmethod
    def create(cls, name: str, options: LearnerOptions, partitioner: Partitioner,
               workers: int, record: dict) -> "RayCluster":
        existing = cluster_names()
        if name in existing:
            raise RuntimeError(f"a cluster named {name!r} is running on this Ray cluster "
                               f"(onlinel1 cluster stop --name {name})")
        detached = dict(namespace=NAMESPACE, lifetime="detached", num_cpus=0)
        rec = RecordActor.options(name=actor_name(name, "record"), **detached).remote(record)
        shards = [WeightShard.options(name=actor_name(name, "shard", s), max_restarts=-1,
                                     max_task_retries=0, **detached)
                  .remote(s, options.to_dict()) for s in range(partitioner.shards)]
        ray.get([h.pid.remote() for h in shards])
        pool = [WorkerActor.options(name=actor_name(name, "worker", w), max_restarts=-1,
                                    max_task_retries=0, **detached)
                .remote(name, options.to_dict(), partitioner.to_dict()) for w in range(workers)]
        ray.get([h.pid.remote() for h in pool])
        return cls(name, shards, pool, rec)

    @classmethod
    def attach(cls, name: str) -> "RayCluster":
        record = ray.get_actor(actor_name(name, "record"), namespace=NAMESPACE)
        meta = ray.get(record.get.remote())
        shards = [ray.get_actor(actor_name(name, "shard", s), namespace=NAMESPACE)
                  for s in range(meta["shards"])]
        workers = [ray.get_actor(actor_name(name, "worker", w), namespace=NAMESPACE)
                   for w in range(meta["workers"])]
        return cls(name, shards, workers, record)

    def calls(self) -> RayCalls:
        return RayCalls(self.shard_handles)

    def workers(self) -> RayWorkers:
        return RayWorkers(self.worker_handles)

    def kill(self) -> None:
        for handle in self.worker_handles + self.shard_handles + [self.record]:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:       # noqa: BLE001 - already gone
                pass


def cluster_names() -> list[str]:
    """The clusters whose record actor is alive on the connected Ray."""
    names = ray.util.list_named_actors(all_namespaces=True)
    out = []
    for entry in names:
        name = entry["name"] if isinstance(entry, dict) else entry
        ns = entry.get("namespace") if isinstance(entry, dict) else NAMESPACE
        if ns == NAMESPACE and name.startswith("onlinel1.") and name.endswith(".record"):
            out.append(name[len("onlinel1."):-len(".record")])
    return sorted(out)


def signal_head(record: dict, signum: int = signal.SIGTERM) -> bool:
    """Signal the head process of a cluster if it runs on this machine."""
    if record.get("hostname") != os.uname().nodename:
        return False
    try:
        os.kill(int(record["pid"]), signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True
