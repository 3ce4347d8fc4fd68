"""CURVE authentication and encryption, the loopback rule, and what the
``config`` reply hides (server/auth.py, onlinel1/curve.py, cli/keygen.py,
the clients' ``curve_*`` keys, the C client's ``ol1_set_curve``).

* keygen: file modes, ZeroMQ's certificate format (read by pyzmq's
  ``zmq.auth``), never an overwrite.
* A CURVE daemon learns from allowed Python and C producers and answers
  allowed clients: the model is bit-identical to an insecure daemon's fed
  the same rows.
* An unknown key is refused, learns nothing, is counted (stats and
  /metrics) and logged; a client without CURVE (NULL or PLAIN) gets
  nothing; on the wire, the traffic is encrypted (a TCP proxy records it).
* ``serve --check`` refuses a non-loopback endpoint without CURVE, unless
  ``--insecure`` (then a WARNING); HTTP off loopback needs it too.
* ``config`` shows paths only to an allowed CURVE key.
* A secret key file open to group or others is refused (daemon, Python
  client, C client), and so are missing or malformed key files.
* Issue 15's leftovers: NULL and PLAIN attempts are counted in
  ``auth_refused``; SIGHUP reads the allow list again; ``snapshot`` and
  ``swap`` show paths to an allowed key (test_admission: to no one else).

Every daemon binds free loopback ports and is reaped (the ``start_daemon``
fixture); every wait is bounded and waits for an observable event (a
reply, a counter, a socket monitor event), never for time to pass.
"""
from __future__ import annotations

import contextlib

import ctypes
import os
import pathlib
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import urllib.request

import msgpack
import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from onlinel1 import curve
from onlinel1.client import Client, DaemonError, DaemonTimeout, Producer, encode_csr
from onlinel1.io import read_batches
from onlinel1.server import auth
from onlinel1.server.config import ConfigError, DaemonConfig

from conftest import SAMPLES, free_port, wait_for
from test_c_client import S, cbuild, lib  # noqa: F401  (fixtures: the C client's build)

ROOT = pathlib.Path(__file__).resolve().parent.parent
A9A = SAMPLES / "a9a_head2000.svm"
N_A9A = 2000
WAIT = 20.0
ONLINEL1 = [sys.executable, "-m", "onlinel1"]

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def run_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*ONLINEL1, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


class Keys:
    """A daemon key pair, an allowed client pair, a stranger pair, and the
    allow folder (the allowed client's .pub only)."""

    def __init__(self, root: pathlib.Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.allow = root / "allow"
        self.allow.mkdir()
        for name in ("server", "client", "stranger"):
            curve.generate(root / name)
        (self.allow / "client.pub").write_bytes((root / "client.pub").read_bytes())

    def secret(self, name: str) -> pathlib.Path:
        return self.root / f"{name}.key"

    def public(self, name: str) -> pathlib.Path:
        return self.root / f"{name}.pub"

    def serve_flags(self) -> list[str]:
        return ["--curve-secret-key", str(self.secret("server")), "--curve-allow", str(self.allow)]

    def client(self, name: str = "client") -> dict:
        return {"curve_secret_key": self.secret(name), "curve_server_key": self.public("server")}


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys(tmp_path / "keys")


def healthy(client: Client, daemon) -> dict | None:
    if daemon.proc.poll() is not None:
        raise RuntimeError(f"the daemon exited with {daemon.proc.returncode}: {daemon.log()}")
    try:
        return client.health()
    except DaemonTimeout:
        return None


def start_curve_daemon(start_daemon, keys: Keys, *flags: str):
    """A CURVE daemon, ready: an allowed client's health answered."""
    daemon = start_daemon(*keys.serve_flags(), *flags, ready=False)
    with Client(daemon.request, timeout=0.5, **keys.client()) as client:
        wait_for(lambda: healthy(client, daemon), bool, WAIT, "the CURVE daemon's health")
    return daemon


def stats_of(daemon, keys: Keys | None = None) -> dict:
    with Client(daemon.request, timeout=WAIT, **(keys.client() if keys else {})) as client:
        return client.stats()


def wait_examples(daemon, n: int, keys: Keys | None = None) -> dict:
    stats = wait_for(lambda: stats_of(daemon, keys), lambda s: s["examples"] >= n, WAIT,
                     "the examples learned")
    assert stats["examples"] == n, stats
    return stats


def a9a_whole():
    (whole,) = read_batches(str(A9A), "svmlight", batch_size=N_A9A)
    return whole


def python_produce(daemon, **curve_keys) -> None:
    with Producer(daemon.train, producer="py", linger=WAIT, send_timeout=WAIT,
                  **curve_keys) as producer:
        for batch in read_batches(str(A9A), "svmlight", batch_size=500):
            producer.send_batch(batch)


FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
          | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_DISCONNECTED)


