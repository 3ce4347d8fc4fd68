"""What the harnesses share: how one is started, the tiny learners the
decoded batches are fed to, and the check every learner that came out of
a parser must pass.

A harness is a module ``fuzz_<name>.py`` with ``test_one_input(data)``.
Run as a script it is an atheris fuzzer (libFuzzer's command line:
``python fuzz/fuzz_request.py CORPUS_DIR... -max_total_time=30``) and the
onlinel1 modules it imports are instrumented for coverage.  Imported (by
tests/test_fuzz_smoke.py, or to replay an input) nothing is instrumented
and ``test_one_input`` is a plain function.

``test_one_input`` returns normally for every allowed outcome (a value,
or the documented exception of the parser) and lets anything else
propagate: to atheris that is a crash, written to the artifact directory.
Every harness is deterministic: one input always takes the same path (no
clock, no randomness, no state kept from one input to the next), so a
crash file replays.
"""
from __future__ import annotations

import contextlib
import pathlib
import sys
import zlib
from typing import Any, Callable, Iterator

FUZZ = pathlib.Path(__file__).resolve().parent
REPO = FUZZ.parent
#: Seed corpora, one folder per harness (written by make_corpus.py).
CORPUS = FUZZ / "corpus"
#: libFuzzer dictionaries (``-dict=``) of the text formats.
DICTS = FUZZ / "dicts"
SAMPLES = REPO / "tests" / "data"

HARNESSES = ("request", "csr", "svmlight", "vw", "model_file")


def instrumented(fuzzing: bool) -> contextlib.AbstractContextManager:
    """Around a harness's onlinel1 imports: atheris's instrumentation of
    the onlinel1 modules when ``fuzzing`` (run as a script), nothing when
    the harness is imported by a test."""
    if not fuzzing:
        return contextlib.nullcontext()
    import atheris
    return atheris.instrument_imports(include=["onlinel1"])


def main(test_one_input: Callable[[bytes], None]) -> None:
    """The fuzzer: libFuzzer's command line in ``sys.argv``."""
    import warnings

    import atheris
    warnings.simplefilter("ignore", RuntimeWarning)   # numpy's overflow notes: not crashes
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def choice(data: bytes, n: int) -> int:
    """A deterministic pick in ``range(n)`` that depends on every byte."""
    return zlib.crc32(data) % n


# ------------------------------------------------------------- learners

def learner_configs() -> list[dict[str, Any]]:
    """One valid option set per (update rule, loss), origins alternating,
    some with the schedules that read the clock ``t``, some with a memory
    budget of 4 features or expiry after 2 examples."""
    from onlinel1 import OptionError
    from onlinel1._kernels.sgd import RULES
    from onlinel1.options import LearnerOptions
    configs = []
    for i, update in enumerate(RULES):
        for j, loss in enumerate(("log", "squared", "hinge")):
            kw: dict[str, Any] = {"update": update, "loss": loss,
                                  "origin": ("start", "first-seen")[(i + j) % 2]}
            kw.update({"l1": 0.0, "l2": 1e-3} if update == "plain" else {"l1": 1e-3})
            if j == 1:
                kw.update(schedule="invscaling", power_t=0.5)
            if update == "truncated":
                kw.update(truncate_every=2, truncate_theta=1.0)
            if update == "fobos" and loss == "hinge":
                kw.update(l2=1e-3, schedule="exponential", decay_rate=0.5, decay_steps=2.0)
            if j == 2 and i % 2 == 0:          # the memory budget, evicting at once
                kw.update(max_features=4)
            if j == 0 and i % 3 == 1:          # expiry after 2 examples
                kw.update(expire_after_examples=2)
            try:
                LearnerOptions(**kw)
            except OptionError:    # the registry changed: skip, never guess
                continue
            configs.append(kw)
    return configs


_CONFIGS: list[dict[str, Any]] = []


def tiny_learner(data: bytes):
    """A fresh learner with one of ``learner_configs()``, chosen by the
    input, so every rule's kernel sees what passes validation."""
    from onlinel1 import Learner
    if not _CONFIGS:
        _CONFIGS.extend(learner_configs())
    return Learner(**_CONFIGS[choice(data, len(_CONFIGS))])


