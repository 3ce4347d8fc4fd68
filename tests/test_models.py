"""Named models in one daemon: each learns exactly what the offline learner
learns from its own rows; create, drop, list and swap; a folder of
snapshots per model; old messages (no ``model``) go to ``default``;
warm starts (``--initial``)."""
from __future__ import annotations

import subprocess
import sys
import threading

import msgpack
import numpy as np
import pytest
import zmq

import onlinel1
from onlinel1 import Batch, Learner, model_file
from onlinel1.names import check_model_name
from onlinel1.server.snapshots import SnapshotDir, snapshot_extra, snapshot_name

from conftest import SAMPLES, load_svmlight
from conftest import csr_fields as csr

BATCH = 50
A = dict(update="cumulative", l1=1e-4, eta0=0.2)
B = dict(update="fobos", l1=1e-3, eta0=0.5, loss="hinge")


@pytest.fixture(scope="module")
def stream():
    X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
    whole = Batch.from_csr(X, y)
    return whole, [whole.slice(i, i + BATCH) for i in range(0, whole.n_rows, BATCH)]


def train_message(batch: Batch, model: str | None = None, **fields) -> bytes:
    msg = {"v": 1, "csr": csr(batch), **fields}
    if model is not None:
        msg["model"] = model
    return msgpack.packb(msg)


def push(endpoint: str, messages) -> None:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10000)
    sock.connect(endpoint)
    try:
        for message in messages:
            sock.send(message)
    finally:
        sock.close()


def ask(daemon, timeout: float = 30.0, **msg) -> dict:
    return daemon.request_once({"v": 1, **msg}, timeout=timeout)


def result(reply: dict) -> dict:
    assert reply["ok"], reply
    return reply["result"]


def error_code(reply: dict) -> str:
    assert not reply["ok"], reply
    return reply["error"]["code"]


def offline(options: dict, batches) -> Learner:
    learner = Learner(**options)
    for batch in batches:
        learner.learn(batch)
    return learner


def assert_same_model(a: Learner, b: Learner) -> None:
    for x, y in zip(a.weights(), b.weights()):
        np.testing.assert_array_equal(x, y)
    assert a.intercept == b.intercept
    assert a.state["clocks"] == b.state["clocks"]


def stats_of(daemon, model: str | None = None) -> dict:
    return result(ask(daemon, op="stats", **({"model": model} if model else {})))


def wait_examples(daemon, n: int, model: str | None = None) -> dict:
    from conftest import wait_for
    return wait_for(lambda: stats_of(daemon, model), lambda s: s["examples"] >= n, 30.0,
                    f"{n} examples in model {model or 'default'}")


# ------------------------------------------------------------------ names

@pytest.mark.parametrize("name", ["", ".", "..", "../etc", "a/b", "-x", "_x", "a b", "é",
                                  "a" * 65, "a\x00"])
def test_model_names_that_could_be_paths_or_flags_are_refused(name):
    with pytest.raises(ValueError, match="model name|must be a string"):
        check_model_name(name)


@pytest.mark.parametrize("name", ["default", "clicks", "a", "A-1_b", "9" * 64])
def test_model_names_of_the_safe_alphabet_are_taken(name):
    assert check_model_name(name) == name


# --------------------------------------------------------- many models