def wait_handshake_failure(sock: zmq.Socket, monitor: zmq.Socket) -> int:
    """Wait for ``monitor`` (``sock``'s, made before it connected) to say
    that the daemon turned the connection down; never that it admitted it.
    Closes the monitor."""
    try:
        while True:
            if not monitor.poll(int(WAIT * 1000)):
                raise TimeoutError(f"no handshake failure within {WAIT} s")
            event = recv_monitor_message(monitor)["event"]
            assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED, "the daemon admitted the handshake"
            if event & FAILED:
                return event
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


# ================================================================= keygen

def test_keygen_writes_a_private_key_and_a_public_one_in_zmq_format(tmp_path):
    base = tmp_path / "server"
    old = os.umask(0)             # a lax umask does not loosen the secret key
    try:
        out = run_cli("keygen", base)
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    secret, public = tmp_path / "server.key", tmp_path / "server.pub"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    # ZeroMQ's certificate format, as pyzmq reads it.
    pub_a, sec_a = zmq.auth.load_certificate(secret)
    pub_b, sec_b = zmq.auth.load_certificate(public)
    assert sec_b is None and "secret-key" not in public.read_text()
    assert pub_a == pub_b and len(pub_a) == 40 and len(sec_a) == 40
    assert zmq.curve_public(sec_a) == pub_a
    assert re.search(r'(?m)^curve\n    public-key = "[^"]{40}"\n    secret-key = "[^"]{40}"\n$',
                     secret.read_text()), secret.read_text()
    assert pub_a.decode() in out.stderr
    # Never overwritten: a second run fails, naming the file, and changes nothing.
    before = secret.read_bytes(), public.read_bytes()
    again = run_cli("keygen", base)
    assert again.returncode == 1 and again.stdout == ""
    assert f"{secret} exists" in again.stderr and "never overwrites" in again.stderr
    assert (secret.read_bytes(), public.read_bytes()) == before
    # A lone .pub also stops it: no secret key is written beside it.
    (tmp_path / "lone.pub").write_text("x")
    assert run_cli("keygen", tmp_path / "lone").returncode == 1
    assert not (tmp_path / "lone.key").exists()
    # A symbolic link at PATH.key is not followed.
    target = tmp_path / "target"
    target.write_text("untouched")
    (tmp_path / "link.key").symlink_to(target)
    assert run_cli("keygen", tmp_path / "link").returncode == 1
    assert target.read_text() == "untouched" and not (tmp_path / "link.pub").exists()
    # A missing folder is a clear error.
    missing = run_cli("keygen", tmp_path / "nope" / "k")
    assert missing.returncode == 1 and "no such folder" in missing.stderr


def test_key_files_that_cannot_be_used_are_refused_by_name(keys, tmp_path):
    # The right files read back.
    public, secret = curve.read_secret_key(keys.secret("server"))
    assert curve.read_public_key(keys.public("server")) == public
    with pytest.raises(curve.KeyFileError, match="no secret-key line"):
        private_pub = tmp_path / "private.pub"
        private_pub.write_bytes(keys.public("client").read_bytes())
        private_pub.chmod(0o600)
        curve.read_secret_key(private_pub)
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("hello\n")
    with pytest.raises(curve.KeyFileError, match="not a ZeroMQ certificate"):
        curve.read_public_key(garbage)
    short = tmp_path / "short.pub"
    short.write_text('curve\n    public-key = "abc"\n')
    with pytest.raises(curve.KeyFileError, match="40-character"):
        curve.read_public_key(short)
    with pytest.raises(curve.KeyFileError, match="no such key file"):
        curve.read_public_key(tmp_path / "absent.pub")
    # A secret key whose public line was edited.
    forged = tmp_path / "forged.key"
    text = keys.secret("client").read_text()
    forged.write_text(re.sub(r'public-key = "[^"]+"',
                             f'public-key = "{curve.read_public_key(keys.public("server")).decode()}"',
                             text))
    forged.chmod(0o600)
    with pytest.raises(curve.KeyFileError, match="not the one of its secret key"):
        curve.read_secret_key(forged)
    with pytest.raises(ValueError, match="needs both keys"):
        Client("tcp://127.0.0.1:1", curve_secret_key=keys.secret("client"))


# ========================================================== loopback rule

