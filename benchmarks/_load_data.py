"""The rows of benchmarks/loadgen.py: a real data set replayed in a loop
(the Criteo sample or a9a, loaded once by the parent into ``rows.npz``),
or a seeded synthetic click stream that each process draws on its own."""
from __future__ import annotations

import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
SAMPLE_A9A = ROOT / "tests" / "data" / "a9a_head2000.svm"
#: Predictor rows kept for requests (one-row batches, taken in turn).
PREDICT_ROWS = 2048


class LoadError(RuntimeError):
    """The load generator cannot go on; the message says why."""


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


class ClickStream:
    """A seeded, endless click-log-like stream: 30 categorical fields a row
    (one feature each, value 1), field j with a vocabulary growing
    geometrically with j so that all of them together hold about
    ``key_space`` distinct keys; values drawn with a mild skew (every key
    recurs); labels from a hidden sparse logistic model (5 % of the keys
    have a weight), about 22 % positive (0/1)."""

    FIELDS = 30

    def __init__(self, seed: int, key_space: int) -> None:
        self.rng = np.random.default_rng(seed)
        growth = 1.5 ** np.arange(self.FIELDS)
        self.vocab = np.maximum(2, np.round(key_space * growth / growth.sum())).astype(np.int64)
        self.field_bits = np.arange(self.FIELDS, dtype=np.uint64) << np.uint64(40)

    @property
    def distinct_keys(self) -> int:
        return int(self.vocab.sum())

    def batch(self, rows: int):
        from onlinel1 import Batch
        u = self.rng.random((rows, self.FIELDS))
        values = (u * u * self.vocab).astype(np.uint64)
        keys = mix64(self.field_bits | values)
        hidden = np.where(keys % np.uint64(20) == 0,
                          ((keys >> np.uint64(11)).astype(np.float64) / 2.0 ** 53 - 0.5) * 8.0, 0.0)
        margin = hidden.sum(axis=1) - 1.3
        labels = (self.rng.random(rows) < 1.0 / (1.0 + np.exp(-margin))).astype(np.float64)
        indptr = np.arange(0, rows * self.FIELDS + 1, self.FIELDS, dtype=np.int64)
        return Batch(indptr, keys.ravel(), np.ones(rows * self.FIELDS, np.float32), labels)


def load_criteo(path: pathlib.Path):
    """The Criteo sample: each present field a feature ``name=value``,
    hashed as the daemon hashes string features (onlinel1.io.feature_key);
    labels 0/1."""
    from onlinel1 import Batch
    from onlinel1.io import feature_keys
    names = [f"I{j}" for j in range(1, 14)] + [f"C{j}" for j in range(1, 27)]
    labels, features, lengths = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 40:
                raise LoadError(f"{path}:{n}: expected 40 tab-separated fields, got {len(fields)}")
            labels.append(float(fields[0]))
            row = [f"{name}={value}" for name, value in zip(names, fields[1:]) if value]
            features.extend(row)
            lengths.append(len(row))
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return Batch(indptr, feature_keys(features), np.ones(len(features), np.float32), labels)


def load_svmlight(path: pathlib.Path):
    from onlinel1 import Batch
    from onlinel1.io import read_batches
    parts = list(read_batches(str(path), "svmlight", 8192))
    offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
    indptr = np.concatenate([[0]] + [p.indptr[1:] + off for p, off in zip(parts, offsets)])
    return Batch(indptr, np.concatenate([p.keys for p in parts]),
                 np.concatenate([p.values for p in parts]),
                 np.concatenate([p.labels for p in parts]))


def prepare_rows(args, workdir: pathlib.Path) -> str:
    """Load the replayed data set once into ``workdir/rows.npz`` (the
    processes read it from there); a description of the data."""
    if args.data == "synthetic":
        stream = ClickStream(args.seed, args.key_space)
        return (f"synthetic click stream: {ClickStream.FIELDS} fields a row, about "
                f"{stream.distinct_keys:,} distinct keys, seed {args.seed} (+ process index)")
    if args.data_file:
        path = pathlib.Path(args.data_file)
    elif args.data == "criteo":
        path = SHARED / "ctr_criteo_8k" / "train.tsv"
    else:
        path = SHARED / "a9a" / "a9a.train.svm"
        if not path.exists():
            path = SAMPLE_A9A
    if not path.exists():
        raise LoadError(f"{path} is missing (the shared data sets live beside the checkout); "
                        f"give --data-file or use --data synthetic")
    batch = load_criteo(path) if args.data == "criteo" else load_svmlight(path)
    np.savez(workdir / "rows.npz", indptr=batch.indptr, keys=batch.keys, values=batch.values,
             labels=batch.labels)
    distinct = np.unique(batch.keys).size
    return (f"{path.name} ({args.data}) replayed in a loop: {batch.n_rows:,} rows, "
            f"{batch.nnz / batch.n_rows:.1f} features a row, {distinct:,} distinct keys; each "
            f"process shuffles it with seed {args.seed} + its index")


class RowSource:
    """Batches of ``rows`` rows for one process: the replayed data set
    shuffled with this process's seed, in a loop; or its own synthetic
    stream."""

    def __init__(self, cfg: dict, seed: int) -> None:
        from onlinel1 import Batch
        self.stream = None
        if cfg["data"] == "synthetic":
            self.stream = ClickStream(seed, cfg["key_space"])
            return
        with np.load(pathlib.Path(cfg["workdir"]) / "rows.npz") as z:
            whole = Batch(z["indptr"], z["keys"], z["values"], z["labels"])
        order = np.random.default_rng(seed).permutation(whole.n_rows)
        lengths = np.diff(whole.indptr)[order]
        indptr = np.zeros(whole.n_rows + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        take = np.concatenate([np.arange(whole.indptr[i], whole.indptr[i + 1]) for i in order])
        self.rows = Batch(indptr, whole.keys[take], whole.values[take], whole.labels[order])
        self.next = 0

    def batch(self, rows: int):
        if self.stream is not None:
            return self.stream.batch(rows)
        from onlinel1 import Batch
        if self.next + rows <= self.rows.n_rows:
            out = self.rows.slice(self.next, self.next + rows)
            self.next = (self.next + rows) % self.rows.n_rows
            return out
        parts, need = [], rows
        while need:
            take = min(need, self.rows.n_rows - self.next)
            parts.append(self.rows.slice(self.next, self.next + take))
            self.next = (self.next + take) % self.rows.n_rows
            need -= take
        offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
        return Batch(np.concatenate([[0]] + [p.indptr[1:] + o for p, o in zip(parts, offsets)]),
                     np.concatenate([p.keys for p in parts]),
                     np.concatenate([p.values for p in parts]),
                     np.concatenate([p.labels for p in parts]))


def predict_rows(cfg: dict, seed: int) -> list:
    """One-row batches without labels, for predict requests."""
    from onlinel1 import Batch
    pool = RowSource(cfg, seed).batch(PREDICT_ROWS)
    rows = []
    for i in range(pool.n_rows):
        one = pool.slice(i, i + 1)
        rows.append(Batch(one.indptr, one.keys.copy(), one.values.copy()))
    return rows
