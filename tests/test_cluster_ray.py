"""The cluster on Ray (docs/scaling.md), with a local Ray on loopback.

(a) (S, W) in {(1, 1), (2, 2), (4, 1)}: the weights, intercept and
    predictions of S shard actors and W worker actors equal
    ``Learner(minibatch=B)`` on real data, bit for bit.
(b) A shard killed mid-stream (``ray.kill`` with restart, and SIGKILL of
    its process) is restarted by Ray, restored and caught up: the result
    equals the undisturbed run; killed after a snapshot cut, it is restored
    from its shard file of the cut and replays only the mini-batches since.
(c) ``onlinel1 cluster start`` end to end, seeded (``--initial``) from the
    model file of ``onlinel1 train --minibatch B --save`` on the first rows:
    ``send``, ``predict --connect``, ``stats`` and ``health`` unchanged
    against it, and the Python client library (``Producer``, and
    ``Client``'s acknowledged ``learn``, ``stats``, ``health`` and
    ``predict``); ``cluster status`` and ``stop``; its final snapshot
    (shard files and a manifest) equals ``onlinel1 train --minibatch B`` of
    all the rows bit for bit, a predict-only replica serves it, and a
    second cluster resumes from it.
(d) ``onlinel1 cluster start --address`` joins a Ray started by ``ray start
    --head`` (token-authenticated, on loopback): it learns as ``onlinel1
    train --minibatch B`` does, bit for bit; ``cluster status --address``
    and ``stop --address``; the joined Ray outlives the cluster, without
    its actors.

Every Ray here (the tests' own and the heads') listens on loopback only and
leaves no process behind when it is shut down: both are checked on the
processes themselves (their listening sockets in /proc/net/tcp{,6}; what
is still running once they are gone).
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from onlinel1 import Batch, Learner, model_file
from onlinel1.options import LearnerOptions
from conftest import SAMPLES, DaemonProcess, free_ports, wait_for
from test_cluster_core import RecordingCalls, assert_bit_identical, learn_in_cuts

# Ray's switch for a Ray on loopback only, which it reads when imported (see
# onlinel1.cli.cluster._ray): without it, even ray.init(address="local",
# _node_ip_address="127.0.0.1") has its servers listen on every interface.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
ray = pytest.importorskip("ray")

from onlinel1.cluster import manifest  # noqa: E402
from onlinel1.cluster.learner import ClusterLearner  # noqa: E402
from onlinel1.cluster.partition import Partitioner  # noqa: E402
from onlinel1.cluster.ray_backend import NAMESPACE, RayCluster  # noqa: E402

B = 16
OPTIONS = dict(update="fobos", l1=2e-3, l2=1e-3, eta0=0.1)
A9A = SAMPLES / "a9a_head2000.svm"


# ------------------------------------------------------------------ processes

def _processes() -> dict[int, tuple[int, int, str]]:
    """Every running process of this machine: pid -> (parent, session,
    command line); zombies (exited, not yet reaped) left out."""
    out = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue                    # gone meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            out[int(entry.name)] = (int(fields[1]), int(fields[3]), cmdline)
    return out


def descendants(pid: int, table: dict | None = None) -> set[int]:
    table = _processes() if table is None else table
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (parent, _, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def ray_processes(naming: str, session: int | None = None,
                  children_of: int | None = None, besides: set[int] = frozenset()) -> dict:
    """The processes of a Ray: those whose command line names ``naming``
    (its RAY_TMPDIR: every Ray process names its session directory), those
    of ``session``, and the descendants of ``children_of`` not in ``besides``;
    pid -> command line."""
    table = _processes()
    pids = {p for p, (_, sid, cmd) in table.items() if naming in cmd or sid == session}
    if children_of is not None:
        pids |= descendants(children_of, table) - set(besides)
    pids.discard(os.getpid())
    return {p: table[p][2] for p in pids if p in table}


def _address(hexaddr: str) -> str:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp{,6}: the address in 32-bit words of host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return f"{socket.inet_ntop(family, raw)}:{int(port, 16)}"


def listening(pids) -> dict[str, int]:
    """The TCP addresses that processes ``pids`` listen on: address -> pid."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
                with_link = os.readlink(fd)
                if with_link.startswith("socket:["):
                    inodes[with_link[8:-1]] = pid
        except OSError:
            continue
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:        # LISTEN
                    out[_address(cols[1])] = inodes[cols[9]]
    return out