@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.1.2.3:5555", True), ("tcp://[::1]:5555", True),
    ("tcp://localhost:5555", True), ("tcp://[::ffff:127.0.0.1]:1", True),
    ("ipc:///tmp/onlinel1.sock", True), ("inproc://x", True), ("tcp://127.0.0.1:*", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://[::]:5555", False),
    ("tcp://10.0.0.7:5555", False), ("tcp://eth0:5555", False), ("tcp://lo:5555", False),
    ("tcp://example.com:5555", False), ("tcp://localhost.evil:1", False),
])
def test_loopback_rule(endpoint, local):
    assert auth.is_local_endpoint(endpoint) is local
    if endpoint.startswith("tcp://") and endpoint.rpartition(":")[2].isdigit():
        if local:
            DaemonConfig(train_endpoint=endpoint)
        else:
            with pytest.raises(ConfigError, match="not on loopback.*--insecure"):
                DaemonConfig(train_endpoint=endpoint)
            assert DaemonConfig(train_endpoint=endpoint, insecure=True).insecure


def test_config_checks_the_curve_settings():
    with pytest.raises(ConfigError, match="curve_secret_key and curve_allow go together"):
        DaemonConfig(curve_secret_key="/k.key")
    with pytest.raises(ConfigError, match="insecure must be true or false"):
        DaemonConfig(insecure="yes")
    with pytest.raises(ConfigError, match="curve_allow must be a path"):
        DaemonConfig(curve_secret_key="/k.key", curve_allow=3)
    # With CURVE, ZeroMQ endpoints may be anywhere; HTTP off loopback still needs --insecure.
    DaemonConfig(request_endpoint="tcp://0.0.0.0:1", curve_secret_key="/k", curve_allow="/d")
    with pytest.raises(ConfigError, match="HTTP has no authentication"):
        DaemonConfig(http_endpoint="0.0.0.0:9100", curve_secret_key="/k", curve_allow="/d")
    DaemonConfig(http_endpoint="9100")
    DaemonConfig(http_endpoint="[::1]:9100")
    DaemonConfig(http_endpoint="0.0.0.0:9100", insecure=True)


