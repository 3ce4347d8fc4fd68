"""The offline command line as an evaluation tool (issue 16): predict
without labels and with metrics, train --test / --holdout-fraction /
--shuffle, passes over standard input, and the errors of the offline
commands (one line, lines counted the one way, the right exit status).

The oracles: scikit-learn's metrics on the predictions, a Learner fed the
rows in the documented order, and the files' own lines."""
from __future__ import annotations

import gzip
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import onlinel1
from onlinel1 import Batch, Learner, model_file
from onlinel1.cli import main
from onlinel1.io import read_batches

from conftest import SAMPLES, free_ports, load_svmlight

A9A = SAMPLES / "a9a_head2000.svm"
VW = SAMPLES / "vw0002_head60.vw"
FLAGS = ["--update", "fobos", "--l1", "1e-4", "--eta0", "0.2", "--schedule", "invscaling"]
OPTIONS = dict(update="fobos", l1=1e-4, eta0=0.2, schedule="invscaling")
REPO = SAMPLES.parent.parent


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def cli(*argv, stdin=None, timeout=120):
    """``python -m onlinel1 ARGV`` with ``stdin`` bytes: (status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "onlinel1", *map(str, argv)], input=stdin,
                          capture_output=True, timeout=timeout)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def summary(err: str) -> dict[str, str]:
    """The ``key  value`` lines of a summary printed on stderr."""
    out = {}
    for line in err.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2 and not parts[0][0].isdigit():
            out[parts[0]] = parts[1]
    return out


def numbers(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()])


def split_a9a(tmp_path, n_train=1500):
    lines = A9A.read_text().splitlines(keepends=True)
    train, test = tmp_path / "train.svm", tmp_path / "test.svm"
    train.write_text("".join(lines[:n_train]))
    test.write_text("".join(lines[n_train:]))
    return train, test


def trained(capsys, tmp_path, data=A9A, *flags, name="m.ol1"):
    model = tmp_path / name
    code, _, err = run(capsys, "train", data, *flags, "--quiet", "--save", model)
    assert code == 0, err
    return model


def same_model(a, b):
    la, lb = onlinel1.load(a), onlinel1.load(b)
    ka, wa = la.weights()
    kb, wb = lb.weights()
    assert ka.tobytes() == kb.tobytes() and ka.size > 10
    assert wa.tobytes() == wb.tobytes()
    assert la.intercept == lb.intercept
    assert la.examples_seen == lb.examples_seen


def assert_weights(model, learner):
    got = onlinel1.load(model)
    k1, w1 = got.weights()
    k2, w2 = learner.weights()
    assert k1.tobytes() == k2.tobytes() and k1.size > 10
    assert w1.tobytes() == w2.tobytes()
    assert got.intercept == learner.intercept


# ------------------------------------------------- predict: labels optional

def strip_labels(text: str, fmt: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        if fmt == "svmlight":
            out.append(line.split(" ", 1)[1])
        else:                      # VW: keep the tag and features
            out.append(line[line.index(" ") + 1:].split(" ", 1)[1])
    return "".join(out)


@pytest.mark.parametrize("fmt", ["svmlight", "vw"])
def test_predict_needs_no_labels(capsys, tmp_path, fmt):
    """Finding: predict required labels (VW's -t -p and our C predictor do
    not)."""
    data = A9A if fmt == "svmlight" else VW
    flags = FLAGS if fmt == "svmlight" else ["--loss", "squared"]
    model = trained(capsys, tmp_path, data, *flags)
    unlabelled = tmp_path / ("x.svm" if fmt == "svmlight" else "x.vw")
    unlabelled.write_text(strip_labels(data.read_text(), fmt))
    assert not unlabelled.read_text().startswith(data.read_text()[:4])
    code, expected, err = run(capsys, "predict", "--model", model, data)
    assert code == 0, err
    code, got, err = run(capsys, "predict", "--model", model, unlabelled)
    assert code == 0, err
    assert got == expected and got.count("\n") == len(data.read_text().splitlines())
    assert err == ""              # no labels: no metrics


def test_predict_takes_a_mix_of_labelled_and_unlabelled_lines(capsys, tmp_path):
    from sklearn.metrics import log_loss
    model = trained(capsys, tmp_path, A9A, *FLAGS)
    lines = A9A.read_text().splitlines(keepends=True)[:100]
    mixed = tmp_path / "mixed.svm"
    mixed.write_text("".join(line if i % 3 else line.split(" ", 1)[1]
                             for i, line in enumerate(lines)))
    code, out, err = run(capsys, "predict", "--model", model, mixed)
    assert code == 0, err
    p = numbers(out)
    assert p.size == 100
    labelled = np.arange(100) % 3 != 0
    y = np.array([float(line.split()[0]) for line in lines])[labelled]
    s = summary(err)
    assert s["examples"] == "100" and s["labelled"].startswith("66 ")
    assert float(s["log loss"]) == pytest.approx(log_loss(y > 0, p[labelled]), abs=1e-6)


# -------------------------------------------------------- predict: metrics

def test_predict_reports_log_loss_accuracy_and_auc_as_scikit_learn_computes_them(
        capsys, tmp_path):
    """Finding: predict reported no loss or accuracy (users computed them
    with awk)."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
    train, test = split_a9a(tmp_path)
    model = trained(capsys, tmp_path, train, *FLAGS)
    code, out, err = run(capsys, "predict", "--model", model, test)
    assert code == 0, err
    p = numbers(out)
    _, y = load_svmlight(test)
    s = summary(err)
    assert s["examples"] == "500"
    assert float(s["log loss"]) == pytest.approx(log_loss(y > 0, p), abs=1e-6)
    assert float(s["accuracy"]) == pytest.approx(accuracy_score(y > 0, p > 0.5), abs=1e-6)
    assert float(s["AUC"]) == pytest.approx(roc_auc_score(y > 0, p), abs=1e-6)
    assert 0.6 < float(s["AUC"]) < 1.0


