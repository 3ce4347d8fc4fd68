"""The cluster's arithmetic and recovery without Ray (docs/scaling.md):
shards as objects of this process (step.LocalCalls), the same code the
Ray actors run.

(a) Partitions: seeded, stable, every key to exactly one shard.
(b) S shards equal ``Learner(minibatch=B)`` bit for bit, for every rule and
    S in {1, 2, 4}: weights, intercept, clocks, progress, predictions.
(c) A shard replaced by a fresh one (what a Ray restart gives) is restored
    and caught up from the replay log, between batches and inside one,
    and the result is still bit for bit; a rollback after a recovery undoes
    the batch on every shard.  After a snapshot cut, a lost shard is
    restored from its shard file of the cut, not from the seed, and
    replays only the mini-batches since.
(d) An overflowing example undoes its batch on every shard, as in the
    single process.
(e) Cluster snapshots: shard files and a manifest; ``model_file.load``
    merges them; a single-process model seeds a cluster (in memory, and
    from its model file as ``cluster start --initial`` loads it) and a
    cluster resumes from its shard files; pruning takes the shard files
    along.
"""
from __future__ import annotations

import numpy as np
import pytest

from onlinel1 import Batch, Learner, model_file
from onlinel1.cluster import manifest
from onlinel1.cluster.learner import ClusterLearner
from onlinel1.cluster.partition import PARTITIONS, Partitioner
from onlinel1.cluster.shard import ShardState
from onlinel1.cluster.step import LocalCalls
from onlinel1.errors import NumericError
from onlinel1.options import LearnerOptions
from onlinel1.server.snapshots import SnapshotDir
from conftest import state_bits, wait_for, with_overflowing_row
from test_minibatch import RULES

B = 7
CUT = 300       # rows per learn call, on both sides


@pytest.fixture(scope="module")
def a9a(a9a_sample):
    X, y = a9a_sample
    return Batch.from_csr(X, y)


def local_cluster(options: LearnerOptions, shards: int) -> tuple[ClusterLearner, LocalCalls]:
    calls = LocalCalls([ShardState(s, options.to_dict()) for s in range(shards)])
    return ClusterLearner(options, Partitioner(shards), calls).seed(), calls


def learn_in_cuts(learner: Learner, batch: Batch, cut: int = CUT, on_cut=None) -> None:
    for i, lo in enumerate(range(0, batch.n_rows, cut)):
        learner.learn(batch.slice(lo, min(lo + cut, batch.n_rows)))
        if on_cut is not None:
            on_cut(i)
    learner.flush()


def assert_bit_identical(cluster: Learner, single: Learner, batch: Batch) -> None:
    k1, w1 = single.weights()
    k2, w2 = cluster.weights()
    assert k1.size > 10, "a vacuous comparison: the model is (almost) empty"
    assert np.array_equal(k1, k2)
    assert w1.tobytes() == w2.tobytes()
    clocks1, clocks2 = single._kernel.get_clocks(), cluster._kernel.get_clocks()
    for name in ("t", "scale", "intercept", "clock", "clock_scale"):
        assert state_bits(clocks1[name]) == state_bits(clocks2[name]), name
    assert state_bits(single.progress_sums) == state_bits(cluster.progress_sums)
    assert single.predict(batch).tobytes() == cluster.predict(batch).tobytes()
    assert single.weights_of(k1[:50]).tobytes() == cluster.weights_of(k1[:50]).tobytes()
    assert single.nnz == cluster.nnz


# ------------------------------------------------------------------ (a)

def test_partitions_are_seeded_stable_and_cover_every_shard():
    keys = np.arange(100_000, dtype=np.uint64) * np.uint64(2654435761)
    p = Partitioner(4, seed=7)
    parts = p.partition_of(keys)
    assert parts.min() >= 0 and parts.max() < PARTITIONS
    assert np.array_equal(parts, Partitioner(4, seed=7).partition_of(keys))
    assert not np.array_equal(parts, Partitioner(4, seed=8).partition_of(keys))
    counts = np.bincount(p.shard_of(keys), minlength=4)
    assert counts.min() > 0.9 * keys.size / 4          # spread evenly
    # Resharding moves partitions: the partition of a key never changes.
    assert np.array_equal(Partitioner(2, seed=7).partition_of(keys), parts)
    with pytest.raises(ValueError, match="partition table"):
        Partitioner(2, table=[0] * (PARTITIONS - 1))
    with pytest.raises(ValueError, match="shards"):
        Partitioner(0)