def any_interface_port() -> int:
    """A TCP port free on every interface (0.0.0.0) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def test_check_refuses_a_public_endpoint_without_curve_and_insecure_warns(tmp_path, keys):
    def endpoints() -> tuple[str, str]:      # fresh ones for each daemon that binds
        return f"tcp://0.0.0.0:{any_interface_port()}", f"tcp://127.0.0.1:{free_port()}"

    public, request = endpoints()
    refused = run_cli("serve", "--check", "--train-endpoint", public, "--request-endpoint",
                      request)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"train_endpoint {public} is not on loopback" in refused.stderr
    assert "--curve-secret-key and --curve-allow" in refused.stderr
    assert "--insecure" in refused.stderr
    star = run_cli("serve", "--check", "--request-endpoint", "tcp://*:5556")
    assert star.returncode == 1 and "is not on loopback" in star.stderr
    # --insecure: accepted, and said loudly (once: only the training endpoint is open).
    allowed = run_cli("serve", "--check", "--train-endpoint", public, "--request-endpoint",
                      request, "--insecure")
    assert allowed.returncode == 0, allowed.stderr
    assert re.search(rf"WARNING onlinel1.daemon: INSECURE \(--insecure\): train_endpoint "
                     rf"{re.escape(public)} is open to anyone", allowed.stderr), allowed.stderr
    assert allowed.stderr.count(" WARNING ") == 1, allowed.stderr
    # The same from a config file.
    public, request = endpoints()
    config = tmp_path / "onlinel1.toml"
    config.write_text(f'[daemon]\ntrain_endpoint = "{public}"\nrequest_endpoint = "{request}"\n'
                      f'insecure = true\n')
    from_file = run_cli("serve", "--check", "--config", config)
    assert from_file.returncode == 0 and "INSECURE" in from_file.stderr, from_file.stderr
    # With CURVE: accepted, no warning.
    public, _ = endpoints()
    secured = run_cli("serve", "--check", "--train-endpoint", public, "--request-endpoint",
                      f"tcp://0.0.0.0:{any_interface_port()}", *keys.serve_flags())
    assert secured.returncode == 0, secured.stderr
    assert "WARNING" not in secured.stderr and "CURVE on" in secured.stderr
    # HTTP off loopback needs --insecure, CURVE or not.
    http = run_cli("serve", "--check", "--http-endpoint", "0.0.0.0:0", *keys.serve_flags())
    assert http.returncode == 1 and "HTTP has no authentication" in http.stderr


def test_bad_curve_key_files_stop_the_daemon_with_a_clear_message(keys, tmp_path):
    server = keys.secret("server")
    server.chmod(0o644)
    out = run_cli("serve", "--check", *keys.serve_flags())
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert f"accessible by group or others (mode 0644); make it private: chmod 600 {server}" \
        in out.stderr
    server.chmod(0o600)
    assert run_cli("serve", "--check", *keys.serve_flags()).returncode == 0
    cases = {
        "no such key file": ["--curve-secret-key", tmp_path / "nope.key", "--curve-allow",
                             keys.allow],
        "no such folder or file": ["--curve-secret-key", server, "--curve-allow",
                                   tmp_path / "nowhere"],
        "no *.pub files": ["--curve-secret-key", server, "--curve-allow", tmp_path / "empty"],
        "not a ZeroMQ certificate": ["--curve-secret-key", server, "--curve-allow",
                                     tmp_path / "junk"],
        "go together": ["--curve-secret-key", server],
    }
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.pub").write_text("not a key\n")
    for message, flags in cases.items():
        out = run_cli("serve", "--check", *flags)
        assert out.returncode == 1 and message in out.stderr, (message, out.stderr)
    # The clients refuse a secret key open to others too.
    client_key = keys.secret("client")
    client_key.chmod(0o640)
    with pytest.raises(ValueError, match="chmod 600"):
        Client("tcp://127.0.0.1:1", **keys.client())
    with pytest.raises(ValueError, match="chmod 600"):
        Producer("tcp://127.0.0.1:1", **keys.client())
    out = run_cli("health", "--connect", "tcp://127.0.0.1:1", *curve_flags(keys))
    assert out.returncode == 1 and "chmod 600" in out.stderr


def curve_flags(keys: Keys, name: str = "client") -> list:
    return ["--curve-secret-key", keys.secret(name), "--curve-server-key", keys.public("server")]


# ===================================================== a daemon with CURVE

def test_curve_daemon_learns_from_allowed_producers_bit_identical_to_insecure(
        start_daemon, keys, cbuild, tmp_path):  # noqa: F811
    secured = start_curve_daemon(start_daemon, keys, "--snapshot-dir", str(tmp_path / "s"))
    secured_c = start_curve_daemon(start_daemon, keys)
    plain = start_daemon()
    python_produce(secured, **keys.client())
    python_produce(plain)
    out = subprocess.run([str(cbuild / "producer"), "-t", "20000", "-p", "c", "-k",
                          str(keys.secret("client")), "-s", str(keys.public("server")),
                          secured_c.train, str(A9A)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    s_py, s_c = wait_examples(secured, N_A9A, keys), wait_examples(secured_c, N_A9A, keys)
    s_plain = wait_examples(plain, N_A9A)
    assert s_py["producers"] == {"py": 4} and s_c["producers"] == {"c": 2}
    assert s_py["nnz"] == s_c["nnz"] == s_plain["nnz"] > 50
    whole = a9a_whole()
    with Client(secured.request, timeout=WAIT, **keys.client()) as a, \
            Client(secured_c.request, timeout=WAIT, **keys.client()) as c, \
            Client(plain.request, timeout=WAIT) as p:
        assert a.curve and not p.curve
        margins = p.predict(whole, output="margin")["predictions"]
        assert len(set(margins)) > 100
        assert a.predict(whole, output="margin")["predictions"] == margins
        assert c.predict(whole, output="margin")["predictions"] == margins
        assert a.stats()["daemon"]["auth_refused"] == 0
    # The CLI commands with the keys: health, stats, predict --connect, models, send.
    flags = curve_flags(keys)
    health = run_cli("health", "--connect", secured.request, *flags)
    assert health.returncode == 0 and health.stdout.startswith("ok "), health.stderr
    listing = run_cli("models", "--connect", secured.request, "list", *flags)
    assert listing.returncode == 0 and "default" in listing.stdout, listing.stderr
    predicted = run_cli("predict", "--connect", secured.request, *flags, A9A)
    assert predicted.returncode == 0, predicted.stderr
    with Client(plain.request, timeout=WAIT) as p:
        assert [float(x) for x in predicted.stdout.split()] == p.predict(whole)["predictions"]
    sent = run_cli("send", A9A, "--connect", secured.train, "--timeout", WAIT, *flags)
    assert sent.returncode == 0, sent.stderr
    wait_examples(secured, 2 * N_A9A, keys)
    snap = run_cli("snapshot", "--connect", secured.request, *flags)
    assert snap.returncode == 0 and " written: " in snap.stdout, snap.stderr
    # A predict-only replica of that snapshot, CURVE on its request socket alone.
    replica = start_curve_daemon(start_daemon, keys, "--predict-only", "--model",
                                 str(tmp_path / "s"))
    with Client(replica.request, timeout=WAIT, **keys.client()) as r, \
            Client(secured.request, timeout=WAIT, **keys.client()) as a:
        assert r.health()["mode"] == "predict-only"
        assert r.predict(whole)["predictions"] == a.predict(whole)["predictions"]
    assert "CURVE on the request socket: 1 client key(s) admitted" in replica.log()


def c_set_curve(lib, c, secret, server) -> int:  # noqa: F811
    fn = lib.lib.ol1_set_curve
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    return fn(c.h, secret and str(secret).encode(), server and str(server).encode())


def test_c_library_speaks_curve(lib, start_daemon, keys):  # noqa: F811
    daemon = start_curve_daemon(start_daemon, keys)
    whole = a9a_whole()
    with lib.connect(daemon.request, daemon.train, timeout_ms=int(WAIT * 1000)) as c:
        assert c_set_curve(lib, c, keys.secret("client"), keys.public("server")) == S["OL1_OK"], \
            c.error
        rc, info = c.health()
        assert rc == S["OL1_OK"] and info.status == b"ok", c.error
        assert c.send(whole, "ctypes", 1) == S["OL1_OK"], c.error
        stats = wait_examples(daemon, N_A9A, keys)
        assert stats["producers"] == {"ctypes": 1}
        rc, got = c.predict(whole, 2)
        assert rc == S["OL1_OK"], c.error
        with Client(daemon.request, timeout=WAIT, **keys.client()) as py:
            assert got.tolist() == py.predict(whole, output="margin")["predictions"]
        # After a batch, the keys can no longer change.
        assert c_set_curve(lib, c, keys.secret("client"), keys.public("server")) == \
            S["OL1_E_INVALID"]
        assert "before the first training batch" in c.error
    with lib.connect(daemon.request, timeout_ms=300) as c:
        # Arguments it refuses, leaving the client as it was.
        assert c_set_curve(lib, c, keys.secret("client"), None) == S["OL1_E_INVALID"]
        assert "both" in c.error
        keys.secret("stranger").chmod(0o644)
        assert c_set_curve(lib, c, keys.secret("stranger"), keys.public("server")) == \
            S["OL1_E_INVALID"]
        assert "chmod 600" in c.error and "0644" in c.error
        keys.secret("stranger").chmod(0o600)
        assert c_set_curve(lib, c, keys.public("client"), keys.public("server")) == \
            S["OL1_E_INVALID"]
        assert c_set_curve(lib, c, keys.secret("client"), keys.root / "none.pub") == \
            S["OL1_E_INVALID"]
        assert "cannot open" in c.error
        # Without CURVE, the daemon does not answer: a timeout.
        assert c.health()[0] == S["OL1_E_TIMEOUT"]
        # An unknown key: a timeout too.
        assert c_set_curve(lib, c, keys.secret("stranger"), keys.public("server")) == S["OL1_OK"]
        assert c.health()[0] == S["OL1_E_TIMEOUT"]
        # Then an allowed one works on the same client; NULL, NULL turns CURVE off again.
        with lib.connect(daemon.request, timeout_ms=int(WAIT * 1000)) as ok:
            assert c_set_curve(lib, ok, keys.secret("client"), keys.public("server")) == \
                S["OL1_OK"]
            assert ok.health()[0] == S["OL1_OK"], ok.error
            assert c_set_curve(lib, ok, None, None) == S["OL1_OK"]
    assert stats_of(daemon, keys)["daemon"]["auth_refused"] >= 1


def test_unknown_key_is_refused_learns_nothing_is_counted_and_logged(start_daemon, keys):
    http_port = free_port()
    daemon = start_curve_daemon(start_daemon, keys, "--http-endpoint", f"127.0.0.1:{http_port}")
    # A stranger's producer: its handshake is refused (counted), its batches never arrive.
    ctx = zmq.Context()
    try:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        curve.apply_client_options(push, curve.client_options(keys.secret("stranger"),
                                                              keys.public("server")))
        monitor = push.get_monitor_socket()      # before connecting: no event missed
        push.connect(daemon.train)
        try:
            push.send(msgpack.packb({"v": 1, "op": "train", "csr": encode_csr(a9a_whole())}),
                      zmq.NOBLOCK)
        except zmq.Again:
            pass    # refused already (seen in CI): the pipe is gone, nothing is queued
        assert wait_handshake_failure(push, monitor) & FAILED
        stats = wait_for(lambda: stats_of(daemon, keys), lambda s: s["daemon"]["auth_refused"] >= 1,
                         WAIT, "the stranger's producer refused")
        assert stats["examples"] == 0
        push.close(linger=0)
    finally:
        ctx.destroy(linger=0)     # closes what a failed assertion left open
    refused_before = stats["daemon"]["auth_refused"]
    # A stranger's client: no answer, and one more refusal.
    with Client(daemon.request, timeout=0.5, **keys.client("stranger")) as stranger:
        with pytest.raises(DaemonTimeout):
            stranger.health()
    stats = wait_for(lambda: stats_of(daemon, keys),
                     lambda s: s["daemon"]["auth_refused"] > refused_before, WAIT,
                     "the stranger's client refused")
    # The CLI says what to check.
    out = run_cli("stats", "--connect", daemon.request, "--timeout", "0.3",
                  *curve_flags(keys, "stranger"))
    assert out.returncode == 1
    assert "(if the daemon uses CURVE, check --curve-server-key and that your public key is " \
           "in its --curve-allow)" in out.stderr
    # An allowed producer's rows are then all that was learned.
    python_produce(daemon, **keys.client())
    stats = wait_examples(daemon, N_A9A, keys)
    assert stats["producers"] == {"py": 4}
    # Exported to Prometheus.
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=WAIT) as r:
        text = r.read().decode()
    (value,) = re.findall(r"(?m)^onlinel1_auth_refused_total (\S+)$", text)
    assert float(value) >= stats["daemon"]["auth_refused"] >= 2
    # Logged, with the key, not once per attempt without bound.
    log = daemon.log()
    stranger_key = curve.read_public_key(keys.public("stranger")).decode()
    assert f"CURVE: refused a connection from 127.0.0.1: client key {stranger_key} is not in " \
           f"curve_allow" in log
    assert log.count("CURVE: refused") <= stats["daemon"]["auth_refused"]


@pytest.mark.parametrize("mechanism", ["NULL", "PLAIN"])
def test_a_client_without_curve_gets_nothing(start_daemon, keys, mechanism):
    daemon = start_curve_daemon(start_daemon, keys)
    ctx = zmq.Context()
    try:
        for kind, endpoint in ((zmq.DEALER, daemon.request), (zmq.PUSH, daemon.train)):
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            if mechanism == "PLAIN":
                sock.setsockopt(zmq.PLAIN_USERNAME, b"admin")
                sock.setsockopt(zmq.PLAIN_PASSWORD, b"admin")
            monitor = sock.get_monitor_socket()
            sock.connect(endpoint)
            message = ({"v": 1, "op": "stats", "id": 1} if kind == zmq.DEALER else
                       {"v": 1, "op": "train", "rows": [{"label": 1, "features": {"1": 1.0}}]})
            # The handshake may have failed already, and its pipe with it:
            # then the send is refused here (EAGAIN), which is nothing sent.
            with contextlib.suppress(zmq.Again):
                sock.send(msgpack.packb(message), zmq.NOBLOCK)
            wait_handshake_failure(sock, monitor)
            if kind == zmq.DEALER:
                assert sock.poll(0) == 0        # no reply came, nor can one
            sock.close(linger=0)
    finally:
        ctx.destroy(linger=0)     # closes what a failed assertion left open
    with Client(daemon.request, timeout=0.3) as plain, pytest.raises(DaemonTimeout):
        plain.health()
    out = run_cli("health", "--connect", daemon.request, "--timeout", "0.3")
    assert out.returncode == 1 and "give --curve-secret-key and --curve-server-key" in out.stderr
    # The one allowed client's rows are all the model learned.
    with Client(daemon.request, timeout=WAIT, **keys.client()) as client:
        assert client.learn([{"label": 1, "features": {"2": 1.0}}])["t"] == 1
        assert client.stats()["examples"] == 1


# ================================================================ the wire

class Proxy:
    """A TCP proxy on a free loopback port to ``upstream``, recording
    every byte each way (one thread; stopped and joined by close())."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream[len("tcp://"):].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.recorded = bytearray()
        self.lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        peers: dict[socket.socket, socket.socket] = {}
        try:
            while True:
                readable, _, _ = select.select([self.listener, self._stop_r, *peers], [], [])
                if self._stop_r in readable:
                    return
                for s in readable:
                    if s is not self.listener and s not in peers:
                        continue                # closed with its peer just now
                    if s is self.listener:
                        client, _ = self.listener.accept()
                        server = socket.create_connection(self.upstream)
                        peers[client], peers[server] = server, client
                        continue
                    data = s.recv(65536)
                    if not data:
                        other = peers.pop(s)
                        peers.pop(other, None)
                        s.close()
                        other.close()
                        continue
                    with self.lock:
                        self.recorded += data
                    peers[s].sendall(data)
        finally:
            for s in peers:
                s.close()
            self.listener.close()

    def bytes(self) -> bytes:
        with self.lock:
            return bytes(self.recorded)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self.thread.join(WAIT)
        os.close(self._stop_r)
        os.close(self._stop_w)


