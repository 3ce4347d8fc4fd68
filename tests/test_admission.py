"""Admission control and memory bounds (issue 15: findings F3 and F5, and
the CURVE leftovers that are not about keys; see test_curve.py for those).

* F3 "memory has no overall bound": each socket holds at most
  ``max_connections`` connections (a handshake past it is refused,
  counted, and the peer gets in once a slot frees); the worst case is a
  formula of the settings, printed by ``serve --check`` and reported in
  ``stats``; a client that never reads holds at most ``high_water_mark``
  replies (the others are dropped and counted), and a reply over
  ``max_message_bytes`` becomes a ``too_large`` error.
* F5 "a frame over 4x the limit silently loses later valid batches": the
  Python Producer and Client refuse to send a message over their
  ``max_message_bytes``, so a well-behaved producer never loses its
  connection; a frame between 1x and 2x is rejected alone (the batches
  after it on the same connection are learned); a larger one drops the
  connection, which is counted (``oversized_disconnects``).
* ``snapshot``, ``swap`` and ``drop`` replies redact paths for a requester
  that is not a listed CURVE key (without CURVE: everyone).
* ``admission.Census``, the connection count from libzmq's monitor
  events, never counts fewer connections than there are, and is exact
  once the handshakes are over (a simulation of libzmq's event order).

Every daemon binds free loopback ports and is reaped; every wait is
bounded and waits for an observable event (a counter, a reply, a monitor
event).
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from onlinel1 import Batch
from onlinel1.client import Client, DaemonError, MessageTooLarge, Producer
from onlinel1.server import admission
from onlinel1.server.config import DaemonConfig

from conftest import SAMPLES, csr_fields, free_ports, load_svmlight, wait_for

WAIT = 20.0
MiB = 1 << 20
ROWS = 100


@pytest.fixture(scope="module")
def batches():
    X, y = load_svmlight(SAMPLES / "a9a_head2000.svm")
    whole = Batch.from_csr(X, y)
    return [whole.slice(i, i + ROWS) for i in range(0, whole.n_rows, ROWS)]


def train_frame(batch: Batch, seq: int) -> bytes:
    return msgpack.packb({"v": 1, "producer": "raw", "seq": seq, "csr": csr_fields(batch)})


def daemon_stats(daemon) -> dict:
    with Client(daemon.request, timeout=WAIT) as client:
        return client.stats()


def raw_socket(ctx: zmq.Context, kind: int, endpoint: str, **options) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.connect(endpoint)
    return sock


def handshake_outcome(monitor: zmq.Socket) -> int:
    """The first handshake event a client socket's monitor reports."""
    wanted = (zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
              zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    while True:
        if not monitor.poll(int(WAIT * 1000)):
            raise TimeoutError("no handshake within the wait")
        event = recv_monitor_message(monitor)["event"]
        if event in wanted:
            return event


def answered(sock: zmq.Socket, request: dict) -> dict:
    sock.send(msgpack.packb(request))
    assert sock.poll(int(WAIT * 1000)), f"no reply to {request}"
    return msgpack.unpackb(sock.recv(), raw=False)


# ======================================================= F3: connections

def test_connections_past_max_connections_are_refused_counted_and_get_in_later(start_daemon):
    """F3: 500 clients that never read held 539 MiB; now a socket holds at
    most max_connections and refuses the rest at the handshake."""
    daemon = start_daemon("--max-connections", "3")
    ctx = zmq.Context()
    try:
        held = []
        for i in range(3):
            sock = raw_socket(ctx, zmq.DEALER, daemon.request)
            assert answered(sock, {"v": 1, "op": "health", "id": i})["ok"]
            held.append(sock)
        # A fourth: its handshake is refused (the daemon's ZAP handler says
        # 300, a temporary failure), so its request waits in its own queue
        # while it reconnects.
        late = ctx.socket(zmq.DEALER)
        late.setsockopt(zmq.LINGER, 0)
        monitor = late.get_monitor_socket()
        late.connect(daemon.request)
        late.send(msgpack.packb({"v": 1, "op": "health", "id": 99}))
        assert handshake_outcome(monitor) != zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert late.poll(0) == 0
        stats = answered(held[0], {"v": 1, "op": "stats", "id": 5})["result"]["daemon"]
        assert stats["connections"]["requests"]["open"] == 3
        assert stats["connections"]["requests"]["max"] == 3
        assert stats["connections_refused"] >= 1
        assert stats["connections"]["requests"]["refused"] == stats["connections_refused"]
        # A slot frees: the waiting client gets in at a retry, and its
        # request (queued on its side all along) is answered.
        held.pop().close()
        assert late.poll(int(WAIT * 1000)), "the refused client never got in"
        assert msgpack.unpackb(late.recv(), raw=False)["id"] == 99
        stats = answered(held[0], {"v": 1, "op": "stats", "id": 6})["result"]["daemon"]
        assert stats["connections"]["requests"]["open"] == 3
        monitor.close()
        late.close()
        for sock in held:
            sock.close()
    finally:
        ctx.destroy(linger=0)
    # Logged, rate-limited.
    log = daemon.log()
    assert "requests socket: refused a connection from 127.0.0.1: it holds 3, its " \
           "max_connections" in log
    assert log.count("refused a connection from") <= stats["connections_refused"]


def test_the_training_socket_has_its_own_bound(start_daemon, batches):
    daemon = start_daemon("--max-connections", "1")
    ctx = zmq.Context()
    try:
        first = raw_socket(ctx, zmq.PUSH, daemon.train)
        first.send(train_frame(batches[0], 1))
        wait_for(lambda: daemon_stats(daemon), lambda s: s["examples"] == ROWS, WAIT,
                 "the first producer's batch")
        second = ctx.socket(zmq.PUSH)
        second.setsockopt(zmq.LINGER, 0)
        monitor = second.get_monitor_socket()
        second.connect(daemon.train)
        second.send(train_frame(batches[1], 1), zmq.NOBLOCK)
        assert handshake_outcome(monitor) != zmq.EVENT_HANDSHAKE_SUCCEEDED
        stats = daemon_stats(daemon)
        assert stats["examples"] == ROWS
        training = stats["daemon"]["connections"]["training"]
        assert training["open"] == 1 and training["max"] == 1
        # (the request socket's own refusals: the stats clients take turns)
        assert 1 <= training["refused"] <= stats["daemon"]["connections_refused"]
        # The first producer leaves: the second gets in, and its batch is learned.
        first.close()
        wait_for(lambda: daemon_stats(daemon), lambda s: s["examples"] == 2 * ROWS, WAIT,
                 "the second producer's batch, once the first left")
        monitor.close()
        second.close()
    finally:
        ctx.destroy(linger=0)


def test_max_connections_is_range_checked():
    for bad in (0, -1, 1 << 17, True, 2.5):
        with pytest.raises(ValueError, match="max_connections must be an integer from 1 to "
                                             "65536"):
            DaemonConfig(max_connections=bad)
    out = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check",
                          "--max-connections", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "max_connections must be an integer from 1" in out.stderr


# ======================================================= F3: the figure

def expected_bound(max_message_bytes: int, hwm: int, conns: int, training: bool = True,
                   max_reply_bytes: int | None = None) -> int:
    """README "Admission and memory bounds", written out independently:
    per socket, every connection holds HWM + 1 frames of at most twice
    max_message_bytes, the request socket's HWM + 1 replies of at most
    the reply cap (the smaller of max_reply_bytes and max_message_bytes),
    and the loop one frame per socket."""
    frame = 2 * max_message_bytes
    sockets = 2 if training else 1
    reply = min(max_message_bytes, max_reply_bytes or max_message_bytes)
    return (sockets * (conns * (hwm + 1) * frame + frame)
            + conns * (hwm + 1) * reply)


def test_one_reply_cap_bounds_every_reply_and_the_memory_bound():
    """Issue 15 leftover: predict capped its replies at max_reply_bytes,
    the transport every reply at max_message_bytes, and the memory bound
    counted max_message_bytes: two caps that disagreed."""
    small = DaemonConfig(max_reply_bytes=1 << 20)
    assert admission.reply_cap(small) == 1 << 20
    assert admission.reply_cap_setting(small) == "max_reply_bytes"
    assert admission.memory_bound(small, True)["total"] == expected_bound(
        small.max_message_bytes, small.high_water_mark, small.max_connections,
        max_reply_bytes=1 << 20)
    tight = DaemonConfig(max_message_bytes=1 << 16)
    assert admission.reply_cap(tight) == 1 << 16
    assert admission.reply_cap_setting(tight) == "max_message_bytes"


def test_a_stats_reply_over_max_reply_bytes_is_too_large(start_daemon, tmp_path):
    """Not only predict's replies: any reply beyond the cap is refused."""
    config = tmp_path / "small-replies.toml"
    config.write_text("[daemon]\nmax_reply_bytes = 200\n")
    daemon = start_daemon("--config", str(config))
    ctx = zmq.Context()
    try:
        sock = raw_socket(ctx, zmq.DEALER, daemon.request)
        reply = answered(sock, {"v": 1, "op": "stats", "id": 3})
        assert reply["ok"] is False and reply["error"]["code"] == "too_large"
        assert "more than max_reply_bytes (200)" in reply["error"]["message"]
        assert answered(sock, {"v": 1, "op": "health", "id": 4})["ok"]
        sock.close()
    finally:
        ctx.destroy(linger=0)


def test_the_worst_case_is_printed_by_check_and_reported_in_stats(start_daemon):
    # The defaults: a sane figure on a 24 GiB machine.
    d = DaemonConfig()
    default = expected_bound(d.max_message_bytes, d.high_water_mark, d.max_connections)
    assert default == admission.memory_bound(d, True)["total"]
    train, request = free_ports(2)
    out = subprocess.run([sys.executable, "-m", "onlinel1", "serve", "--check",
                          "--train-endpoint", f"tcp://127.0.0.1:{train}",
                          "--request-endpoint", f"tcp://127.0.0.1:{request}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"memory bound: queued input and unsent replies take at most 60.25 GiB " \
           f"({default} bytes)" in out.stderr
    # Settings move it as the formula says.
    daemon = start_daemon("--max-connections", "5", "--high-water-mark", "3",
                          "--max-message-bytes", str(MiB))
    bound = daemon_stats(daemon)["daemon"]["memory_bound_bytes"]
    assert bound["total"] == expected_bound(MiB, 3, 5)
    assert bound["replies"] == 5 * 4 * MiB


# ======================================================= F3: replies

def zero_feature_rows(n: int) -> dict:
    """A predict request's csr map of ``n`` rows without features."""
    return {"indptr": np.zeros(n + 1, "<i8").tobytes(), "keys": b"", "values": b""}


def test_a_client_that_never_reads_holds_at_most_its_high_water_mark_of_replies(start_daemon):
    """F3: replies to a client that never reads piled up without bound;
    now what cannot be queued is dropped and counted (ROUTER_MANDATORY)."""
    daemon = start_daemon("--max-message-bytes", str(2 * MiB), "--high-water-mark", "2")
    n_requests, rows = 40, 200_000        # replies of 1.8 MB each, never read for now
    ctx = zmq.Context()
    try:
        sock = raw_socket(ctx, zmq.DEALER, daemon.request, RCVHWM=1, SNDHWM=1000)
        request = {"v": 1, "op": "predict", "csr": zero_feature_rows(rows)}
        for i in range(n_requests):
            sock.send(msgpack.packb({**request, "id": i}))
        stats = wait_for(lambda: daemon_stats(daemon),
                         lambda s: s["requests"].get("predict") == n_requests, WAIT * 3,
                         "every predict request served")
        dropped = stats["daemon"]["replies_dropped"].get("full", 0)
        assert dropped >= 1, stats["daemon"]
        # What was not dropped arrives, whole, once the client reads.
        received = []
        while len(received) + dropped < n_requests:
            assert sock.poll(int(WAIT * 1000)), (len(received), dropped)
            reply = msgpack.unpackb(sock.recv(), raw=False)
            assert reply["ok"] and len(reply["result"]["predictions"]) == rows
            received.append(reply["id"])
        assert sock.poll(200) == 0
        assert received == sorted(received) and len(set(received)) == len(received)
        sock.close()
    finally:
        ctx.destroy(linger=0)
    assert "a reply was dropped: the client's queue holds 2 replies it has not read" in \
        daemon.log()


def test_a_reply_over_max_message_bytes_becomes_a_too_large_error(start_daemon):
    limit = 100_000
    daemon = start_daemon("--max-message-bytes", str(limit))
    rows = 11_760              # the request fits (8 bytes a row), its reply does not (9)
    request = msgpack.packb({"v": 1, "op": "predict", "id": 7, "csr": zero_feature_rows(rows)})
    assert len(request) <= limit
    ctx = zmq.Context()
    try:
        sock = raw_socket(ctx, zmq.DEALER, daemon.request)
        sock.send(request)
        assert sock.poll(int(WAIT * 1000))
        reply = msgpack.unpackb(sock.recv(), raw=False)
        assert reply["id"] == 7 and reply["ok"] is False, reply
        assert reply["error"]["code"] == "too_large"
        assert re.search(r"the reply would be \d+ bytes, more than max_message_bytes \(100000\)",
                         reply["error"]["message"])
        # Smaller asks are answered.
        assert answered(sock, {"v": 1, "op": "predict", "id": 8,
                               "csr": zero_feature_rows(100)})["ok"]
        sock.close()
    finally:
        ctx.destroy(linger=0)
    # One reply cap (admission.reply_cap): predict refuses the reply before
    # it builds it, so the transport drops nothing.
    stats = daemon_stats(daemon)
    assert stats["daemon"]["replies_dropped"] == {}
    assert stats["errors"] == {"too_large": 1}


# ======================================================= F5: oversized frames

def test_a_frame_over_the_cap_is_counted_and_a_producers_later_batches_all_arrive(
        start_daemon, batches):
    """F5: a frame over 4x the limit dropped the connection and, in 2 of 4
    runs, the next 20 batches of that producer; nothing was counted."""
    daemon = start_daemon("--max-message-bytes", str(MiB))
    ctx = zmq.Context()
    try:
        raw = raw_socket(ctx, zmq.PUSH, daemon.train)
        raw.send(b"\x00" * (3 * MiB))     # over the cap of 2 x max_message_bytes
        stats = wait_for(lambda: daemon_stats(daemon),
                         lambda s: s["daemon"]["oversized_disconnects"] >= 1, WAIT,
                         "the dropped connection counted")
        raw.close()
    finally:
        ctx.destroy(linger=0)
    assert stats["daemon"]["oversized_disconnects"] == 1
    assert stats["daemon"]["connections"]["training"]["oversized_disconnects"] == 1
    # A Producer refuses, on its side, what the daemon would not take ...
    with Producer(daemon.train, producer="p", batch_size=40_000, max_message_bytes=MiB,
                  linger=WAIT, send_timeout=WAIT) as producer:
        n, per_row = 40_000, 4                 # 160,000 features: 2.8 MB encoded
        too_big = Batch(np.arange(0, n * per_row + 1, per_row, dtype=np.int64),
                        np.arange(n * per_row, dtype=np.uint64), np.ones(n * per_row),
                        np.ones(n))
        with pytest.raises(MessageTooLarge, match=r"batch seq 1 of 40000 examples encodes to "
                                                  r"\d+ bytes, more than max_message_bytes "
                                                  r"\(1048576\); it was not sent"):
            producer.send_batch(too_big)
        assert producer.seq == 0
        # ... and its 20 batches after it are all learned.
        for batch in batches:
            producer.send_batch(batch)
    stats = wait_for(lambda: daemon_stats(daemon), lambda s: s["examples"] == 20 * ROWS, WAIT,
                     "the 20 batches after the oversized one")
    assert stats["producers"] == {"p": 20} and stats["rejected"] == {}
    assert stats["daemon"]["oversized_disconnects"] == 1
    assert "training socket: a connection was dropped by ZeroMQ: a frame over the cap " \
           "(MAXMSGSIZE); the peer's later messages on it are lost" in daemon.log()


def test_a_frame_up_to_twice_the_limit_is_rejected_alone_and_the_batches_after_it_learned(
        start_daemon, batches):
    """The allowance: between 1x and 2x max_message_bytes a frame is read
    and refused (too_large), and the connection with what follows is kept."""
    daemon = start_daemon("--max-message-bytes", str(MiB))
    ctx = zmq.Context()
    try:
        raw = raw_socket(ctx, zmq.PUSH, daemon.train, SNDHWM=1000)
        raw.send(b"\x00" * (MiB + MiB // 2))
        for seq, batch in enumerate(batches, 1):
            raw.send(train_frame(batch, seq))
        stats = wait_for(lambda: daemon_stats(daemon), lambda s: s["examples"] == 20 * ROWS,
                         WAIT, "the 20 batches after the too-large one")
        raw.close()
    finally:
        ctx.destroy(linger=0)
    assert stats["rejected"] == {"too_large": 1}
    assert stats["producers"] == {"raw": 20}
    assert stats["daemon"]["oversized_disconnects"] == 0


def test_the_client_refuses_a_request_over_its_max_message_bytes(start_daemon):
    daemon = start_daemon("--max-message-bytes", str(MiB))
    with Client(daemon.request, timeout=WAIT, max_message_bytes=MiB) as client:
        with pytest.raises(MessageTooLarge, match=r"the predict request encodes to \d+ bytes, "
                                                  r"more than max_message_bytes \(1048576\)"):
            client.request("predict", csr=zero_feature_rows(200_000))
        assert client.health()["status"] == "ok"
        assert client.stats()["daemon"]["oversized_disconnects"] == 0
    for bad in (0, -5, True, 1.5):
        with pytest.raises(ValueError, match="max_message_bytes must be an integer >= 1"):
            Client("tcp://127.0.0.1:1", max_message_bytes=bad)
        with pytest.raises(ValueError, match="max_message_bytes must be an integer >= 1"):
            Producer("tcp://127.0.0.1:1", max_message_bytes=bad)


# ======================================================= redaction

def test_snapshot_swap_and_drop_replies_redact_paths_for_anyone_not_a_listed_key(
        start_daemon, batches, tmp_path):
    snaps = tmp_path / "snaps"
    daemon = start_daemon("--snapshot-dir", str(snaps))
    with Client(daemon.request, timeout=WAIT) as client:
        client.learn(batches[0])
        snap = client.snapshot()
        assert snap["path"] == "<redacted>" and (snaps / "default" / snap["file"]).is_file()
        assert str(tmp_path) not in repr(snap)
        client.create("other")
        swapped = client.swap("other", snaps / "default" / snap["file"])
        assert swapped["path"] == "<redacted>" and swapped["examples"] == ROWS
        missing = tmp_path / "secret" / "none.ol1"
        with pytest.raises(DaemonError) as err:
            client.swap("other", missing)
        assert err.value.code == "bad_request" and str(tmp_path) not in str(err.value)
        assert "<redacted>: no such file or directory" in str(err.value)
        dropped = client.drop("other")
        assert str(tmp_path) not in repr(dropped)


# ======================================================= the census

class Simulation:
    """Connections going through libzmq's handshake with the events it
    emits (in its order, per connection), interleaved at random; checks
    that the census never counts fewer than the connections the daemon
    holds (admitted: handshake over, or ZAP said yes)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.census = admission.Census()
        self.fds = iter(range(10, 10_000))
        self.conns: dict[int, str] = {}     # fd -> state

    def true_held(self) -> int:
        return sum(state in ("admitted", "live") for state in self.conns.values())

    def step(self) -> None:
        c, rng = self.census, self.rng
        choice = rng.random()
        if choice < 0.25 or not self.conns:
            fd = next(self.fds)
            self.conns[fd] = "new"
            c.event(zmq.EVENT_ACCEPTED, fd)
            return
        fd = rng.choice(list(self.conns))
        state = self.conns[fd]
        if state == "new":
            kind = rng.random()
            if kind < 0.6:                      # ZAP is asked
                if rng.random() < 0.8:
                    c.admitted()
                    self.conns[fd] = "admitted"
                else:
                    self.conns[fd] = "refusing"
            elif kind < 0.8:                    # fails before ZAP, with an event
                c.event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0x11000001)
                c.event(zmq.EVENT_DISCONNECTED, fd)
                del self.conns[fd]
            else:                               # an old ZMTP peer: no event at all
                c.event(zmq.EVENT_DISCONNECTED, fd)
                del self.conns[fd]
        elif state == "admitted":
            if rng.random() < 0.9:
                c.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
                self.conns[fd] = "live"
            else:                               # the peer left after ZAP said yes
                c.event(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104)
                c.event(zmq.EVENT_DISCONNECTED, fd)
                del self.conns[fd]
        elif state == "refusing":
            c.event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400)
            self.conns[fd] = "refused"
        elif state in ("refused", "live") and rng.random() < 0.5:
            c.event(zmq.EVENT_DISCONNECTED, fd)
            del self.conns[fd]


@pytest.mark.parametrize("seed", range(50))
def test_the_census_never_counts_low_and_is_exact_when_the_handshakes_are_over(seed):
    sim = Simulation(seed)
    for _ in range(2000):
        sim.step()
        assert sim.census.held >= sim.true_held(), (sim.conns, vars(sim.census))
    # Every handshake ends; then the count is exact.
    for fd, state in list(sim.conns.items()):
        if state == "admitted":
            sim.census.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
            sim.conns[fd] = "live"
        elif state == "new":
            sim.census.event(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104)
            sim.census.event(zmq.EVENT_DISCONNECTED, fd)
            del sim.conns[fd]
        elif state in ("refusing", "refused"):
            if state == "refusing":
                sim.census.event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400)
            sim.census.event(zmq.EVENT_DISCONNECTED, fd)
            del sim.conns[fd]
        assert sim.census.held >= sim.true_held()
    for fd in list(sim.conns):
        sim.census.event(zmq.EVENT_DISCONNECTED, fd)
        del sim.conns[fd]
        assert sim.census.held >= sim.true_held()
    assert sim.census.held == 0, vars(sim.census)


def test_the_census_is_exact_for_handshakes_one_at_a_time():
    c = admission.Census()
    for fd in (20, 21, 22):
        c.event(zmq.EVENT_ACCEPTED, fd)
        c.admitted()
        assert c.held == fd - 19
        c.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
    assert c.live == {20, 21, 22} and c.held == 3
    c.event(zmq.EVENT_ACCEPTED, 23)          # refused by ZAP: holds nothing
    c.event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 300)
    assert c.held == 3
    assert c.event(zmq.EVENT_DISCONNECTED, 23) == "handshake"
    assert c.event(zmq.EVENT_DISCONNECTED, 21) == "live"
    assert c.held == 2


def test_sighup_without_curve_changes_nothing(start_daemon):
    import signal
    daemon = start_daemon()
    os.kill(daemon.proc.pid, signal.SIGHUP)
    wait_for(lambda: daemon.log(), lambda log: "SIGHUP: nothing to reload" in log, WAIT,
             "the SIGHUP logged")
    assert daemon_stats(daemon)["daemon"]["connections"]["requests"]["max"] == 64


def test_the_admission_counters_are_on_metrics(start_daemon):
    import urllib.request
    from conftest import free_port
    http = free_port()
    daemon = start_daemon("--max-connections", "1", "--http-endpoint", f"127.0.0.1:{http}")
    ctx = zmq.Context()
    try:
        held = raw_socket(ctx, zmq.DEALER, daemon.request)
        assert answered(held, {"v": 1, "op": "health", "id": 1})["ok"]
        late = ctx.socket(zmq.DEALER)
        late.setsockopt(zmq.LINGER, 0)
        monitor = late.get_monitor_socket()
        late.connect(daemon.request)
        assert handshake_outcome(monitor) != zmq.EVENT_HANDSHAKE_SUCCEEDED

        def metrics() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=WAIT) as r:
                return r.read().decode()
        text = wait_for(metrics, lambda t: re.search(
            r'(?m)^onlinel1_connections_refused_total [1-9]', t), WAIT, "the refusal on /metrics")
        assert re.search(r'(?m)^onlinel1_connections\{socket="requests"\} 1\.0$', text)
        assert re.search(r'(?m)^onlinel1_oversized_disconnects_total 0\.0$', text)
        monitor.close()
        late.close()
        held.close()
    finally:
        ctx.destroy(linger=0)
