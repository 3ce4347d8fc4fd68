"""``predict --no-labels``: every line's label, if any, is taken as absent
(NaN), as with Vowpal Wabbit's ``-t`` on data whose labels are not to be
trusted: no metrics, no check of a label against the model's loss, and
the predictions of the run without the flag."""
from __future__ import annotations

import pytest

from onlinel1.cli import main

from conftest import SAMPLES
from test_cli import run

A9A = SAMPLES / "a9a_head2000.svm"
VW = SAMPLES / "vw0002_head60.vw"
FLAGS = ["--update", "fobos", "--l1", "1e-4", "--eta0", "0.2", "--schedule", "invscaling"]


def trained(capsys, tmp_path, data, *flags):
    model = tmp_path / "m.ol1"
    code, _, err = run(capsys, "train", data, *flags, "--quiet", "--save", model)
    assert code == 0, err
    return model


def without_label(line: str, fmt: str) -> str:
    """``line`` with its label left out (VW: its importance too; the tag
    and features stay)."""
    if fmt == "svmlight":
        return line.split(" ", 1)[1]
    return line[line.index(" ") + 1:].split(" ", 1)[1]


@pytest.mark.parametrize("fmt", ["svmlight", "vw"])
def test_no_labels_predicts_the_same_and_reports_no_metrics(capsys, tmp_path, fmt):
    data, flags = (A9A, FLAGS) if fmt == "svmlight" else (VW, ["--loss", "squared"])
    model = trained(capsys, tmp_path, data, *flags)
    code, expected, err = run(capsys, "predict", "--model", model, data)
    assert code == 0, err
    # The metrics of labelled data (evaluate.metric_items via print_items).
    metric = "log loss" if fmt == "svmlight" else "RMSE"
    assert "examples" in err and metric in err
    code, got, err = run(capsys, "predict", "--model", model, "--no-labels", data)
    assert code == 0, err
    assert got == expected and got.count("\n") == len(data.read_text().splitlines())
    assert err == ""                       # no metrics, and nothing else said


@pytest.mark.parametrize("label", ["0.25", "7"])
def test_labels_the_log_loss_refuses_are_ignored(capsys, tmp_path, label):
    model = trained(capsys, tmp_path, A9A, *FLAGS)
    lines = A9A.read_text().splitlines(keepends=True)[:50]
    bad = tmp_path / "bad.svm"
    bad.write_text("".join(lines[:10] + [f"{label} {without_label(lines[10], 'svmlight')}"]
                           + lines[11:]))
    # Without the flag, as before: the label is checked against the loss.
    code, out, err = run(capsys, "predict", "--model", model, bad)
    assert code == 1 and out == ""
    assert f"bad.svm:11: label {float(label)!r} is not -1/+1" in err
    # With it, the labels are not read as labels at all.
    code, got, err = run(capsys, "predict", "--model", model, "--no-labels", bad)
    assert code == 0, err
    assert err == ""
    plain = tmp_path / "plain.svm"        # the same lines, every label valid
    plain.write_text("".join(lines))
    code, expected, _ = run(capsys, "predict", "--model", model, plain)
    assert code == 0 and got == expected and got.count("\n") == 50


def test_a_mix_of_labelled_unlabelled_and_invalid_labels(capsys, tmp_path):
    model = trained(capsys, tmp_path, A9A, *FLAGS)
    lines = A9A.read_text().splitlines(keepends=True)[:90]
    mixed = tmp_path / "mixed.svm"
    mixed.write_text("".join(
        line if i % 3 == 0 else
        without_label(line, "svmlight") if i % 3 == 1 else
        f"{i / 10} {without_label(line, 'svmlight')}"       # 0.2, 0.5, 0.8, ...: invalid
        for i, line in enumerate(lines)))
    unlabelled = tmp_path / "x.svm"
    unlabelled.write_text("".join(without_label(line, "svmlight") for line in lines))
    code, expected, err = run(capsys, "predict", "--model", model, unlabelled)
    assert code == 0 and err == ""
    code, out, err = run(capsys, "predict", "--model", model, mixed)
    assert code == 1 and "mixed.svm:3: label 0.2 is not -1/+1" in err
    for batch_size in ("1000", "7"):
        code, got, err = run(capsys, "predict", "--model", model, "--no-labels",
                             "--batch-size", batch_size, mixed)
        assert code == 0, err
        assert got == expected and got.count("\n") == 90
        assert err == ""


def test_no_labels_with_strict_is_strict(capsys, tmp_path):
    # A model of VW names: no feature of the svmlight file has a weight in it.
    model = trained(capsys, tmp_path, VW, "--loss", "squared")
    code, out, err = run(capsys, "predict", "--model", model, "--strict", "--no-labels", A9A)
    assert code == 1 and out == ""
    assert "no feature of" in err and "nothing was written (--strict)" in err
    # Without --strict, the same warning, and the predictions written.
    code, out, err = run(capsys, "predict", "--model", model, "--no-labels", A9A)
    assert code == 0 and out.count("\n") == 2000
    assert "warning: no feature of" in err and "RMSE" not in err
    # A match in a later batch: everything is written, as without --no-labels.
    mixed = tmp_path / "mixed.vw"
    mixed.write_text("7 |z nothing known\n" * 5 + VW.read_text())
    code, plain, err = run(capsys, "predict", "--model", model, "--strict",
                           "--batch-size", "2", mixed)
    assert code == 0 and "RMSE" in err
    code, out, err = run(capsys, "predict", "--model", model, "--strict", "--no-labels",
                         "--batch-size", "2", mixed)
    assert code == 0 and err == ""
    assert out == plain and out.count("\n") == 65


def test_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "--no-labels" in out
