"""The fuzz harnesses (fuzz/) still run: each one's ``test_one_input`` on
its whole seed corpus and on a few hundred mutations of the seeds, in this
process, without atheris's instrumentation or libFuzzer -- so a harness
that rots (an API it calls changed, a seed it no longer takes) fails the
suite, not only the fuzzing step of .ci/run.

Skipped without atheris (the structured harnesses build their inputs with
its FuzzedDataProvider); .ci/run installs it (``pip install -e '.[fuzz]'``).
The mutations are libFuzzer's simplest (bit flips, byte changes, cuts,
insertions, repeated slices), from a fixed seed: a failure replays.
"""
from __future__ import annotations

import base64
import importlib
import random
import sys

import pytest

from conftest import TESTS

pytest.importorskip("atheris", reason="the fuzz extra is not installed (pip install -e '.[fuzz]')")

FUZZ = TESTS.parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import ol1fuzz  # noqa: E402

#: Inputs per harness: the seeds, then mutations of them up to this many.
ITERATIONS = 300


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        what = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if what == 0 and out:                       # flip a bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif what == 1 and out:                     # an interesting byte
            out[rng.randrange(len(out))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x0A,
                                                       ord("|"), ord(":"), 0xC4, 0xCF))
        elif what == 2:                             # cut
            del out[at:at + rng.randint(1, 16)]
        elif what == 3:                             # insert random bytes
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif what == 4 and out:                     # repeat a slice
            i = rng.randrange(len(out))
            out[at:at] = out[i:i + rng.randint(1, 32)]
        else:                                       # truncate
            del out[at:]
    if data[:1] and not out:                        # model_file: keep a mode byte
        out = bytearray(data[:1])
    return bytes(out)


@pytest.mark.parametrize("name", ol1fuzz.HARNESSES)
def test_a_harness_runs_on_its_seeds_and_their_mutations(name, tmp_path):
    harness = importlib.import_module(f"fuzz_{name}")
    seeds = [path.read_bytes() for path in ol1fuzz.corpus_files(name)]
    assert len(seeds) >= 10, f"fuzz/corpus/{name}: run python fuzz/make_corpus.py"
    rng = random.Random(f"onlinel1-fuzz-{name}")
    inputs = seeds + [mutate(rng, rng.choice(seeds)) for _ in range(ITERATIONS - len(seeds))]
    for i, data in enumerate(inputs):
        try:
            harness.test_one_input(data)
        except Exception as exc:
            crash = tmp_path / f"crash-{i}"
            crash.write_bytes(data)
            raise AssertionError(
                f"fuzz_{name} crashed on input {i} ({'seed' if i < len(seeds) else 'mutation'}"
                f"), saved in {crash} -- replay: python fuzz/reproduce.py {name} {crash}; "
                f"base64 {base64.b64encode(data[:2000]).decode()}") from exc


def test_every_harness_has_seeds_a_parser_input_and_is_listed():
    names = sorted(p.stem[len("fuzz_"):] for p in FUZZ.glob("fuzz_*.py"))
    assert names == sorted(ol1fuzz.HARNESSES)
    for name in names:
        harness = importlib.import_module(f"fuzz_{name}")
        seed = next(ol1fuzz.corpus_files(name)).read_bytes()
        assert isinstance(harness.parser_input(seed), bytes)


def test_the_regression_inputs_pass_their_harnesses():
    """The inputs of tests/test_fuzz_regressions.py, through the harness
    that found them (frames through fuzz_request, files raw through
    fuzz_model_file): what was a crash is now an allowed outcome."""
    request = importlib.import_module("fuzz_request")
    model = importlib.import_module("fuzz_model_file")
    found = sorted((TESTS / "data" / "fuzz").glob("*/*.*"))
    assert found
    for path in found:
        if path.parent.name in ("request", "csr"):
            request.test_one_input(path.read_bytes())
        elif path.parent.name == "model_file":
            model.test_one_input(b"\0" + path.read_bytes())
