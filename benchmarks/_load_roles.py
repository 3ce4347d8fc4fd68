"""The processes of benchmarks/loadgen.py, one role each, spawned by its
parent: producers, prediction clients, and the misbehaving clients
(silent, garbage, churn).  Each waits for ``go``, runs until the run's
end (or ``stop``), reports one bucket of counters per interval on the
queue, then a final ``done`` message."""
from __future__ import annotations

import collections
import math
import multiprocessing as mp
import signal
import time
import traceback

import numpy as np

from _load_data import LoadError, RowSource, predict_rows


class Reporter:
    """Counters of one process, sent to the parent as one bucket per
    interval: ``("bucket", role, index, bucket, counters)``."""

    def __init__(self, out: mp.Queue, role: str, index: int, t0: float, cfg: dict) -> None:
        self.out, self.role, self.index = out, role, index
        self.t0, self.interval = t0, cfg["interval"]
        self.buckets = cfg["buckets"]
        self.bucket = 0
        self.counts: collections.Counter = collections.Counter()
        self.latencies_ns: list[int] = []
        self.lag_s = 0.0

    def boundary(self) -> float:
        """When the current bucket ends (monotonic clock)."""
        return self.t0 + (self.bucket + 1) * self.interval

    def tick(self, now: float) -> None:
        """Send every bucket that ``now`` has passed (not the last one:
        ``finish`` sends it)."""
        while self.bucket < self.buckets - 1 and now >= self.boundary():
            self._send()

    def finish(self) -> None:
        while self.bucket < self.buckets:
            self._send()

    def _send(self) -> None:
        payload = {"counts": dict(self.counts), "lag_s": self.lag_s}
        if self.role == "predictor":
            payload["latencies_us"] = np.array(self.latencies_ns, dtype=np.float64) / 1000.0
        self.out.put(("bucket", self.role, self.index, self.bucket, payload))
        self.bucket += 1
        self.counts = collections.Counter()
        self.latencies_ns = []
        self.lag_s = 0.0