def test_the_traffic_is_encrypted_on_the_wire(start_daemon, keys):
    secured = start_curve_daemon(start_daemon, keys)
    plain = start_daemon()
    marker = "feature-name-that-must-not-travel-in-clear-7f3a"
    results = {}
    for name, daemon, curve_keys in (("curve", secured, keys.client()), ("plain", plain, {})):
        proxy = Proxy(daemon.request)
        try:
            with Client(proxy.endpoint, timeout=WAIT, **curve_keys) as client:
                client.learn([{"label": 1, "features": {marker: 1.0}}])
                results[name] = client.predict([{"features": {marker: 1.0}}],
                                               output="margin")["predictions"]
        finally:
            proxy.close()
        wire = proxy.bytes()
        assert len(wire) > 100, name
        if name == "curve":
            assert b"CURVE" in wire[:128]         # the greeting names the mechanism
            assert marker.encode() not in wire and b"learn" not in wire
            assert b"predictions" not in wire
        else:
            # The control: without CURVE the same exchange is readable.
            assert marker.encode() in wire and b"predictions" in wire
    assert results["curve"] == results["plain"]


# ============================================================== redaction

def walk_strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from walk_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from walk_strings(v)
    elif isinstance(value, str):
        yield value


def test_config_shows_paths_only_to_an_allowed_curve_key(start_daemon, keys, tmp_path):
    snapshots = tmp_path / "snapshots"
    plain = start_daemon("--snapshot-dir", str(snapshots))
    with Client(plain.request, timeout=WAIT) as client:
        config = client.config()
    assert config["daemon"]["snapshot_dir"] == "<redacted>"
    assert config["daemon"]["curve_secret_key"] is None and config["daemon"]["insecure"] is False
    assert config["daemon"]["request_endpoint"] == plain.request      # endpoints stay
    leaked = [s for s in walk_strings(config) if s.startswith("/") or str(tmp_path) in s]
    assert leaked == []
    # The raw protocol says the same (no client-side filtering).
    assert plain.request_once({"v": 1, "op": "config"})["result"]["daemon"]["snapshot_dir"] == \
        "<redacted>"
    secured = start_curve_daemon(start_daemon, keys, "--snapshot-dir", str(snapshots / "2"))
    with Client(secured.request, timeout=WAIT, **keys.client()) as client:
        daemon = client.config()["daemon"]
    assert daemon["snapshot_dir"] == str(snapshots / "2")
    assert daemon["curve_secret_key"] == str(keys.secret("server"))
    assert daemon["curve_allow"] == str(keys.allow)


