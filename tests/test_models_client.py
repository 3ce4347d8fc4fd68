"""Named models, client side: the messages the Python ``Producer`` and
``Client``, the command line (``--model``, ``onlinel1 models``) and the C
client (``ol1_set_model``, ``ol1_list_models``, ...) send.

A fake daemon (a ROUTER and a PULL bound on free loopback ports, served
by a thread) records every frame it receives, byte for byte, and answers
requests with canned replies.  The checks:

* without a model, every message is byte-identical to what the clients
  sent before named models (the same map, in the same order);
* with one, the messages carry ``"model": NAME`` (only then);
* ``create`` carries only the learner settings given, ``swap`` an
  absolute path, ``list`` no model;
* invalid names are refused before anything is sent;
* error replies (``unknown_model``, ``model_exists``) and timeouts become
  one-line CLI errors with exit status 1, usage errors exit 2.

Every wait is bounded; every thread and socket is closed in a finally.
"""
from __future__ import annotations

import ctypes
import json
import os
import pathlib
import queue
import shutil
import subprocess
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from onlinel1 import Batch
from onlinel1.cli import main
from onlinel1.client import Client, DaemonError, DaemonTimeout, Producer, encode_csr
from onlinel1.io import read_batches
from onlinel1.names import DEFAULT_MODEL, MODEL_NAME_RE, check_model_name
from onlinel1.options import LearnerOptions

from conftest import SAMPLES

A9A = SAMPLES / "a9a_head2000.svm"
WAIT = 10.0          # seconds: the bound of every wait for something expected
QUIET = 0.3          # seconds to wait for a message that must not come
MS = int(WAIT * 1000)

BAD_NAMES = ["", "-ctr", "_ctr", "a.b", "a/b", "../x", "ctr\n", "c tr", "é", "x" * 65, "a:b"]
GOOD_NAMES = ["default", "ctr", "A", "0", "ctr-v2_b", "x" * 64]


def pack(msg) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def unpack(frame: bytes):
    return msgpack.unpackb(frame, raw=False, strict_map_key=False)


# ------------------------------------------------------------- fake daemon

def ok(msg, result):
    return {"v": 1, "id": msg.get("id"), "ok": True, "result": result}


def err(msg, code, message):
    return {"v": 1, "id": msg.get("id"), "ok": False,
            "error": {"code": code, "message": message}}


def n_rows(msg) -> int:
    if "csr" in msg:
        return len(np.frombuffer(msg["csr"]["indptr"], "<i8")) - 1
    return len(msg.get("rows", []))


MODELS = [{"model": "ctr", "update": "fobos", "loss": "log", "examples": 1234, "nnz": 56},
          {"model": "default", "update": "cumulative", "loss": "log", "examples": 0,
           "nnz": 0},
          {"model": "ranker-2", "update": "ftrl", "loss": "squared", "examples": 98765432,
           "nnz": 4012}]


def canned(msg):
    """The fake's answer to each operation, as docs/protocol.md shapes it."""
    op, model = msg.get("op"), msg.get("model", DEFAULT_MODEL)
    if op == "list":
        return [ok(msg, {"models": MODELS})]
    if op == "create":
        return [ok(msg, {"model": model, "learner": {**LearnerOptions().to_dict(),
                                                     **msg.get("learner", {})}})]
    if op == "drop":
        return [ok(msg, {"model": model, "examples": 77})]
    if op == "swap":
        return [ok(msg, {"model": model, "examples": 500, "nnz": 9, "path": msg["path"]})]
    if op == "predict":
        return [ok(msg, {"predictions": [0.25] * n_rows(msg)})]
    if op == "learn":
        return [ok(msg, {"examples": n_rows(msg), "loss": 0.5, "t": 9})]
    if op == "stats":
        return [ok(msg, {"examples": 3, "nnz": 2, "progressive": {"loss": 0.5}})]
    if op == "health":
        return [ok(msg, {"status": "ok", "mode": "training", "uptime_s": 1.5, "examples": 3})]
    if op == "config":
        return [ok(msg, {"protocol": 1, "version": "fake"})]
    if op == "snapshot":
        return [ok(msg, {"file": "snapshot-000000000001.ol1", "seq": 1, "size": 100,
                         "examples": 3, "model": model})]
    return [err(msg, "unknown_op", f"no op {op!r}")]