def test_split_rows_keeps_every_entry_once_in_order(a9a):
    p = Partitioner(3, seed=1)
    subs, owner = p.split_rows(a9a.indptr, a9a.keys, a9a.values)
    assert sum(s.keys.size for s in subs) == a9a.keys.size
    for s, sub in enumerate(subs):
        assert sub.indptr.shape == a9a.indptr.shape
        assert np.array_equal(sub.keys, a9a.keys[owner == s])
        assert np.array_equal(p.shard_of(sub.keys), np.full(sub.keys.size, s))
        # Row by row: the shard's entries of that row, in their order.
        for row in (0, 17, a9a.n_rows - 1):
            lo, hi = a9a.indptr[row], a9a.indptr[row + 1]
            mine = a9a.keys[lo:hi][owner[lo:hi] == s]
            assert np.array_equal(sub.keys[sub.indptr[row]:sub.indptr[row + 1]], mine)


# ------------------------------------------------------------------ (b)

@pytest.mark.parametrize("shards", [1, 2, 4])
@pytest.mark.parametrize("rule", [r[1] for r in RULES], ids=[r[0] for r in RULES])
def test_sharded_equals_single_process_minibatch(a9a, rule, shards):
    options = LearnerOptions(minibatch=B, **rule)
    single = Learner(options)
    learn_in_cuts(single, a9a)
    cluster, _ = local_cluster(options, shards)
    learn_in_cuts(cluster, a9a)
    assert_bit_identical(cluster, single, a9a)


def test_minibatch_one_is_the_minibatch_loop_of_one(a9a):
    options = LearnerOptions(minibatch=1, update="fobos", l1=2e-3, eta0=0.1)
    single = Learner(options)
    single.begin()
    single._kernel.learn_minibatch(a9a.indptr, a9a.keys, a9a.values, a9a.labels, None, 1)
    single.commit()
    cluster, _ = local_cluster(options, 2)
    cluster.learn(a9a)
    k1, w1 = single.weights()
    k2, w2 = cluster.weights()
    assert np.array_equal(k1, k2) and w1.tobytes() == w2.tobytes()


def test_budgets_are_refused():
    with pytest.raises(ValueError, match="memory budget"):
        local_cluster(LearnerOptions(minibatch=4, max_features=100), 2)


# ------------------------------------------------------------------ (c)

def test_a_replaced_shard_is_restored_and_caught_up(a9a):
    options = LearnerOptions(minibatch=B, update="cumulative", l1=2e-3, l2=1e-3, eta0=0.1)
    single = Learner(options)
    learn_in_cuts(single, a9a)
    cluster, calls = local_cluster(options, 3)

    def lose_a_shard(i: int) -> None:
        if i in (1, 4):
            calls.states[i % 3] = ShardState(i % 3, options.to_dict())   # a Ray restart
    learn_in_cuts(cluster, a9a, on_cut=lose_a_shard)
    assert cluster._kernel.recoveries == 2
    assert_bit_identical(cluster, single, a9a)


class RecordingCalls:
    """The head's calls to the shards (``inner``: LocalCalls, or Ray's),
    recorded: (method, args, shards)."""

    def __init__(self, inner) -> None:
        self.inner, self.shards = inner, inner.shards
        self.record: list[tuple[str, list, list[int]]] = []

    def call(self, method, args, only=None):
        shards = list(only) if only is not None else list(range(self.shards))
        self.record.append((method, list(args), shards))
        return self.inner.call(method, args, only)

    def restores(self) -> list[tuple[list, list[int]]]:
        return [(args, shards) for method, args, shards in self.record if method == "restore"]

    def replayed(self, shard: int) -> list[int]:
        """The mini-batches applied to ``shard`` alone: a replay."""
        return [args[0][0] for method, args, shards in self.record
                if method == "apply" and shards == [shard]]


