"""``onlinel1 send FILE.vw`` and ``onlinel1 predict --connect E FILE.vw``
read the file with the daemon's model's interactions (``-q``) and
``namespaced_integers``, asked of the daemon (``config``), since the
columnar batches they send carry no namespaces for the daemon to cross
(issue 16; docs/protocol.md, "Interactions and namespaced integers").

The oracle is offline ``onlinel1 train -q ...`` / ``predict --model`` on
the same file, whose crossing tests/test_vw_habits.py checks against an
eager reference: the daemon's weights, its margins and ``predict
--connect``'s output must be theirs bit for bit."""
from __future__ import annotations

import random

import numpy as np
import pytest

import onlinel1
from onlinel1 import model_file
from onlinel1.cli import main
from onlinel1.client import Client, DaemonError
from onlinel1.io import read_batches

FLAGS = ["--update", "fobos", "--l1", "1e-4", "--eta0", "0.3"]
TERMS = ["ab", " a", "bb"]
NAMESPACES = ["a", "alpha", "b", "c"]
NAMES = ["x", "y2", "42", "7", "hello"]


def vw_lines(seed: int, n: int, labels: bool = True) -> str:
    """``n`` random VW lines over a few namespaces, integer and string names."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = [str(rng.choice([-1, 1]))] if labels else []
        parts.append(" ".join(["|"] + [f"{name}:{rng.uniform(-2, 2):.3f}"
                                       for name in rng.sample(NAMES, rng.randint(0, 2))]))
        for ns in rng.sample(NAMESPACES, rng.randint(1, 3)):
            parts.append(" ".join([f"|{ns}"] + [f"{name}:{rng.uniform(-3, 3):.3f}"
                                                for name in rng.sample(NAMES, rng.randint(1, 3))]))
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot_model(daemon, tmp_path):
    with Client(daemon.request, timeout=30) as client:
        done = client.snapshot()
    return model_file.load(tmp_path / "snaps" / "default" / done["file"])[0]


@pytest.fixture
def files(tmp_path):
    train, test = tmp_path / "train.vw", tmp_path / "test.vw"
    train.write_text(vw_lines(5, 300))
    test.write_text(vw_lines(6, 80, labels=False))
    return train, test


@pytest.mark.parametrize("namespaced", [False, True], ids=["plain-integers", "namespaced"])
def test_send_and_predict_connect_cross_as_train_and_predict_model(
        capsys, tmp_path, start_daemon, files, namespaced):
    train, test = files
    extra = [f for t in TERMS for f in ("-q", t)] + (["--namespaced-integers"] if namespaced
                                                     else [])
    saved = tmp_path / "offline.ol1"
    code, _, err = run(capsys, "train", train, *FLAGS, *extra, "--quiet", "--save", saved)
    assert code == 0, err
    offline = model_file.load(saved)[0]
    assert offline.weights()[0].size > 100

    daemon = start_daemon(*FLAGS, *extra, "--snapshot-dir", tmp_path / "snaps")
    code, _, err = run(capsys, "send", train, "--connect", daemon.train, "--request-endpoint",
                       daemon.request, "--batch-size", 37, "--no-progress")
    assert code == 0, err
    assert "sent 300 examples" in err and "warning" not in err
    online = snapshot_model(daemon, tmp_path)
    assert online.options.interactions == offline.options.interactions
    for a, b in zip(online.weights(), offline.weights()):
        np.testing.assert_array_equal(a, b)

    # The daemon's margins of the crossed test rows are train's, bit for bit.
    learner = onlinel1.load(saved)
    crossed = next(iter(read_batches(str(test), "vw", batch_size=1000, optional_labels=True,
                                     interactions=TERMS, namespaced_integers=namespaced)))
    crossed = onlinel1.Batch(crossed.indptr, crossed.keys, crossed.values)
    with Client(daemon.request, timeout=30) as client:
        margins = client.predict(crossed, output="margin")["predictions"]
    np.testing.assert_array_equal(margins, learner.decision_function(crossed))

    # predict --connect prints what predict --model prints.
    code, want, err = run(capsys, "predict", "--model", saved, test)
    assert code == 0, err
    code, got, err = run(capsys, "predict", "--connect", daemon.request, test,
                         "--batch-size", 29)
    assert code == 0, err
    assert got == want and len(want.split()) == 80
    assert "warning" not in err


def test_uncrossed_rows_would_give_other_predictions(capsys, tmp_path, start_daemon, files):
    """The check above can fail: read without the interactions (a send
    with no request endpoint to ask), the same file trains another model,
    and a warning says so; ``--no-check`` says nothing (it asks nothing)."""
    train, _ = files
    saved = tmp_path / "offline.ol1"
    assert run(capsys, "train", train, *FLAGS, "-q", "ab", "--quiet", "--save", saved)[0] == 0
    daemon = start_daemon(*FLAGS, "-q", "ab", "--snapshot-dir", tmp_path / "snaps")
    code, _, err = run(capsys, "send", train, "--connect", daemon.train, "--no-progress")
    assert code == 0, err
    assert "warning: " + str(train) + " is read without the model's interactions" in err
    assert "no request endpoint to ask for them: give --request-endpoint" in err
    code, _, err = run(capsys, "send", train, "--connect", daemon.train, "--no-check",
                       "--no-progress")
    assert code == 0 and "warning" not in err, err
    daemon.wait_stats(lambda s: s["examples"] >= 600)
    online = snapshot_model(daemon, tmp_path)
    assert online.weights()[0].size < model_file.load(saved)[0].weights()[0].size


def test_a_refused_config_falls_back_with_a_warning(capsys, tmp_path, start_daemon, files,
                                                    monkeypatch):
    train, test = files
    daemon = start_daemon(*FLAGS, "-q", "ab")

    def refuse(self, *, model=None):
        raise DaemonError("forbidden", "config is not for you")
    monkeypatch.setattr(Client, "config", refuse)
    code, _, err = run(capsys, "send", train, "--connect", daemon.train, "--request-endpoint",
                       daemon.request, "--no-progress")
    assert code == 0, err
    assert "the daemon refused 'config' (forbidden: config is not for you)" in err
    code, out, err = run(capsys, "predict", "--connect", daemon.request, test)
    assert code == 0, err
    assert "warning" in err and "refused 'config'" in err and len(out.split()) == 80


def test_svmlight_data_for_a_q_model_is_refused(capsys, tmp_path, start_daemon):
    """svmlight has no namespaces to cross: sent uncrossed it would train
    another model than train gives, so both commands refuse, sending
    nothing; a model without interactions takes it."""
    data = tmp_path / "x.svm"
    data.write_text("1 3:1 7:0.5\n-1 2:1\n")
    daemon = start_daemon(*FLAGS, "-q", "ab")
    code, _, err = run(capsys, "send", data, "--connect", daemon.train, "--request-endpoint",
                       daemon.request, "--no-progress")
    assert code == 1
    assert "the daemon's model has interactions (-q 'ab')" in err and "svmlight" in err
    code, out, err = run(capsys, "predict", "--connect", daemon.request, data)
    assert code == 1 and out == "" and "interactions" in err
    with Client(daemon.request, timeout=30) as client:
        assert client.stats()["examples"] == 0
        client.create("plain", {"update": "fobos"})
    code, _, err = run(capsys, "send", data, "--connect", daemon.train, "--request-endpoint",
                       daemon.request, "--model", "plain", "--no-progress")
    assert code == 0 and "sent 2 examples" in err, err