def is_loopback(address: str) -> bool:
    import ipaddress
    ip = ipaddress.ip_address(address.rpartition(":")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def assert_loopback_only(processes: dict) -> dict[str, int]:
    """Every listening socket of ``processes`` is on loopback (and there are
    some: the Ray's GCS at least)."""
    addresses = listening(processes)
    assert addresses, f"no listening socket found among {len(processes)} processes"
    wide = {a: processes[p] for a, p in addresses.items() if not is_loopback(a)}
    assert not wide, f"listening beyond loopback: {wide}"
    return addresses


def assert_all_gone(probe, what: str, timeout: float = 60.0) -> None:
    """``probe()`` (the processes of a Ray) comes back empty within ``timeout``."""
    wait_for(probe, lambda left: not left, timeout, what)


@pytest.fixture(scope="module")
def local_ray():
    """A Ray of this process on loopback, in a RAY_TMPDIR of its own; after
    its shutdown, none of its processes may be left."""
    raytmp = tempfile.mkdtemp(prefix="ol1ray", dir="/tmp")
    before = descendants(os.getpid())

    def mine() -> dict:
        return ray_processes(raytmp, children_of=os.getpid(), besides=before)
    mine.raytmp = raytmp
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RAY_TMPDIR", raytmp)
            ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE,
                     log_to_driver=False, _node_ip_address="127.0.0.1", address="local")
            try:
                yield mine
            finally:
                ray.shutdown()
        assert_all_gone(mine, "the processes of the tests' Ray after ray.shutdown()")
    finally:
        shutil.rmtree(raytmp, ignore_errors=True)


def test_the_tests_ray_listens_on_loopback_only(local_ray):
    processes = local_ray()
    assert any("gcs_server" in cmd for cmd in processes.values()), processes
    assert any("raylet" in cmd for cmd in processes.values()), processes
    # Found by their command lines too (the probe that finds what a head
    # leaves behind, outside any session).
    named = ray_processes(local_ray.raytmp)
    assert any("raylet" in cmd for cmd in named.values()), named
    from ray._private import ray_constants
    hint = (f"Ray read {LOOPBACK_ONLY_ENV} as not 0 (imported before this module set it?)"
            if ray_constants.ENABLE_RAY_CLUSTER else "")
    try:
        assert_loopback_only(processes)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {hint}") from None


@pytest.fixture(scope="module")
def a9a(a9a_sample):
    X, y = a9a_sample
    return Batch.from_csr(X, y)


@pytest.fixture(scope="module")
def single(a9a):
    learner = Learner(LearnerOptions(minibatch=B, **OPTIONS))
    learn_in_cuts(learner, a9a)
    return learner


@pytest.fixture
def actors(local_ray, request):
    made = []

    def make(shards: int, workers: int) -> tuple[ClusterLearner, RayCluster]:
        options = LearnerOptions(minibatch=B, **OPTIONS)
        partitioner = Partitioner(shards)
        cluster = RayCluster.create(f"{request.node.name}-{len(made)}", options, partitioner,
                                    workers, {"shards": shards, "workers": workers})
        made.append(cluster)
        learner = ClusterLearner(options, partitioner, cluster.calls(), cluster.workers())
        return learner.seed(), cluster
    try:
        yield make
    finally:
        for cluster in made:
            cluster.kill()


# ------------------------------------------------------------------ (a)

@pytest.mark.parametrize("shards,workers", [(1, 1), (2, 2), (4, 1)])
def test_ray_cluster_equals_single_process(actors, a9a, single, shards, workers):
    learner, _ = actors(shards, workers)
    learn_in_cuts(learner, a9a)
    assert_bit_identical(learner, single, a9a)


# ------------------------------------------------------------------ (b)

@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_killed_shard_ends_bit_identical(actors, a9a, single, how):
    learner, cluster = actors(2, 2)
    victim = cluster.shard_handles[1]
    first_pid = ray.get(victim.pid.remote())

    def kill(i: int) -> None:
        if i == 2:
            if how == "ray.kill":
                ray.kill(victim, no_restart=False)
            else:
                os.kill(first_pid, signal.SIGKILL)
    learn_in_cuts(learner, a9a, on_cut=kill)
    assert learner._kernel.recoveries >= 1
    assert ray.get(victim.pid.remote()) != first_pid          # Ray restarted it
    assert_bit_identical(learner, single, a9a)