def test_two_models_with_different_rules_each_equal_their_offline_model(start_daemon, stream,
                                                                         tmp_path):
    whole, batches = stream
    snaps = tmp_path / "snaps"
    daemon = start_daemon("--update", "cumulative", "--l1", "1e-4", "--eta0", "0.2",
                          "--snapshot-dir", str(snaps))
    created = result(ask(daemon, op="create", model="hinge-fobos", learner=B))
    assert created["learner"]["update"] == "fobos" and created["learner"]["loss"] == "hinge"
    # Interleaved on one training socket: even batches to default (no model
    # field, as every old producer sends), odd ones to the new model.
    messages = [train_message(b, None if i % 2 == 0 else "hinge-fobos", producer="p", seq=i + 1)
                for i, b in enumerate(batches)]
    push(daemon.train, messages)
    wait_examples(daemon, 1000)
    wait_examples(daemon, 1000, "hinge-fobos")
    snap_a = result(ask(daemon, op="snapshot"))
    snap_b = result(ask(daemon, op="snapshot", model="hinge-fobos"))
    # Paths are shown to listed CURVE keys only (test_admission): here, to no one.
    assert snap_a["path"] == snap_b["path"] == "<redacted>"
    assert_same_model(onlinel1.load(snaps / "default" / snap_a["file"]), offline(A, batches[0::2]))
    assert_same_model(onlinel1.load(snaps / "hinge-fobos" / snap_b["file"]),
                      offline(B, batches[1::2]))
    # Each model has its own counters and producers' sequence numbers.
    sa, sb = stats_of(daemon), stats_of(daemon, "hinge-fobos")
    assert sa["model"] == "default" and sb["model"] == "hinge-fobos"
    assert sa["producers"] == {"p": 39} and sb["producers"] == {"p": 40}
    assert sa["batches"] == sb["batches"] == 20
    assert sb["update"] == "fobos" and "accuracy" in sb["progressive"]
    # Predictions come from the model named.
    probe = {"csr": csr(whole.slice(0, 100)), "output": "margin"}
    assert result(ask(daemon, op="predict", model="hinge-fobos", **probe))["predictions"] == \
        offline(B, batches[1::2]).decision_function(whole.slice(0, 100)).tolist()
    listing = result(ask(daemon, op="list"))["models"]
    assert [(m["model"], m["update"], m["examples"]) for m in listing] == \
        [("default", "cumulative", 1000), ("hinge-fobos", "fobos", 1000)]
    # A restart resumes both, each with its own settings and counters.
    daemon.stop()
    again = start_daemon("--update", "cumulative", "--l1", "1e-4", "--eta0", "0.2",
                         "--snapshot-dir", str(snaps))
    assert result(ask(again, op="list"))["models"] == listing
    assert stats_of(again, "hinge-fobos")["producers"] == {"p": 40}
    assert result(ask(again, op="config", model="hinge-fobos"))["learner"] == created["learner"]


