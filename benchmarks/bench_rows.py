"""Row-wise decoding and top_k: the compiled path against the Python one it
replaced (issue 15, F1).

For each batch shape: the time of ``decode_message`` + ``decode_batch``
(best of ``--repeats``, timeit) and its peak memory (tracemalloc, one run),
for the new decoder (onlinel1/_kernels/wire.pyx) and the old one (msgpack's
decoder and a Python loop per row, kept as tests/reference_protocol.py);
then ``top_k=1`` contributions, new (topk.pyx) against the old argsort per
row.  Times on a shared machine are noisy: read the ratios, not the digits.

    python benchmarks/bench_rows.py --out benchmarks/results/rows.md
"""
from __future__ import annotations

import argparse
import datetime
import pathlib
import platform
import sys
import timeit
import tracemalloc

import msgpack
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import reference_protocol as reference  # noqa: E402
from onlinel1 import Batch  # noqa: E402
from onlinel1.server import protocol  # noqa: E402
from onlinel1.server.commands.predict import contributions  # noqa: E402


def shapes(rng: np.random.Generator) -> dict[str, list]:
    """Batches a producer sends: a9a-like (14 integer keys of 123, value 1),
    Criteo-like (39 string features "Cn=hash" in a namespace), text-like (80
    string tokens with tf values), a single example, and F1's empty rows."""
    a9a = [{"label": int(rng.choice([-1, 1])),
            "features": {int(k): 1 for k in rng.choice(123, 14, replace=False)}}
           for _ in range(1000)]
    criteo = [{"label": int(rng.integers(0, 2)),
               "namespaces": {"c": {f"C{j}={rng.integers(0, 10**6):x}": 1 for j in range(39)}}}
              for _ in range(1000)]
    text = [{"label": 1, "features": {f"w{rng.integers(0, 20000)}": float(rng.random())
                                      for _ in range(80)}} for _ in range(500)]
    one = [{"label": 1, "features": {"price": 0.5, 17: 1, "user=42": 1}}]
    return {"a9a-like, 1,000 rows": a9a, "Criteo-like, 1,000 rows": criteo,
            "text-like, 500 rows": text, "one row": one,
            "F1: 200,000 empty rows": [{"label": 1}] * 200_000}


def new(frame: bytes):
    return protocol.decode_batch(protocol.decode_message(frame, 1 << 30), True)


def old(frame: bytes):
    return reference.decode_rows(reference.decode_message(frame)["rows"], True)


def peak(fn, frame: bytes) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn(frame)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def best(fn, frame: bytes, repeats: int) -> float:
    number = max(1, int(0.2 / max(timeit.timeit(lambda: fn(frame), number=1), 1e-6)))
    return min(timeit.repeat(lambda: fn(frame), number=number, repeat=repeats)) / number


class Weights:
    def __init__(self, n: int) -> None:
        self.w = np.sin(np.arange(n, dtype=np.float64))

    def weights_of(self, keys):
        return self.w[keys.astype(np.int64)]


def old_top_k(learner, batch, top_k):
    contrib = learner.weights_of(batch.keys) * batch.values
    out = []
    for i in range(batch.n_rows):
        lo, hi = batch.indptr[i], batch.indptr[i + 1]
        part = contrib[lo:hi]
        order = np.argsort(-np.abs(part), kind="stable")[:top_k]
        keys = batch.keys[lo:hi][order].tolist()
        out.append([[k, v] for k, v in zip(keys, part[order].tolist()) if v != 0.0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top-k-rows", type=int, default=100_000)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    lines = [f"# Row-wise decoding and top_k, new against old ({datetime.date.today()}, "
             f"{platform.machine()}, `python benchmarks/bench_rows.py`)", "",
             "Times are the best of several runs on a shared 2-core machine: noisy. "
             "Memory is tracemalloc's peak of one decode, as a multiple of the message's bytes.",
             "", "| batch | bytes | old | new | new/old time | old memory | new memory |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in shapes(rng).items():
        frame = msgpack.packb({"v": 1, "op": "learn", "rows": rows})
        a, b = new(frame), old(frame)
        assert np.array_equal(a.keys, b.keys) and np.array_equal(a.values, b.values)
        t_old, t_new = best(old, frame, args.repeats), best(new, frame, args.repeats)
        m_old, m_new = peak(old, frame) / len(frame), peak(new, frame) / len(frame)
        lines.append(f"| {name} | {len(frame):,} | {t_old * 1e3:.3f} ms | {t_new * 1e3:.3f} ms | "
                     f"{t_new / t_old:.2f} | {m_old:.1f}x | {m_new:.1f}x |")
        print(lines[-1], flush=True)
    n = args.top_k_rows
    batch = Batch(np.arange(0, 14 * n + 1, 14), rng.integers(0, 123, 14 * n).astype(np.uint64),
                  np.ones(14 * n))
    learner = Weights(123)
    t_old = min(timeit.repeat(lambda: old_top_k(learner, batch, 1), number=1, repeat=2))
    t_new = min(timeit.repeat(lambda: contributions(learner, batch, 1), number=1, repeat=3))
    lines += ["", f"top_k=1 over {n:,} rows of 14 features: old {t_old:.3f} s, new "
                  f"{t_new * 1e3:.1f} ms ({t_old / t_new:.0f}x)"]
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
