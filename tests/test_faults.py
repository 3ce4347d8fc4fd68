"""Faults an operator meets: signals, failing snapshots, two instances on
one directory or endpoint, foreign files in the snapshot directory.  Each
test reproduces a finding of the adversarial review (issue 15)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import msgpack
import pytest
import zmq

import onlinel1
from onlinel1 import Batch, Learner, model_file
from onlinel1.server.snapshots import SnapshotDir, snapshot_extra, snapshot_name

from conftest import (SAMPLES, DaemonProcess, csr_fields, free_port, join_model_file,
                      load_svmlight, split_model_file, wait_for)

BATCH = 100


@pytest.fixture(scope="module")
def batches():
    X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
    whole = Batch.from_csr(X, y)
    return [whole.slice(i, i + BATCH) for i in range(0, whole.n_rows, BATCH)]


def push(endpoint: str, batches, model: str | None = None, first_seq: int = 1,
         seqs=None) -> None:
    """Send ``batches`` from one socket, in order (one connection keeps
    its order; two do not), numbered from ``first_seq`` or by ``seqs``."""
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10000)
    sock.connect(endpoint)
    try:
        for seq, b in zip(seqs or range(first_seq, first_seq + len(batches)), batches):
            sock.send(msgpack.packb({
                "v": 1, "producer": "p", "seq": seq,
                "csr": csr_fields(b),
                **({"model": model} if model else {})}))
    finally:
        sock.close()


def ask(daemon, **msg) -> dict:
    return daemon.request_once({"v": 1, **msg}, timeout=30)


def stats(daemon) -> dict:
    reply = ask(daemon, op="stats")
    assert reply["ok"], reply
    return reply["result"]


def files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# ---------------------------------------------------------------- signals

def test_sighup_and_sigusr1_never_kill_the_daemon(start_daemon, tmp_path, batches):
    """Finding 8: SIGHUP and SIGUSR1 killed the daemon without a final
    snapshot.  Now SIGUSR1 snapshots every model and SIGHUP re-reads the
    config file's log level."""
    config = tmp_path / "onlinel1.toml"
    config.write_text('[daemon]\nlog_level = "info"\n')
    snaps = tmp_path / "snaps"
    d = start_daemon("--config", str(config), "--snapshot-dir", str(snaps))
    assert ask(d, op="create", model="other")["ok"]        # its first snapshot: 1
    push(d.train, batches[:3])
    wait_for(lambda: stats(d)["examples"], lambda n: n == 300, 30.0, "learned")
    d.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: (files(snaps / "default"), files(snaps / "other")),
             lambda f: f[0] == [snapshot_name(1)] and f[1] == [snapshot_name(1),
                                                              snapshot_name(2)],
             30.0, "a snapshot of every model")
    assert SnapshotDir(snaps / "default", 5).load_newest_valid()[0].learner.examples_seen == 300
    config.write_text('[daemon]\nlog_level = "debug"\n')
    d.proc.send_signal(signal.SIGHUP)
    wait_for(d.log, lambda text: "SIGHUP: log level debug" in text, 30.0, "the reload logged")
    assert d.proc.poll() is None and ask(d, op="health")["ok"]
    assert d.stop() == 0


# --------------------------------------------------------- snapshot faults

