"""``onlinel1 train --cache FILE`` (onlinel1/io/cache.py): the examples of
DATA in a binary file, written by pass 1 and read by the later passes and
by later runs, give the model the text gives, bit for bit, in file order
and shuffled, with no bound of memory."""
from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest

from conftest import SAMPLES
from onlinel1 import model_file
from onlinel1.cli import main
from onlinel1.io.cache import CacheError, ExampleCache

A9A = SAMPLES / "a9a_head2000.svm"
VW = SAMPLES / "vw0002_head60.vw"


def train(capsys, *argv) -> tuple[int, str]:
    code = main(["train", *map(str, argv)])
    return code, capsys.readouterr().err


def assert_same_model(a, b) -> None:
    (x, names_x, _), (y, names_y, _) = model_file.load(a), model_file.load(b)
    for u, v in zip(x.weights(), y.weights()):
        np.testing.assert_array_equal(u, v)
    assert x.intercept == y.intercept and x.state["clocks"] == y.state["clocks"]
    assert x.progress_sums == y.progress_sums
    assert names_x == names_y


@pytest.mark.parametrize("flags", [("--passes", "3"),
                                   ("--passes", "3", "--shuffle", "--seed", "4"),
                                   ("--passes", "2", "--shuffle", "--holdout-fraction", "0.1")])
def test_the_cache_gives_the_model_the_text_gives(capsys, tmp_path, flags):
    cache = tmp_path / "a9a.cache"
    code, plain = train(capsys, A9A, *flags, "--save", tmp_path / "text.ol1")
    assert code == 0, plain
    code, written = train(capsys, A9A, *flags, "--cache", cache, "--save", tmp_path / "w.ol1")
    assert code == 0 and cache.exists(), written
    assert "reading the examples from the cache" not in written
    code, reused = train(capsys, A9A, *flags, "--cache", cache, "--save", tmp_path / "r.ol1")
    assert code == 0 and f"reading the examples from the cache {cache}" in reused
    for name in ("w.ol1", "r.ol1"):
        assert_same_model(tmp_path / "text.ol1", tmp_path / name)
    # The same report: progressive loss, holdout figures, non-zero weights.
    summary = [line for line in plain.splitlines() if line.startswith(
        ("progressive loss", "holdout", "non-zero", "examples ", "passes"))]
    for err in (written, reused):
        assert summary and all(line in err.splitlines() for line in summary), (summary, err)


def test_a_later_run_gets_the_names_of_string_features_from_the_cache(capsys, tmp_path):
    cache = tmp_path / "vw.cache"
    for name in ("first.ol1", "again.ol1"):
        code, err = train(capsys, VW, "--loss", "squared", "--passes", "2", "--cache", cache,
                          "--save", tmp_path / name)
        assert code == 0, err
    assert "reading the examples from the cache" in err
    assert model_file.load(tmp_path / "again.ol1")[1]          # names were kept
    assert_same_model(tmp_path / "first.ol1", tmp_path / "again.ol1")
    # A run that keeps no names wrote another cache: --no-names rewrites it.
    code, err = train(capsys, VW, "--loss", "squared", "--no-names", "--cache", cache)
    assert code == 0 and "a cache of another input or settings: writing it again" in err


def test_shuffling_through_the_cache_has_no_memory_bound(capsys, tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / "big.svm"
    with open(data, "w") as f:
        for _ in range(12_000):
            idx = np.sort(rng.choice(5000, 10, replace=False)) + 1
            f.write(f"{rng.choice([-1, 1])} " + " ".join(f"{i}:1" for i in idx) + "\n")
    # 12,000 examples of 10 features: 2.4 MB in memory, over --buffer-mb 1.
    code, err = train(capsys, data, "--shuffle", "--passes", "2", "--buffer-mb", "1")
    assert code == 1 and "pass --buffer-mb 1" in err
    code, err = train(capsys, data, "--shuffle", "--passes", "2", "--buffer-mb", "1",
                      "--cache", tmp_path / "big.cache", "--save", tmp_path / "c.ol1")
    assert code == 0, err
    code, err = train(capsys, data, "--shuffle", "--passes", "2", "--save", tmp_path / "m.ol1")
    assert code == 0, err
    assert_same_model(tmp_path / "m.ol1", tmp_path / "c.ol1")


def test_standard_input_passes_read_the_cache(capsys, tmp_path, monkeypatch):
    code, err = train(capsys, A9A, "--passes", "2", "--save", tmp_path / "file.ol1")
    assert code == 0, err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(A9A.read_bytes())))
    code, err = train(capsys, "-", "--format", "svmlight", "--passes", "2", "--buffer-mb", "1",
                      "--cache", tmp_path / "stdin.cache", "--save", tmp_path / "stdin.ol1")
    assert code == 0, err
    assert_same_model(tmp_path / "file.ol1", tmp_path / "stdin.ol1")