def test_a_shard_killed_after_a_cut_is_restored_from_its_shard_file(local_ray, a9a, tmp_path,
                                                                     request):
    options = LearnerOptions(minibatch=B, **OPTIONS)
    # The undisturbed run flushes where the cut does (a short mini-batch).
    single = Learner(options)
    learn_in_cuts(single, a9a, on_cut=lambda i: single.flush() if i == 1 else None)
    partitioner = Partitioner(2)
    cluster = RayCluster.create(request.node.name, options, partitioner, 2,
                                {"shards": 2, "workers": 2})
    try:
        calls = RecordingCalls(cluster.calls())
        learner = ClusterLearner(options, partitioner, calls, cluster.workers()).seed()
        victim = cluster.shard_handles[1]
        first_pid = ray.get(victim.pid.remote())
        path = tmp_path / "snapshot-000000000001.ol1"
        at: dict[str, int] = {}

        def cut_then_kill(i: int) -> None:
            if i == 1:
                learner.write_snapshot(path, None, {"snapshot": {"seq": 1}})
                at["cut"] = learner._kernel.n
            elif i == 3:
                at["lost"] = learner._kernel.n
                calls.record.clear()
                ray.kill(victim, no_restart=False)
        learn_in_cuts(learner, a9a, on_cut=cut_then_kill)
        assert learner._kernel.recoveries >= 1
        assert ray.get(victim.pid.remote()) != first_pid
        shard_file = str(manifest.shard_path(path, 1, 2))
        restores = calls.restores()
        assert restores and all(r == ([(shard_file, at["cut"])], [1]) for r in restores), restores
        # Only the mini-batches since the cut replayed (up to the loss; one
        # more if the kill landed inside the next mini-batch's apply).
        replayed = calls.replayed(1)
        assert replayed == list(range(at["cut"] + 1, replayed[-1] + 1)), replayed
        assert at["lost"] <= replayed[-1] <= at["lost"] + 1 and len(replayed) < at["lost"]
        assert_bit_identical(learner, single, a9a)
    finally:
        cluster.kill()


# ------------------------------------------------------------------ (c)

def onlinel1(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onlinel1", *argv], capture_output=True,
                          text=True, timeout=timeout)


def start_cluster(tmp_path, name: str, *flags: str) -> DaemonProcess:
    head = DaemonProcess("--shards", "2", "--workers", "2", "--name", name, "--num-cpus", "2",
                         "--minibatch", str(B), *flags, log_path=tmp_path / f"{name}.log",
                         command=("cluster", "start"))
    head.wait_ready(timeout=120)
    return head