def learn_and_predict(learner: Any, batch: Any, *, learning: bool, checked: bool) -> None:
    """What the daemon does with a batch that passed ``check``: learn it
    (in slices, as the trainer does, when ``learning``) and predict it
    (probabilities, margins, top-k contributions).  ``NumericError`` is
    the documented outcome of an example that overflows; nothing else
    may escape.  Then the learner's state must survive a save and a load
    (a learner the kernels built must be one the loader takes)."""
    import numpy as np

    from onlinel1 import NumericError, model_file
    from onlinel1.server.commands.predict import contributions
    if learning:
        n = batch.n_rows
        cut = n // 2
        try:
            for rows in ((0, cut), (cut, n)):
                result = learner.learn(batch, check=not checked, rows=rows)
                assert 0 <= result.rows <= rows[1] - rows[0], result
        except NumericError as exc:
            assert exc.reason in ("margin", "update"), exc.reason
            assert 0 <= exc.row < n, (exc.row, n)
    out = learner.predict(batch, check=not checked)
    assert out.shape == (batch.n_rows,), out.shape
    learner.decision_function(batch, check=False)
    with np.errstate(over="ignore", invalid="ignore"):   # huge weights * values: inf
        contributions(learner, batch, 3)
    if learning:
        assert_learning_left_finite(learner)
        again, _, _ = model_file.decode(model_file.encode(learner))
        mine, theirs = learner.state, again.state
        assert np.array_equal(mine["keys"], theirs["keys"])
        assert mine["weights"].tobytes() == theirs["weights"].tobytes()
        assert mine["clocks"] == theirs["clocks"] or _same_floats(mine["clocks"],
                                                                 theirs["clocks"])


def assert_learning_left_finite(learner: Any, clocks: bool = True) -> None:
    """Learning (or its refusal, ``NumericError``, which undoes the batch)
    must leave every stored weight, the intercept and the rule's clocks
    finite: the loader refuses anything else, so a learner must never be
    left in a state its own model file cannot hold
    (tests/test_fuzz_regressions.py, ``test_learning_leaves_finite_weights``
    and ``test_a_step_that_overflows_a_clock_is_refused``).  ``clocks``
    False: the clocks were not finite before (a loaded file may hold an
    infinite clock, which an older version could write)."""
    import math

    import numpy as np
    state = learner.state
    assert math.isfinite(learner.intercept), f"intercept {learner.intercept}"
    assert bool(np.all(np.isfinite(state["weights"]))), "a weight is not finite"
    for name in ("clock", "clock_scale") if clocks else ():
        assert math.isfinite(state["clocks"][name]), f"{name} {state['clocks'][name]}"


def _same_floats(a: dict, b: dict) -> bool:
    import math
    return a.keys() == b.keys() and all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in ((a[k], b[k]) for k in a))


# --------------------------------------------------------------- corpora

def corpus_files(harness: str) -> Iterator[pathlib.Path]:
    """The seed files of ``harness``, sorted."""
    folder = CORPUS / harness
    return iter(sorted(p for p in folder.iterdir() if p.is_file())) if folder.is_dir() \
        else iter(())


# ----------------------------------------------------------- text readers

class ReadOnly:
    """A binary stream with ``read`` and no ``readinto`` (the readers'
    other way in)."""

    def __init__(self, data: bytes) -> None:
        import io
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)


def read_text(data: bytes, fmt: str, *, small: bool) -> tuple[list, Any, dict]:
    """``(batches, error, names)`` of ``read_batches`` over ``data``: every
    batch yielded, the ``ParseError`` that ended the stream (or None), the
    names the reader filled in.  With
    ``small``, 3-row batches from 7-byte blocks through ``read`` only;
    otherwise the defaults through ``readinto``.  Nothing but a
    ``ParseError`` may escape, and the batches must be well-formed."""
    import io

    import numpy as np

    from onlinel1.batch import Batch
    from onlinel1.io import ParseError, feature_key, read_batches
    names: dict[int, str] = {}
    source = ReadOnly(data) if small else io.BytesIO(data)
    kwargs = {"batch_size": 3, "block_size": 7} if small else {}
    batches: list = []
    error = None
    try:
        for batch in read_batches(source, fmt, names=names, **kwargs):
            batches.append(batch)
    except ParseError as exc:
        error = exc
        assert exc.source == "<stream>", exc.source
        assert 1 <= exc.line <= data.count(b"\n") + 1, (exc.line, data.count(b"\n"))
        assert str(exc).startswith(f"<stream>:{exc.line}: "), str(exc)
    for batch in batches:
        assert isinstance(batch, Batch) and batch.labels is not None
        assert batch.n_rows >= 1
        assert (batch.weights is None) == (fmt == "svmlight")
        if batch.weights is not None:
            assert np.all(batch.weights >= 0), batch.weights     # NaN is refused too
    if fmt == "svmlight":
        assert not names, names
    for key, name in names.items():
        assert feature_key(name) == key, (key, name)
    return batches, error, names


