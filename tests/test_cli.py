"""The offline command line, end to end: train, predict, inspect."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import onlinel1
from onlinel1 import Batch, Learner
from onlinel1.cli import main

from conftest import SAMPLES, load_svmlight, record_parsing_threads, shared_path

A9A = SAMPLES / "a9a_head2000.svm"
RCV1 = SAMPLES / "rcv1_small_head300.svm"
VW = SAMPLES / "vw0002_head60.vw"
FLAGS = ["--update", "fobos", "--l1", "1e-3", "--eta0", "0.2", "--schedule", "invscaling"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_export(path):
    keys, weights, names = [], [], {}
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        assert len(fields) in (2, 3), line
        keys.append(int(fields[0]))
        weights.append(float(fields[1]))
        if len(fields) == 3:
            names[int(fields[0])] = fields[2]
    return np.array(keys, dtype=np.uint64), np.array(weights), names


def train_export(capsys, tmp_path, data, *flags, tag="m"):
    model, tsv = tmp_path / f"{tag}.ol1", tmp_path / f"{tag}.tsv"
    code, out, err = run(capsys, "train", data, *flags, "--save", model)
    assert code == 0, err
    code, out, err2 = run(capsys, "inspect", model, "--export", tsv)
    assert code == 0, err2
    return model, tsv, err, out


@pytest.mark.parametrize("data", [A9A, RCV1], ids=["a9a", "rcv1"])
def test_train_then_export_reproduces_the_learner(capsys, tmp_path, data):
    model, tsv, err, _ = train_export(capsys, tmp_path, data, *FLAGS)
    keys, weights, names = read_export(tsv)
    assert names == {}
    X, y = load_svmlight(data)
    learner = Learner(update="fobos", l1=1e-3, eta0=0.2, schedule="invscaling")
    learner.learn(Batch.from_csr(X, y))
    ref_keys, ref_weights = learner.weights()
    np.testing.assert_array_equal(keys, ref_keys)
    np.testing.assert_array_equal(weights, ref_weights)   # repr() round-trips exactly
    assert f"non-zero weights  {len(keys)}" in err
    assert "progressive loss" in err and "accuracy" in err and "examples/s" in err


def test_predict_is_the_link_of_the_exported_weights(capsys, tmp_path):
    model, tsv, _, _ = train_export(capsys, tmp_path, A9A, *FLAGS)
    keys, weights, _ = read_export(tsv)
    intercept = onlinel1.load(model).intercept
    code, out, err = run(capsys, "predict", "--model", model, A9A)
    assert code == 0, err
    got = np.array([float(v) for v in out.split()])
    X, _ = load_svmlight(A9A)
    dense = np.zeros(X.shape[1])
    dense[keys.astype(np.int64)] = weights
    expected = 1 / (1 + np.exp(-(X @ dense + intercept)))
    assert got.shape == (X.shape[0],)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_the_same_run_twice_gives_byte_identical_exports(capsys, tmp_path):
    _, first, _, _ = train_export(capsys, tmp_path, RCV1, *FLAGS, "--passes", "2", tag="a")
    _, second, _, _ = train_export(capsys, tmp_path, RCV1, *FLAGS, "--passes", "2", tag="b")
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_size > 0


def test_zero_one_labels_train_the_same_model_as_minus_one_plus_one(capsys, tmp_path):
    zero_one = tmp_path / "a9a01.svm"
    zero_one.write_text("".join(("0" if line.startswith("-1") else "1") + line[2:]
                                for line in A9A.read_text().splitlines(keepends=True)))
    _, a, _, _ = train_export(capsys, tmp_path, A9A, *FLAGS, tag="pm")
    _, b, _, _ = train_export(capsys, tmp_path, zero_one, *FLAGS, tag="01")
    assert a.read_bytes() == b.read_bytes()


def test_vw_input_keeps_feature_names(capsys, tmp_path):
    _, tsv, err, summary = train_export(capsys, tmp_path, VW, "--loss", "squared",
                                        "--update", "cumulative", "--l1", "1e-4")
    keys, weights, names = read_export(tsv)
    assert "accuracy" not in err          # regression
    assert any(name.startswith("f^") for name in names.values())
    from onlinel1.io import feature_key
    for key, name in names.items():
        namespace, _, feature = name.partition("^")
        assert feature_key(feature, namespace) == key


def old_export(path, keys, weights, names):
    """inspect --export as it was before it streamed: the oracle."""
    import json
    rows = zip(keys.tolist(), weights.tolist())
    with open(path, "w", encoding="utf-8") as f:
        if str(path).endswith(".json"):
            json.dump([{"key": k, "weight": w, **({"name": names[k]} if k in names else {})}
                       for k, w in rows], f)
            f.write("\n")
            return
        for key, weight in rows:
            name = names.get(key)
            f.write(f"{key}\t{weight!r}\t{name}\n" if name is not None else f"{key}\t{weight!r}\n")


@pytest.mark.parametrize("suffix", ["tsv", "json"])
def test_export_in_chunks_writes_what_one_pass_wrote(tmp_path, suffix):
    from onlinel1.cli.offline import export
    from onlinel1 import model_file
    learner, names, _ = model_file.load(SAMPLES / "v1_vw0002_cumulative.ol1")
    keys, weights = learner.weights()
    names = {k: v for i, (k, v) in enumerate(sorted(names.items())) if i % 2}
    names[int(keys[0])] = 'quote " tab\t é€𝄞'
    assert 0 < len(names) < keys.size
    cases = [(keys, weights), (keys[:1], weights[:1]), (keys[:0], weights[:0])]
    for i, (k, w) in enumerate(cases):
        expected = tmp_path / f"old{i}.{suffix}"
        old_export(expected, k, w, names)
        for chunk_rows in (1, 2, 5, 1 << 16):
            got = tmp_path / f"new{i}-{chunk_rows}.{suffix}"
            export(str(got), k, w, names, chunk_rows=chunk_rows)
            assert got.read_bytes() == expected.read_bytes(), (i, chunk_rows)


def test_inspect_summary_and_top(capsys, tmp_path):
    model, _, _, _ = train_export(capsys, tmp_path, A9A, *FLAGS)
    code, out, err = run(capsys, "inspect", model, "--top", "3")
    assert code == 0
    assert "examples          2000" in out
    assert "update=fobos" in out
    assert "top 3 weights by magnitude" in out


def test_full_a9a_from_shared(capsys, tmp_path):
    data = shared_path("a9a/a9a.train.svm")
    _, tsv, err, _ = train_export(capsys, tmp_path, data, "--update", "cumulative",
                                  "--l1", "1e-4", "--eta0", "0.1")
    keys, _, _ = read_export(tsv)
    assert 20 < len(keys) < 123
    assert "examples          32561" in err


@pytest.mark.parametrize("argv,message", [
    (["train", "missing.svm"], "missing.svm: no such file"),
    (["train", str(A9A), "--loss", "logit"], "invalid choice: 'logit'"),
    (["train", str(A9A), "--l2", "-1"], "--l2 must be >= 0"),
    (["train", str(A9A), "--power-t", "-1"], "--power-t must be >= 0"),
    (["train", str(A9A), "--passes", "0"], "--passes must be >= 1"),
    (["train", str(A9A), "--l1", "abc"], "invalid float value: 'abc'"),
    (["predict", "--model", "missing.ol1", str(A9A)], "missing.ol1: no such file"),
    (["inspect", "missing.ol1"], "missing.ol1: no such file"),
])
def test_bad_command_lines_give_one_line_and_no_traceback(argv, message):
    proc = subprocess.run([sys.executable, "-m", "onlinel1", *argv], capture_output=True,
                          text=True, timeout=60, env={**os.environ})
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_corrupt_model_and_malformed_data_give_one_line(tmp_path):
    model = tmp_path / "m.ol1"
    assert main(["train", str(A9A), "--quiet", "--save", str(model)]) == 0
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    bad_data = tmp_path / "bad.svm"
    bad_data.write_text("1 3:1 4:1\n-1 3:1 x:y\n")
    bad_label = tmp_path / "label.svm"
    bad_label.write_text("1 3:1\n7 4:1\n")
    for argv, message in [(["inspect", str(model)], "checksum mismatch"),
                          (["predict", "--model", str(model), str(A9A)], "checksum mismatch"),
                          (["train", str(bad_data)], "bad.svm:2:"),
                          (["train", str(bad_label)], "label.svm:2: label 7.0 is not -1/+1")]:
        proc = subprocess.run([sys.executable, "-m", "onlinel1", *argv], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    # `onlinel1 predict ... | head -1`: the pipe closes while we still write.
    model = tmp_path / "m.ol1"
    assert main(["train", str(A9A), "--quiet", "--save", str(model)]) == 0
    big = tmp_path / "big.svm"
    big.write_text(A9A.read_text() * 40)          # 80,000 predictions, ~1.5 MB of output
    proc = subprocess.Popen([sys.executable, "-m", "onlinel1", "predict", "--model", str(model),
                             str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert 0.0 < float(first) < 1.0
    assert proc.returncode == 0, err
    assert b"error" not in err and b"Traceback" not in err


@pytest.mark.parametrize("flags,base,message", [
    (["--l2", "-1"], None, "--l2 must be >= 0, got -1.0"),
    (["--update", "plain"], None, "--l1 must be 0 with update='plain'"),       # the default l1
    (["--update", "cumulative", "--l2", "20"], None, "--l2 * eta0 must be < 1"),
    ([], {"rebase_at": 0.5}, "rebase_at must be > 1, got 0.5"),                # no such flag
    ([], {"fit_intercept": "yes"}, "fit_intercept must be True or False"),     # --no-intercept
    ([], {"l3": 1.0}, "unknown learner option(s): l3"),
])
def test_learner_options_name_the_flag_of_the_option_at_fault(flags, base, message):
    from onlinel1.cli.common import CommandError, Parser, add_learner_arguments, learner_options
    parser = Parser(prog="t")
    add_learner_arguments(parser)
    with pytest.raises(CommandError) as info:
        learner_options(parser.parse_args(flags), base)
    assert str(info.value).startswith(message), str(info.value)


# -------------------------------------------------------------- read-ahead

def untimed(err):
    """``train``'s stderr without what measures time: the examples/s column
    of the progress table, the time line and the model file's name."""
    lines = []
    for line in err.splitlines():
        if line.startswith(("time ", "model ")):
            continue
        first = line.split()[0] if line.split() else ""
        if first.isdigit() or first == "examples" and "avg loss" in line:
            line = line.rsplit(None, 1)[0]
        lines.append(line)
    return lines