def test_redaction_rules():
    settings = DaemonConfig(snapshot_dir="snaps", train_endpoint="ipc:///run/x/train.sock",
                            request_endpoint="tcp://127.0.0.1:5556",
                            http_endpoint="127.0.0.1:9100").to_dict()
    settings["future_path_setting"] = "/etc/secret/place"
    out = auth.redacted(settings)
    assert out["snapshot_dir"] == "<redacted>"                 # a path field, even relative
    assert out["train_endpoint"] == "ipc://<redacted>"
    assert out["request_endpoint"] == "tcp://127.0.0.1:5556"
    assert out["http_endpoint"] == "127.0.0.1:9100"
    assert out["future_path_setting"] == "<redacted>"          # any absolute path
    assert out["curve_allow"] is None
    assert {k: v for k, v in out.items() if k not in ("snapshot_dir", "train_endpoint",
                                                      "future_path_setting")} == \
        {k: v for k, v in settings.items() if k not in ("snapshot_dir", "train_endpoint",
                                                        "future_path_setting")}


def test_snapshot_and_swap_show_paths_to_an_allowed_curve_key(start_daemon, keys, tmp_path):
    """The counterpart of test_admission's redaction test: a listed key
    sees the paths (under CURVE every admitted requester is one)."""
    snapshots = tmp_path / "snapshots"
    daemon = start_curve_daemon(start_daemon, keys, "--snapshot-dir", str(snapshots))
    with Client(daemon.request, timeout=WAIT, **keys.client()) as client:
        client.learn([{"label": 1, "features": {"2": 1.0}}])
        snap = client.snapshot()
        assert snap["path"] == str(snapshots / "default" / snap["file"])
        client.create("other")
        assert client.swap("other", snap["path"])["path"] == snap["path"]
        with pytest.raises(DaemonError) as err:
            client.swap("other", tmp_path / "none.ol1")
        assert str(tmp_path / "none.ol1") in str(err.value)