def test_create_drop_and_their_errors(start_daemon, stream, tmp_path):
    whole, batches = stream
    snaps = tmp_path / "snaps"
    daemon = start_daemon("--snapshot-dir", str(snaps))
    assert error_code(ask(daemon, op="create", model="default")) == "model_exists"
    assert error_code(ask(daemon, op="create")) == "bad_request"            # no name
    assert error_code(ask(daemon, op="create", model="../up")) == "bad_request"
    bad = ask(daemon, op="create", model="x", learner={"l1": -1})
    assert error_code(bad) == "bad_request" and "l1" in bad["error"]["message"]
    assert "unknown learner option" in ask(daemon, op="create", model="x",
                                          learner={"lr": 1})["error"]["message"]
    for op in ("predict", "stats", "snapshot", "config", "drop", "swap"):
        reply = ask(daemon, op=op, model="nope", csr=csr(batches[0]), path="/x")
        assert error_code(reply) == "unknown_model", op
        assert "'nope'" in reply["error"]["message"] and "default" in reply["error"]["message"]
    # A created model has a snapshot (and so survives a crash) before the reply.
    result(ask(daemon, op="create", model="tmp", learner={"update": "fobos"}))
    assert SnapshotDir(snaps / "tmp", 5).listing()
    push(daemon.train, [train_message(batches[0], "tmp")])
    wait_examples(daemon, 50, "tmp")
    dropped = result(ask(daemon, op="drop", model="tmp"))
    assert dropped["examples"] == 50 and dropped["final_snapshot"]
    assert not (snaps / "tmp").exists()
    aside = list((snaps / ".dropped").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("tmp-")
    final = SnapshotDir(aside[0], 5).load_newest_valid()[0]
    assert final.learner.examples_seen == 50
    assert [m["model"] for m in result(ask(daemon, op="list"))["models"]] == ["default"]
    # Training sent to a dropped (unknown) model is rejected and counted on
    # the daemon's own counters, not on another model.
    push(daemon.train, [train_message(batches[1], "tmp"), train_message(batches[2])])
    s = wait_examples(daemon, 50)
    from conftest import wait_for
    s = wait_for(lambda: stats_of(daemon), lambda s: s["daemon"]["rejected"], 30.0, "counted")
    assert s["daemon"]["rejected"] == {"unknown_model": 1} and s["rejected"] == {}
    assert s["examples"] == 50
    # A restart does not bring the dropped model back.
    daemon.stop()
    again = start_daemon("--snapshot-dir", str(snaps))
    assert [m["model"] for m in result(ask(again, op="list"))["models"]] == ["default"]


def test_messages_without_a_model_field_are_the_default_models(start_daemon, stream):
    whole, batches = stream
    daemon = start_daemon("--update", "cumulative", "--l1", "1e-4", "--eta0", "0.2")
    result(ask(daemon, op="create", model="other", learner=A))
    push(daemon.train, [train_message(b) for b in batches[:4]])
    wait_examples(daemon, 200)
    assert stats_of(daemon)["model"] == "default" and stats_of(daemon, "other")["examples"] == 0
    health = result(ask(daemon, op="health"))
    assert health["status"] == "ok" and health["examples"] == 200 and health["models"] == 2
    learned = result(ask(daemon, op="learn", csr=csr(batches[4])))
    assert learned["t"] == 250
    assert result(ask(daemon, op="config"))["model"] == "default"


def test_a_replica_serves_every_model_of_the_trainers_directory(start_daemon, stream, tmp_path):
    whole, batches = stream
    snaps = tmp_path / "snaps"
    trainer = start_daemon("--snapshot-dir", str(snaps), *sum((["--" + k.replace("_", "-"),
                                                                str(v)] for k, v in A.items()), []))
    result(ask(trainer, op="create", model="b", learner=B))
    push(trainer.train, [train_message(b, "b") for b in batches[:10]])
    wait_examples(trainer, 500, "b")
    result(ask(trainer, op="snapshot", model="b"))
    replica = start_daemon("--model", str(snaps), "--predict-only")
    probe = {"csr": csr(whole.slice(0, 50)), "output": "margin"}
    assert result(ask(replica, op="predict", model="b", **probe))["predictions"] == \
        result(ask(trainer, op="predict", model="b", **probe))["predictions"]
    for op in ("create", "drop", "swap", "learn", "snapshot"):
        assert error_code(ask(replica, op=op, model="b", csr=csr(batches[0]), path="/x")) == \
            "read_only", op
    # The replica serves the models that have snapshots; a model created
    # later on the trainer (its first snapshot is written at creation), or
    # snapshotted for the first time, appears on it.
    from conftest import wait_for
    assert [m["model"] for m in result(ask(replica, op="list"))["models"]] == ["b"]
    result(ask(trainer, op="create", model="c", learner=A))
    wait_for(lambda: [m["model"] for m in result(ask(replica, op="list"))["models"]],
             lambda names: names == ["b", "c"], 30.0, "the replica's models")
    result(ask(trainer, op="snapshot"))
    wait_for(lambda: [m["model"] for m in result(ask(replica, op="list"))["models"]],
             lambda names: names == ["b", "c", "default"], 30.0, "the replica's models")


# ------------------------------------------------------------------- swap

def test_swap_under_a_prediction_load_never_answers_from_a_mix(start_daemon, stream, tmp_path):
    whole, batches = stream
    old, new = offline(A, batches[:20]), offline(A, batches[20:])
    new_file = tmp_path / "new.ol1"
    model_file.save(new_file, new)
    daemon = start_daemon(*sum((["--" + k.replace("_", "-"), str(v)] for k, v in A.items()), []))
    push(daemon.train, [train_message(b) for b in batches[:20]])
    wait_examples(daemon, 1000)
    probe = whole.slice(0, 2000)
    expect_old = old.decision_function(probe).tolist()
    expect_new = new.decision_function(probe).tolist()
    assert expect_old != expect_new
    answers: list[list[float]] = []                 # all threads' answers
    by_thread: list[list[str]] = [[] for _ in range(3)]
    failures: list[BaseException] = []
    stop = threading.Event()

    def kind(answer: list[float]) -> str:
        return "old" if answer == expect_old else "new" if answer == expect_new else "mix"

    def load(mine: list[str]) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(daemon.request)
        message = msgpack.packb({"v": 1, "op": "predict", "csr": csr(probe), "output": "margin"})
        try:
            while not stop.is_set():
                sock.send(message)
                if not sock.poll(10000):
                    raise TimeoutError("no predict reply within 10 s")
                answer = msgpack.unpackb(sock.recv())["result"]["predictions"]
                mine.append(kind(answer))
                answers.append(answer)
        except BaseException as exc:   # reported by the test below
            failures.append(exc)
        finally:
            sock.close()

    threads = [threading.Thread(target=load, args=(mine,)) for mine in by_thread]
    for t in threads:
        t.start()
    try:
        from conftest import wait_for
        wait_for(lambda: len(answers), lambda n: n >= 10, 30.0, "predictions before the swap")
        swapped = result(ask(daemon, op="swap", model="default", path=str(new_file)))
        assert swapped["examples"] == new.examples_seen and swapped["nnz"] == new.nnz
        seen = len(answers)
        wait_for(lambda: len(answers), lambda n: n >= seen + 10, 30.0, "predictions after it")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures
    kinds = [kind(a) for a in answers]
    assert "mix" not in kinds and "old" in kinds and "new" in kinds
    # Each client's requests are sequential: once one is answered by the
    # new model, every later one is (the swap is one step).
    for mine in by_thread:
        if "new" in mine:
            assert "old" not in mine[mine.index("new"):], mine
    assert any(mine[0] == "old" and mine[-1] == "new" for mine in by_thread if mine)
    errors = [ask(daemon, op="swap", model="default", path=str(tmp_path / "missing.ol1")),
              ask(daemon, op="swap", model="default"),
              ask(daemon, op="swap", model="default", path=str(SAMPLES / "a9a_head2000.svm"))]
    assert [error_code(e) for e in errors] == ["bad_request"] * 3
    assert "no such file" in errors[0]["error"]["message"]
    assert result(ask(daemon, op="predict", csr=csr(probe), output="margin"))["predictions"] == \
        expect_new


# -------------------------------------------------------------- layout

def test_one_model_snapshots_straight_in_the_directory_are_the_default_models(start_daemon,
                                                                             stream, tmp_path):
    """A snapshot directory written before named models (files straight in
    DIR) resumes as the default model and moves into DIR/default/."""
    whole, batches = stream
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    old = offline(A, batches[:10])
    model_file.save(snaps / snapshot_name(7), old, None, snapshot_extra(7, {"p": 10}, "periodic"))
    daemon = start_daemon("--snapshot-dir", str(snaps))
    s = stats_of(daemon)
    assert s["t"] == 500 and s["producers"] == {"p": 10}
    assert not list(snaps.glob("snapshot-*")) and (snaps / "default" / snapshot_name(7)).is_file()
    reply = result(ask(daemon, op="snapshot"))
    assert reply["seq"] == 8 and reply["file"] == snapshot_name(8)
    assert (snaps / "default" / snapshot_name(8)).is_file()


# ------------------------------------------------------------ warm start

def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onlinel1", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_serve_initial_starts_from_a_model_and_refuses_contradictions(start_daemon, stream,
                                                                      tmp_path):
    whole, batches = stream
    first = offline(A, batches[:20])
    path = tmp_path / "first.ol1"
    model_file.save(path, first)
    daemon = start_daemon("--initial", str(path))
    assert stats_of(daemon)["t"] == 1000
    push(daemon.train, [train_message(b) for b in batches[20:]])
    wait_examples(daemon, 2000)         # the warm start's progress carries on
    snaps_reply = ask(daemon, op="predict", csr=csr(whole), output="margin")
    assert result(snaps_reply)["predictions"] == offline(A, batches).decision_function(
        whole).tolist()
    refused = run_cli("serve", "--check", "--initial", str(path), "--update", "fobos")
    assert refused.returncode == 1
    assert "update='fobos' (the model has 'cumulative')" in refused.stderr
    assert "--force-config" in refused.stderr
    missing = run_cli("serve", "--check", "--initial", str(tmp_path / "nope.ol1"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    snaps = tmp_path / "snaps"
    trainer = start_daemon("--snapshot-dir", str(snaps))
    result(ask(trainer, op="snapshot"))
    trainer.stop()
    both = run_cli("serve", "--check", "--snapshot-dir", str(snaps), "--initial", str(path))
    assert both.returncode == 1 and "--no-resume" in both.stderr


def test_train_initial_continues_a_saved_model_exactly(stream, tmp_path):
    whole, batches = stream
    X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
    from sklearn.datasets import dump_svmlight_file
    first, second = tmp_path / "first.svm", tmp_path / "second.svm"
    dump_svmlight_file(X[:1000], y[:1000], str(first), zero_based=True)
    dump_svmlight_file(X[1000:], y[1000:], str(second), zero_based=True)
    flags = ["--update", "cumulative", "--l1", "1e-4", "--eta0", "0.2", "--quiet"]
    assert run_cli("train", str(first), *flags, "--save", str(tmp_path / "m1.ol1")).returncode == 0
    done = run_cli("train", str(second), "--initial", str(tmp_path / "m1.ol1"), "--quiet",
                   "--save", str(tmp_path / "m2.ol1"))
    assert done.returncode == 0, done.stderr
    whole_file = tmp_path / "whole.svm"
    dump_svmlight_file(X, y, str(whole_file), zero_based=True)
    assert run_cli("train", str(whole_file), *flags, "--save",
                   str(tmp_path / "all.ol1")).returncode == 0
    assert_same_model(onlinel1.load(tmp_path / "m2.ol1"), onlinel1.load(tmp_path / "all.ol1"))
    clash = run_cli("train", str(second), "--initial", str(tmp_path / "m1.ol1"), "--l1", "1e-3")
    assert clash.returncode == 1 and "l1=0.001 (the model has 0.0001)" in clash.stderr
    forced = run_cli("train", str(second), "--initial", str(tmp_path / "m1.ol1"), "--l1", "1e-3",
                     "--force-config", "--quiet", "--save", str(tmp_path / "m3.ol1"))
    assert forced.returncode == 0 and onlinel1.load(tmp_path / "m3.ol1").options.l1 == 1e-3