def same_bits(a, b, where="state"):
    """``a`` and ``b`` (a learner's state: dicts of arrays, floats, ...)
    are equal bit for bit."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            same_bits(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert a.hex() == b.hex(), where
    else:
        assert a == b, where


@pytest.mark.parametrize("data,flags", [
    (A9A, [*FLAGS, "--batch-size", "100", "--passes", "3"]),
    (VW, ["--loss", "squared", "--update", "cumulative", "--l1", "1e-4", "--batch-size", "7",
          "--passes", "2"]),
], ids=["a9a", "vw-with-names"])
def test_read_ahead_learns_exactly_what_plain_reading_learns(capsys, tmp_path, data, flags):
    from onlinel1 import model_file
    runs = {}
    for tag, extra in (("ahead", []), ("plain", ["--no-read-ahead"])):
        model = tmp_path / f"{tag}.ol1"
        code, _, err = run(capsys, "train", data, *flags, *extra, "--save", model)
        assert code == 0, err
        runs[tag] = model_file.load(model), untimed(err)
    (ahead, ahead_names, ahead_extra), ahead_err = runs["ahead"]
    (plain, plain_names, plain_extra), plain_err = runs["plain"]
    keys, weights = ahead.weights()
    plain_keys, plain_weights = plain.weights()
    assert keys.tobytes() == plain_keys.tobytes() and keys.size > 10
    assert weights.tobytes() == plain_weights.tobytes()
    same_bits(ahead.state, plain.state)
    assert ahead_names == plain_names and ahead_extra == plain_extra
    if data == VW:
        assert len(ahead_names) > 50
    # The same progress lines (one each time the count doubles) and summary.
    assert ahead_err == plain_err
    table = [line.split()[0] for line in ahead_err if line.split()[0].isdigit()]
    assert table == (["1100", "2100", "4100", "6000"] if data == A9A else ["120"])


def test_train_parses_in_a_second_thread_unless_told_not_to(capsys, monkeypatch):
    import threading
    from onlinel1.io.readahead import THREAD_NAME
    threads = record_parsing_threads(monkeypatch)
    code, _, err = run(capsys, "train", A9A, "--batch-size", "100", "--passes", "2")
    assert code == 0, err
    assert threads == [THREAD_NAME] * 40
    threads.clear()
    code, _, err = run(capsys, "train", A9A, "--batch-size", "100", "--no-read-ahead")
    assert code == 0, err
    assert threads == [threading.current_thread().name] * 20
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.mark.parametrize("bad_line,message", [
    ("-1 3:1 x:y\n", "bad.svm:1500: bad feature 'x:y'"),
    ("7 3:1\n", "bad.svm:1500: label 7.0 is not -1/+1"),
], ids=["parse-error", "learner-error"])
def test_errors_mid_file_are_the_same_with_read_ahead(capsys, tmp_path, bad_line, message):
    import threading
    from onlinel1.io.readahead import THREAD_NAME
    lines = A9A.read_text().splitlines(keepends=True)
    lines[1499] = bad_line
    bad = tmp_path / "bad.svm"
    bad.write_text("".join(lines))
    errors = []
    for extra in ([], ["--no-read-ahead"]):
        code, _, err = run(capsys, "train", bad, "--batch-size", "100", "--save",
                           tmp_path / "m.ol1", *extra)
        assert code == 1
        errors.append(untimed(err))
        # No thread left running, though it was reading ahead of the error.
        assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]
    assert errors[0] == errors[1]
    assert message in errors[0][-1], errors[0]
    assert errors[0][-2].split()[0] == "1100"     # learned up to the error
    assert not (tmp_path / "m.ol1").exists()


def test_train_help_documents_read_ahead(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("--no-read-ahead parse the next block in a second thread while this one is "
            "learned (default); turn off to debug or to use one core") in out


def test_the_offline_commands_start_without_the_daemon_modules():
    # Every command builds the whole parser; the daemon's modules (ZeroMQ,
    # asyncio, the HTTP server) are imported by serve and cluster only, so
    # that train and predict start in less time.
    code = ("import sys; from onlinel1.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('zmq', 'asyncio', 'onlinel1.server.daemon', "
            "'onlinel1.server.auth', 'onlinel1.server.http') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]", out