def test_cluster_cli_end_to_end(tmp_path, monkeypatch):
    # A Ray temp dir of its own (short: Ray's sockets live in it), where the
    # head leaves its Ray's address for status and stop (Ray's address file).
    raytmp = pathlib.Path(tempfile.mkdtemp(prefix="ol1ray", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(raytmp))
    # The heads must keep their Ray on loopback by themselves (the switch
    # this module set for its own Ray is not theirs to inherit).
    monkeypatch.delenv(LOOPBACK_ONLY_ENV, raising=False)
    try:
        cluster_cli_end_to_end(tmp_path, raytmp)
        # ... and takes it away as it exits.
        assert not (raytmp / "ray" / "ray_current_cluster").exists()
        assert_all_gone(lambda: ray_processes(str(raytmp)), "the heads' Ray processes")
    finally:
        shutil.rmtree(raytmp, ignore_errors=True)


def cluster_cli_end_to_end(tmp_path, raytmp):
    from onlinel1.client import Client, Producer
    from onlinel1.io import read_batches
    snapdir = tmp_path / "snap"
    learner_flags = ["--update", "fobos", "--l1", "2e-3", "--l2", "1e-3", "--eta0", "0.1"]
    # The rows in order, as train reads them all below: 1600 learned by a
    # single process (train --minibatch B --save) whose model file seeds the
    # cluster (--initial), 192 sent by the CLI, 112 by the Python Producer,
    # 96 learned (acknowledged) by the Python Client; cut at mini-batch
    # boundaries (multiples of B).
    lines = A9A.read_text().splitlines(keepends=True)
    (tmp_path / "seed.svm").write_text("".join(lines[:1600]))
    (tmp_path / "head.svm").write_text("".join(lines[1600:1792]))
    every = next(iter(read_batches(A9A, "svmlight", batch_size=len(lines))))
    assert every.n_rows == 2000
    seed = tmp_path / "seed.ol1"
    trained = onlinel1("train", str(tmp_path / "seed.svm"), "--minibatch", str(B),
                       *learner_flags, "--save", str(seed))
    assert trained.returncode == 0, trained.stderr
    head = start_cluster(tmp_path, "e2e", "--snapshot-dir", str(snapdir), "--initial", str(seed),
                         *learner_flags)
    try:
        seeded = head.wait_stats(lambda s: True)
        assert seeded["cluster"]["seeded_from"] == "a model", seeded["cluster"]
        assert seeded["examples"] == 1600 and seeded["cluster"]["minibatches"] == 0
        assert seeded["nnz"] == model_file.load(seed)[0].nnz > 10
        # The head's Ray (in the head's session, or naming its RAY_TMPDIR)
        # listens on loopback only, as does the head.
        head_ray = ray_processes(str(raytmp), session=head.proc.pid)
        assert any("raylet" in cmd for cmd in head_ray.values()), head_ray
        named = ray_processes(str(raytmp))
        assert any("raylet" in cmd for cmd in named.values()), named
        assert_loopback_only(head_ray)
        sent = onlinel1("send", str(tmp_path / "head.svm"), "--connect", head.train,
                        "--request-endpoint", head.request, "--ack")
        assert sent.returncode == 0, sent.stderr
        head.wait_stats(lambda s: s["examples"] == 1792)
        # The Python client library against the cluster's endpoints.
        with Producer(head.train, producer="python-e2e") as producer:
            producer.send_batch(every.slice(1792, 1904))
        assert producer.undelivered == 0
        head.wait_stats(lambda s: s["examples"] == 1904)
        with Client(head.request, timeout=60.0) as client:
            learned = client.learn(every.slice(1904, 2000))
            assert learned["examples"] == 96 and learned["t"] == 2000, learned
            py_stats = client.stats()
            assert py_stats["examples"] == 2000 and py_stats["cluster"]["shards"] == 2
            assert py_stats["cluster"]["minibatches"] == 25, py_stats["cluster"]
            py_health = client.health()
            assert py_health["status"] == "ok" and py_health["examples"] == 2000, py_health
            py_predicted = client.predict(every)["predictions"]
            assert len(py_predicted) == 2000
        stats = head.wait_stats(lambda s: s["examples"] == 2000)
        assert stats["cluster"]["shards"] == 2 and stats["cluster"]["minibatches"] == 25
        health = onlinel1("health", "--connect", head.request)
        assert health.returncode == 0, health.stderr
        predicted = onlinel1("predict", "--connect", head.request, str(A9A))
        assert predicted.returncode == 0, predicted.stderr
        address = stats["cluster"]["ray_address"]
        # The head's own Ray listens on loopback only.
        assert address.startswith("127.0.0.1:"), address
        assert (pathlib.Path(os.environ["RAY_TMPDIR"], "ray", "ray_current_cluster")
                .read_text() == address)
        for where in ([], ["--address", address]):
            status = onlinel1("cluster", "status", *where, "--name", "e2e")
            assert status.returncode == 0, status.stderr
            assert "2000" in status.stdout and len(status.stdout.splitlines()) == 4
        # stop returns once the head has exited, which takes its Ray with it.
        stopped = onlinel1("cluster", "stop", "--name", "e2e")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stderr
        assert head.proc.wait(60) == 0, head.log()
        # ... and left none of its Ray's processes (before head.stop() kills
        # whatever is left in its session).
        assert_all_gone(lambda: ray_processes(str(raytmp), session=head.proc.pid),
                        "the processes of the stopped head's Ray")
    finally:
        head.stop()
    # The final snapshot: shard files and a manifest, equal to train --minibatch B.
    folder = snapdir / "default"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["snapshot-000000000001.ol1",
                     "snapshot-000000000001.shard-0000-of-0002.ol1",
                     "snapshot-000000000001.shard-0001-of-0002.ol1"], names
    trained = onlinel1("train", str(A9A), "--minibatch", str(B), *learner_flags,
                       "--save", str(tmp_path / "single.ol1"))
    assert trained.returncode == 0, trained.stderr
    single = model_file.load(tmp_path / "single.ol1")[0]
    merged = model_file.load(folder / "snapshot-000000000001.ol1")[0]
    (k1, w1), (k2, w2) = single.weights(), merged.weights()
    assert k1.size > 10 and np.array_equal(k1, k2) and w1.tobytes() == w2.tobytes()
    assert single.intercept == merged.intercept
    # The cluster answered predict as the single model does.
    offline = onlinel1("predict", "--model", str(tmp_path / "single.ol1"), str(A9A))
    assert offline.returncode == 0 and offline.stdout == predicted.stdout
    # ... and so it answered the Python Client, bit for bit.
    assert np.asarray(py_predicted, dtype=np.float64).tobytes() == single.predict(every).tobytes()

    # A predict-only replica serves the cluster's snapshot.
    replica = DaemonProcess("--predict-only", "--model", str(folder),
                            log_path=tmp_path / "replica.log")
    try:
        replica.wait_ready()
        served = onlinel1("predict", "--connect", replica.request, str(A9A))
        assert served.returncode == 0 and served.stdout == predicted.stdout
    finally:
        replica.stop()

    # Another cluster of 2 shards resumes from it, each shard from its own
    # file; then one of 4 shards, resharded from the merged model.
    for shards, seeded_from, seq in (("2", "shard files", 1), ("4", "a model", 2)):
        again = DaemonProcess("--shards", shards, "--workers", "1", "--name", f"again{shards}",
                              "--num-cpus", "2", "--minibatch", str(B), "--snapshot-dir",
                              str(snapdir), *learner_flags,
                              log_path=tmp_path / f"again{shards}.log",
                              command=("cluster", "start"))
        try:
            again.wait_ready(timeout=120)
            stats = again.wait_stats(lambda s: s["t"] == 2000)
            assert stats["nnz"] == single.nnz
            assert stats["cluster"]["seeded_from"] == seeded_from
            assert stats["cluster"]["minibatches"] == (25 if shards == "2" else 0)
            assert f"snapshot-{seq:012d}.ol1" in again.log()
            resumed = onlinel1("predict", "--connect", again.request, str(A9A))
            assert resumed.stdout == predicted.stdout
            assert again.stop() == 0, again.log()
        finally:
            again.stop()


# ------------------------------------------------------------------ (d)

ACTOR_CLASSES = ("ray::WeightShard", "ray::WorkerActor", "ray::RecordActor")


def test_cluster_start_joins_a_ray_of_ray_start(tmp_path, monkeypatch):
    ray_cli = pathlib.Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip(f"no ray CLI beside {sys.executable}")
    raytmp = tempfile.mkdtemp(prefix="ol1rj", dir="/tmp")
    # A home of its own with a token in it: 'ray start --head' then runs
    # its Ray token-authenticated (Ray's default once a token exists), and
    # the cluster must find the token and send it (the token this process
    # may hold for its own Ray, RAY_AUTH_MODE included, is not theirs).
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(os.urandom(32).hex())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RAY_TMPDIR", raytmp)
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS", LOOPBACK_ONLY_ENV):
        monkeypatch.delenv(name, raising=False)
    port, = free_ports(1)
    address = f"127.0.0.1:{port}"
    learner_flags = ["--update", "fobos", "--l1", "2e-3", "--l2", "1e-3", "--eta0", "0.1"]
    lines = A9A.read_text().splitlines(keepends=True)[:320]
    (tmp_path / "rows.svm").write_text("".join(lines))
    head_log = open(tmp_path / "ray_head.log", "w+")
    # The Ray's own session: everything it starts (its servers, the
    # cluster's actors) is found by it, and taken down with it.
    ray_head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--block"],
        env=dict(os.environ, **{LOOPBACK_ONLY_ENV: "0"}), stdout=head_log,
        stderr=subprocess.STDOUT, start_new_session=True)

    def the_rays() -> dict:
        return ray_processes(raytmp, session=ray_head.pid)

    def actor_processes() -> dict:
        return {p: c for p, c in the_rays().items() if c.startswith(ACTOR_CLASSES)}
    # What a single process learns of the same rows (meanwhile).
    trained = subprocess.Popen([sys.executable, "-m", "onlinel1", "train",
                                str(tmp_path / "rows.svm"), "--minibatch", str(B),
                                *learner_flags, "--save", str(tmp_path / "single.ol1")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    head = None
    try:
        def head_log_text() -> str:
            return (tmp_path / "ray_head.log").read_text()

        def gcs_answers() -> bool:
            assert ray_head.poll() is None, head_log_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            return False

        def started() -> bool:      # as 'ray start' says (its GCS answers earlier)
            return gcs_answers() and "Ray runtime started." in head_log_text()
        wait_for(started, timeout=180, what="'ray start --head'", interval=0.2)
        head = DaemonProcess("--address", address, "--shards", "2", "--workers", "1",
                             "--name", "joined", "--minibatch", str(B), *learner_flags,
                             log_path=tmp_path / "joined.log", command=("cluster", "start"))
        head.wait_ready(timeout=120)
        assert "Token authentication is enabled" in head_log_text(), head_log_text()
        stats = head.wait_stats(lambda s: True)
        assert stats["cluster"]["ray_address"] == address, stats["cluster"]
        # The actors live in the joined Ray (its session), and it listens
        # on loopback only, as do the head and what it started.
        wait_for(actor_processes, lambda a: len(a) == 4, 60, "the cluster's 4 actors")
        assert_loopback_only(the_rays())
        assert_loopback_only(ray_processes(raytmp, session=head.proc.pid))

        from onlinel1.client import Client, Producer
        from onlinel1.io import read_batches
        rows = next(iter(read_batches(tmp_path / "rows.svm", "svmlight",
                                      batch_size=len(lines))))
        assert rows.n_rows == 320
        with Producer(head.train, producer="joined") as producer:
            producer.send_batch(rows)
        assert producer.undelivered == 0
        stats = head.wait_stats(lambda s: s["examples"] == 320)
        assert stats["cluster"]["minibatches"] == 320 // B, stats["cluster"]
        with Client(head.request, timeout=60.0) as client:
            predicted = client.predict(rows)["predictions"]
        assert trained.wait(120) == 0, trained.stderr.read()
        single = model_file.load(tmp_path / "single.ol1")[0]
        assert stats["nnz"] == single.nnz > 10
        assert np.asarray(predicted, dtype=np.float64).tobytes() == single.predict(rows).tobytes()

        status = onlinel1("cluster", "status", "--address", address, "--name", "joined")
        assert status.returncode == 0, status.stderr
        assert "320" in status.stdout and len(status.stdout.splitlines()) == 4, status.stdout
        stopped = onlinel1("cluster", "stop", "--address", address, "--name", "joined")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stderr
        assert head.proc.wait(60) == 0, head.log()
        # The Ray it joined is not the cluster's to take down: still there,
        # without the cluster's actors.
        assert_all_gone(actor_processes, "the stopped cluster's actors")
        assert ray_head.poll() is None and gcs_answers()
        gone = onlinel1("cluster", "status", "--address", address, "--name", "joined")
        assert gone.returncode != 0 and "Traceback" not in gone.stderr, gone.stderr
        assert "no cluster named 'joined'" in gone.stderr and "running: none" in gone.stderr
        # Taken down by whoever started it (here, SIGTERM to 'ray start').
        ray_head.terminate()
        ray_head.wait(60)
        assert_all_gone(the_rays, "the processes of 'ray start --head'", timeout=120)
    finally:
        if head is not None:
            head.stop()
        if trained.poll() is None:
            trained.kill()
            trained.wait(10)
        if ray_head.poll() is None:
            ray_head.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                ray_head.wait(60)
            with contextlib.suppress(TimeoutError):
                wait_for(the_rays, lambda left: not left, 60, "the Ray's processes (SIGTERM)")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(ray_head.pid, signal.SIGKILL)      # whatever is left of its session
        head_log.close()
        shutil.rmtree(raytmp, ignore_errors=True)