def test_predict_reports_rmse_and_mae_for_the_squared_loss_weighted_by_importance(
        capsys, tmp_path):
    from sklearn.metrics import mean_absolute_error, mean_squared_error
    weighted = tmp_path / "w.vw"
    rows = VW.read_text().splitlines(keepends=True)
    # Importance 1, 2, 3, ... so that unweighted metrics would differ.
    weighted.write_text("".join(f"{r.split(' ', 2)[0]} {i % 4 + 1} {r.split(' ', 2)[2]}"
                                for i, r in enumerate(rows)))
    model = trained(capsys, tmp_path, VW, "--loss", "squared", "--update", "cumulative",
                    "--l1", "1e-5")
    code, out, err = run(capsys, "predict", "--model", model, weighted)
    assert code == 0, err
    m = numbers(out)
    y = np.array([float(r.split()[0]) for r in rows])
    w = np.arange(len(rows)) % 4 + 1.0
    s = summary(err)
    assert float(s["RMSE"]) == pytest.approx(
        np.sqrt(mean_squared_error(y, m, sample_weight=w)), abs=1e-6)
    assert float(s["MAE"]) == pytest.approx(mean_absolute_error(y, m, sample_weight=w), abs=1e-6)
    assert float(s["MAE"]) != pytest.approx(mean_absolute_error(y, m), abs=1e-6)
    assert "accuracy" not in s and "AUC" not in s


def test_predict_reports_the_hinge_loss_of_a_hinge_model_and_quiet_leaves_it_out(
        capsys, tmp_path):
    from sklearn.metrics import hinge_loss, roc_auc_score
    train, test = split_a9a(tmp_path)
    model = trained(capsys, tmp_path, train, "--loss", "hinge", "--update", "fobos",
                    "--l1", "1e-4")
    code, out, err = run(capsys, "predict", "--model", model, test)
    assert code == 0, err
    m = numbers(out)                       # margins for the hinge loss
    _, y = load_svmlight(test)
    s = summary(err)
    assert float(s["hinge loss"]) == pytest.approx(hinge_loss(y, m), abs=1e-6)
    assert float(s["AUC"]) == pytest.approx(roc_auc_score(y > 0, m), abs=1e-6)
    code, quiet_out, err = run(capsys, "predict", "--model", model, test, "--quiet")
    assert code == 0 and err == "" and quiet_out == out


def test_auc_of_ties_and_importance_is_scikit_learns():
    from sklearn.metrics import roc_auc_score
    from onlinel1.evaluation import auc
    rng = np.random.default_rng(7)
    scores = np.round(rng.normal(size=3000), 1)        # many ties
    positive = rng.random(3000) < 0.3
    w = rng.random(3000) * 2
    assert auc(scores, positive, w) == pytest.approx(
        roc_auc_score(positive, scores, sample_weight=w), abs=1e-12)
    assert auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert auc(scores, np.ones(3000, bool)) is None


# --------------------------------------------- predict: no feature matched