def test_a_shard_lost_after_a_snapshot_cut_is_restored_from_its_shard_file(a9a, tmp_path):
    options = LearnerOptions(minibatch=B, update="cumulative", l1=2e-3, l2=1e-3, eta0=0.1)
    # The undisturbed run: the cut flushes the pending rows (a short
    # mini-batch), so the single process flushes there too.
    single = Learner(options)
    learn_in_cuts(single, a9a, on_cut=lambda i: single.flush() if i == 2 else None)
    calls = RecordingCalls(LocalCalls([ShardState(s, options.to_dict()) for s in range(3)]))
    cluster = ClusterLearner(options, Partitioner(3), calls).seed()
    path = tmp_path / "snapshot-000000000001.ol1"
    at: dict[str, int] = {}

    def cut_then_lose(i: int) -> None:
        if i == 2:          # a cut mid-stream, after 900 rows
            cluster.write_snapshot(path, None, {"snapshot": {"seq": 1}})
            at["cut"] = cluster._kernel.n
        elif i == 4:        # two cuts later: a Ray restart of shard 1
            calls.inner.states[1] = ShardState(1, options.to_dict())
            at["lost"] = cluster._kernel.n
            calls.record.clear()
    learn_in_cuts(cluster, a9a, on_cut=cut_then_lose)
    assert cluster._kernel.recoveries == 1
    shard_file = str(manifest.shard_path(path, 1, 3))
    assert 0 < at["cut"] < at["lost"] < cluster._kernel.n
    # Restored from the cut's own shard file, at the cut (not from the seed) ...
    assert calls.restores() == [([(shard_file, at["cut"])], [1])], calls.restores()
    # ... and caught up by replaying only the mini-batches since the cut: the
    # lost shard's applies are those after the cut (the replay) and the rest
    # of the stream, never one of the mini-batches before it.
    replayed = calls.replayed(1)
    assert replayed == list(range(at["cut"] + 1, at["lost"] + 1)), replayed[:5]
    assert len(replayed) < at["lost"]
    assert_bit_identical(cluster, single, a9a)


def test_a_shard_lost_inside_a_batch_and_a_rollback_after_it(a9a):
    options = LearnerOptions(minibatch=B, update="fobos", l1=2e-3, eta0=0.1)
    cluster, calls = local_cluster(options, 2)
    cluster.learn(a9a.slice(0, 700))
    before = cluster.weights()
    # A batch in slices, as the daemon learns one; shard 1 is lost between
    # two slices, then the batch is rolled back.
    cluster.begin()
    cluster.learn(a9a.slice(700, 1000), check=False)
    calls.states[1] = ShardState(1, options.to_dict())
    cluster.learn(a9a.slice(1000, 1300), check=False)
    assert cluster._kernel.recoveries == 1
    cluster.rollback()
    after = cluster.weights()
    assert np.array_equal(before[0], after[0]) and before[1].tobytes() == after[1].tobytes()
    # The same batch, committed this time, with a loss inside it: as the single process.
    single = Learner(options)
    single.learn(a9a.slice(0, 700))
    single.learn(a9a.slice(700, 1300))
    cluster.begin()
    cluster.learn(a9a.slice(700, 1000), check=False)
    calls.states[0] = ShardState(0, options.to_dict())
    cluster.learn(a9a.slice(1000, 1300), check=False)
    cluster.commit()
    single.flush()
    cluster.flush()
    assert_bit_identical(cluster, single, a9a)


# ------------------------------------------------------------------ (d)

def test_an_overflowing_example_undoes_the_batch_on_every_shard(a9a):
    options = LearnerOptions(minibatch=B, update="fobos", l1=2e-3, eta0=0.1)
    cluster, _ = local_cluster(options, 2)
    single = Learner(options)
    for learner in (cluster, single):
        learner.learn(a9a.slice(0, 500))
    bad = with_overflowing_row(a9a.slice(500, 800), 40)
    errors = []
    for learner in (cluster, single):
        with pytest.raises(NumericError) as info:
            learner.learn(bad)
        errors.append((info.value.row, info.value.reason))
    assert errors[0] == errors[1]
    for learner in (cluster, single):
        learner.learn(a9a.slice(800, 1400))
        learner.flush()
    assert_bit_identical(cluster, single, a9a)


# ------------------------------------------------------------------ (e)

