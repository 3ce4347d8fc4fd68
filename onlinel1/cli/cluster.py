"""``onlinel1 cluster start|status|stop``: the daemon over sharded weights
on Ray (docs/scaling.md)."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import logging
import os
import pathlib
import socket
import sys
import time
from typing import Any, Iterator

from onlinel1.cli import serve
from onlinel1.cli.common import (CommandError, Formatter, add_learner_arguments,
                                 explicit_learner_values)
from onlinel1.names import DEFAULT_MODEL

log = logging.getLogger("onlinel1.cluster")

#: Mini-batch size of a cluster when neither --minibatch nor the config
#: file sets one: every mini-batch costs two round trips to every shard.
DEFAULT_MINIBATCH = 256
#: How long ``stop`` waits for the head to write its final snapshot.
STOP_TIMEOUT_S = 300.0
#: How long a Ray address may take to accept a connection.
CONNECT_TIMEOUT_S = 5.0
#: Ray's switch (read when it is imported) for a Ray on loopback only.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _ray(address: str | None = None) -> Any:
    """The ray module, or a CommandError saying how to get it.

    Set before Ray is imported, which reads them then: for a Ray on
    loopback (``address`` "local", a head's own, or a loopback HOST:PORT),
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's switch for a one-machine
    Ray whose node address is loopback: its servers then listen on
    127.0.0.1 only (otherwise on every interface, even for
    ``ray.init(address="local")``), and a client finds its raylet there.
    With a HOST:PORT: Ray authenticates local clusters with a token (its
    default since 2.59; the token of ~/.ray/auth_token, or RAY_AUTH_TOKEN),
    but a client given an address sends it only in token mode: ask for it,
    when there is a token."""
    _require_ray()
    if address is not None and "ray" not in sys.modules:
        if address == "local" or _is_loopback(address):
            os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
        if address != "local" and (os.environ.get("RAY_AUTH_TOKEN")
                                   or (pathlib.Path.home() / ".ray" / "auth_token").exists()):
            os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise CommandError("onlinel1 cluster needs Ray: pip install 'onlinel1[cluster]'") from None
    return ray


def _require_ray() -> None:
    """A CommandError saying how to get Ray when it is missing (without
    importing it)."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except ValueError:          # sys.modules["ray"] is None: known missing
        found = False
    if not found:
        raise CommandError("onlinel1 cluster needs Ray: pip install 'onlinel1[cluster]'")


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _address_file() -> pathlib.Path:
    """Where ``ray start`` (and a head with a Ray of its own) leaves the
    address of the Ray on this machine: Ray's own rule, RAY_TMPDIR, else
    TMPDIR, else /tmp."""
    tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return pathlib.Path(tmp, "ray", "ray_current_cluster")


@contextlib.contextmanager
def _published(address: str) -> Iterator[None]:
    """Leave the address of the head's own Ray in the address file while it
    runs, so that ``status`` and ``stop`` on this machine find it without
    --address; unless the file names another Ray that answers (``ray
    start``'s, or another head's), which is left as it is."""
    path = _address_file()
    try:
        theirs = path.read_text().strip()
    except OSError:
        theirs = ""
    if theirs and theirs != address:
        try:
            _check_reachable(theirs, timeout=1.0)
        except CommandError:
            pass                        # a stale file: replaced
        else:
            log.info("%s names the Ray at %s: status and stop here need --address %s",
                     path, theirs, address)
            yield
            return
    wrote = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(address)
        wrote = True
    except OSError as exc:
        log.warning("cannot leave the Ray address in %s (%s): status and stop need "
                    "--address %s", path, exc.strerror or exc, address)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if wrote and path.read_text().strip() == address:
                path.unlink()


def _address(args: argparse.Namespace, starting: bool) -> str:
    """--address, else for ``start`` a new Ray of this process ("local",
    never another one found on the machine), else the Ray of this machine:
    RAY_ADDRESS, or the address file."""
    if args.address:
        return args.address
    if starting:
        return "local"
    with contextlib.suppress(OSError):
        found = os.environ.get("RAY_ADDRESS") or _address_file().read_text().strip()
        if found:
            return found
    raise CommandError("no Ray cluster on this machine: give the head's --address HOST:PORT "
                       "(its log says it; so does 'onlinel1 stats' -> cluster.ray_address)")


def _connect(args: argparse.Namespace, starting: bool) -> Any:
    _require_ray()
    address = _address(args, starting)
    if address != "local":
        _check_reachable(address)
    ray = _ray(address)
    from onlinel1.cluster.ray_backend import NAMESPACE
    kwargs: dict[str, Any] = dict(namespace=NAMESPACE, log_to_driver=False,
                                  logging_level=logging.WARNING)
    if address == "local":
        # A Ray of this process only, on loopback (see _ray): join a
        # cluster with --address to span machines.
        kwargs.update(include_dashboard=False)
        if getattr(args, "num_cpus", None):
            kwargs["num_cpus"] = args.num_cpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CommandError(f"cannot reach a Ray cluster at {address}: {exc}") from None
    return ray


def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when nothing listens at ``host:port`` (Ray itself retries
    for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except ValueError:
        raise CommandError(f"--address {address}: not HOST:PORT") from None
    except OSError as exc:
        raise CommandError(f"no Ray cluster answered at {address} within {timeout:g} s "
                           f"({exc.strerror or exc})") from None


def cmd_start(args: argparse.Namespace) -> int:
    if args.shards < 1 or args.workers < 1:
        raise CommandError("--shards and --workers must be at least 1")
    if args.minibatch is None:
        args.minibatch = DEFAULT_MINIBATCH
    config, options, learner_table, metrics = serve.prepare(args)
    if options.budgeted:
        raise CommandError("a cluster runs no memory budget or expiry (--max-features, "
                           "--expire-after-examples): every shard applies every mini-batch")
    _require_ray()   # before resuming anything: a missing extra is reported first
    from onlinel1.cluster.learner import ClusterLearner
    from onlinel1.cluster.partition import Partitioner
    from onlinel1.cluster import manifest
    from onlinel1.server import startup
    try:
        partitioner = Partitioner(args.shards, args.partition_seed)
        # A cluster snapshot to resume is verified, not merged: its shards
        # load their own files (unless --force-config carries the weights
        # over to other settings, which needs them here).
        with manifest.deferred() if not args.force_config else contextlib.nullcontext():
            daemon = startup.trainer(config, options,
                                     explicit_learner_values(args, learner_table),
                                     force=args.force_config, initial=args.initial,
                                     check=args.check, metrics=metrics)
    except (startup.StartupError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    serving = (f"a cluster of {args.shards} shards and {args.workers} workers training on "
               f"{config.train_endpoint}")
    if args.check:
        return serve.run(args, config, daemon, metrics, serving)
    if not config.snapshot_dir:
        log.warning("no --snapshot-dir: a lost shard is rebuilt by replaying every mini-batch "
                    "since the start, which the head keeps in memory")
    ray = _connect(args, starting=True)
    from onlinel1.cluster.ray_backend import RayCluster
    default = daemon.models.get(DEFAULT_MODEL)
    record = {"shards": args.shards, "workers": args.workers, "pid": os.getpid(),
              "hostname": os.uname().nodename, "train_endpoint": config.train_endpoint,
              "request_endpoint": config.request_endpoint, "minibatch": options.minibatch,
              "snapshot_dir": config.snapshot_dir, "started": time.time(),
              "partition_seed": args.partition_seed,
              "ray_address": ray.get_runtime_context().gcs_address}
    try:
        actors = RayCluster.create(args.name, default.learner.options, partitioner,
                                   args.workers, record)
    except RuntimeError as exc:
        daemon.close()
        ray.shutdown()
        raise CommandError(str(exc)) from None
    try:
        learner = ClusterLearner(default.learner.options, partitioner, actors.calls(),
                                 actors.workers())
        names = _seed(learner, default.learner, default.names)
        learner.where = {"name": args.name, "ray_address": record["ray_address"],
                         "seeded_from": "shard files" if names is not None else "a model"}
        default.replace(learner, names if names is not None else default.names)
        log.info("cluster %r: %d shards, %d workers on Ray (--address %s)", args.name,
                 args.shards, args.workers, record["ray_address"])
        with _published(record["ray_address"]) if not args.address else contextlib.nullcontext():
            return serve.run(args, config, daemon, metrics, serving)
    finally:
        actors.kill()
        ray.shutdown()


def _seed(cluster: Any, learner: Any, names: Any) -> dict[int, str] | None:
    """Start the shards from ``learner``: from a cluster snapshot's own shard
    files when it is one of the same partitions (each shard loads its file;
    returns the names they held), else from the whole model (cut by
    partition here; a snapshot of another shard count is merged first)."""
    deferred = getattr(learner, "deferred_shards", None)
    if deferred is None:
        cluster.seed(learner)
        return None
    from onlinel1 import model_file
    from onlinel1.cluster.partition import Partitioner
    theirs = Partitioner.from_dict(deferred["partitioner"])
    if theirs.to_dict() != cluster.partitioner.to_dict():
        log.info("%s: %d shards (seed %d) resharded to %d (seed %d)", deferred["path"],
                 theirs.shards, theirs.seed, cluster.partitioner.shards,
                 cluster.partitioner.seed)
        cluster.seed(model_file.load(deferred["path"])[0])
        return None
    cluster.seed(sources=deferred["files"], applied=deferred["minibatches"],
                 progress=learner.progress_sums, clocks=learner._kernel.get_clocks())
    merged: dict[int, str] = dict(names or {})
    for part in cluster._kernel.call_all("names", [()]):
        merged.update(part)
    return merged


def _attach(args: argparse.Namespace) -> Any:
    _connect(args, starting=False)
    from onlinel1.cluster.ray_backend import RayCluster, cluster_names
    if args.name not in cluster_names():
        running = ", ".join(cluster_names()) or "none"
        raise CommandError(f"no cluster named {args.name!r} on this Ray cluster (running: "
                           f"{running})")
    return RayCluster.attach(args.name)


def cmd_status(args: argparse.Namespace) -> int:
    actors = _attach(args)
    ray = _ray()
    record = ray.get(actors.record.get.remote())
    infos = ray.get([h.info.remote() for h in actors.shard_handles])
    print(f"cluster {args.name}: head pid {record['pid']} on {record['hostname']}, "
          f"training on {record['train_endpoint']}, requests on {record['request_endpoint']}, "
          f"minibatch {record['minibatch']}, {record['workers']} workers")
    print(f"{'shard':>5} {'pid':>8} {'mini-batches':>12} {'examples':>10} {'features':>10} "
          f"{'nnz':>10} {'memory':>10}")
    for i in infos:
        print(f"{i['index']:>5} {i['pid']:>8} {i['applied']:>12} {i['t']:>10} "
              f"{i['features']:>10} {i['nnz']:>10} {i['memory_bytes']:>10}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    actors = _attach(args)
    ray = _ray()
    from onlinel1.cluster.ray_backend import signal_head
    record = ray.get(actors.record.get.remote())
    if record.get("hostname") != os.uname().nodename or not _alive(int(record["pid"])):
        if record.get("hostname") != os.uname().nodename and not args.force:
            raise CommandError(f"the head runs on {record['hostname']} (pid {record['pid']}): "
                               f"stop it there (SIGTERM), or --force to remove the actors "
                               f"without its final snapshot")
        actors.kill()
        print(f"cluster {args.name}: the head was gone; its actors are removed",
              file=sys.stderr)
        return 0
    # Off Ray before the head goes: a head with a Ray of its own takes it
    # down as it exits, and a client still connected then is ended by
    # Ray's core worker (exit 1, after a minute), whatever it was doing.
    ray.shutdown()
    pid = int(record["pid"])
    signal_head(record)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid):
        if time.monotonic() > deadline:
            raise CommandError(f"the head (pid {pid}) did not stop within "
                               f"{STOP_TIMEOUT_S:.0f} s")
        time.sleep(0.2)
    print(f"cluster {args.name}: stopped (the head wrote its final snapshot and exited)",
          file=sys.stderr)
    return 0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (a zombie, exited
    but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


def register(sub: argparse._SubParsersAction) -> None:
    cluster = sub.add_parser(
        "cluster", formatter_class=Formatter,
        help="the daemon over weights sharded on Ray (start, status, stop)",
        description="A daemon whose weights are sharded over Ray actors (docs/scaling.md).\n"
                    "Producers and clients use it as they use 'onlinel1 serve': the same\n"
                    "endpoints and protocol. Needs pip install 'onlinel1[cluster]'.")
    verbs = cluster.add_subparsers(dest="verb", metavar="VERB")
    start = verbs.add_parser(
        "start", formatter_class=Formatter,
        help="run a cluster in the foreground until SIGTERM",
        description="Start S weight shards and W workers on Ray (a local Ray, or the cluster at\n"
                    "--address) and run the daemon's endpoints in this process, the head: it\n"
                    "cuts the stream into mini-batches of --minibatch B rows, numbers them,\n"
                    "and has a worker apply each on every shard in that order, so the weights\n"
                    "equal 'onlinel1 train --minibatch B' bit for bit, whatever S and W.\n"
                    "A shard that dies is restarted by Ray, restored from the last snapshot\n"
                    "and caught up from the head's log. SIGTERM writes the final snapshot\n"
                    "(one file per shard and a manifest) and removes the actors. Here\n"
                    f"--minibatch defaults to {DEFAULT_MINIBATCH}.",
        epilog="examples:\n"
               "  onlinel1 cluster start --shards 4 --workers 2 --snapshot-dir /var/lib/onlinel1\n"
               "  onlinel1 cluster start --address ray-head:6379 --shards 16 --workers 8 \\\n"
               "      --train-endpoint tcp://0.0.0.0:5555 --request-endpoint tcp://0.0.0.0:5556 \\\n"
               "      --curve-secret-key server.key --curve-allow clients/ --minibatch 1024")
    g = start.add_argument_group("cluster")
    g.add_argument("--shards", type=int, default=2, metavar="S",
                   help="weight shards (Ray actors; default: 2)")
    g.add_argument("--workers", type=int, default=1, metavar="W",
                   help="worker actors that compute the mini-batches (default: 1)")
    g.add_argument("--address", metavar="ADDR",
                   help="join the Ray cluster at ADDR (host:port of 'ray start --head'); "
                        "default: start a local Ray for this process")
    g.add_argument("--name", default="default",
                   help="the cluster's name on Ray, for status and stop (default: default)")
    g.add_argument("--partition-seed", type=int, default=0x6F6C31, metavar="N",
                   help="seed of the hash of keys to the 1024 partitions (default: 7302193)")
    g.add_argument("--num-cpus", type=int, metavar="N",
                   help="CPUs of the local Ray (default: all)")
    serve.add_daemon_arguments(start, replica=False)
    add_learner_arguments(start, with_defaults=False)
    start.set_defaults(func=cmd_start)
    for verb, fn, text in (("status", cmd_status, "the shards of a running cluster"),
                           ("stop", cmd_stop, "stop a running cluster (its head writes the "
                                              "final snapshot)")):
        p = verbs.add_parser(verb, formatter_class=Formatter, help=text, description=text + ".")
        p.add_argument("--address", metavar="ADDR",
                       help="the Ray cluster (default: RAY_ADDRESS, else the address left on this "
                            "machine by a head with a Ray of its own, or by ray start)")
        p.add_argument("--name", default="default", help="the cluster's name (default: default)")
        if verb == "stop":
            p.add_argument("--force", action="store_true",
                           help="remove the actors even when the head is on another machine")
        p.set_defaults(func=fn)
    cluster.set_defaults(func=lambda args: (cluster.print_help(), 2)[1])