def test_predict_warns_when_no_feature_of_the_input_is_in_the_model(capsys, tmp_path):
    """Finding: a model trained on hashed VW strings, applied to a9a, gave
    identical predictions with exit 0 and no warning."""
    model = trained(capsys, tmp_path, VW, "--loss", "squared")
    code, out, err = run(capsys, "predict", "--model", model, A9A)
    assert code == 0
    assert len(set(out.split())) == 1 and out.count("\n") == 2000
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "no feature of" in warnings[0] and "2000 predictions" in warnings[0]
    assert "--strict" in warnings[0]
    # The right data: no warning.
    code, _, err = run(capsys, "predict", "--model", model, VW)
    assert code == 0 and "warning" not in err


def test_predict_strict_makes_it_an_error_and_writes_nothing(tmp_path, capsys):
    model = trained(capsys, tmp_path, VW, "--loss", "squared")
    code, out, err = cli("predict", "--model", model, "--strict", A9A)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no feature of" in lines[0] and "Traceback" not in err
    # A match in a later batch: everything is written, in order.
    mixed = tmp_path / "mixed.vw"
    mixed.write_text("1 |z nothing known\n" * 5 + VW.read_text())
    code, out, err = cli("predict", "--model", model, "--strict", "--batch-size", "2", mixed)
    assert code == 0, err
    code, plain, _ = cli("predict", "--model", model, mixed)
    assert out == plain and out.count("\n") == 65


# -------------------------------------------------- predict: a snapshot dir

@pytest.mark.parametrize("flags, line", [
    ([], None),
    (["--adaptive"], "steps             adaptive=True minibatch=1"),
    (["--minibatch", "7"], "steps             adaptive=False minibatch=7"),
])
def test_inspect_shows_adaptive_steps_and_mini_batches(capsys, tmp_path, flags, line):
    model = tmp_path / "m.ol1"
    code, _, err = run(capsys, "train", A9A, "--update", "cumulative", "--l1", "1e-4",
                       "--quiet", "--save", model, *flags)
    assert code == 0, err
    code, out, err = run(capsys, "inspect", model)
    assert code == 0, err
    steps = [row for row in out.splitlines() if row.startswith("steps ")]
    assert steps == ([line] if line else [])


def test_predict_and_inspect_take_a_snapshot_directory(capsys, tmp_path):
    """Finding: predict --model DIR (which serve --model accepts) failed with
    a raw [Errno 21]."""
    from onlinel1.server.snapshots import SnapshotDir, write_now
    model = trained(capsys, tmp_path, A9A, *FLAGS)
    learner, names, _ = model_file.load(model)
    def snapshots(directory):
        snapshot_dir = SnapshotDir(directory, 3)
        snapshot_dir.ensure()
        return snapshot_dir

    one = tmp_path / "snapshots"
    write_now(snapshots(one), Learner(update="fobos", l1=1e-4), {}, {}, "manual")
    write_now(snapshots(one), learner, names, {"p": 7}, "manual")   # the newest
    daemon = tmp_path / "daemon"
    write_now(snapshots(daemon / "default"), learner, names, {}, "manual")
    code, expected, err = run(capsys, "predict", "--model", model, A9A)
    assert code == 0, err
    for directory in (one, daemon):
        code, out, err = run(capsys, "predict", "--model", directory, A9A)
        assert code == 0, err
        assert out == expected
    code, out, err = run(capsys, "inspect", one)
    assert code == 0, err
    assert "snapshot          #2 (manual" in out and "p: last batch seq 7" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli("predict", "--model", empty, A9A)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "no valid snapshot" in err and "Errno" not in err


# ------------------------------------------------------------ train --test