def same_reading(a: tuple, b: tuple) -> None:
    """Two readings of one input give the same rows (bit for bit) and the
    same error, whatever the batch and block sizes."""
    import numpy as np
    rows = []
    for batches, _, _ in (a, b):
        if not batches:
            rows.append(None)
            continue
        keys = np.concatenate([x.keys for x in batches])
        values = np.concatenate([x.values for x in batches])
        labels = np.concatenate([x.labels for x in batches])
        weights = None if batches[0].weights is None else \
            np.concatenate([x.weights for x in batches])
        lengths = np.concatenate([np.diff(x.indptr) for x in batches])
        rows.append((keys.tobytes(), values.tobytes(), labels.tobytes(),
                     None if weights is None else weights.tobytes(), lengths.tobytes()))
    assert rows[0] == rows[1], "the rows depend on the batch or block size"
    errors = [None if e is None else (e.line, str(e)) for _, e, _ in (a, b)]
    assert errors[0] == errors[1], errors
    assert a[2] == b[2], "the names depend on the batch or block size"


def text_feedback(reading: tuple) -> int:
    """A branch per kind of outcome, for libFuzzer's coverage: the parser
    is compiled C that atheris cannot see, so the harness tells it which
    error the parser chose and what the rows held.  Instrumented with
    ``atheris.instrument_func`` when fuzzing."""
    import numpy as np
    batches, error, _ = reading
    kind = 0
    if error is not None:
        what = str(error).split(": ", 1)[1]
        if what.startswith("bad label"):
            kind = 1
        elif what.startswith("bad feature"):
            kind = 2
        elif what.startswith("bad query id"):
            kind = 3
        elif what.startswith("no '|'"):
            kind = 4
        elif what.startswith("missing label before"):
            kind = 5
        elif what.startswith("too many label fields"):
            kind = 6
        elif what.startswith("bad importance"):
            kind = 7
        elif what.startswith("bad base"):
            kind = 8
        elif what.startswith("bad namespace scale"):
            kind = 9
        elif what.startswith("bad namespace"):
            kind = 10
        elif what.startswith("missing label:"):
            kind = 11
        else:
            kind = 12
    for batch in batches:
        if batch.nnz == 0:
            kind += 16
        else:
            v = batch.values
            if np.isnan(v).any():
                kind += 32
            if np.isinf(v).any():
                kind += 64
            if (batch.keys >= 2**63).any():
                kind += 128
            if v.min() != 0 and np.abs(v).min() < 2.2250738585072014e-308:
                kind += 256
        if np.isnan(batch.labels).any():
            kind += 512
        if batch.weights is not None and (batch.weights == 0).any():
            kind += 1024
    return kind


def learn_text(reading: tuple, data: bytes) -> None:
    """``onlinel1 train --save``'s path: each batch checked, then learned;
    the model saved with the feature names the reader gave, and loaded
    back with the same names."""
    from onlinel1 import BatchError, NumericError, model_file
    batches, _, names = reading
    learner = tiny_learner(data)
    for batch in batches[:4]:
        try:
            learner.learn(batch)
        except BatchError as exc:
            assert exc.reason in BatchError.REASONS, exc.reason
        except NumericError as exc:
            assert exc.reason in ("margin", "update"), exc.reason
    if batches:
        learner.predict(batches[0], check=False)
    assert_learning_left_finite(learner)
    _, loaded, _ = model_file.decode(model_file.encode(learner, names))
    stored = set(learner.state["keys"].tolist())
    assert loaded == {k: v for k, v in names.items() if k in stored}, "names lost in the file"
