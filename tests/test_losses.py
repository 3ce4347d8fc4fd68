"""The poisson and quantile losses (docs/algorithms.md, "Each example"):
their gradients against finite differences, the learner against an eager
numpy SGD, the evaluation against scikit-learn's metrics, and the labels,
options and files that go with them."""
from __future__ import annotations

import math

import numpy as np
import pytest

from onlinel1 import Batch, BatchError, Learner, OptionError, model_file
from onlinel1._kernels.sgd import loss_terms
from onlinel1.cli import main
from onlinel1.evaluation import Evaluation
from onlinel1.options import LearnerOptions


@pytest.mark.parametrize("loss, tau", [("poisson", 0.5), ("quantile", 0.1), ("quantile", 0.5),
                                       ("quantile", 0.9), ("log", 0.5), ("squared", 0.5),
                                       ("hinge", 0.5)])
def test_the_gradient_is_the_derivative_of_the_loss(loss, tau):
    rng = np.random.default_rng(11)
    h = 1e-6
    for _ in range(200):
        p = rng.uniform(-3, 3)
        y = (float(rng.poisson(2.0)) if loss == "poisson" else
             float(rng.choice([-1.0, 1.0])) if loss in ("log", "hinge") else rng.normal())
        if loss in ("quantile", "hinge") and abs((y - p) if loss == "quantile" else 1 - y * p) < 1e-3:
            continue                                    # the kink: a subgradient there
        value, grad = loss_terms(loss, y, p, tau)
        up, down = loss_terms(loss, y, p + h, tau)[0], loss_terms(loss, y, p - h, tau)[0]
        assert (up - down) / (2 * h) == pytest.approx(grad, rel=1e-5, abs=1e-6), (y, p)
        assert value >= 0.0


def test_the_poisson_loss_is_half_the_deviance_zero_at_the_mean():
    for y in (0.0, 1.0, 3.0, 17.5):
        p = math.log(y) if y > 0 else -40.0
        value, grad = loss_terms("poisson", y, p)
        assert abs(value) <= 4 * np.finfo(float).eps * max(y, 1.0)      # rounding only
        assert abs(grad) <= 4 * np.finfo(float).eps * max(y, 1.0)
    # 2 l = 2 (y log(y / mu) - y + mu), the unit Poisson deviance.
    y, p = 4.0, 0.3
    assert 2 * loss_terms("poisson", y, p)[0] == pytest.approx(
        2 * (y * math.log(y / math.exp(p)) - y + math.exp(p)), rel=1e-14)


def eager_sgd(loss, tau, X, y, eta):
    """Plain SGD with a constant step, the intercept included, in numpy."""
    w, b = np.zeros(X.shape[1]), 0.0
    total = 0.0
    for x, t in zip(X, y):
        p = b + x @ w
        if loss == "poisson":
            total += math.exp(p) - t - (t * (p - math.log(t)) if t > 0 else 0.0)
            g = math.exp(p) - t
        else:
            total += tau * (t - p) if t >= p else (1 - tau) * (p - t)
            g = -tau if t > p else (1 - tau) if t < p else 0.0
        w -= eta * g * x
        b -= eta * g
    return w, b, total


@pytest.mark.parametrize("loss, tau", [("poisson", 0.5), ("quantile", 0.2), ("quantile", 0.8)])
def test_the_learner_is_an_eager_sgd_of_the_loss(loss, tau):
    rng = np.random.default_rng(5)
    n, d = 400, 6
    X = rng.random((n, d))
    truth = rng.normal(scale=0.5, size=d)
    y = rng.poisson(np.exp(X @ truth)).astype(float) if loss == "poisson" \
        else X @ truth + rng.normal(size=n)
    learner = Learner(loss=loss, quantile_tau=tau, update="plain", l1=0.0, eta0=0.05)
    indptr = np.arange(0, n * d + 1, d)
    batch = Batch(indptr, np.tile(np.arange(d, dtype=np.uint64), n), X.ravel(), y)
    learner.learn(batch)
    w, b, total = eager_sgd(loss, tau, X, y, 0.05)
    keys, weights = learner.weights()
    np.testing.assert_allclose(weights[np.argsort(keys)], w, rtol=1e-12, atol=1e-14)
    assert learner.intercept == pytest.approx(b, rel=1e-12, abs=1e-14)
    assert learner.progress_sums["loss_sum"] == pytest.approx(total, rel=1e-12)
    assert "accuracy" not in learner.progress and learner.progress_sums["correct"] == 0
    margins = learner.decision_function(batch)
    expected = np.exp(margins) if loss == "poisson" else margins
    np.testing.assert_array_equal(learner.predict(batch), expected)


def test_the_evaluation_agrees_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    m = rng.normal(size=300)
    y = rng.poisson(np.exp(m + rng.normal(scale=0.3, size=300))).astype(float)
    w = rng.uniform(0.5, 2.0, size=300)
    ev = Evaluation("poisson")
    ev.add(m[:100], y[:100], w[:100])
    ev.add(m[100:], y[100:], w[100:])
    got = ev.result()
    assert got["poisson loss"] == pytest.approx(
        metrics.mean_poisson_deviance(y, np.exp(m), sample_weight=w) / 2, rel=1e-12)
    assert got["RMSE"] == pytest.approx(
        math.sqrt(metrics.mean_squared_error(y, np.exp(m), sample_weight=w)), rel=1e-12)
    assert got["MAE"] == pytest.approx(
        metrics.mean_absolute_error(y, np.exp(m), sample_weight=w), rel=1e-12)
    for tau in (0.1, 0.5, 0.9):
        ev = Evaluation("quantile", tau)
        ev.add(m, y, w)
        got = ev.result()
        assert got["quantile loss"] == pytest.approx(
            metrics.mean_pinball_loss(y, m, alpha=tau, sample_weight=w), rel=1e-12)
        assert got["MAE"] == pytest.approx(metrics.mean_absolute_error(y, m, sample_weight=w))