def test_redact_text_hides_absolute_paths_and_ipc_endpoints_only():
    text = ("/srv/a b.ol1: [Errno 13] Permission denied: '/srv/x/y.ol1'; ipc:///run/t.sock, "
            "tcp://127.0.0.1:5556, 3/4 done, ~/models/m.ol1, http://h:1/metrics")
    assert auth.redact_text(text) == (
        "<redacted> b.ol1: [Errno 13] Permission denied: '<redacted>'; ipc://<redacted>, "
        "tcp://127.0.0.1:5556, 3/4 done, <redacted>, http://h:1/metrics")


# ================================================= leftovers of issue 15

@pytest.mark.parametrize("mechanism", ["NULL", "PLAIN"])
def test_attempts_without_curve_are_counted_in_auth_refused(start_daemon, keys, mechanism):
    """libzmq refuses a NULL or PLAIN client of a CURVE socket before it
    asks ZAP (a mechanism mismatch): counted from the socket monitor.  The
    daemon's monitor says so (PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) when
    it read the client's greeting before the client hung up, and only
    HANDSHAKE_FAILED_NO_DETAIL (EPIPE, ECONNRESET) otherwise: a race, so
    both must count (transport.CurveGate); each client here hangs up at
    its first failure, the case that loses the race most often."""
    daemon = start_curve_daemon(start_daemon, keys)
    before = stats_of(daemon, keys)["daemon"]["auth_refused"]
    # Two attempts as two clients would make them: a context each.
    for kind, endpoint in ((zmq.DEALER, daemon.request), (zmq.PUSH, daemon.train)):
        ctx = zmq.Context()
        try:
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            if mechanism == "PLAIN":
                sock.setsockopt(zmq.PLAIN_USERNAME, b"admin")
                sock.setsockopt(zmq.PLAIN_PASSWORD, b"admin")
            monitor = sock.get_monitor_socket()
            sock.connect(endpoint)
            wait_handshake_failure(sock, monitor)
            sock.close(linger=0)
        finally:
            ctx.destroy(linger=0)
    stats = wait_for(lambda: stats_of(daemon, keys),
                     lambda s: s["daemon"]["auth_refused"] >= before + 2, WAIT,
                     "the two attempts without CURVE counted")
    assert stats["examples"] == 0
    # The first refusal is logged (later ones within a second are held).
    assert re.search(r"CURVE: refused a connection from \(address not known\): handshake failed "
                     r"\((mechanism mismatch|the connection ended before the handshake "
                     r"completed, E[A-Z]+)\): a client without CURVE \(NULL or PLAIN\) or "
                     r"with another server key", daemon.log())