def test_a_cache_of_other_data_or_settings_or_a_damaged_one_is_written_again(capsys, tmp_path):
    data = tmp_path / "a.svm"
    data.write_bytes(A9A.read_bytes())
    cache = tmp_path / "a.cache"
    assert train(capsys, data, "--cache", cache)[0] == 0
    with open(data, "ab") as f:                           # DATA changed since
        f.write(b"1 3:1 7:1\n")
    code, err = train(capsys, data, "--cache", cache, "--save", tmp_path / "c.ol1")
    assert code == 0 and "a cache of another input or settings: writing it again" in err
    assert train(capsys, data, "--save", tmp_path / "t.ol1")[0] == 0
    assert_same_model(tmp_path / "t.ol1", tmp_path / "c.ol1")
    size = cache.stat().st_size
    with open(cache, "r+b") as f:                         # the end cut off
        f.truncate(size - 5)
    code, err = train(capsys, data, "--cache", cache)
    assert code == 0 and "damaged (no end marker): writing it again" in err
    assert cache.stat().st_size == size
    code, err = train(capsys, data, "--cache", cache)
    assert code == 0 and "reading the examples from the cache" in err


def test_the_cache_is_never_the_input_and_a_failed_pass_leaves_none(capsys, tmp_path):
    data = tmp_path / "a.svm"
    data.write_bytes(A9A.read_bytes())
    code, err = train(capsys, data, "--cache", data)
    assert code == 1 and "would overwrite its input" in err
    code, err = train(capsys, tmp_path / "missing.svm", "--cache", tmp_path / "m.cache")
    assert code == 1 and "missing.svm" in err and "Traceback" not in err
    assert data.read_bytes() == A9A.read_bytes()
    bad = tmp_path / "bad.svm"
    bad.write_bytes(b"".join(A9A.read_bytes().splitlines(True)[:70]) + b"x 1:1\n")
    code, err = train(capsys, bad, "--cache", tmp_path / "bad.cache", "--passes", "2")
    assert code == 1 and "bad.svm:71: bad label" in err
    assert not any(p.name.startswith("bad.cache") for p in tmp_path.iterdir())


def test_a_file_that_is_not_a_cache_is_refused_with_its_reason(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a cache at all")
    with pytest.raises(CacheError) as info:
        ExampleCache.open(junk)
    assert info.value.reason == "format"
    cache = ExampleCache.create(tmp_path / "c", {"data": "x"})
    cache.finish({})
    assert ExampleCache.open(tmp_path / "c").n_rows == 0
    with pytest.raises(CacheError) as info:
        ExampleCache.open(tmp_path / "c", {"data": "y"})
    assert info.value.reason == "other"
    raw = bytearray((tmp_path / "c").read_bytes())
    raw[-20] ^= 0xFF                                       # inside the description
    (tmp_path / "c").write_bytes(bytes(raw))
    with pytest.raises(CacheError) as info:
        ExampleCache.open(tmp_path / "c")
    assert info.value.reason == "damaged"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_cache_that_cannot_be_written_is_a_clear_error(capsys, tmp_path, monkeypatch):
    code, err = train(capsys, A9A, "--cache", tmp_path / "no" / "such" / "dir" / "c")
    assert code == 1 and "cannot write the cache here" in err
    from onlinel1.io import cache as cache_module

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cache_module.os, "fsync", full)
    code, err = train(capsys, A9A, "--cache", tmp_path / "c")
    assert code == 1 and "cannot write the cache (No space left on device)" in err
    assert not list(tmp_path.iterdir())
