"""Snapshots: atomic, retained, verified on load, resumed exactly, served
read-only by replicas."""
from __future__ import annotations

import os
import random
import signal
import struct

import msgpack
import numpy as np
import pytest
import zmq

import onlinel1
from onlinel1 import Batch, Learner, model_file
from onlinel1.server.snapshots import SnapshotDir, snapshot_extra, snapshot_name

from conftest import SAMPLES, load_svmlight

FLAGS = ("--update", "cumulative", "--l1", "1e-4", "--eta0", "0.2")
OPTIONS = dict(update="cumulative", l1=1e-4, eta0=0.2)
BATCH = 50


@pytest.fixture(scope="module")
def stream():
    """The a9a sample as 40 batches of 50 rows, seq 1..40."""
    X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
    whole = Batch.from_csr(X, y)
    return whole, [whole.slice(i, i + BATCH) for i in range(0, whole.n_rows, BATCH)]


def csr(batch: Batch) -> dict:
    return {"indptr": batch.indptr.astype("<i8").tobytes(), "keys": batch.keys.tobytes(),
            "values": batch.values.astype("<f8").tobytes(),
            "labels": batch.labels.astype("<f8").tobytes()}


def push(endpoint: str, batches, first_seq: int, producer: str = "p") -> None:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10000)
    sock.connect(endpoint)
    try:
        for seq, batch in enumerate(batches, first_seq):
            sock.send(msgpack.packb({"v": 1, "producer": producer, "seq": seq, "csr": csr(batch)}))
    finally:
        sock.close()


def result(reply: dict) -> dict:
    assert reply["ok"], reply
    return reply["result"]


def offline(batches) -> Learner:
    learner = Learner(**OPTIONS)
    for batch in batches:
        learner.learn(batch)
    return learner


def assert_same_model(a: Learner, b: Learner) -> None:
    for x, y in zip(a.weights(), b.weights()):
        np.testing.assert_array_equal(x, y)
    assert a.intercept == b.intercept
    assert a.state["clocks"] == b.state["clocks"]


def snapshot_files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("snapshot-"))


# ---------------------------------------------------------------- on disk