def test_train_test_scores_the_model_after_every_pass(capsys, tmp_path):
    """Finding: train had no --test."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
    train, test = split_a9a(tmp_path)
    model = tmp_path / "m.ol1"
    code, _, err = run(capsys, "train", train, *FLAGS, "--passes", "3", "--test", test,
                       "--save", model)
    assert code == 0, err
    per_pass = [line for line in err.splitlines() if re.match(r"pass \d+ +test", line)]
    assert [line.split()[1] for line in per_pass] == ["1", "2", "3"]
    # The last pass's line and the summary: the saved model's metrics.
    code, out, _ = run(capsys, "predict", "--model", model, test)
    p = numbers(out)
    _, y = load_svmlight(test)
    s = summary(err)
    assert s["test examples"] == "500"
    assert float(s["test log loss"]) == pytest.approx(log_loss(y > 0, p), abs=1e-6)
    assert float(s["test accuracy"]) == pytest.approx(accuracy_score(y > 0, p > 0.5), abs=1e-6)
    assert float(s["test AUC"]) == pytest.approx(roc_auc_score(y > 0, p), abs=1e-6)
    assert f"log loss {s['test log loss']}" in per_pass[-1]
    # Evaluating learns nothing: the same model as without --test.
    plain = tmp_path / "plain.ol1"
    assert run(capsys, "train", train, *FLAGS, "--passes", "3", "--save", plain)[0] == 0
    same_model(model, plain)


def test_train_test_needs_a_file(capsys, tmp_path):
    for test, message in (("-", "--test needs a file"), (tmp_path / "nope.svm", "no such file")):
        code, _, err = cli("train", A9A, "--test", test)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------- train --holdout

def test_holdout_fraction_holds_out_every_kth_example(capsys, tmp_path):
    """--holdout-fraction 0.1: examples 10, 20, ... are never learned and
    are scored after every pass (VW's --holdout_period 10)."""
    from sklearn.metrics import log_loss, roc_auc_score
    model = tmp_path / "m.ol1"
    code, _, err = run(capsys, "train", A9A, *FLAGS, "--passes", "2", "--holdout-fraction",
                       "0.1", "--batch-size", "333", "--save", model)
    assert code == 0, err
    X, y = load_svmlight(A9A)
    index = np.arange(1, 2001)
    kept, held = index % 10 != 0, index % 10 == 0
    oracle = Learner(**OPTIONS)
    for _ in range(2):
        oracle.learn(Batch.from_csr(X[kept], y[kept]))
    assert_weights(model, oracle)
    p = oracle.predict(Batch.from_csr(X[held]))
    s = summary(err)
    assert s["examples"] == str(2 * 1800)
    assert s["holdout examples"] == "200"
    assert float(s["holdout log loss"]) == pytest.approx(log_loss(y[held] > 0, p), abs=1e-6)
    assert float(s["holdout AUC"]) == pytest.approx(roc_auc_score(y[held] > 0, p), abs=1e-6)
    assert len([line for line in err.splitlines() if " holdout " in f" {line}"
                and line.startswith("pass ")]) == 2


@pytest.mark.parametrize("fraction", ["0", "0.6", "-1"])
def test_holdout_fraction_out_of_range_is_refused(fraction):
    code, _, err = cli("train", A9A, "--holdout-fraction", fraction)
    assert code == 1 and "--holdout-fraction must be in (0, 0.5]" in err


# ------------------------------------------------------- train --shuffle

def test_shuffle_learns_each_pass_in_the_documented_permutation(capsys, tmp_path):
    """Finding: passes re-read the file without shuffling."""
    model = tmp_path / "m.ol1"
    code, _, err = run(capsys, "train", A9A, *FLAGS, "--passes", "3", "--shuffle", "--seed",
                       "5", "--batch-size", "256", "--save", model)
    assert code == 0, err
    assert summary(err)["passes"] == "3 (shuffled)"
    X, y = load_svmlight(A9A)
    rng = np.random.RandomState(5)
    oracle = Learner(**OPTIONS)
    for _ in range(3):
        order = rng.permutation(2000)
        oracle.learn(Batch.from_csr(X[order], y[order]))
    assert_weights(model, oracle)
    # Another seed, another model; file order, another again.
    other = tmp_path / "o.ol1"
    assert run(capsys, "train", A9A, *FLAGS, "--passes", "3", "--shuffle", "--seed", "6",
               "--save", other)[0] == 0
    assert onlinel1.load(other).weights()[1].tobytes() != oracle.weights()[1].tobytes()


def test_shuffle_with_holdout_holds_out_the_same_examples(capsys, tmp_path):
    model = tmp_path / "m.ol1"
    code, _, err = run(capsys, "train", A9A, *FLAGS, "--passes", "2", "--shuffle",
                       "--holdout-fraction", "0.25", "--save", model)
    assert code == 0, err
    X, y = load_svmlight(A9A)
    kept = np.flatnonzero(np.arange(1, 2001) % 4 != 0)
    rng = np.random.RandomState(0)
    oracle = Learner(**OPTIONS)
    for _ in range(2):
        order = kept[rng.permutation(kept.size)]
        oracle.learn(Batch.from_csr(X[order], y[order]))
    assert_weights(model, oracle)


def test_shuffle_names_the_first_bad_line_of_the_file(tmp_path):
    bad = tmp_path / "bad.svm"
    lines = A9A.read_text().splitlines(keepends=True)
    lines[1200] = "5 3:1\n"
    lines[1700] = "7 3:1\n"
    bad.write_text("".join(lines))
    code, _, err = cli("train", bad, "--shuffle", "--quiet")
    assert code == 1 and f"{bad}:1201: label 5.0" in err


# ------------------------------------------------- passes over stdin

def test_passes_over_stdin_learn_every_pass(tmp_path, capsys):
    """Finding: `cat a9a | onlinel1 train - --passes 2` did one pass and
    printed `passes 2`."""
    piped, from_file = tmp_path / "piped.ol1", tmp_path / "file.ol1"
    code, _, err = cli("train", "-", *FLAGS, "--passes", "2", "--batch-size", "300",
                       "--save", piped, stdin=A9A.read_bytes())
    assert code == 0, err
    s = summary(err)
    assert s["examples"] == "4000" and s["passes"] == "2"
    assert run(capsys, "train", A9A, *FLAGS, "--passes", "2", "--save", from_file)[0] == 0
    same_model(piped, from_file)


def test_passes_over_stdin_beyond_the_buffer_bound_stop_with_a_clear_message(tmp_path):
    big = A9A.read_bytes() * 40                  # 80,000 rows: more than 1 MiB of examples
    code, _, err = cli("train", "-", "--passes", "2", "--buffer-mb", "1", "--quiet", stdin=big)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "<stdin>: --passes 2 over standard input keeps examples in memory" in lines[0]
    assert "--buffer-mb 1" in lines[0]
    # One pass streams: no bound.
    code, _, err = cli("train", "-", "--buffer-mb", "1", "--quiet", stdin=big)
    assert code == 0, err


# ------------------------------------------------------------ gzip stdin

def test_gzip_on_stdin_and_in_a_file_of_any_name_is_detected(tmp_path, capsys):
    """Finding: gzip on stdin was not detected."""
    plain = tmp_path / "plain.ol1"
    assert run(capsys, "train", A9A, *FLAGS, "--save", plain)[0] == 0
    packed = gzip.compress(A9A.read_bytes())
    piped = tmp_path / "piped.ol1"
    code, _, err = cli("train", "-", *FLAGS, "--quiet", "--save", piped, stdin=packed)
    assert code == 0, err
    same_model(piped, plain)
    misnamed = tmp_path / "a9a.svm"              # gzip without the .gz name
    misnamed.write_bytes(packed)
    code, out, err = run(capsys, "predict", "--model", plain, misnamed)
    assert code == 0, err
    code, out_stdin, err = cli("predict", "--model", plain, "-", stdin=packed)
    assert code == 0, err
    assert out_stdin == out and out.count("\n") == 2000
    # A parse error in the gzip stream names the line after decompression.
    bad = gzip.compress(b"1 3:1\n\n1 4:x\n")
    code, _, err = cli("train", "-", stdin=bad)
    assert code == 1 and "<stdin>:3: bad feature" in err


# --------------------------------------------------------------- empty

@pytest.mark.parametrize("content", ["", "\n\n# only a comment\n"], ids=["empty", "comments"])
@pytest.mark.parametrize("command", ["train", "predict"])
def test_an_input_without_examples_is_a_usage_error(capsys, tmp_path, content, command):
    """Finding: an empty input file exited 0 with a nan loss."""
    empty = tmp_path / "empty.svm"
    empty.write_text(content)
    argv = ["train", empty] if command == "train" else \
        ["predict", "--model", SAMPLES / "v1_a9a_fobos.ol1", empty]
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines == [f"onlinel1: error: {empty}: no examples (the input is empty, or only "
                     f"blank and comment lines)"]
    code, _, err = cli(*argv[:-1], "-", stdin=content.encode())
    assert code == 2 and "<stdin>: no examples" in err


def test_an_empty_test_file_is_a_usage_error(tmp_path):
    empty = tmp_path / "empty.svm"
    empty.write_text("")
    code, _, err = cli("train", A9A, "--test", empty, "--quiet")
    assert code == 2 and f"--test {empty}: no examples" in err


# ---------------------------------------------------------- line numbers

@pytest.mark.parametrize("batch_size", ["1", "7", "8192"])
@pytest.mark.parametrize("read_ahead", [[], ["--no-read-ahead"]], ids=["ahead", "plain"])
def test_label_errors_name_the_line_and_suggest_the_squared_loss(tmp_path, batch_size,
                                                                 read_ahead):
    """Finding: label errors mixed 1-based and 0-based rows ("example 2:
    ... in row 0") and did not suggest --loss squared."""
    bad = tmp_path / "bad.svm"
    # Blank and comment lines count for the line number.
    bad.write_text("1 3:1\n\n# a comment\n-1 4:1\n0.25 3:1\n1 5:1\n")
    code, _, err = cli("train", bad, "--batch-size", batch_size, "--quiet", *read_ahead)
    assert code == 1
    lines = err.strip().splitlines()
    assert lines == [f"onlinel1: error: {bad}:5: label 0.25 is not -1/+1 (or 0/1), which the "
                     f"log loss needs; for real-valued labels, train with --loss squared"]
    assert "row" not in lines[0] and "example" not in lines[0]


def test_every_error_of_a_line_counts_lines_the_same_way(tmp_path):
    lines = "1 3:1\n# comment\n\n1 4:inf\n"
    bad = tmp_path / "values.svm"
    bad.write_text(lines)
    model = SAMPLES / "v1_a9a_fobos.ol1"
    for argv in (["train", bad], ["predict", "--model", model, bad]):
        code, _, err = cli(*argv, "--quiet")
        assert code == 1 and f"{bad}:4: feature value inf is not finite" in err, err
    # A label predict cannot evaluate the model's loss on.
    labels = tmp_path / "labels.svm"
    labels.write_text("1 3:1\n\n3 4:1\n")
    code, out, err = cli("predict", "--model", model, labels)
    assert code == 1 and f"{labels}:3: label 3.0 is not -1/+1" in err
    # An example that overflows the learner (importance 1e308 at value 100).
    big = tmp_path / "big.vw"
    big.write_text("1 |f a\n\n1 1e308 |f b:100\n1 |f c\n")
    saved = tmp_path / "big.ol1"
    code, _, err = cli("train", big, "--quiet", "--save", saved)
    assert code == 1
    assert f"{big}:3: its weight update is not finite" in err, err
    assert err.strip().endswith("; the model was not saved"), err
    assert len(err.strip().splitlines()) == 1
    assert not saved.exists()   # train learns without the undo journal: nothing to keep


def test_unlabelled_lines_are_still_an_error_for_train(tmp_path):
    bad = tmp_path / "bad.svm"
    bad.write_text("1 3:1\n3:1 4:1\n")
    code, _, err = cli("train", bad)
    assert code == 1 and f"{bad}:2: bad label '3:1'" in err


# ---------------------------------------------------------------- flags

@pytest.mark.parametrize("argv,where", [
    (["train", str(A9A), "--bogus"], "onlinel1 train --help"),
    (["predict", "--model", "m", str(A9A), "--bogus"], "onlinel1 predict --help"),
    (["inspect", "m", "--bogus"], "onlinel1 inspect --help"),
    (["models", "list", "--bogus"], "onlinel1 models list --help"),
])
def test_an_unknown_flag_points_to_the_subcommands_help(argv, where):
    """Finding: an unknown flag pointed to `onlinel1 --help`."""
    code, _, err = cli(*argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unrecognized arguments: --bogus" in lines[0]
    assert lines[0].endswith(f"(see {where})")


def test_train_quiet_prints_nothing(tmp_path):
    """Finding: train --quiet still printed (the summary)."""
    code, out, err = cli("train", A9A, "--quiet")
    assert code == 0 and out == "" and err == ""
    code, out, err = cli("train", A9A, "--quiet", "--passes", "2", "--holdout-fraction", "0.1",
                         "--test", A9A, "--save", tmp_path / "m.ol1")
    assert code == 0 and out == "" and err == ""
    assert (tmp_path / "m.ol1").exists()
    code, out, err = cli("train", tmp_path / "missing.svm", "--quiet")
    assert code == 1 and "no such file" in err           # errors still


def test_a_bad_learner_setting_in_the_config_file_names_the_file_and_key(tmp_path):
    """Finding: a bad l1 in the TOML config file was reported as --l1."""
    config = tmp_path / "onlinel1.toml"
    config.write_text("[learner]\nupdate = 'fobos'\nl1 = -1.0\n")
    code, _, err = cli("serve", "--config", config, "--check")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"{config}: [learner] l1 must be >= 0, got -1.0" in lines[0]
    assert "--l1" not in lines[0]
    # The flag, when the flag is at fault.
    code, _, err = cli("serve", "--config", config, "--l1", "-2", "--check")
    assert code == 1 and "--l1 must be >= 0, got -2.0" in err and str(config) not in err


def test_serve_predict_only_check_claims_no_training_endpoint(tmp_path, capsys):
    """Finding: serve --predict-only --check claimed a training endpoint."""
    model = trained(capsys, tmp_path, A9A, *FLAGS)
    (request,) = free_ports(1)
    endpoint = f"tcp://127.0.0.1:{request}"
    code, _, err = cli("serve", "--predict-only", "--model", model, "--request-endpoint",
                       endpoint, "--check", timeout=60)
    assert code == 0, err
    line = [x for x in err.splitlines() if "configuration ok" in x]
    assert line == [f"configuration ok: a predict-only replica of {model} (no training "
                    f"endpoint), requests on {endpoint}"]


# -------------------------------------------------------- path_report.py

def load_path_report():
    spec = importlib.util.spec_from_file_location(
        "path_report", REPO / "benchmarks" / "path_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_path_report_writes_its_own_folder_and_leaves_the_committed_one(tmp_path,
                                                                         monkeypatch):
    """Finding: benchmarks/path_report.py rewrote the committed results on
    every run.  The data, the path and the plot are stubbed: what is tested
    is where the files go."""
    report = load_path_report()
    committed = report.COMMITTED_OUT
    before = {p.name: p.read_bytes() for p in committed.iterdir()}
    batch = next(read_batches(str(A9A), "svmlight", batch_size=200))

    monkeypatch.setattr(report, "load", lambda name, data: (batch, batch, name))
    monkeypatch.setattr(report, "versions", lambda: "stub")
    monkeypatch.setattr(report.regpath, "plot", lambda rows, path, title: open(path, "w").close())
    real = report.regpath.run_path

    def tiny(train, test, rules, grid, base, **kw):
        kw.update(passes=1, reference=False, tune=None)
        return real(train, test, rules[:2], grid, base, **kw)

    monkeypatch.setattr(report.regpath, "run_path", tiny)
    monkeypatch.setattr(report.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "auto"))
    (tmp_path / "auto").mkdir()
    assert report.main(["--datasets", "a9a", "--l1-steps", "1", "--l1-min", "1e-3",
                        "--l1-max", "1e-3", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == \
        ["a9a.csv", "a9a.png", "report.md"]
    assert "s of CPU" in (tmp_path / "auto" / "report.md").read_text()
    out = tmp_path / "given"
    assert report.main(["--datasets", "a9a", "--l1-steps", "1", "--l1-min", "1e-3",
                        "--l1-max", "1e-3", "--quiet", "--out", str(out)]) == 0
    assert (out / "report.md").exists()
    assert {p.name: p.read_bytes() for p in committed.iterdir()} == before
    # --update-committed is what writes there.
    import argparse
    args = argparse.Namespace(update_committed=True, out=None)
    assert report.output_folder(args) == committed
    with pytest.raises(SystemExit):
        report.main(["--out", str(out), "--update-committed"])


def test_path_report_states_a_measured_running_time():
    """Finding: "about 2.5 minutes" was not what it took here; the claim
    is now a measured figure with its date, in the script and the README."""
    text = " ".join((REPO / "benchmarks" / "path_report.py").read_text().split())
    assert "about three minutes" not in text
    assert re.search(r"On 2026-12-\d\d the same command took [\d,]+ s of wall-clock time", text)
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "in about 2.5 minutes on this 2-core" not in readme
    assert re.search(r"2026-12-\d\d.{0,80}[\d,]+ s of wall-clock time", readme)


# -------------------------------------------------------------- inspect

@pytest.mark.parametrize("record,shown", [
    ({}, "snapshot          (no seq)"),
    ({"seq": 4}, "snapshot          #4\n"),
    ({"seq": 4, "reason": "periodic"}, "snapshot          #4 (periodic)\n"),
    ({"unix_time": 1.8e9, "producers": {"p": 2}},
     "snapshot          (no seq) (2027-01-15 08:00:00 UTC)\nproducer          p: last batch seq 2"),
], ids=["nothing", "seq", "seq-reason", "time-producers"])
def test_inspect_reads_a_snapshot_record_missing_any_field(capsys, tmp_path, record, shown):
    """Finding (tests/test_fuzz_regressions.py, an xfail until now): inspect
    raised KeyError on a snapshot without producers, seq, reason or
    unix_time; every field is optional to a reader."""
    path = tmp_path / "s.ol1"
    learner = Learner(update="fobos", l1=1e-4)
    learner.learn(next(read_batches(str(A9A), "svmlight", batch_size=50)))
    try:
        model_file.save(path, learner, {}, extra={"snapshot": record})
    except model_file.ModelFileError as exc:       # the writer refuses it: nothing to read
        pytest.skip(f"the model file writer refuses {record}: {exc}")
    code, out, err = run(capsys, "inspect", path)
    assert code == 0, err
    assert shown in out


def test_inspect_prints_and_exports_names_that_are_not_utf8(tmp_path):
    data = SAMPLES / "fuzz" / "vw" / "non-utf8-name.vw"
    model = tmp_path / "m.ol1"
    assert cli("train", data, "--loss", "squared", "--quiet", "--save", model)[0] == 0
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    for export in ("w.tsv", "w.json"):
        proc = subprocess.run([sys.executable, "-m", "onlinel1", "inspect", str(model),
                               "--export", str(tmp_path / export)], capture_output=True,
                              timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        assert b"caf\\xe9" in proc.stdout                 # the byte, escaped, in the listing
    assert b"caf\xe9" in (tmp_path / "w.tsv").read_bytes()
    import json
    names = [row.get("name") for row in json.loads((tmp_path / "w.json").read_text())]
    assert "caf\udce9" in "".join(n for n in names if n)


# ----------------------------------------------------- the readers beneath

@pytest.mark.parametrize("block_size", [7, 64, 1 << 20])
@pytest.mark.parametrize("batch_size", [1, 3, 8192])
def test_every_row_knows_its_line(block_size, batch_size):
    """The oracle: the lines of the text itself, blank, comment, CRLF and
    BOM lines included."""
    import io
    text = (b"\xef\xbb\xbf1 3:1\r\n\n# comment\n-1 4:2 # tail\n   \n1 5:1\r\n"
            + b"".join(b"-1 %d:1\n" % i for i in range(20)) + b"\n1 9:1")
    expected = [i + 1 for i, line in enumerate(text.split(b"\n"))
                if line.strip(b" \r\xef\xbb\xbf") and not line.startswith(b"#")
                and not line.strip().startswith(b"#")]
    got = [line for batch in read_batches(io.BytesIO(text), "svmlight", batch_size,
                                          block_size=block_size)
           for line in batch.lines.tolist()]
    assert got == expected and len(got) == 24


@pytest.mark.parametrize("fmt,labelled,unlabelled,labels", [
    ("svmlight", b"1 3:1 4:0.5\n-1 qid:2 7:1\n0 2:1\n", b"3:1 4:0.5\nqid:2 7:1\n0 2:1\n",
     [np.nan, np.nan, 0.0]),
    ("vw", b"1 |f a b:2\n-1 2 'id |g c\n0.5 tag|f a\n1 | d\n",
     b"|f a b:2\n'id |g c\ntag|f a\n| d\n", [np.nan] * 4),
])
def test_optional_labels_read_the_same_features(fmt, labelled, unlabelled, labels):
    import io
    from onlinel1.io import ParseError
    full = next(read_batches(io.BytesIO(labelled), fmt))
    bare = next(read_batches(io.BytesIO(unlabelled), fmt, optional_labels=True))
    assert bare.keys.tolist() == full.keys.tolist() and bare.keys.size
    assert bare.values.tolist() == full.values.tolist()
    assert bare.indptr.tolist() == full.indptr.tolist()
    np.testing.assert_array_equal(bare.labels, labels)
    if fmt == "vw":
        assert bare.weights.tolist() == [1.0] * len(labels)
    # Without optional_labels (training data) the same text is refused.
    with pytest.raises(ParseError):
        list(read_batches(io.BytesIO(unlabelled), fmt))


@pytest.mark.parametrize("peek", [True, False], ids=["buffered", "raw-read"])
def test_gzip_is_recognised_in_any_binary_stream(peek):
    import io

    class ReadOnly:                  # a stream with read() only: no peek, no readinto
        def __init__(self, data):
            self._f = io.BytesIO(data)

        def read(self, n=-1):
            return self._f.read(min(n, 5) if n > 0 else n)    # short reads, too

    data = A9A.read_bytes()[:5000].rsplit(b"\n", 1)[0] + b"\n"
    plain = next(read_batches(io.BytesIO(data), "svmlight"))
    for payload in (gzip.compress(data), data):
        stream = io.BufferedReader(io.BytesIO(payload)) if peek else ReadOnly(payload)
        got = next(read_batches(stream, "svmlight"))
        assert got.keys.tolist() == plain.keys.tolist()
        assert got.labels.tolist() == plain.labels.tolist()
    assert list(read_batches(io.BytesIO(b""), "svmlight")) == []
    from onlinel1.io import ParseError
    with pytest.raises(ParseError):          # one byte of the magic is text, and bad text
        list(read_batches(ReadOnly(b"\x1f"), "svmlight"))