def test_a_failing_final_snapshot_makes_the_exit_non_zero_and_says_so(start_daemon, tmp_path,
                                                                      batches):
    """Finding 6: SIGTERM exited 0 though the final snapshot failed, and
    health said ok after a failed snapshot."""
    snaps = tmp_path / "snaps"
    d = start_daemon("--snapshot-dir", str(snaps))
    push(d.train, batches[:2])
    wait_for(lambda: stats(d)["examples"], lambda n: n == 200, 30.0, "learned")
    shutil.rmtree(snaps / "default")
    (snaps / "default").write_text("in the way")            # no folder can be made there
    reply = ask(d, op="snapshot")
    assert not reply["ok"] and "snapshot failed" in reply["error"]["message"]
    health = ask(d, op="health")["result"]
    assert health["status"] == "degraded" and "model default" in health["problems"][0]
    cli = subprocess.run([sys.executable, "-m", "onlinel1", "health", "--connect", d.request],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1 and "degraded" in cli.stderr and "snapshot failed" in cli.stderr
    assert d.stop() == 1
    assert "a final snapshot failed" in d.log()


def test_a_deleted_snapshot_directory_is_made_again(start_daemon, tmp_path, batches):
    snaps = tmp_path / "snaps"
    d = start_daemon("--snapshot-dir", str(snaps))
    push(d.train, batches[:2])
    wait_for(lambda: stats(d)["examples"], lambda n: n == 200, 30.0, "learned")
    shutil.rmtree(snaps)
    reply = ask(d, op="snapshot")
    assert reply["ok"], reply
    assert (snaps / "default" / reply["result"]["file"]).is_file()
    assert ask(d, op="health")["result"]["status"] == "ok"


# ------------------------------------------------------- one owner each

def test_a_second_trainer_on_the_same_directory_refuses_and_touches_nothing(start_daemon,
                                                                           tmp_path, batches):
    """Finding 7: two trainers pruned each other's snapshots, and a second
    instance deleted the live one's temporary file before failing to bind."""
    snaps = tmp_path / "snaps"
    first = start_daemon("--snapshot-dir", str(snaps), "--keep", "1")
    push(first.train, batches[:2])
    wait_for(lambda: stats(first)["examples"], lambda n: n == 200, 30.0, "learned")
    assert ask(first, op="snapshot")["ok"]
    in_flight = snaps / "default" / ".snapshot-000000000002.ol1.live.tmp"
    in_flight.write_bytes(b"the live daemon's write in progress")
    before = {p: p.stat().st_mtime_ns for p in snaps.rglob("*")}
    second = subprocess.run(
        [sys.executable, "-m", "onlinel1", "serve", "--snapshot-dir", str(snaps),
         "--train-endpoint", f"tcp://127.0.0.1:{free_port()}",
         "--request-endpoint", f"tcp://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "in use by another onlinel1 trainer" in second.stderr and str(first.proc.pid) in \
        second.stderr
    assert {p: p.stat().st_mtime_ns for p in snaps.rglob("*")} == before
    assert in_flight.exists()
    first.stop()
    # Once the first is gone, the lock is free (the kernel drops it with the process).
    again = start_daemon("--snapshot-dir", str(snaps))
    assert stats(again)["t"] == 200


def test_an_ipc_endpoint_of_a_live_daemon_is_refused(start_daemon, tmp_path):
    """Finding 7: a second daemon on the same ipc:// endpoints took over
    without an error."""
    train, request = f"ipc://{tmp_path}/train.sock", f"ipc://{tmp_path}/request.sock"
    first = DaemonProcess("--train-endpoint", train, "--request-endpoint", request,
                          log_path=tmp_path / "first.log")
    try:
        first.train, first.request = train, request
        first.wait_ready()
        second = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--train-endpoint",
                                 train, "--request-endpoint", request],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "in use by a live process" in second.stderr
        assert ask(first, op="health")["ok"]                     # still the first's
    finally:
        first.stop()
    # A stale socket file (nobody listening on it) is no obstacle.
    import socket
    for path in (f"{tmp_path}/train.sock", f"{tmp_path}/request.sock"):
        if not os.path.exists(path):
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(path)
            stale.close()
        assert os.path.exists(path)
    again = DaemonProcess("--train-endpoint", train, "--request-endpoint", request,
                          log_path=tmp_path / "again.log")
    try:
        again.train, again.request = train, request
        again.wait_ready()
    finally:
        again.stop()


# ------------------------------------------------------ directory hygiene

def test_foreign_files_named_like_snapshots_are_ignored(start_daemon, tmp_path, batches):
    """Finding 10: a file named snapshot-999999999999.ol1 and a directory
    named like the next snapshot broke naming, retention and resume; with
    --keep 1 every valid snapshot was deleted."""
    snaps = tmp_path / "snaps"
    folder = snaps / "default"
    folder.mkdir(parents=True)
    learner = Learner()
    learner.learn(batches[0])
    model_file.save(folder / snapshot_name(1), learner, None, snapshot_extra(1, {"p": 1}, "x"))
    (folder / snapshot_name(999999999999)).write_bytes(b"junk")
    (folder / snapshot_name(2)).mkdir()                                   # in the way
    copy = folder / snapshot_name(5)
    shutil.copy(folder / snapshot_name(1), copy)                          # records seq 1
    d = start_daemon("--snapshot-dir", str(snaps), "--keep", "1")
    assert stats(d)["t"] == 100                              # resumed from snapshot 1
    push(d.train, batches[1:3], first_seq=2)
    wait_for(lambda: stats(d)["t"], lambda t: t == 300, 30.0, "learned")
    for _ in range(2):
        reply = ask(d, op="snapshot")
        assert reply["ok"], reply
    # Numbering skipped the names in the way and went on from the real newest.
    assert reply["result"]["seq"] == 4
    assert files(folder) == sorted([snapshot_name(2), snapshot_name(4), snapshot_name(5),
                                    snapshot_name(999999999999)])
    log = d.log()
    assert "snapshot-999999999999.ol1 is named like a snapshot but is not one" in log
    assert "it records snapshot 1" in log
    assert d.stop() == 0                # its final snapshot: 6, past the foreign 5
    assert files(folder) == sorted([snapshot_name(2), snapshot_name(5), snapshot_name(6),
                                    snapshot_name(999999999999)])
    assert onlinel1.load(folder / snapshot_name(6)).examples_seen == 300
    again = start_daemon("--snapshot-dir", str(snaps), "--keep", "1")
    assert stats(again)["t"] == 300


def impossible_snapshot(learner, seq: int) -> bytes:
    """A snapshot of ``learner`` whose digest is valid but whose clock t is
    2**63 (finding 11): the digest is computed again after the edit, as a
    writer that knows the format but not the rules would."""
    header, arrays = split_model_file(
        model_file.encode(learner, None, snapshot_extra(seq, {"p": seq}, "periodic")))
    header["clocks"]["t"] = 2**63
    return join_model_file(header, arrays)


def test_a_snapshot_with_impossible_contents_is_skipped_by_start_up_and_a_replica(
        start_daemon, tmp_path, batches):
    """Finding 11: a snapshot with a valid checksum and a clock of 2^63
    crashed start-up and a running replica.  A replica keeps serving the
    model it has; a trainer resumes from the newest snapshot that passes."""
    folder = tmp_path / "snaps" / "default"
    folder.mkdir(parents=True)
    good = Learner()
    good.learn(batches[0])
    model_file.save(folder / snapshot_name(1), good, None, snapshot_extra(1, {"p": 1}, "x"))
    replica = start_daemon("--model", str(tmp_path / "snaps"), "--predict-only")
    assert stats(replica)["t"] == 100
    probe = {"op": "predict", "csr": csr_fields(batches[5])}
    before = ask(replica, **probe)
    assert before["ok"], before
    newer = Learner()
    for b in batches[:3]:
        newer.learn(b)
    written = folder / (snapshot_name(2) + ".part")
    written.write_bytes(impossible_snapshot(newer, 2))
    written.rename(folder / snapshot_name(2))
    wait_for(replica.log, lambda log: f"skipped {snapshot_name(2)}" in log,
             30.0, "the replica's refusal of snapshot 2")
    assert ask(replica, **probe) == before                # the same model, still serving
    assert ask(replica, op="health")["ok"]
    assert stats(replica)["t"] == 100
    assert replica.stop() == 0
    trainer = start_daemon("--snapshot-dir", str(tmp_path / "snaps"))
    assert stats(trainer)["t"] == 100                     # resumed from snapshot 1
    assert f"skipped {snapshot_name(2)}" in trainer.log()


# -------------------------------------------------------------- producers

def test_producer_names_are_bounded_and_repeated_seqs_reported(start_daemon, batches):
    """Finding 12: producer names were kept forever (40 names of 4 MB made
    157 MiB stats replies), and a repeated or backwards seq was learned
    again without notice."""
    from onlinel1.server.stats import MAX_PRODUCER_NAME, MAX_PRODUCERS
    d = start_daemon()
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10000)
    sock.connect(d.train)

    row = csr_fields(batches[0].slice(0, 1))
    try:
        sock.send(msgpack.packb({"v": 1, "producer": "x" * (MAX_PRODUCER_NAME + 1), "seq": 1,
                                 "csr": row}))
        for i in range(MAX_PRODUCERS + 5):
            sock.send(msgpack.packb({"v": 1, "producer": f"p{i}", "seq": 1, "csr": row}))
        for seq in (7, 7, 3):
            sock.send(msgpack.packb({"v": 1, "producer": "again", "seq": seq,
                                     "csr": csr_fields(batches[0])}))
    finally:
        sock.close()
    s = wait_for(lambda: stats(d), lambda s: s["batches"] == MAX_PRODUCERS + 8, 60.0, "learned")
    assert s["rejected"] == {"bad_request": 1}
    assert len(s["producers"]) == MAX_PRODUCERS and s["producers_expired"] == 6
    assert "p0" not in s["producers"] and s["producers"]["again"] == 3
    assert s["seq_repeats"] == 2 and s["examples"] == MAX_PRODUCERS + 5 + 300
    assert "producer 'again' sent seq 7 after 7" in d.log()


def test_dedupe_seq_skips_resent_batches(start_daemon, batches):
    d = start_daemon("--dedupe-seq")
    # 2 and 3 sent again (a producer's resend after a reconnect), then 4.
    push(d.train, [batches[i] for i in (0, 1, 2, 1, 2, 3)], seqs=[1, 2, 3, 2, 3, 4])
    s = wait_for(lambda: stats(d), lambda s: s["examples"] == 400 and s["rejected"], 30.0,
                 "learned")
    assert s["rejected"] == {"duplicate": 2} and s["producers"] == {"p": 4}
    expected = Learner()
    for b in batches[:4]:
        expected.learn(b)
    assert s["nnz"] == expected.nnz and s["t"] == 400


# ---------------------------------------------------------- configuration

@pytest.mark.parametrize("flags, message", [
    (["--slice-nnz-via-config", str(2**60)], "slice_nnz must be an integer from 1 to"),
    (["--max-message-bytes", str(2**62)], "max_message_bytes must be an integer from 1 to"),
    (["--high-water-mark", str(2**40)], "high_water_mark must be an integer from 1 to"),
    (["--snapshot-dir", ""], "snapshot_dir must be a directory path"),
    (["--train-endpoint", "tcp://127.0.0.1:99999"], "a port from 1 to 65535"),
    (["--train-endpoint", "tcp://*:0"], "a port from 1 to 65535"),
    (["--train-endpoint", "inproc://x"], "inproc:// reaches only threads"),
    (["--train-endpoint", "ipc://"], "needs a path"),
    (["--snapshot-every-seconds", "inf", "--snapshot-dir", "/tmp/x"], "snapshot_every_seconds"),
    (["--keep", "0"], "keep must be an integer from 1"),
    (["--training-share", "1"], "training_share must be a number from 0.05 to 0.95"),
])
def test_every_setting_is_range_checked_before_binding(tmp_path, flags, message):
    """Finding 13: slice_nnz = 2**60 passed --check then killed the daemon;
    huge sizes and marks ended in tracebacks; snapshot_dir = "" silently
    turned snapshots off; port 99999, inproc:// and tcp://*:0 were taken."""
    if flags[0] == "--slice-nnz-via-config":
        config = tmp_path / "c.toml"
        config.write_text(f"[daemon]\nslice_nnz = {flags[1]}\n")
        flags = ["--config", str(config)]
    out = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check", *flags],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (1, 2), out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_config_file_that_is_not_utf8_is_one_clear_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_bytes(b"[daemon]\nlog_level = \"\xff\xfe\"\n")
    out = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check", "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "not valid TOML" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_readmes_settings_table_gives_the_real_defaults():
    """The README's table of settings ("Faults, signals and bounds") states
    each setting's default: it must be DaemonConfig's."""
    import dataclasses
    import pathlib
    import re

    from onlinel1.server.config import DaemonConfig
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    defaults = {f.name: f.default for f in dataclasses.fields(DaemonConfig)}
    checked = 0
    for name, cell in re.findall(r"^\| `(\w+)` \| [^|]* \| ([^|]+) \|$", readme, re.M):
        if name not in defaults:
            continue
        text = cell.strip().replace(",", "")
        value = None if text == "none" else \
            float(text[:-4]) * 2**20 if text.endswith(" MiB") else float(text)
        assert value == defaults[name], (name, cell, defaults[name])
        checked += 1
    assert checked >= 12, checked
