"""The memory the daemon's sockets hold at worst, measured against the
formula of ``onlinel1.server.admission.memory_bound`` (README, "Admission
and memory bounds").

1. libzmq alone (this libzmq): a PULL and a ROUTER with RCVHWM=H and
   MAXMSGSIZE=F, whose peers each send many frames of F bytes that nobody
   reads: the bytes held per connection, in frames (the formula says H+1).
   A ROUTER with SNDHWM=H sending R-byte replies (ROUTER_MANDATORY,
   non-blocking) to peers that never read: replies held per connection
   (formula: at most H+1; the rest are refused with EAGAIN).
2. A real ``onlinel1 serve`` with ``--max-message-bytes`` M and otherwise
   the defaults: ``--clients`` peers on the request socket that send
   predict requests with replies near M and never read, and
   ``--producers`` peers that push training frames of M bytes as fast as
   they can, all at once.  The daemon's peak resident memory (VmHWM) over
   its resident memory at rest, against the bound it reports in
   ``stats``; and how many peers were refused.

    python benchmarks/admission_memory.py --out benchmarks/results/admission-memory.md

Every peer is a local process or socket on 127.0.0.1; every run is bounded
in time.  The figures vary a little from run to run (the kernel's socket
buffers, allocator slack): the check is that the measured bytes stay under
the bound.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

import msgpack
import zmq

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


def rss_self() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def status_of(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def settle(probe, seconds: float = 30.0, quiet: float = 2.0) -> int:
    """``probe()`` once it has grown and then not changed for ``quiet``
    seconds (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    first = last = probe()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)        # sampling interval of a bounded measurement
        now = probe()
        if now != last:
            last, since = now, time.monotonic()
        elif last != first and time.monotonic() - since >= quiet:
            break
    return last


# ------------------------------------------------------------ libzmq alone

PEER = """
import sys, time, zmq
kind, endpoint, size, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = zmq.Context().socket(getattr(zmq, kind)); s.setsockopt(zmq.SNDHWM, 100000)
s.setsockopt(zmq.RCVHWM, 1); s.connect(endpoint)
frame = b"x" * size
for _ in range(count): s.send(frame, copy=False)
time.sleep(60)
"""


def input_held(kind: int, hwm: int, peers: int, frame: int) -> float:
    ctx = zmq.Context(io_threads=1)
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, frame)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    base = rss_self()
    procs = [subprocess.Popen([sys.executable, "-c", PEER,
                               "PUSH" if kind == zmq.PULL else "DEALER",
                               f"tcp://127.0.0.1:{port}", str(frame), str(3 * hwm + 5)])
             for _ in range(peers)]
    try:
        held = (settle(rss_self, 60, 4.0) - base) / frame / peers
    finally:
        for p in procs:
            p.kill()
            p.wait()
        ctx.destroy(linger=0)
    return held


def replies_held(hwm: int, peers: int, reply: int) -> tuple[float, float]:
    ctx = zmq.Context(io_threads=1)
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    procs = [subprocess.Popen([sys.executable, "-c", PEER, "DEALER", f"tcp://127.0.0.1:{port}",
                               "5", "1"]) for _ in range(peers)]
    try:
        ids = [sock.recv_multipart()[0] for _ in range(peers)]
        payload = bytearray(reply)
        base = rss_self()
        queued = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for identity in ids:
                try:
                    sock.send_multipart([identity, payload], zmq.NOBLOCK, copy=True)
                    queued += 1
                except zmq.Again:
                    pass
            time.sleep(0.01)    # pacing of the sender: the peers never read anyway
        held = (rss_self() - base) / reply / peers
    finally:
        for p in procs:
            p.kill()
            p.wait()
        ctx.destroy(linger=0)
    return held, queued / peers


# ---------------------------------------------------------- a real daemon

CLIENT = """
import sys, time, zmq, msgpack, numpy as np
endpoint, rows, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = zmq.Context().socket(zmq.DEALER); s.setsockopt(zmq.RCVHWM, 1); s.connect(endpoint)
csr = {"indptr": np.zeros(rows + 1, "<i8").tobytes(), "keys": b"", "values": b""}
for i in range(n):
    s.send(msgpack.packb({"v": 1, "op": "predict", "id": i, "csr": csr}))
time.sleep(60)
"""

PRODUCER = """
import sys, time, zmq, msgpack, numpy as np
endpoint, nnz, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = zmq.Context().socket(zmq.PUSH); s.setsockopt(zmq.SNDHWM, 100000); s.connect(endpoint)
rows = max(1, nnz // 100)
rng = np.random.default_rng(0)
csr = {"indptr": np.linspace(0, nnz, rows + 1).astype("<i8").tobytes(),
       "keys": rng.integers(0, 1 << 40, nnz, dtype="<u8").tobytes(),
       "values": np.ones(nnz, "<f8").tobytes(), "labels": np.ones(rows, "<f8").tobytes()}
frame = msgpack.packb({"v": 1, "op": "train", "csr": csr})
for i in range(n):
    s.send(frame, copy=False)
time.sleep(60)
"""