def test_cluster_snapshots_load_merge_seed_and_resume(a9a, tmp_path):
    options = LearnerOptions(minibatch=B, update="ftrl", l1=1.0, l2=1.0, eta0=0.1)
    single = Learner(options)
    learn_in_cuts(single, a9a.slice(0, 1200))
    cluster, _ = local_cluster(options, 3)
    learn_in_cuts(cluster, a9a.slice(0, 1200))
    path = tmp_path / "snapshot-000000000001.ol1"
    names = {int(k): f"f{k}" for k in single.weights()[0][:5]}
    cluster.write_snapshot(path, names, {"snapshot": {"seq": 1}})
    files = manifest.shard_files(path)
    assert [f.name for f in files] == [f"snapshot-000000000001.shard-000{s}-of-0003.ol1"
                                       for s in range(3)]
    assert cluster._kernel.sources == [(str(f), cluster._kernel.n) for f in files]
    assert len(cluster._kernel.log) == 0           # the cut trims the replay log

    # A single process loads the cut as one model.
    merged, merged_names, extra = model_file.load(path)
    assert merged_names == names and extra["cluster"]["minibatches"] == cluster._kernel.n
    for learner in (merged, cluster):
        learner.learn(a9a.slice(1200, 2000))
        learner.flush()
    single.learn(a9a.slice(1200, 2000))
    single.flush()
    assert_bit_identical(merged, single, a9a)
    assert_bit_identical(cluster, single, a9a)

    # A cluster resumes from the shard files; another seeds from the single model.
    resumed, _ = local_cluster(options, 3)
    head = model_file.load_file(path)[0]
    resumed.seed(sources=[str(f) for f in files], applied=extra["cluster"]["minibatches"],
                 progress=head.progress_sums, clocks=head._kernel.get_clocks())
    seeded, _ = local_cluster(options, 2)
    seeded.seed(model_file.load(path)[0])
    for learner in (resumed, seeded):
        learner.learn(a9a.slice(1200, 2000))
        learner.flush()
        assert_bit_identical(learner, single, a9a)


def test_a_single_process_model_file_seeds_a_cluster_as_cluster_start_does(a9a, tmp_path):
    """``cluster start --initial FILE`` in process: the daemon's startup
    loads the file (within ``manifest.deferred()``, as cmd_start does), the
    shards are seeded from it by ``cli.cluster._seed``, whose None makes
    ``stats``' ``cluster.seeded_from`` "a model"; then the cluster goes on
    bit for bit as the single process does."""
    from onlinel1.cli.cluster import _seed
    from onlinel1.names import DEFAULT_MODEL
    from onlinel1.server import startup
    from onlinel1.server.config import DaemonConfig
    options = LearnerOptions(minibatch=B, update="fobos", l1=2e-3, l2=1e-3, eta0=0.1)
    single = Learner(options)
    learn_in_cuts(single, a9a.slice(0, 1000))       # flushed at the end, as train --save is
    path = tmp_path / "single.ol1"
    names = {int(k): f"f{k}" for k in single.weights()[0][:5]}
    model_file.save(path, single, names, {})
    with manifest.deferred():
        daemon = startup.trainer(DaemonConfig(), options, {}, initial=str(path))
    try:
        default = daemon.models.get(DEFAULT_MODEL)
        assert getattr(default.learner, "deferred_shards", None) is None   # a whole model
        cluster, _ = local_cluster(default.learner.options, 3)
        assert _seed(cluster, default.learner, default.names) is None     # "a model"
    finally:
        daemon.close()
    assert default.names == names
    assert cluster.examples_seen == single.examples_seen == 1000
    k1, w1 = single.weights()
    k2, w2 = cluster.weights()
    assert np.array_equal(k1, k2) and w1.tobytes() == w2.tobytes()
    for learner in (cluster, single):
        learn_in_cuts(learner, a9a.slice(1000, 2000))
    assert_bit_identical(cluster, single, a9a)


def test_a_damaged_shard_file_fails_the_load(a9a, tmp_path):
    options = LearnerOptions(minibatch=B, update="fobos", l1=2e-3, eta0=0.1)
    cluster, _ = local_cluster(options, 2)
    cluster.learn(a9a.slice(0, 700))
    path = tmp_path / "snapshot-000000000001.ol1"
    cluster.write_snapshot(path, None, {"snapshot": {"seq": 1}})
    shard = manifest.shard_files(path)[1]
    data = bytearray(shard.read_bytes())
    data[-20] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(model_file.ModelFileError):
        model_file.load(path)
    shard.unlink()
    with pytest.raises(model_file.ModelFileError, match="missing"):
        model_file.load(path)