def child_main(kind: str, cfg: dict, index: int, out: mp.Queue, go, stop, t0) -> None:
    """A spawned process: run the role ``kind``, ignoring Ctrl-C (the
    parent stops us through ``stop``); report a failure on the queue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ROLES[kind](cfg, index, out, go, stop, t0)
    except BaseException:
        out.put(("error", kind, index, traceback.format_exc()))
        raise SystemExit(1)


def _start(out: mp.Queue, role: str, index: int, go, t0) -> float:
    out.put(("ready", role, index, None))
    if not go.wait(300):
        raise LoadError("no go within 300 s")
    return t0.value


def producer(cfg: dict, index: int, out: mp.Queue, go, stop, t0v) -> None:
    from onlinel1.client import Producer, ProducerTimeout
    source = RowSource(cfg, cfg["seed"] + 1000 + index)
    name = f"loadgen-{cfg['run_id']}-{index}"
    rows = cfg["batch_rows"]
    prod = Producer(cfg["train"], batch_size=rows, producer=name, send_timeout=1.0)
    t0 = _start(out, "producer", index, go, t0v)
    rep = Reporter(out, "producer", index, t0, cfg)
    end = t0 + cfg["duration"]
    rate = cfg["train_rate"]
    batch, sent_batches = None, 0
    while not stop.is_set():
        now = time.monotonic()
        rep.tick(now)
        if now >= end:
            break
        if rate > 0:                       # paced: batch k leaves at t0 + k * rows / rate
            due = t0 + sent_batches * rows / rate
            if due > now:
                time.sleep(min(due - now, rep.boundary() - now, end - now) + 1e-4)
                continue
        if batch is None:
            batch = source.batch(rows)
        try:
            prod.send_batch(batch)
        except ProducerTimeout:            # held back a full second: sent later, not lost
            rep.counts["timeouts"] += 1
            continue
        rep.counts["batches"] += 1
        rep.counts["examples"] += batch.n_rows
        sent_batches += 1
        batch = None
    rep.finish()
    undelivered = False
    try:
        prod.close(linger=cfg["drain_timeout"])
    except ProducerTimeout:
        undelivered = True
    out.put(("done", "producer", index, {"name": name, "seq": prod.seq,
                                          "examples_sent": prod.examples_sent,
                                          "undelivered": undelivered}))


def predictor(cfg: dict, index: int, out: mp.Queue, go, stop, t0v) -> None:
    from onlinel1.client import Client, ClientError, DaemonError, DaemonTimeout
    rows = predict_rows(cfg, cfg["seed"] + 2000 + index)
    client = Client(cfg["request"], timeout=cfg["timeout"])
    t0 = _start(out, "predictor", index, go, t0v)
    rep = Reporter(out, "predictor", index, t0, cfg)
    end = t0 + cfg["duration"]
    rate = cfg["rate"]
    # Clients start spread over one period, not all at once.
    k = 0
    offset = (index / max(cfg["predictors"], 1)) / rate if rate > 0 else 0.0
    while not stop.is_set():
        now = time.monotonic()
        rep.tick(now)
        if now >= end:
            break
        if rate > 0:
            due = t0 + offset + k / rate
            if due > now:
                time.sleep(min(due - now, rep.boundary() - now, end - now) + 1e-5)
                continue
            rep.lag_s = max(rep.lag_s, now - due)
        row = rows[k % len(rows)]
        k += 1
        began = time.perf_counter_ns()
        try:
            reply = client.predict(row)
        except DaemonError as exc:
            rep.counts[f"error:{exc.code}"] += 1
            continue
        except DaemonTimeout:
            rep.counts["timeout"] += 1
            continue
        except ClientError:
            rep.counts["bad_reply"] += 1
            continue
        rep.latencies_ns.append(time.perf_counter_ns() - began)
        predictions = reply.get("predictions")
        if not (isinstance(predictions, list) and len(predictions) == 1
                and isinstance(predictions[0], float) and math.isfinite(predictions[0])):
            rep.counts["bad_reply"] += 1
        else:
            rep.counts["ok"] += 1
    rep.finish()
    client.close()
    out.put(("done", "predictor", index, {"requests": k}))


def _predict_frame(row, request_id: int) -> bytes:
    import msgpack
    from onlinel1.client import encode_csr
    return msgpack.packb({"v": 1, "op": "predict", "id": request_id, "csr": encode_csr(row)},
                         use_bin_type=True)


def _paced(rate: float, t0: float, k: int, now: float, rep: Reporter, end: float) -> bool:
    """Whether event ``k`` of a ``rate``/s schedule is due; if not, sleep
    toward it (never past the bucket's end or the run's)."""
    due = t0 + k / rate
    if due <= now:
        return True
    time.sleep(min(due - now, rep.boundary() - now, end - now) + 1e-4)
    return False


def silent(cfg: dict, index: int, out: mp.Queue, go, stop, t0v) -> None:
    """A DEALER that sends predict requests and never reads a reply."""
    import zmq
    rows = predict_rows(cfg, cfg["seed"] + 3000 + index)
    frames = [_predict_frame(row, i) for i, row in enumerate(rows[:256])]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cfg["request"])
    t0 = _start(out, "misbehaving", index, go, t0v)
    rep = Reporter(out, "misbehaving", index, t0, cfg)
    end = t0 + cfg["duration"]
    k = 0
    while not stop.is_set():
        now = time.monotonic()
        rep.tick(now)
        if now >= end:
            break
        if not _paced(cfg["misbehaving_rate"], t0, k, now, rep, end):
            continue
        try:
            sock.send(frames[k % len(frames)], zmq.NOBLOCK)
            rep.counts["sent"] += 1
        except zmq.Again:
            rep.counts["blocked"] += 1
        k += 1
    rep.finish()
    sock.close()
    ctx.term()
    out.put(("done", "misbehaving", index, {"kind": "silent"}))


def garbage_frames(cfg: dict, seed: int) -> tuple[list[list[bytes]], list[bytes]]:
    """(request messages, training frames), every one of them invalid.
    Each training frame must be rejected (and counted) by the daemon."""
    import msgpack
    from onlinel1.client import encode_csr
    pack = msgpack.Packer(use_bin_type=True).pack
    rng = np.random.default_rng(seed)
    row = RowSource(cfg, seed).batch(4)
    good_csr = encode_csr(row)
    short = dict(good_csr, indptr=good_csr["indptr"][:-8])          # one entry too few
    nan_labels = dict(good_csr, labels=np.full(4, np.nan).astype("<f8").tobytes())
    nested: object = 0
    for _ in range(200):
        nested = [nested]
    requests = [
        [b"\x00\xffnot msgpack at all"],
        [pack([1, 2, 3])],
        [pack({"op": "predict", "id": 1})],                          # no version
        [pack({"v": 99, "op": "stats", "id": 2})],
        [pack({"v": 1, "op": "frobnicate", "id": 3})],
        [pack({"v": 1, "op": "predict", "id": 4, "csr": short})],
        [pack({"v": 1, "op": "predict", "id": 5, "rows": "not a list"})],
        [pack({"v": 1, "op": "predict", "id": 6, "rows": [{"features": {"a": "b"}}]})],
        [pack({"v": 1, "op": "predict", "id": 7, "model": "../../etc", "rows": []})],
        [pack({"v": 1, "op": "predict", "id": 8, "model": "no-such-model", "rows": []})],
        [pack({"v": 1, "op": "predict", "id": 9, "csr": good_csr, "top_k": -3})],
        [pack({"v": 1, "op": "predict", "id": 10, "csr": {"indptr": 7}})],
        [pack({"v": 1, "op": "stats", "id": nested})],
        [b"two", b"frames"],
        [b""],
        [rng.bytes(int(rng.integers(1, 200)))],
        [rng.bytes(int(rng.integers(1, 200)))],
    ]
    training = [
        b"\x93\x01\x02",                                              # a msgpack list
        rng.bytes(64),
        pack({"v": 1, "op": "predict", "csr": good_csr}),             # unknown_op here
        pack({"v": 1, "op": "train"}),                                # no examples
        pack({"v": 1, "op": "train", "csr": short}),
        pack({"v": 1, "op": "train", "csr": nan_labels}),
        pack({"v": 1, "op": "train", "csr": good_csr, "seq": -1}),
        pack({"v": 1, "op": "train", "csr": good_csr, "model": "no-such-model"}),
        pack({"v": 2, "op": "train", "csr": good_csr}),
    ]
    return requests, training


def garbage(cfg: dict, index: int, out: mp.Queue, go, stop, t0v) -> None:
    """Bad frames on the request socket (reading the replies) and on the
    training socket (counted: each must show in ``stats`` ``rejected``)."""
    import msgpack
    import zmq
    requests, training = garbage_frames(cfg, cfg["seed"] + 4000 + index)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(cfg["request"])
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, int(cfg["drain_timeout"] * 1000))
    push.connect(cfg["train"])
    t0 = _start(out, "misbehaving", index, go, t0v)
    rep = Reporter(out, "misbehaving", index, t0, cfg)
    end = t0 + cfg["duration"]
    k = train_frames = 0
    while not stop.is_set():
        now = time.monotonic()
        rep.tick(now)
        while dealer.poll(0):
            reply = dealer.recv_multipart()[-1]
            try:
                msg = msgpack.unpackb(reply, raw=False, strict_map_key=False)
                code = msg["error"]["code"] if msg.get("ok") is False else "ok"
            except Exception:
                code = "unreadable"
            rep.counts[f"reply:{code}"] += 1
        if now >= end:
            break
        if not _paced(cfg["misbehaving_rate"], t0, k, now, rep, end):
            continue
        try:
            dealer.send_multipart(requests[k % len(requests)], zmq.NOBLOCK)
            rep.counts["requests"] += 1
        except zmq.Again:
            rep.counts["blocked"] += 1
        if k % 4 == 0:                     # a quarter of the rate on the training socket
            try:
                push.send(training[(k // 4) % len(training)], zmq.NOBLOCK)
                rep.counts["train_frames"] += 1
                train_frames += 1
            except zmq.Again:
                rep.counts["blocked"] += 1
        k += 1
    rep.finish()
    dealer.close()
    push.close()
    delivered = _term(ctx, cfg["drain_timeout"] + 5)
    out.put(("done", "misbehaving", index, {"kind": "garbage", "train_frames": train_frames,
                                             "undelivered": not delivered}))


def _term(ctx, timeout: float) -> bool:
    """``ctx.term()`` (which waits for the queued messages to be delivered),
    in a thread; whether it returned within ``timeout``."""
    import threading
    thread = threading.Thread(target=ctx.term, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def churn(cfg: dict, index: int, out: mp.Queue, go, stop, t0v) -> None:
    """Connect, send a request, disconnect (reading the reply every other
    time), in a loop; every fifth turn also a training connection that
    goes away without sending."""
    import msgpack
    import zmq
    stats = msgpack.packb({"v": 1, "op": "health", "id": 1})
    ctx = zmq.Context()
    t0 = _start(out, "misbehaving", index, go, t0v)
    rep = Reporter(out, "misbehaving", index, t0, cfg)
    end = t0 + cfg["duration"]
    k = 0
    while not stop.is_set():
        now = time.monotonic()
        rep.tick(now)
        if now >= end:
            break
        if not _paced(cfg["misbehaving_rate"], t0, k, now, rep, end):
            continue
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(cfg["request"])
        sock.send(stats)
        rep.counts["connects"] += 1
        if k % 2 == 0 and sock.poll(100):
            sock.recv()
            rep.counts["replies"] += 1
        sock.close()
        if k % 5 == 0:
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.connect(cfg["train"])
            push.close()
            rep.counts["train_connects"] += 1
        k += 1
    rep.finish()
    ctx.term()
    out.put(("done", "misbehaving", index, {"kind": "churn"}))


ROLES = {"producer": producer, "predictor": predictor, "silent": silent, "garbage": garbage,
         "churn": churn}