def test_labels_options_and_files_of_the_new_losses(tmp_path):
    learner = Learner(loss="poisson")
    with pytest.raises(BatchError) as info:
        learner.learn(Batch([0, 1, 2], np.array([1, 2], np.uint64), [1.0, 1.0], [3.0, -1.0]))
    assert info.value.reason == "label_out_of_range" and info.value.row == 1
    assert learner.examples_seen == 0
    for tau in (0.0, 1.0, -0.5, math.nan):
        with pytest.raises(OptionError) as bad:
            LearnerOptions(loss="quantile", quantile_tau=tau)
        assert bad.value.option == "quantile_tau"
    assert not LearnerOptions(loss="poisson").classification
    # A model file keeps tau for the quantile loss only (older readers
    # take the files of the other losses unchanged).
    assert "quantile_tau" not in LearnerOptions().to_state_dict()
    q = Learner(loss="quantile", quantile_tau=0.9, update="fobos", eta0=0.1)
    q.learn(Batch([0, 1], np.array([3], np.uint64), [1.0], [2.5]))
    model_file.save(tmp_path / "q.ol1", q)
    again = model_file.load(tmp_path / "q.ol1")[0]
    assert again.options.quantile_tau == 0.9 and again.options.loss == "quantile"
    np.testing.assert_array_equal(again.weights()[1], q.weights()[1])


def test_train_and_predict_on_the_command_line(tmp_path, capsys):
    data = tmp_path / "counts.svm"
    rng = np.random.default_rng(9)
    with open(data, "w") as f:
        for _ in range(500):
            x = rng.random(3)
            f.write(f"{rng.poisson(np.exp(x @ [0.5, 1.0, -0.5]))} "
                    + " ".join(f"{i + 1}:{v:.4f}" for i, v in enumerate(x)) + "\n")
    assert main(["train", str(data), "--loss", "poisson", "--passes", "3",
                 "--save", str(tmp_path / "p.ol1")]) == 0
    err = capsys.readouterr().err
    assert "progressive loss" in err and "accuracy" not in err
    assert main(["predict", "--model", str(tmp_path / "p.ol1"), str(data)]) == 0
    out, err = capsys.readouterr()
    predictions = np.array(out.split(), dtype=float)
    assert predictions.size == 500 and (predictions > 0).all()       # means, exp(margin)
    assert "poisson loss" in err and "RMSE" in err
    bad = tmp_path / "negative.svm"
    bad.write_text("2 1:1\n-1 1:1\n")
    assert main(["train", str(bad), "--loss", "poisson"]) == 1
    assert "negative.svm:2: label -1.0 is below 0, and the poisson loss needs counts" in \
        capsys.readouterr().err
    assert main(["train", str(data), "--loss", "quantile", "--quantile-tau", "0.9",
                 "--save", str(tmp_path / "q.ol1")]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "q.ol1"), str(data)]) == 0
    assert "quantile loss" in capsys.readouterr().err


def test_learners_compare_by_their_state_bit_for_bit(tmp_path):
    """Issue 16 item 4: equality of state (beside pickle and deepcopy)."""
    import copy
    import pickle
    rng = np.random.default_rng(1)
    rows = Batch(np.arange(0, 601, 3), rng.integers(0, 50, 600).astype(np.uint64),
                 rng.random(600), rng.choice([-1.0, 1.0], 200))
    a = Learner(update="fobos", l1=1e-3, eta0=0.2)
    a.learn(rows)
    b = Learner(update="fobos", l1=1e-3, eta0=0.2)
    b.learn(rows.slice(0, 77))
    assert a != b
    b.learn(rows.slice(77, 200))
    # The weights of any cut are the same, but the progressive loss is
    # summed batch by batch: its last bits differ, and so do the states.
    np.testing.assert_array_equal(a.weights()[1], b.weights()[1])
    assert a != b
    b = Learner(update="fobos", l1=1e-3, eta0=0.2)
    b.learn(rows)
    assert a == b and a == pickle.loads(pickle.dumps(a)) and a == copy.deepcopy(a)
    model_file.save(tmp_path / "a.ol1", a)
    assert model_file.load(tmp_path / "a.ol1")[0] == a        # another store order, equal
    assert a != Learner(update="fobos", l1=2e-3, eta0=0.2)
    c = copy.deepcopy(a)
    c.learn(rows.slice(0, 1))
    assert c != a
    # Pending rows of a mini-batch count, and comparing them learns nothing.
    m, n = Learner(minibatch=4), Learner(minibatch=4)
    m.learn(rows.slice(0, 6))
    n.learn(rows.slice(0, 5))
    assert m != n and m.pending_rows == 2 and n.pending_rows == 1
    n.learn(rows.slice(5, 6))
    assert m == n and m.pending_rows == 2
    with pytest.raises(TypeError):
        hash(a)
