"""End-to-end ingest rate of the C producer beside the Python Producer.

    python clients/c/bench/ingest.py [--rows 300000] [--repeat 3] [--data FILE]

Both read the same svmlight file (a9a tiled to --rows rows, written to a
temporary directory) and send it in columnar batches of 1,000 rows:

* C: ``clients/c/build/producer FILE`` (built here with make);
* Python: ``onlinel1.io.read_batches`` + ``onlinel1.client.Producer.send_batch``,
  in a fresh interpreter (its import time is not counted).

Two figures, each from --repeat runs (the median run and the best run):

* **end to end**: from the start of sending until a fresh daemon's stats
  show every example learned (the daemon is the same for both, so this is
  bounded by its learning rate);
* **client only**: the same file sent to a PULL socket that discards what
  it gets, until the producer has delivered everything (what the client
  itself costs: parsing, encoding, sending).

Only loopback endpoints are used; every process started is stopped.
"""
from __future__ import annotations

import argparse
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[3]
CDIR = ROOT / "clients" / "c"
SHARED_A9A = ROOT.parent / "shared" / "datasets" / "a9a" / "a9a.train.svm"
SAMPLE_A9A = ROOT / "tests" / "data" / "a9a_head2000.svm"
sys.path.insert(0, str(ROOT))     # onlinel1 from this checkout, installed or not

PY_PRODUCER = """
import sys, time
from onlinel1.client import Producer
from onlinel1.io import read_batches
endpoint, path = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
with Producer(endpoint, batch_size=1000, producer="py", send_timeout=120, linger=120) as p:
    for batch in read_batches(path, "svmlight", batch_size=1000):
        p.send_batch(batch)
print(time.perf_counter() - start, flush=True)
"""

SINK = """
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PULL)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    s.recv(copy=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiled(source: pathlib.Path, rows: int, directory: pathlib.Path) -> pathlib.Path:
    lines = [line for line in source.read_text().splitlines(keepends=True) if line.strip()]
    out = directory / f"tiled_{rows}.svm"
    with open(out, "w") as f:
        for i in range(rows):
            f.write(lines[i % len(lines)])
    return out


class Daemon:
    def __init__(self) -> None:
        from onlinel1.client import Client, DaemonTimeout
        self.train = f"tcp://127.0.0.1:{free_port()}"
        self.request = f"tcp://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onlinel1", "serve", "--train-endpoint", self.train,
             "--request-endpoint", self.request, "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        self.client = Client(self.request, timeout=1.0)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    self.client.health()
                    break
                except DaemonTimeout:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError("the daemon did not start") from None
        except BaseException:
            self.stop()
            raise

    def wait_examples(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.client.stats()["examples"] < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} examples not learned in {timeout} s")
            time.sleep(0.005)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def sink() -> tuple[subprocess.Popen, str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-c", SINK, endpoint], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc, endpoint


def run_c(producer: pathlib.Path, endpoint: str, data: pathlib.Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(producer), "-p", "c", "-t", "120000", endpoint, str(data)], check=True,
                   stderr=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - start


def start_python(endpoint: str, data: pathlib.Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", PY_PRODUCER, endpoint, str(data)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"   # imports done
    return proc


def run_python(proc: subprocess.Popen) -> float:
    try:
        start = time.perf_counter()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.stdout.readline()
        proc.wait(600)
        return time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=pathlib.Path,
                        default=SHARED_A9A if SHARED_A9A.exists() else SAMPLE_A9A)
    args = parser.parse_args()
    build = CDIR / "build"
    subprocess.run(["make", "-C", str(CDIR), f"BUILD={build}"], check=True,
                   stdout=subprocess.DEVNULL)
    producer = build / "producer"
    results: dict[str, list[float]] = {k: [] for k in
                                       ("c_e2e", "py_e2e", "c_client", "py_client")}
    with tempfile.TemporaryDirectory() as tmp:
        data = tiled(args.data, args.rows, pathlib.Path(tmp))
        print(f"data: {args.data.name} tiled to {args.rows:,} rows "
              f"({data.stat().st_size / 1e6:.1f} MB)", flush=True)
        for _ in range(args.repeat):
            for kind in ("c", "py"):
                # End to end: into a fresh daemon, until it has learned everything.
                daemon = Daemon()
                try:
                    if kind == "c":
                        start = time.perf_counter()
                        run_c(producer, daemon.train, data)
                    else:
                        proc = start_python(daemon.train, data)
                        start = time.perf_counter()
                        run_python(proc)
                    daemon.wait_examples(args.rows)
                    results[f"{kind}_e2e"].append(time.perf_counter() - start)
                finally:
                    daemon.stop()
                # Client only: into a sink that discards.
                proc_sink, endpoint = sink()
                try:
                    if kind == "c":
                        elapsed = run_c(producer, endpoint, data)
                    else:
                        elapsed = run_python(start_python(endpoint, data))
                    results[f"{kind}_client"].append(elapsed)
                finally:
                    proc_sink.kill()
                    proc_sink.wait()
            print({k: [round(v, 3) for v in vs] for k, vs in results.items()}, flush=True)
    print(f"\n{args.rows:,} rows, batches of 1,000, {args.repeat} runs each "
          f"(examples/s of the median run, and of the best run):")
    print(f"{'':22}{'C producer':>26}{'Python Producer':>26}")
    for what, key in (("end to end (learned)", "e2e"), ("client only (sink)", "client")):
        cells = []
        for k in ("c", "py"):
            times = results[f"{k}_{key}"]
            cells.append(f"{args.rows / statistics.median(times):>12,.0f} "
                         f"(best {args.rows / min(times):>9,.0f})")
        print(f"{what:22}{cells[0]:>26}{cells[1]:>26}")


if __name__ == "__main__":
    main()