def test_damaged_snapshots_are_detected_and_skipped(tmp_path, stream):
    whole, _ = stream
    good = offline([whole.slice(0, 500)])

    def snapshot_bytes(seq: int) -> bytes:
        path = tmp_path / "made" / snapshot_name(seq)
        path.parent.mkdir(exist_ok=True)
        model_file.save(path, good, extra=snapshot_extra(seq, {}, "periodic"))
        return path.read_bytes()
    (tmp_path / snapshot_name(1)).write_bytes(snapshot_bytes(1))
    truncated = snapshot_bytes(2)[: len(snapshot_bytes(2)) // 2]
    flipped = bytearray(snapshot_bytes(3))
    flipped[-100] ^= 0x40                                   # in the arrays, past the header
    version = bytearray(snapshot_bytes(4))
    struct.pack_into("<I", version, 8, 7)
    damaged = {2: truncated, 3: bytes(flipped), 4: bytes(version), 5: b""}
    for seq, content in damaged.items():
        (tmp_path / snapshot_name(seq)).write_bytes(content)
    (tmp_path / ".snapshot-000000000006.ol1.abc.tmp").write_bytes(snapshot_bytes(6))  # unfinished
    directory = SnapshotDir(tmp_path, 3)
    loaded, problems = directory.load_newest_valid()
    assert loaded.seq == 1
    assert_same_model(loaded.learner, good)
    # The two whose header says they are snapshots 2 and 3 are damaged
    # snapshots; the empty file and the one of another format version are
    # not files this daemon wrote: ignored (and logged), never pruned.
    assert len(problems) == 2
    assert all("checksum mismatch" in p or "truncated" in p for p in problems), problems
    assert [seq for seq, _ in directory.listing()] == [1, 2, 3]
    assert directory.next_seq() == 6          # past the foreign 4 and 5, never over them


def test_the_forked_writer_streams_the_old_encoders_bytes_and_they_load_bit_identically(
        tmp_path, stream, monkeypatch):
    from old_model_file import header_of, old_encode
    from onlinel1.server.snapshots import BackgroundWriter
    whole, _ = stream
    learner = offline([whole.slice(0, 1200)])
    state = learner.state
    names = {int(k): f"a9a^{int(k)}" for k in state["keys"][::2]}
    stamp = {"written_by": "onlinel1 test", "written_at": "2026-12-01T00:00:00+00:00"}
    monkeypatch.setattr(model_file, "_stamp", lambda: dict(stamp))   # the child inherits it
    writer = BackgroundWriter(SnapshotDir(tmp_path, keep=2))
    writer.start(learner, names, {"p": 24}, "test")
    done = writer.poll(block=True)
    assert done.ok, done.error
    data = done.path.read_bytes()
    assert done.size == len(data)
    extra = header_of(data)["extra"]
    assert extra["snapshot"]["producers"] == {"p": 24} and extra["snapshot"]["reason"] == "test"
    assert data == old_encode(learner, names, extra, **stamp)
    loaded, got_names, _ = model_file.load(done.path)
    assert got_names == names
    got = loaded.state
    for field in ("keys", "weights"):
        assert got[field].tobytes() == state[field].tobytes()
    assert list(got["columns"]) == list(state["columns"]) == ["applied_penalty", "penalty_origin"]
    for column in state["columns"]:
        assert got["columns"][column].tobytes() == state["columns"][column].tobytes()
    assert got["clocks"] == state["clocks"] and got["progress"] == state["progress"]


def test_retention_keeps_exactly_k_and_the_final_snapshot_loads(start_daemon, tmp_path, stream):
    whole, batches = stream
    snaps = tmp_path / "snaps"
    daemon = start_daemon(*FLAGS, "--snapshot-dir", str(snaps), "--snapshot-every-examples",
                          "200", "--keep", "3")
    push(daemon.train, batches[:30], 1)
    stats = daemon.wait_stats(lambda s: s["examples"] == 1500 and s["last_snapshot"])
    assert stats["last_snapshot"]["reason"] == "periodic"     # every 200 examples (at most
    assert stats["snapshots_failed"] == 0                     # one write at a time)
    push(daemon.train, batches[30:], 31)
    daemon.wait_stats(lambda s: s["examples"] == 2000)
    for i in range(4):   # on demand: at least 5 snapshots in all, 3 kept
        on_demand = result(daemon.request_once({"v": 1, "op": "snapshot", "id": i}, timeout=30))
        assert on_demand["examples"] == 2000 and (snaps / "default" / on_demand["file"]).exists()
        assert on_demand["file"] == snapshot_name(on_demand["seq"])
        files = snapshot_files(snaps / "default")
        assert len(files) == min(3, on_demand["seq"]) and files[-1] == on_demand["file"]
    assert on_demand["seq"] >= 5
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    files = snapshot_files(snaps / "default")
    assert len(files) == 3 and files[-1] == snapshot_name(on_demand["seq"] + 1)
    final = onlinel1.load(snaps / "default" / files[-1])
    assert_same_model(final, offline(batches))
    _, _, extra = model_file.load(snaps / "default" / files[-1])
    assert extra["snapshot"]["reason"] == "shutdown"
    assert extra["snapshot"]["producers"] == {"p": 40}
    stats_seen = daemon.log()
    assert "learning paused" in stats_seen


def test_snapshot_without_a_directory_is_a_clear_error(start_daemon):
    daemon = start_daemon(*FLAGS)
    reply = daemon.request_once({"v": 1, "op": "snapshot"})
    assert reply["error"]["code"] == "bad_request"
    assert "--snapshot-dir" in reply["error"]["message"]


# ------------------------------------------------------------------ resume

def test_kill_9_at_random_moments_then_resume_and_replay_is_exact(start_daemon, tmp_path, stream):
    whole, batches = stream
    expected = offline(batches)
    rng = random.Random(20261125)
    for trial in range(6):
        snaps = tmp_path / f"snaps{trial}"
        daemon = start_daemon(*FLAGS, "--snapshot-dir", str(snaps), "--snapshot-every-examples",
                              str(rng.choice([50, 150, 400])))
        push(daemon.train, batches, 1)
        # Kill while it learns and snapshots: after a random number of examples.
        target = rng.randrange(100, 1900)
        daemon.wait_stats(lambda s: s["examples"] >= target)
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
        restarted = start_daemon(*FLAGS, "--snapshot-dir", str(snaps))
        stats = result(restarted.request_once({"v": 1, "op": "stats"}))
        done = stats["producers"].get("p", 0)
        assert stats["examples"] == done * BATCH, (trial, stats)
        assert not any(name.endswith(".tmp") for name in os.listdir(snaps / "default"))
        push(restarted.train, batches[done:], done + 1)
        restarted.wait_stats(lambda s: s["examples"] == 2000)
        reply = result(restarted.request_once({"v": 1, "op": "snapshot"}, timeout=30))
        assert_same_model(onlinel1.load(snaps / "default" / reply["file"]), expected)
        restarted.stop()


def test_a_contradicting_configuration_is_refused_unless_forced(start_daemon, tmp_path, stream):
    import subprocess
    import sys
    whole, batches = stream
    snaps = tmp_path / "snaps"
    daemon = start_daemon(*FLAGS, "--snapshot-dir", str(snaps))
    push(daemon.train, batches[:10], 1)
    daemon.wait_stats(lambda s: s["examples"] == 500)
    daemon.stop()
    refused = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check",
                              "--snapshot-dir", str(snaps), "--update", "fobos"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert "update='fobos' (the snapshot has 'cumulative')" in refused.stderr
    assert "--force-config" in refused.stderr
    forced = start_daemon("--snapshot-dir", str(snaps), "--update", "fobos", "--l1", "1e-4",
                          "--force-config")
    config = result(forced.request_once({"v": 1, "op": "config"}))
    stats = result(forced.request_once({"v": 1, "op": "stats"}))
    assert config["learner"]["update"] == "fobos" and stats["t"] == 500
    assert stats["nnz"] == offline(batches[:10]).nnz
    fresh = start_daemon(*FLAGS, "--snapshot-dir", str(tmp_path / "other"), "--no-resume")
    assert result(fresh.request_once({"v": 1, "op": "stats"}))["t"] == 0


# ----------------------------------------------------------------- replica

def test_read_only_replica_follows_the_trainers_snapshots(start_daemon, tmp_path, stream):
    whole, batches = stream
    snaps = tmp_path / "snaps"
    trainer = start_daemon(*FLAGS, "--snapshot-dir", str(snaps))
    push(trainer.train, batches[:20], 1)
    trainer.wait_stats(lambda s: s["examples"] == 1000)
    first = result(trainer.request_once({"v": 1, "op": "snapshot"}, timeout=30))
    replica = start_daemon("--model", str(snaps), "--predict-only")
    probe = {"v": 1, "op": "predict", "csr": csr(whole.slice(1500, 2000))}
    assert result(replica.request_once(probe))["predictions"] == \
        onlinel1.load(snaps / "default" / first["file"]).predict(whole.slice(1500, 2000)).tolist()
    health = result(replica.request_once({"v": 1, "op": "health"}))
    assert health["mode"] == "predict-only"
    for op in ("learn", "snapshot"):
        reply = replica.request_once({"v": 1, "op": op, "csr": csr(batches[0])})
        assert reply["error"]["code"] == "read_only"
    # The trainer moves on; the replica picks up the newer snapshot.
    push(trainer.train, batches[20:], 21)
    trainer.wait_stats(lambda s: s["examples"] == 2000)
    second = result(trainer.request_once({"v": 1, "op": "snapshot"}, timeout=30))
    replica.wait_stats(lambda s: s["t"] == 2000)
    assert result(replica.request_once(probe))["predictions"] == \
        result(trainer.request_once(probe))["predictions"] == \
        onlinel1.load(snaps / "default" / second["file"]).predict(whole.slice(1500, 2000)).tolist()


def test_inspect_and_predict_read_snapshots(start_daemon, tmp_path, stream, capsys):
    from onlinel1.cli import main
    whole, batches = stream
    snaps = tmp_path / "snaps"
    daemon = start_daemon(*FLAGS, "--snapshot-dir", str(snaps))
    push(daemon.train, batches[:8], 1)
    daemon.wait_stats(lambda s: s["examples"] == 400)
    snap = result(daemon.request_once({"v": 1, "op": "snapshot"}, timeout=30))
    assert main(["inspect", str(snaps / "default" / snap["file"]), "--export", str(tmp_path / "w.json")]) == 0
    out = capsys.readouterr().out
    assert f"snapshot          #{snap['seq']} (request" in out
    assert "producer          p: last batch seq 8" in out
    import json
    exported = json.loads((tmp_path / "w.json").read_text())
    keys, weights = offline(batches[:8]).weights()
    assert [e["key"] for e in exported] == keys.tolist()
    assert [e["weight"] for e in exported] == weights.tolist()


def test_a_snapshot_of_the_old_defaults_resumes_as_it_was(start_daemon, tmp_path, stream):
    """The defaults changed on 2026-12-03 (README, "Defaults"): a daemon
    given no learner settings resumes a snapshot trained with the old ones
    (cumulative, eta0 0.1, l1 1e-6) with its own settings, and learns on
    exactly as the old daemon would have."""
    whole, batches = stream
    snaps = tmp_path / "snaps"
    old = ("--update", "cumulative", "--eta0", "0.1", "--l1", "1e-6")
    daemon = start_daemon(*old, "--snapshot-dir", str(snaps))
    push(daemon.train, batches[:10], 1)
    daemon.wait_stats(lambda s: s["examples"] == 500)
    daemon.stop()
    resumed = start_daemon("--snapshot-dir", str(snaps))
    learner = result(resumed.request_once({"v": 1, "op": "config"}))["learner"]
    assert (learner["update"], learner["eta0"], learner["l1"]) == ("cumulative", 0.1, 1e-6)
    assert learner != Learner().options.to_dict()
    push(resumed.train, batches[10:20], 11)
    resumed.wait_stats(lambda s: s["examples"] == 1000)
    reply = result(resumed.request_once({"v": 1, "op": "snapshot"}, timeout=30))
    expected = Learner(update="cumulative", eta0=0.1, l1=1e-6)
    for batch in batches[:20]:
        expected.learn(batch)
    assert_same_model(onlinel1.load(snaps / "default" / reply["file"]), expected)