def free_ports(n: int) -> list[int]:
    import socket
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] not in ports:
                ports.append(s.getsockname()[1])
    return ports


def daemon_run(max_bytes: int, clients: int, producers: int, each: int) -> dict:
    train, request = (f"tcp://127.0.0.1:{p}" for p in free_ports(2))
    daemon = subprocess.Popen([sys.executable, "-m", "onlinel1", "serve", "--train-endpoint",
                               train, "--request-endpoint", request, "--max-message-bytes",
                               str(max_bytes), "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    probe = ctx.socket(zmq.DEALER)
    probe.setsockopt(zmq.LINGER, 0)
    probe.connect(request)

    def stats() -> dict:
        probe.send(msgpack.packb({"v": 1, "op": "stats"}))
        if not probe.poll(180_000):
            raise TimeoutError("no stats from the daemon")
        return msgpack.unpackb(probe.recv(), raw=False)["result"]

    procs = []
    try:
        bound = stats()["daemon"]["memory_bound_bytes"]["total"]
        rest = status_of(daemon.pid, "VmRSS")
        rows = (max_bytes - 200) // 9        # a reply of about max_message_bytes
        nnz = (max_bytes - 400) // 16         # a training frame of about max_message_bytes
        procs = [subprocess.Popen([sys.executable, "-c", CLIENT, request, str(rows), str(each)])
                 for _ in range(clients)]
        procs += [subprocess.Popen([sys.executable, "-c", PRODUCER, train, str(nnz), str(each)])
                  for _ in range(producers)]
        settle(lambda: status_of(daemon.pid, "VmHWM"), 60, 5.0)
        peak = status_of(daemon.pid, "VmHWM")
        s = stats()["daemon"]
        return {"bound": bound, "rest": rest, "peak": peak, "held": peak - rest,
                "refused": s["connections_refused"], "open": s["connections"],
                "replies_dropped": s["replies_dropped"]}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        probe.close()
        ctx.destroy(linger=0)
        daemon.terminate()
        daemon.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frame-mib", type=int, default=16)
    ap.add_argument("--daemon-max-mib", type=int, default=8)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--producers", type=int, default=12)
    ap.add_argument("--each", type=int, default=10,
                    help="requests per client and frames per producer")
    ap.add_argument("--out")
    args = ap.parse_args()
    F = args.frame_mib * MiB
    lines = [f"# Admission and memory bounds, measured "
             f"({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"libzmq {zmq.zmq_version()}, pyzmq {zmq.pyzmq_version()}, "
             f"{platform.machine()}, {os.cpu_count()} cores. "
             f"`python benchmarks/admission_memory.py {' '.join(sys.argv[1:])}`", "",
             "## libzmq alone", "",
             "| socket | HWM | peers | frame | held per connection | formula |",
             "|---|---|---|---|---|---|"]
    for kind, name in ((zmq.PULL, "PULL input"), (zmq.ROUTER, "ROUTER input")):
        for hwm, peers in ((2, 4), (5, 2)):
            held = input_held(kind, hwm, peers, F)
            lines.append(f"| {name} | {hwm} | {peers} | {args.frame_mib} MiB | {held:.2f} frames "
                         f"| {hwm + 1} |")
            print(lines[-1], flush=True)
    for hwm, peers in ((2, 4), (4, 6)):
        held, queued = replies_held(hwm, peers, F // 2)
        lines.append(f"| ROUTER replies (never read) | {hwm} | {peers} | {args.frame_mib // 2} "
                     f"MiB | {held:.2f} replies ({queued:.1f} queued, the rest EAGAIN) "
                     f"| at most {hwm + 1} |")
        print(lines[-1], flush=True)
    M = args.daemon_max_mib * MiB
    r = daemon_run(M, args.clients, args.producers, args.each)
    lines += ["", "## A daemon under load", "",
              f"`onlinel1 serve --max-message-bytes {M}` (defaults otherwise), "
              f"{args.clients} clients sending {args.each} predict requests each with replies "
              f"of about {args.daemon_max_mib} MiB and never reading, {args.producers} producers "
              f"pushing {args.each} training frames of about {args.daemon_max_mib} MiB each, all "
              f"at once.", "",
              "| bound (stats) | resident at rest | peak resident | peak - rest | refused "
              "connections | replies dropped |", "|---|---|---|---|---|---|",
              f"| {r['bound'] / MiB:.0f} MiB | {r['rest'] / MiB:.0f} MiB | "
              f"{r['peak'] / MiB:.0f} MiB | {r['held'] / MiB:.0f} MiB | {r['refused']} | "
              f"{r['replies_dropped']} |", "",
              f"Peak over rest within the bound: {r['held'] <= r['bound']}. "
              f"Connections at the end: {r['open']}."]
    print("\n".join(lines[-6:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