class FakeDaemon:
    """ROUTER (requests) and PULL (training) on free loopback ports, one
    thread.  ``requests`` and ``trained`` receive ``(frame, message)``:
    the raw bytes received and their decoding.  ``reply(msg)`` gives the
    list of replies to send (empty: no reply)."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.pull = self.context.socket(zmq.PULL)
        for s in (self.router, self.pull):
            s.setsockopt(zmq.LINGER, 0)
            s.bind("tcp://127.0.0.1:*")
        self.request_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.train_endpoint = self.pull.getsockopt_string(zmq.LAST_ENDPOINT)
        self.requests: queue.Queue = queue.Queue()
        self.trained: queue.Queue = queue.Queue()
        self.reply = canned
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fake-models-daemon", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(20):
                    if sock is self.pull:
                        frame = sock.recv()
                        self.trained.put((frame, unpack(frame)))
                        continue
                    identity, *_, frame = sock.recv_multipart()
                    msg = unpack(frame)
                    self.requests.put((frame, msg))
                    for reply in self.reply(msg):
                        sock.send_multipart([identity, pack(reply)])
        except BaseException as exc:     # reported by close()
            self.failure = exc

    def request(self) -> tuple[bytes, dict]:
        try:
            return self.requests.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail("the fake daemon received no request")

    def train(self) -> tuple[bytes, dict]:
        try:
            return self.trained.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail("the fake daemon received no training message")

    def nothing_more(self) -> None:
        """No further message arrives (within QUIET seconds on each queue)."""
        for received in (self.requests, self.trained):
            try:
                message = received.get(timeout=QUIET)
            except queue.Empty:
                continue
            pytest.fail(f"a message was sent: {message!r}")

    def close(self) -> None:
        self._stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the fake daemon's thread did not stop"
        self.router.close(linger=0)
        self.pull.close(linger=0)
        self.context.term()
        if self.failure is not None:
            raise self.failure


@pytest.fixture
def fake():
    daemon = FakeDaemon()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def batch() -> Batch:
    return next(iter(read_batches(str(A9A), "svmlight", batch_size=5)))


def without_labels(b: Batch) -> Batch:
    return Batch(b.indptr, b.keys, b.values)


# ------------------------------------------------------------------ names

def test_model_names():
    assert DEFAULT_MODEL == "default"
    for name in GOOD_NAMES:
        assert check_model_name(name) == name and MODEL_NAME_RE.fullmatch(name)
    for name in BAD_NAMES:
        with pytest.raises(ValueError, match="is not valid: 1-64 letters, digits"):
            check_model_name(name)
    for name in (None, 3, b"ctr", ["ctr"]):
        with pytest.raises(ValueError, match="must be a string"):
            check_model_name(name)


# --------------------------------------------------------- Python Producer

def test_producer_sends_the_old_bytes_without_a_model_and_the_field_with_one(fake, batch):
    with Producer(fake.train_endpoint, producer="etl", linger=WAIT) as p:
        p.send_batch(batch)
    frame, msg = fake.train()
    # Byte for byte the message of the producer before named models.
    assert frame == pack({"v": 1, "op": "train", "seq": 1, "csr": encode_csr(batch),
                          "producer": "etl"})
    with Producer(fake.train_endpoint, model="ctr", linger=WAIT) as p:
        assert p.model == "ctr" and "model='ctr'" in repr(p)
        p.add({"price": 0.5, 17: 1.0}, 1)
        p.send_batch(batch)
    messages = [fake.train() for _ in range(2)]
    assert [m["model"] for _, m in messages] == ["ctr", "ctr"]
    assert [m["seq"] for _, m in messages] == [1, 2]
    assert messages[1][0] == pack({"v": 1, "op": "train", "model": "ctr", "seq": 2,
                                   "csr": encode_csr(batch)})
    fake.nothing_more()


@pytest.mark.parametrize("name", BAD_NAMES + [7])
def test_producer_refuses_an_invalid_name_before_connecting(fake, name):
    with pytest.raises(ValueError):
        Producer(fake.train_endpoint, model=name)
    fake.nothing_more()


# ----------------------------------------------------------- Python Client

def test_client_without_a_model_sends_the_old_bytes(fake, batch):
    rows = [{"features": {"price": 0.5, "17": 1}}]
    with Client(fake.request_endpoint, timeout=WAIT) as c:
        assert c.model is None and "model" not in repr(c)
        c.stats()
        c.health()
        c.config()
        c.snapshot()
        c.predict(batch)
        c.predict(rows, output="margin", top_k=2)
        c.learn(batch)
    expected = [{"v": 1, "op": "stats", "id": 1},
                {"v": 1, "op": "health", "id": 2},
                {"v": 1, "op": "config", "id": 3},
                {"v": 1, "op": "snapshot", "id": 4},
                {"v": 1, "op": "predict", "id": 5, "csr": encode_csr(without_labels(batch)),
                 "output": "auto"},
                {"v": 1, "op": "predict", "id": 6, "rows": rows, "output": "margin",
                 "top_k": 2},
                {"v": 1, "op": "learn", "id": 7, "csr": encode_csr(batch)}]
    for want in expected:
        frame, _ = fake.request()
        assert frame == pack(want), want["op"]
    fake.nothing_more()


def test_client_model_goes_with_every_request_and_each_call_may_override_it(fake, batch):
    with Client(fake.request_endpoint, timeout=WAIT, model="ctr") as c:
        assert "model='ctr'" in repr(c)
        assert c.stats() == canned({"op": "stats"})[0]["result"]
        c.health()
        c.config()
        c.snapshot()
        assert c.predict(batch)["predictions"] == [0.25] * batch.n_rows
        c.learn(batch)
        c.request("stats")
        for _ in range(7):
            assert fake.request()[1]["model"] == "ctr"
        # One call to another model; None keeps the client's.
        c.stats(model="other")
        c.predict(batch, model="default")
        c.learn(batch, model=None)
        c.snapshot(model="x-1")
        c.config(model="y")
        c.health(model="z")
        assert [fake.request()[1]["model"] for _ in range(6)] == \
            ["other", "default", "ctr", "x-1", "y", "z"]
        # The old message with "model" after the envelope, as the C client puts it.
        c.predict(batch)
        frame, _ = fake.request()
        assert frame == pack({"v": 1, "op": "predict", "id": 14, "model": "ctr",
                              "csr": encode_csr(without_labels(batch)), "output": "auto"})
        # list is about the whole daemon: no model.
        assert c.list_models() == MODELS
        frame, msg = fake.request()
        assert frame == pack({"v": 1, "op": "list", "id": 15})
    with Client(fake.request_endpoint, timeout=WAIT) as c:
        c.stats(model="ctr")
        c.stats()
        assert fake.request()[1]["model"] == "ctr"
        assert "model" not in fake.request()[1]
    fake.nothing_more()


def test_create_sends_only_the_settings_given(fake):
    with Client(fake.request_endpoint, timeout=WAIT, model="ignored") as c:
        result = c.create("ctr", update="fobos", l1=1e-5)
        assert result["model"] == "ctr" and result["learner"]["update"] == "fobos"
        assert result["learner"]["loss"] == "log"       # the daemon's default
        c.create("plain")
        c.create("mapped", {"loss": "squared", "fit_intercept": np.bool_(False)},
                 eta0=np.float64(0.5), truncate_every=np.int64(3))
    frames = [fake.request() for _ in range(3)]
    assert frames[0][0] == pack({"v": 1, "op": "create", "id": 1, "model": "ctr",
                                 "learner": {"update": "fobos", "l1": 1e-5}})
    assert frames[1][1]["learner"] == {} and frames[1][1]["model"] == "plain"
    assert frames[2][1]["learner"] == {"loss": "squared", "fit_intercept": False, "eta0": 0.5,
                                       "truncate_every": 3}
    assert frames[2][1]["learner"]["fit_intercept"] is False
    fake.nothing_more()


def test_drop_list_and_swap(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Client(fake.request_endpoint, timeout=WAIT) as c:
        assert c.drop("ctr") == {"model": "ctr", "examples": 77}
        assert c.list_models() == MODELS
        result = c.swap("ctr", "models/v2.ol1")
        c.swap("ctr", pathlib.Path("../v3.ol1"))
        c.swap("ctr", "/srv/models/v4.ol1")
    assert fake.request()[0] == pack({"v": 1, "op": "drop", "id": 1, "model": "ctr"})
    assert fake.request()[0] == pack({"v": 1, "op": "list", "id": 2})
    local = str(tmp_path / "models" / "v2.ol1")
    assert fake.request()[0] == pack({"v": 1, "op": "swap", "id": 3, "model": "ctr",
                                      "path": local})
    assert result == {"model": "ctr", "examples": 500, "nnz": 9, "path": local}
    assert fake.request()[1]["path"] == str(tmp_path.parent / "v3.ol1")   # normalised
    assert fake.request()[1]["path"] == "/srv/models/v4.ol1"
    fake.nothing_more()


def test_invalid_names_and_arguments_are_refused_before_sending(fake):
    with pytest.raises(ValueError):
        Client(fake.request_endpoint, model="no/slash")
    with Client(fake.request_endpoint, timeout=WAIT) as c:
        for name in BAD_NAMES:
            for call in (lambda: c.create(name), lambda: c.drop(name),
                         lambda: c.swap(name, "/m.ol1"), lambda: c.stats(model=name),
                         lambda: c.predict([{"features": {"1": 1}}], model=name),
                         lambda: c.request("health", model=name)):
                with pytest.raises(ValueError, match="is not valid"):
                    call()
        with pytest.raises(ValueError, match="l1: given both"):
            c.create("ctr", {"l1": 1.0}, l1=2.0)
        with pytest.raises(TypeError, match="learner must be a map"):
            c.create("ctr", [("l1", 1.0)])
        with pytest.raises(TypeError, match="setting names must be strings"):
            c.create("ctr", {1: 1.0})
        with pytest.raises(ValueError, match="must not be empty"):
            c.swap("ctr", "")
        with pytest.raises(TypeError):
            c.swap("ctr", b"/m.ol1")
    fake.nothing_more()


def test_daemon_errors_about_models(fake):
    def reply(msg):
        if msg["op"] == "create":
            return [err(msg, "model_exists", "a model named 'ctr' exists")]
        if msg["op"] == "list":
            return [ok(msg, {"models": "nope"})]
        return [err(msg, "unknown_model", f"no model named {msg['model']!r}")]

    fake.reply = reply
    with Client(fake.request_endpoint, timeout=WAIT) as c:
        with pytest.raises(DaemonError) as info:
            c.create("ctr")
        assert info.value.code == "model_exists"
        with pytest.raises(DaemonError) as info:
            c.stats(model="nope")
        assert info.value.code == "unknown_model" and "'nope'" in info.value.message
        with pytest.raises(Exception, match="no list of models"):
            c.list_models()


# --------------------------------------------------------------------- CLI

def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err_ = capsys.readouterr()
    return code, out, err_


def usage_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    assert info.value.code == 2
    return capsys.readouterr().err


def test_send_model(capsys, fake):
    code, _, err_ = run(capsys, "send", A9A, "--connect", fake.train_endpoint,
                        "--batch-size", 1000)
    assert code == 0, err_
    plain = [fake.train()[1] for _ in range(2)]
    assert all("model" not in m for m in plain)
    assert f"sent 2,000 examples in 2 batches to {fake.train_endpoint} in " in err_
    code, _, err_ = run(capsys, "send", A9A, "--connect", fake.train_endpoint,
                        "--batch-size", 1000, "--model", "ctr", "--producer", "p")
    assert code == 0, err_
    named = [fake.train() for _ in range(2)]
    assert [m["model"] for _, m in named] == ["ctr", "ctr"]
    assert "to model ctr at tcp://" in err_
    first = next(iter(read_batches(str(A9A), "svmlight", batch_size=1000)))
    assert named[0][0] == pack({"v": 1, "op": "train", "model": "ctr", "seq": 1,
                                "csr": encode_csr(first), "producer": "p"})
    assert "is not valid" in usage_error(capsys, "send", A9A, "--connect",
                                         fake.train_endpoint, "--model", "a.b")
    fake.nothing_more()


@pytest.mark.parametrize("command", ["stats", "snapshot", "health"])
def test_stats_snapshot_health_model(capsys, fake, command):
    code, out, err_ = run(capsys, command, "--connect", fake.request_endpoint)
    assert code == 0, err_
    assert "model" not in fake.request()[1]
    code, out, err_ = run(capsys, command, "--connect", fake.request_endpoint,
                          "--model", "ctr")
    assert code == 0, err_
    assert fake.request()[1]["model"] == "ctr"
    if command == "snapshot":
        assert out.startswith("snapshot 1 of model ctr written: snapshot-000000000001.ol1")
    if command == "health":
        assert out == f"ok {fake.request_endpoint} model=ctr mode=training uptime_s=1.5 " \
                      f"examples=3\n"
    err_ = usage_error(capsys, command, "--connect", fake.request_endpoint, "--model=-x")
    assert "argument --model" in err_ and "is not valid" in err_
    fake.reply = lambda m: [err(m, "unknown_model", "no model named 'nope' (this daemon "
                                                    "has: default)")]
    code, out, err_ = run(capsys, command, "--connect", fake.request_endpoint,
                          "--model", "nope")
    assert (code, out) == (1, "")
    assert err_ == ("onlinel1: error: daemon replied unknown_model: no model named 'nope' "
                    "(this daemon has: default) ('onlinel1 models list' shows the daemon's "
                    "models)\n")
    fake.request()
    fake.nothing_more()


def test_predict_model_is_a_name_with_connect_and_a_file_without(capsys, fake, tmp_path):
    code, out, err_ = run(capsys, "predict", "--connect", fake.request_endpoint, A9A)
    assert code == 0, err_
    # config first (the model's interactions: common.read_as_model), then predict.
    assert [(m["op"], "model" in m) for m in (fake.request()[1] for _ in range(2))] == \
        [("config", False), ("predict", False)]
    code, out, err_ = run(capsys, "predict", "--model", "ctr", "--connect",
                          fake.request_endpoint, A9A, "--batch-size", 1500)
    assert code == 0, err_
    assert out == "0.25\n" * 2000
    assert [(m["op"], m["model"]) for m in (fake.request()[1] for _ in range(3))] == \
        [("config", "ctr"), ("predict", "ctr"), ("predict", "ctr")]
    err_ = usage_error(capsys, "predict", "--connect", fake.request_endpoint,
                       "--model", "a9a.model", A9A)
    assert "with --connect, --model names one of the daemon's models" in err_
    assert "'a9a.model' is not valid" in err_ and err_.count("\n") == 1
    assert "one of the arguments --model --connect is required" in usage_error(
        capsys, "predict", A9A)
    fake.nothing_more()
    # Without --connect, --model is still the model file.
    model = tmp_path / "m.ol1"
    code, _, err_ = run(capsys, "train", A9A, "--save", model, "--quiet")
    assert code == 0, err_
    code, out, err_ = run(capsys, "predict", "--model", model, A9A)
    assert code == 0 and len(out.splitlines()) == 2000 and out != "0.25\n" * 2000
    code, _, err_ = run(capsys, "predict", "--model", tmp_path / "missing.ol1", A9A)
    assert code == 1 and "missing.ol1: no such file" in err_


def test_models_list(capsys, fake):
    code, out, err_ = run(capsys, "models", "--connect", fake.request_endpoint, "list")
    assert code == 0, err_
    assert out.splitlines() == [
        "MODEL     UPDATE      LOSS     EXAMPLES   NNZ",
        "ctr       fobos       log          1234    56",
        "default   cumulative  log             0     0",
        "ranker-2  ftrl        squared  98765432  4012"]
    assert fake.request()[0] == pack({"v": 1, "op": "list", "id": 1})
    # --connect after the action, and --json: the daemon's reply as it is.
    code, out, err_ = run(capsys, "models", "list", "--connect", fake.request_endpoint,
                          "--json")
    assert code == 0, err_
    assert json.loads(out) == {"models": MODELS}
    fake.request()
    fake.reply = lambda m: [ok(m, {"models": []})]
    code, out, _ = run(capsys, "models", "list", "--connect", fake.request_endpoint)
    assert (code, out.split()) == (0, ["MODEL", "UPDATE", "LOSS", "EXAMPLES", "NNZ"])
    fake.request()
    fake.nothing_more()


def test_models_create_sends_only_the_flags_given(capsys, fake):
    code, out, err_ = run(capsys, "models", "--connect", fake.request_endpoint, "create", "ctr",
                          "--update", "fobos", "--l1", "1e-5")
    assert code == 0, err_
    eta0 = LearnerOptions().eta0                    # the fake daemon fills in the defaults
    assert out == f"created model ctr: loss=log update=fobos l1=1e-05 l2=0.0 eta0={eta0}\n"
    assert fake.request()[0] == pack({"v": 1, "op": "create", "id": 1, "model": "ctr",
                                      "learner": {"update": "fobos", "l1": 1e-5}})
    code, _, err_ = run(capsys, "models", "create", "bare", "--connect", fake.request_endpoint)
    assert code == 0, err_
    assert fake.request()[1]["learner"] == {}
    code, _, err_ = run(capsys, "models", "create", "svm", "--connect", fake.request_endpoint,
                        "--loss", "hinge", "--no-intercept", "--truncate-every", "3",
                        "--update", "truncated", "--truncate-theta", "inf",
                        "--decay-steps", "1000")
    assert code == 0, err_
    assert fake.request()[1]["learner"] == {"loss": "hinge", "fit_intercept": False,
                                            "truncate_every": 3, "update": "truncated",
                                            "truncate_theta": float("inf"),
                                            "decay_steps": 1000.0}
    # A bad value is refused here, naming the flag, before anything is sent.
    code, _, err_ = run(capsys, "models", "create", "x", "--connect", fake.request_endpoint,
                        "--l2", "-1")
    assert code == 1 and "--l2 must be >= 0" in err_
    assert "invalid choice" in usage_error(capsys, "models", "create", "x", "--loss", "logit")
    assert "is not valid" in usage_error(capsys, "models", "create", "x.y")
    fake.nothing_more()


def test_models_create_takes_every_learner_flag_even_new_ones(capsys, fake, monkeypatch):
    """create uses common.add_learner_arguments: a flag added there later
    (say --made-up-flag) is sent too, with no change to models.py."""
    from onlinel1.cli import common, models
    original = models.add_learner_arguments

    def with_a_new_flag(parser, with_defaults=True):
        original(parser, with_defaults)
        parser.add_argument("--made-up-flag", dest="made_up_flag", type=int,
                            default=1000 if with_defaults else None)

    monkeypatch.setattr(models, "add_learner_arguments", with_a_new_flag)
    code, _, err_ = run(capsys, "models", "create", "big", "--connect", fake.request_endpoint,
                        "--made-up-flag", "5000", "--eta0", "0.3")
    assert code == 0, err_
    assert fake.request()[1]["learner"] == {"made_up_flag": 5000, "eta0": 0.3}
    # Every flag of the learner group is taken into account.
    from onlinel1.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices
               and "models" in a.choices).choices["models"]
    create = next(a for a in sub._actions if hasattr(a, "choices") and a.choices
                  and "create" in a.choices).choices["create"]
    dests = set(create.get_default("learner_dests"))
    assert {field for _, field in common.LEARNER_FLAGS} | {"no_intercept",
                                                          "max_features"} <= dests


def test_models_drop_and_swap(capsys, fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err_ = run(capsys, "models", "drop", "ctr", "--connect", fake.request_endpoint)
    assert (code, out) == (0, "dropped model ctr (77 examples learned)\n"), err_
    assert fake.request()[0] == pack({"v": 1, "op": "drop", "id": 1, "model": "ctr"})
    fake.reply = lambda m: [ok(m, {"model": "ctr", "examples": 5,
                                   "final_snapshot": "snapshot-000000000004.ol1"})]
    code, out, err_ = run(capsys, "models", "drop", "ctr", "--connect", fake.request_endpoint)
    assert out == "dropped model ctr (5 examples learned; final snapshot " \
                  "snapshot-000000000004.ol1)\n", err_
    fake.request()
    fake.reply = canned
    code, out, err_ = run(capsys, "models", "--connect", fake.request_endpoint, "swap", "ctr",
                          "v2.ol1")
    assert code == 0, err_
    path = str(tmp_path / "v2.ol1")
    assert out == f"swapped model ctr: now {path} (500 examples, 9 non-zero weights)\n"
    assert fake.request()[0] == pack({"v": 1, "op": "swap", "id": 1, "model": "ctr",
                                      "path": path})
    assert "is not valid" in usage_error(capsys, "models", "drop", "../etc")
    assert "required: FILE" in usage_error(capsys, "models", "swap", "ctr")
    fake.nothing_more()


def test_models_errors_are_one_line_and_exit_1(capsys, fake):
    def reply(msg):
        if msg["op"] == "create":
            return [err(msg, "model_exists", "a model named 'ctr' exists")]
        if msg["op"] == "list":
            return []                                       # never answers
        return [err(msg, "unknown_model", "no model named 'gone' (this daemon has: default)")]

    fake.reply = reply
    e = fake.request_endpoint
    code, out, err_ = run(capsys, "models", "--connect", e, "create", "ctr")
    assert (code, out) == (1, "")
    assert err_ == ("onlinel1: error: daemon replied model_exists: a model named 'ctr' exists "
                    "(drop it first, or swap new weights into it with 'onlinel1 models "
                    "swap')\n")
    for argv in (["drop", "gone"], ["swap", "gone", "/m.ol1"]):
        code, out, err_ = run(capsys, "models", "--connect", e, *argv)
        assert (code, out) == (1, "") and err_.count("\n") == 1
        assert err_.startswith("onlinel1: error: daemon replied unknown_model: no model named "
                               "'gone'")
    start = time.monotonic()
    code, out, err_ = run(capsys, "models", "--connect", e, "--timeout", "0.2", "list")
    assert time.monotonic() - start < 3
    assert (code, out, err_) == (1, "", f"onlinel1: error: no answer from {e} within 0.2 s (if "
                                        f"the daemon uses CURVE, give --curve-secret-key and "
                                        f"--curve-server-key)\n")
    code, _, err_ = run(capsys, "models", "list", "--connect", e, "--timeout", "0")
    assert code == 1 and "--timeout must be > 0" in err_
    for _ in range(4):
        fake.request()
    fake.nothing_more()
    assert "required: ACTION" in usage_error(capsys, "models")


def test_models_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["models", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "examples:" in out and "onlinel1 models create ctr --update fobos" in out
    assert "tcp://127.0.0.1:5556" in out and "FILE is read by the daemon, on the daemon's " \
                                              "host" in out
    for action in ("list", "create", "drop", "swap"):
        with pytest.raises(SystemExit) as info:
            main(["models", action, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "--connect ENDPOINT" in out and f"onlinel1 models {action}" in out
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "with --connect: the name of one of the daemon's models" in out
    assert "without --connect: a model file" in out


# ---------------------------------------------------------------- C client

CDIR = pathlib.Path(__file__).resolve().parent.parent / "clients" / "c"


@pytest.fixture(scope="module")
def cbuild(tmp_path_factory) -> pathlib.Path:
    from test_c_client import _missing_tools
    reason = _missing_tools()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the C client, but {reason}")
        pytest.skip(f"the C client cannot be built: {reason}")
    build = tmp_path_factory.mktemp("cbuild-models")
    out = subprocess.run(["make", "-C", str(CDIR), f"BUILD={build}", "EXTRA_CFLAGS=-Werror"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"make failed:\n{out.stdout}\n{out.stderr}"
    assert "warning" not in out.stderr, out.stderr
    return build


@pytest.fixture(scope="module")
def clib(cbuild):
    from test_c_client import Lib
    lib = Lib(cbuild / "libonlinel1.so")
    P, s = ctypes.c_void_p, ctypes.c_char_p
    for name, restype, argtypes in (
            ("ol1_set_model", ctypes.c_int, [P, s]),
            ("ol1_model", s, [P]),
            ("ol1_request_fields_json", ctypes.c_int, [P, s, s, ctypes.POINTER(P)]),
            ("ol1_list_models", ctypes.c_int, [P, ctypes.POINTER(P)]),
            ("ol1_create_model", ctypes.c_int, [P, s, s, ctypes.POINTER(P)]),
            ("ol1_drop_model", ctypes.c_int, [P, s, ctypes.POINTER(P)]),
            ("ol1_swap_model", ctypes.c_int, [P, s, s, ctypes.POINTER(P)])):
        fn = getattr(lib.lib, name)
        fn.restype, fn.argtypes = restype, argtypes
        setattr(lib, name[4:], fn)
    return lib


def enc(text):
    return None if text is None else text.encode()


def cjson(lib, fn, h, *args):
    """Call a JSON-returning function: (status, parsed result or None)."""
    out = ctypes.c_void_p()
    rc = fn(h, *[enc(a) if isinstance(a, str) or a is None else a for a in args],
            ctypes.byref(out))
    value = None
    if out.value:
        value = json.loads(ctypes.string_at(out.value).decode())
        lib.free(out)
    return rc, value


def c_old_messages(batch: Batch, model: str | None) -> list[dict]:
    """The messages of the C calls made by ``exercise_c``, as maps in the
    order the C client packs them (``model`` right after the envelope)."""
    extra = {} if model is None else {"model": model}
    return [{"v": 1, "op": "predict", "id": 1, **extra,
             "csr": encode_csr(without_labels(batch)), "output": "auto"},
            {"v": 1, "op": "learn", "id": 2, **extra, "csr": encode_csr(batch)},
            {"v": 1, "op": "health", "id": 3, **extra},
            {"v": 1, "op": "stats", "id": 4, **extra},
            {"v": 1, "op": "config", "id": 5, **extra}]


def exercise_c(c, batch: Batch) -> None:
    from test_c_client import S
    rc, got = c.predict(batch)
    assert rc == S["OL1_OK"] and got.tolist() == [0.25] * batch.n_rows, c.error
    assert c.learn(batch)[0] == S["OL1_OK"]
    assert c.health()[0] == S["OL1_OK"]
    assert c.stats()[0] == S["OL1_OK"]
    assert c.request_json("config")[0] == S["OL1_OK"]


def test_c_messages_without_a_model_are_the_old_bytes_and_with_one_carry_it(clib, fake, batch):
    from test_c_client import S
    for model in (None, "ctr", None):
        with clib.connect(fake.request_endpoint, fake.train_endpoint, MS) as c:
            if model is not None:
                assert clib.set_model(c.h, enc(model)) == S["OL1_OK"]
                assert clib.model(c.h) == model.encode()
            else:
                assert clib.model(c.h) is None
            exercise_c(c, batch)
            assert c.send(batch, "c-loader", 7) == S["OL1_OK"]
            assert c.send(batch) == S["OL1_OK"]
            for want in c_old_messages(batch, model):
                frame, _ = fake.request()
                assert frame == pack(want), want["op"]
            extra = {} if model is None else {"model": model}
            assert fake.train()[0] == pack({"v": 1, "op": "train", **extra,
                                            "csr": encode_csr(batch), "producer": "c-loader",
                                            "seq": 7})
            assert fake.train()[0] == pack({"v": 1, "op": "train", **extra,
                                            "csr": encode_csr(batch)})
    # ol1_set_model(NULL) goes back to the old bytes on the same client.
    with clib.connect(fake.request_endpoint, None, MS) as c:
        assert clib.set_model(c.h, b"ctr") == S["OL1_OK"]
        assert clib.set_model(c.h, None) == S["OL1_OK"] and clib.model(c.h) is None
        assert c.stats()[0] == S["OL1_OK"]
        assert fake.request()[0] == pack({"v": 1, "op": "stats", "id": 1})
    fake.nothing_more()


def test_c_set_model_refuses_invalid_names(clib, fake):
    from test_c_client import S
    with clib.connect(fake.request_endpoint, None, MS) as c:
        assert clib.set_model(c.h, b"ctr") == S["OL1_OK"] and c.error == ""
        for name in BAD_NAMES:
            assert clib.set_model(c.h, name.encode()) == S["OL1_E_INVALID"], name
            assert "is not valid" in c.error
            assert clib.model(c.h) == b"ctr"            # unchanged
        for name in GOOD_NAMES:
            assert clib.set_model(c.h, name.encode()) == S["OL1_OK"]
            assert clib.model(c.h) == name.encode()
    assert clib.set_model(None, b"ctr") == S["OL1_E_INVALID"]
    assert clib.model(None) is None
    fake.nothing_more()


def test_c_list_create_drop_swap(clib, fake, tmp_path, monkeypatch):
    from test_c_client import S
    monkeypatch.chdir(tmp_path)
    with clib.connect(fake.request_endpoint, None, MS) as c:
        assert clib.set_model(c.h, b"mine") == S["OL1_OK"]
        rc, got = cjson(clib, clib.list_models, c.h)
        assert rc == S["OL1_OK"] and got == {"models": MODELS}
        assert fake.request()[0] == pack({"v": 1, "op": "list", "id": 1})   # no model
        rc, got = cjson(clib, clib.create_model, c.h, "ctr",
                        '{"update": "fobos", "l1": 1e-5, "fit_intercept": false}')
        assert rc == S["OL1_OK"], c.error
        assert got["model"] == "ctr" and got["learner"]["update"] == "fobos"
        assert fake.request()[0] == pack({"v": 1, "op": "create", "id": 2, "model": "ctr",
                                          "learner": {"update": "fobos", "l1": 1e-5,
                                                      "fit_intercept": False}})
        rc, got = cjson(clib, clib.create_model, c.h, "bare", None)
        assert rc == S["OL1_OK"] and fake.request()[1]["learner"] == {}
        rc, got = cjson(clib, clib.drop_model, c.h, "ctr")
        assert rc == S["OL1_OK"] and got == {"model": "ctr", "examples": 77}
        assert fake.request()[0] == pack({"v": 1, "op": "drop", "id": 4, "model": "ctr"})
        rc, got = cjson(clib, clib.swap_model, c.h, "ctr", "v2.ol1")
        assert rc == S["OL1_OK"] and got["path"] == str(tmp_path / "v2.ol1")
        assert fake.request()[0] == pack({"v": 1, "op": "swap", "id": 5, "model": "ctr",
                                          "path": str(tmp_path / "v2.ol1")})
        rc, got = cjson(clib, clib.swap_model, c.h, "ctr", "/srv/v3.ol1")
        assert rc == S["OL1_OK"] and fake.request()[1]["path"] == "/srv/v3.ol1"
        assert clib.model(c.h) == b"mine"                # not changed by these
        # Refused before sending: invalid names, a bad learner, no path.
        for name in BAD_NAMES:
            for fn, args in ((clib.create_model, (name, None)), (clib.drop_model, (name,)),
                             (clib.swap_model, (name, "/m.ol1"))):
                rc, got = cjson(clib, fn, c.h, *args)
                assert (rc, got) == (S["OL1_E_INVALID"], None) and "is not valid" in c.error
        for learner in ('[1]', '"fobos"', '{"l1": }', '{"l1": 1} x', "{'l1': 1}", ""):
            assert cjson(clib, clib.create_model, c.h, "ctr", learner)[0] == S["OL1_E_INVALID"]
        assert cjson(clib, clib.swap_model, c.h, "ctr", "")[0] == S["OL1_E_INVALID"]
        assert cjson(clib, clib.swap_model, c.h, "ctr", None)[0] == S["OL1_E_INVALID"]
        assert cjson(clib, clib.drop_model, c.h, None)[0] == S["OL1_E_INVALID"]
    fake.nothing_more()


def test_c_request_fields_json_converts_json_to_msgpack(clib, fake):
    from test_c_client import S
    fields = ('{"rows": [{"features": {"17": 1, "price": 0.5}}], "output": "margin",'
              ' "top_k": 3, "neg": -42, "big": 18446744073709551615, "huge": 1e400,'
              ' "over": 18446744073709551616, "min": -9223372036854775808, "exp": 2E-3,'
              ' "zero": -0.0, "t": true, "f": false, "n": null, "nested": [[], {}, [1, [2]]],'
              ' "text": "a\\"b\\\\c\\/d\\n\\t\\u00e9\\ud83d\\ude00\\u0000", "utf8": "\u00e9t\u00e9"}')
    with clib.connect(fake.request_endpoint, None, MS) as c:
        rc, got = cjson(clib, clib.request_fields_json, c.h, "predict", fields)
        assert rc == S["OL1_OK"], c.error
        assert got == {"predictions": [0.25]}
        frame, msg = fake.request()
        expected = json.loads(fields)
        expected["over"] = float(expected["over"])   # beyond 64 bits: a float
        assert msg == {"v": 1, "op": "predict", "id": 1, **expected}
        assert isinstance(msg["top_k"], int) and isinstance(msg["big"], int)
        assert msg["huge"] == float("inf") and isinstance(msg["exp"], float)
        assert str(msg["zero"]) == "-0.0"
        # The client's model goes along; a "model" field overrides it.
        assert clib.set_model(c.h, b"ctr") == S["OL1_OK"]
        for text, model in (('{"output": "auto"}', "ctr"), (None, "ctr"), ("", "ctr"),
                            ('{"model": "other", "output": "auto"}', "other"),
                            (' { } ', "ctr")):
            assert cjson(clib, clib.request_fields_json, c.h, "stats", text)[0] == S["OL1_OK"]
            assert fake.request()[1]["model"] == model
        assert cjson(clib, clib.request_fields_json, c.h, "list", "{}")[0] == S["OL1_OK"]
        assert "model" not in fake.request()[1]
        # Refused before sending.
        for text in ('{"v": 2}', '{"op": "x"}', '{"id": 1}', '{"model": "a.b"}',
                     '{"model": 3}', '{"model": "a", "model": "b"}', "[]", "{", '{"a" 1}',
                     '{"a": 01}', '{"a": 1.}', '{"a": .5}', '{"a": tru}', '{"a": "\x01"}',
                     '{"a": "\\x"}', '{"a": "\\ud800"}', '{"a": "\\udc00"}', '{"a": "x}',
                     '{"a": 1,}', '{"a": [1,]}', '{"a": ' + "[" * 70 + "]" * 70 + "}",
                     '{"a": ' + "1" * 70 + "}", '{"a": 1} {}'):
            rc, got = cjson(clib, clib.request_fields_json, c.h, "stats", text)
            assert (rc, got) == (S["OL1_E_INVALID"], None), text
            assert c.error, text
    fake.nothing_more()


def test_c_model_error_codes(clib, fake):
    from test_c_client import S

    def reply(msg):
        if msg["op"] == "create":
            return [err(msg, "model_exists", "a model named 'ctr' exists")]
        return [err(msg, "unknown_model", "no model named 'gone'")]

    fake.reply = reply
    with clib.connect(fake.request_endpoint, None, MS) as c:
        assert cjson(clib, clib.create_model, c.h, "ctr", "{}") == (S["OL1_E_MODEL_EXISTS"],
                                                                     None)
        assert c.error == "model_exists: a model named 'ctr' exists"
        assert cjson(clib, clib.drop_model, c.h, "gone") == (S["OL1_E_UNKNOWN_MODEL"], None)
        assert c.error == "unknown_model: no model named 'gone'"
        clib.set_model(c.h, b"gone")
        assert c.stats()[0] == S["OL1_E_UNKNOWN_MODEL"]
    assert clib.status_name(S["OL1_E_UNKNOWN_MODEL"]) == b"unknown_model"
    assert clib.status_name(S["OL1_E_MODEL_EXISTS"]) == b"model_exists"
    assert b"no model of that name" in clib.strerror(S["OL1_E_UNKNOWN_MODEL"])


def test_c_examples_take_a_model(cbuild, fake, tmp_path):
    from test_c_client import run as crun
    head = "".join(A9A.read_text().splitlines(keepends=True)[:30])
    out = crun([cbuild / "predictor", "-m", "ctr", fake.request_endpoint], input=head)
    assert out.returncode == 0 and out.stdout == "0.25\n" * 30, out.stderr
    assert fake.request()[1]["model"] == "ctr"
    data = tmp_path / "head.svm"
    data.write_text(head)
    out = crun([cbuild / "producer", "-m", "ctr", "-b", "20", fake.train_endpoint, data])
    assert out.returncode == 0, out.stderr
    assert [fake.train()[1]["model"] for _ in range(2)] == ["ctr", "ctr"]
    out = crun([cbuild / "producer", fake.train_endpoint, data])
    assert out.returncode == 0 and "model" not in fake.train()[1]
    for program, endpoint in (("predictor", fake.request_endpoint),
                              ("producer", fake.train_endpoint)):
        args = [cbuild / program, "-m", "a.b", endpoint] + ([data] if program == "producer"
                                                           else [])
        out = crun(args, input="")
        assert out.returncode == 2 and "'a.b' is not valid" in out.stderr
    fake.nothing_more()


VALGRIND_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "onlinel1.h"

/* Make the call, check its status, free its JSON. */
#define CALL(expr, expected)                                                        \
    do {                                                                            \
        int rc_ = (expr);                                                           \
        if (rc_ != (expected)) {                                                    \
            fprintf(stderr, "line %d: got %d, expected %d: %s\n", __LINE__, rc_,    \
                    (expected), ol1_last_error(c));                                 \
            bad = 1;                                                                \
        }                                                                           \
        ol1_free(json);                                                             \
        json = NULL;                                                                \
    } while (0)

int main(int argc, char **argv) {
    ol1_client *c;
    char *json = NULL;
    int bad = 0;
    if (argc != 2 || ol1_connect(argv[1], NULL, 5000, &c) != OL1_OK) return 2;
    CALL(ol1_set_model(c, "ctr"), OL1_OK);
    CALL(ol1_set_model(c, "other"), OL1_OK);
    CALL(ol1_set_model(c, "no/slash"), OL1_E_INVALID);
    CALL(ol1_list_models(c, &json), OL1_OK);
    CALL(ol1_create_model(c, "ctr", "{\"update\": \"fobos\", \"l1\": 1e-5}", &json), OL1_OK);
    CALL(ol1_create_model(c, "ctr", "{\"l1\": [1, {\"a\": \"\\ud83d\\ude00\"}", &json),
         OL1_E_INVALID);
    CALL(ol1_create_model(c, "ctr", "{\"l1\": \"\\ud800\"}", &json), OL1_E_INVALID);
    CALL(ol1_drop_model(c, "ctr", &json), OL1_OK);
    CALL(ol1_swap_model(c, "ctr", "relative/v2.ol1", &json), OL1_OK);
    CALL(ol1_request_fields_json(c, "stats",
         "{\"model\": \"x\", \"deep\": [[[\"s\", 1.5, -3, true, null]]], \"k\": {}}", &json),
         OL1_OK);
    CALL(ol1_request_fields_json(c, "stats", "{\"model\": \"x\", \"model\": \"y\"}", &json),
         OL1_E_INVALID);
    CALL(ol1_request_fields_json(c, "stats", "{\"model\": \"a.b\"}", &json), OL1_E_INVALID);
    CALL(ol1_request_fields_json(c, "stats", "{\"a\": [1, 2", &json), OL1_E_INVALID);
    CALL(ol1_request_fields_json(c, "stats", "{\"a\": \"unterminated", &json), OL1_E_INVALID);
    CALL(ol1_request_fields_json(c, "stats", "{\"v\": 1}", &json), OL1_E_INVALID);
    CALL(ol1_drop_model(c, "gone", &json), OL1_E_UNKNOWN_MODEL);
    CALL(ol1_set_model(c, NULL), OL1_OK);
    CALL(ol1_stats(c, &json), OL1_OK);
    CALL(ol1_set_model(c, "left-set"), OL1_OK);     /* freed by ol1_close */
    ol1_close(c);
    return bad;
}
"""


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_c_model_calls_leak_nothing_under_valgrind(cbuild, fake, tmp_path):
    from test_c_client import valgrind

    def reply(msg):
        if msg["op"] == "drop" and msg["model"] == "gone":
            return [err(msg, "unknown_model", "no model named 'gone'")]
        return canned(msg)

    fake.reply = reply
    source = tmp_path / "models.c"
    source.write_text(VALGRIND_PROGRAM)
    flags = subprocess.run(["pkg-config", "--libs", "libzmq"], capture_output=True,
                           text=True).stdout.split() or ["-lzmq"]
    msgpack_libs = []
    for pc in ("msgpack-c", "msgpack"):
        out = subprocess.run(["pkg-config", "--libs", pc], capture_output=True, text=True)
        if out.returncode == 0:
            msgpack_libs = out.stdout.split()
            break
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    out = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-I", str(CDIR),
                          "-o", str(tmp_path / "models"), str(source),
                          str(cbuild / "libonlinel1.a"), *flags,
                          *(msgpack_libs or ["-lmsgpackc"]), "-lm"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = valgrind([tmp_path / "models", fake.request_endpoint])
    assert out.returncode == 0, out.stderr
    ops = []
    while not fake.requests.empty():
        ops.append(fake.requests.get_nowait()[1])
    assert [m["op"] for m in ops] == ["list", "create", "drop", "swap", "stats", "drop",
                                      "stats"]
    assert "model" not in ops[0] and ops[4]["model"] == "x" and "model" not in ops[6]
    assert ops[4]["deep"] == [[["s", 1.5, -3, True, None]]]


JSON_KEYS = st.text(max_size=8).filter(lambda k: k not in ("v", "op", "id", "model"))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_KEYS, inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def module_fake():
    daemon = FakeDaemon()
    try:
        yield daemon
    finally:
        daemon.close()


@settings(max_examples=60, deadline=None)
@given(fields=st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=5),
       ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]))
def test_c_fields_json_reads_what_python_writes(clib, module_fake, fields, ascii_only, indent):
    """Any JSON object Python writes reaches the daemon as that object."""
    from test_c_client import S
    text = json.dumps(fields, ensure_ascii=ascii_only, indent=indent)
    with clib.connect(module_fake.request_endpoint, None, MS) as c:
        assert cjson(clib, clib.request_fields_json, c.h, "stats", text)[0] == S["OL1_OK"], \
            c.error
    _, msg = module_fake.request()
    assert msg == {"v": 1, "op": "stats", "id": 1, **fields}