def test_pruning_takes_the_shard_files_along(a9a, tmp_path):
    options = LearnerOptions(minibatch=B, update="fobos", l1=2e-3, eta0=0.1)
    cluster, _ = local_cluster(options, 2)
    snapshots = SnapshotDir(tmp_path, keep=1)
    for seq in (1, 2):
        cluster.learn(a9a.slice(0, 100 * seq))
        path = tmp_path / f"snapshot-{seq:012d}.ol1"
        cluster.write_snapshot(path, None, {"snapshot": {"seq": seq}})
    # A cut whose manifest was never written (its head died first).
    (tmp_path / "snapshot-000000000000.shard-0000-of-0002.ol1").write_bytes(b"orphan")
    snapshots.prune(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "snapshot-000000000002.ol1", "snapshot-000000000002.shard-0000-of-0002.ol1",
        "snapshot-000000000002.shard-0001-of-0002.ol1"]
    assert snapshots.load_newest_valid()[0].learner.examples_seen == cluster.examples_seen


def test_the_daemons_snapshot_writer_writes_a_cluster_in_process(a9a, tmp_path):
    from onlinel1.server.snapshots import BackgroundWriter
    options = LearnerOptions(minibatch=B, update="fobos", l1=2e-3, eta0=0.1)
    cluster, _ = local_cluster(options, 2)
    cluster.learn(a9a.slice(0, 600))
    writer = BackgroundWriter(SnapshotDir(tmp_path, keep=2))
    started = writer.start(cluster, None, {"p": 3}, "periodic")
    assert writer.busy and started.ok and writer.pid is None     # no fork
    record = writer.poll()
    assert record is started and not writer.busy and writer.poll() is None
    loaded = SnapshotDir(tmp_path, keep=2).load_newest_valid()[0]
    assert loaded.seq == record.seq and loaded.extra["snapshot"]["producers"] == {"p": 3}
    assert loaded.learner.examples_seen == cluster.examples_seen == 600
    assert record.size == sum(p.stat().st_size for p in tmp_path.iterdir())


def test_without_ray_the_cluster_says_how_to_get_it(monkeypatch, capsys):
    import sys
    from onlinel1.cli import main
    monkeypatch.setitem(sys.modules, "ray", None)       # import ray raises ImportError
    assert main(["cluster", "start", "--check"]) == 1
    assert "pip install 'onlinel1[cluster]'" in capsys.readouterr().err
    assert main(["cluster", "status"]) == 1
    assert "pip install 'onlinel1[cluster]'" in capsys.readouterr().err


def test_swap_reseeds_the_shards_and_refuses_other_settings(a9a):
    options = LearnerOptions(minibatch=B, update="fobos", l1=2e-3, eta0=0.1)
    cluster, _ = local_cluster(options, 2)
    cluster.learn(a9a.slice(0, 300))
    other = Learner(options)
    other.learn(a9a.slice(300, 1500))
    assert cluster.swap_in(other) is cluster
    for learner in (cluster, other):
        learner.learn(a9a.slice(1500, 2000))
        learner.flush()
    assert_bit_identical(cluster, other, a9a)
    with pytest.raises(ValueError, match="own settings"):
        cluster.swap_in(Learner(update="ftrl", minibatch=B))


def test_stop_waits_for_the_head_to_exit_not_to_be_reaped():
    """``cluster stop`` waits on the head's pid (off Ray: the head takes its
    own Ray down as it exits); its parent may reap it only later."""
    import subprocess
    import sys
    from onlinel1.cli.cluster import _alive
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        assert _alive(child.pid)
        child.stdin.close()                 # it exits; not reaped yet: a zombie
        wait_for(lambda: not _alive(child.pid), timeout=30)
        assert child.poll() == 0
        assert not _alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_status_without_address_finds_the_ray_of_this_machine(monkeypatch, tmp_path, capsys):
    import socket
    from onlinel1.cli import cluster, main
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cluster, "_require_ray", lambda: None)   # with or without Ray
    assert main(["cluster", "status"]) == 1
    assert "no Ray cluster on this machine: give the head's --address" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"        # bound, not listening
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(address + "\n")
    assert main(["cluster", "status"]) == 1
    assert f"no Ray cluster answered at {address}" in capsys.readouterr().err
    assert cluster._is_loopback(address) and cluster._is_loopback("localhost:6379")
    assert cluster._is_loopback("[::1]:6379") and not cluster._is_loopback("10.0.0.7:6379")