def test_a_connection_that_hangs_up_in_the_handshake_is_counted(start_daemon, keys):
    """The no-detail side of the race above, made certain: a TCP client
    that reads the daemon's greeting and hangs up without sending one
    (what a NULL client that lost the race looks like to the daemon)."""
    daemon = start_curve_daemon(start_daemon, keys)
    before = stats_of(daemon, keys)["daemon"]["auth_refused"]
    host, port = daemon.request[len("tcp://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as raw:
        assert raw.recv(10)[:1] == b"\xff"          # the ZMTP signature's first byte
    wait_for(lambda: stats_of(daemon, keys), lambda s: s["daemon"]["auth_refused"] >= before + 1,
             WAIT, "the hang-up counted")
    assert "the connection ended before the handshake completed" in daemon.log()


def test_sighup_reads_the_allow_list_again(start_daemon, keys):
    daemon = start_curve_daemon(start_daemon, keys)
    with Client(daemon.request, timeout=0.5, **keys.client("stranger")) as stranger:
        with pytest.raises(DaemonTimeout):
            stranger.health()
    # The operator adds the stranger's key and sends SIGHUP.
    (keys.allow / "stranger.pub").write_bytes(keys.public("stranger").read_bytes())
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(daemon.log, lambda log: "SIGHUP: curve_allow read again: 2 client key(s) admitted"
             in log, WAIT, "the reload logged")
    with Client(daemon.request, timeout=WAIT, **keys.client("stranger")) as welcome:
        assert welcome.health()["status"] == "ok"
    # A broken allow list is refused whole: the keys in force stay.
    (keys.allow / "stranger.pub").write_text("not a key\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(daemon.log, lambda log: "the allow list is unchanged" in log, WAIT,
             "the failed reload logged")
    with Client(daemon.request, timeout=WAIT, **keys.client("stranger")) as still:
        assert still.health()["status"] == "ok"
    # Removing a key: refused from the next handshake on.
    (keys.allow / "stranger.pub").unlink()
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(daemon.log, lambda log: "SIGHUP: curve_allow read again: 1 client key(s) admitted"
             in log, WAIT, "the second reload logged")
    with Client(daemon.request, timeout=0.5, **keys.client("stranger")) as gone:
        with pytest.raises(DaemonTimeout):
            gone.health()
    assert daemon.proc.poll() is None


def test_clients_with_the_right_keys_are_never_counted(start_daemon, keys):
    """CurveGate counts a handshake that ends with no detail: clients with
    the allowed key, opened and closed at once, complete theirs and are
    not counted."""
    daemon = start_curve_daemon(start_daemon, keys)
    for _ in range(10):
        with Client(daemon.request, timeout=WAIT, **keys.client()) as client:
            assert client.health()["status"] == "ok"
        with Producer(daemon.train, **keys.client()) as producer:
            producer.add({"x": 1.0}, 1)
    stats = wait_for(lambda: stats_of(daemon, keys), lambda s: s["examples"] == 10, WAIT,
                     "the ten examples learned")
    assert stats["daemon"]["auth_refused"] == 0
