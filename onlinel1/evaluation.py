"""Evaluation metrics of a model on labelled examples: what ``onlinel1
predict`` reports when its input has labels, and what ``onlinel1 train
--test/--holdout-fraction`` reports after each pass.

Every metric is weighted by the examples' importance (1 for svmlight, the
VW importance otherwise), as scikit-learn's ``sample_weight`` weights it:

* log loss: the mean of ``log(1 + exp(-y m))`` over the margins ``m``
  (computed from the margin, so a probability that rounds to 0 or 1 costs
  what it should), labels ``y`` in -1/+1 (0 is -1);
* hinge loss: the mean of ``max(0, 1 - y m)``;
* accuracy: the share of examples whose margin has the label's sign (a
  margin of exactly 0 predicts -1, as the learner's progressive accuracy
  counts it);
* AUC: the area under the ROC curve of the margins, ties counted half
  (the Mann-Whitney statistic; scikit-learn's ``roc_auc_score``); it keeps
  every margin, label and importance (24 bytes an example) until the end;
  it is None when the examples hold one class only;
* RMSE and MAE for the squared loss: of ``m - y``;
* for the poisson loss: its mean, half the Poisson deviance ``exp(m) - y
  - y (m - log y)`` (``exp(m)`` for ``y = 0``), and the RMSE and MAE of the
  predicted mean ``exp(m)``;
* for the quantile loss: its mean (the pinball loss at tau) and the MAE
  of ``m - y``.

>>> import numpy as np
>>> ev = Evaluation("log")
>>> ev.add(np.array([2.0, -1.0, 0.5]), np.array([1.0, -1.0, -1.0]))
>>> ev.add(np.array([-0.2]), np.array([1.0]))
>>> {k: round(v, 4) for k, v in ev.result().items()}
{'examples': 4, 'log loss': 0.5531, 'accuracy': 0.5, 'AUC': 0.75}
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["Evaluation", "auc", "metric_names"]


def metric_names(loss: str) -> tuple[str, ...]:
    """The metrics reported for a model of ``loss``, in the order printed."""
    if loss == "squared":
        return ("RMSE", "MAE")
    if loss == "poisson":
        return ("poisson loss", "RMSE", "MAE")
    if loss == "quantile":
        return ("quantile loss", "MAE")
    return (f"{loss} loss", "accuracy", "AUC")


def auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None
        ) -> float | None:
    """The importance-weighted area under the ROC curve of ``scores``
    (``positive``: a boolean per example), ties counted half; None unless
    both classes have a positive weight."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    w = np.ones(scores.size) if weights is None else np.asarray(weights, dtype=np.float64)
    pos_total, neg_total = float(w[positive].sum()), float(w[~positive].sum())
    if not (pos_total > 0 and neg_total > 0):
        return None
    # One group per distinct score, in increasing order.
    unique, group = np.unique(scores, return_inverse=True)
    pos = np.bincount(group, weights=np.where(positive, w, 0.0), minlength=unique.size)
    neg = np.bincount(group, weights=np.where(positive, 0.0, w), minlength=unique.size)
    below = np.cumsum(neg) - neg            # negative weight of the lower scores
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos_total * neg_total))


class Evaluation:
    """Metrics of the margins of a model of ``loss`` on labelled examples,
    added batch by batch (see the module docstring)."""

    def __init__(self, loss: str, quantile_tau: float = 0.5) -> None:
        self.loss, self.tau = loss, quantile_tau
        self.examples = 0
        self.weight_sum = 0.0
        # The loss (or squared error), correct (or |error|), squared error.
        self._sums = [0.0, 0.0, 0.0]
        self._margins: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []

    @property
    def classification(self) -> bool:
        return self.loss in ("log", "hinge")

    def add(self, margins: np.ndarray, labels: np.ndarray,
            weights: np.ndarray | None = None) -> None:
        """Examples with their margins, labels (finite; -1/0/+1 for a
        classification loss) and importance weights (None: 1 each)."""
        m = np.asarray(margins, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.ones(m.size) if weights is None else np.asarray(weights, dtype=np.float64)
        if not m.size:
            return
        self.examples += m.size
        self.weight_sum += float(w.sum())
        if self.classification:
            sign = np.where(y > 0, 1.0, -1.0)
            if self.loss == "log":
                losses = np.logaddexp(0.0, -sign * m)
            else:
                losses = np.maximum(0.0, 1.0 - sign * m)
            self._sums[0] += float(np.dot(w, losses))
            self._sums[1] += float(np.dot(w, (m > 0) == (y > 0)))
            self._margins.append(m)
            self._labels.append(y > 0)
            self._weights.append(w)
        elif self.loss == "poisson":
            with np.errstate(over="ignore"):
                mean = np.exp(m)
                ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
                self._sums[0] += float(np.dot(w, mean - y - y * m + ylogy))
                self._sums[1] += float(np.dot(w, np.abs(mean - y)))
                self._sums[2] += float(np.dot(w, (mean - y) ** 2))
        elif self.loss == "quantile":
            error = m - y
            self._sums[0] += float(np.dot(w, np.where(y >= m, -self.tau * error,
                                                      (1.0 - self.tau) * error)))
            self._sums[1] += float(np.dot(w, np.abs(error)))
        else:
            error = m - y
            self._sums[0] += float(np.dot(w, error * error))
            self._sums[1] += float(np.dot(w, np.abs(error)))

    def result(self) -> dict[str, Any]:
        """``{"examples": n, metric: value, ...}`` (NaN metrics when no
        example has a positive importance; AUC None with one class)."""
        out: dict[str, Any] = {"examples": self.examples}
        total = self.weight_sum
        mean = [s / total if total > 0 else math.nan for s in self._sums]
        names = metric_names(self.loss)
        if self.loss == "poisson":
            return {**out, names[0]: mean[0], names[1]: math.sqrt(mean[2]) if total > 0
                    else math.nan, names[2]: mean[1]}
        if self.loss == "quantile":
            return {**out, names[0]: mean[0], names[1]: mean[1]}
        if not self.classification:
            out[names[0]] = math.sqrt(mean[0]) if total > 0 else math.nan
            out[names[1]] = mean[1]
            return out
        out[names[0]] = mean[0]
        out[names[1]] = mean[1]
        out[names[2]] = auc(np.concatenate(self._margins), np.concatenate(self._labels),
                            np.concatenate(self._weights)) if self._margins else None
        return out


def format_metric(value: Any) -> str:
    """A metric as printed: 6 decimals; ``n/a`` for an AUC of one class."""
    if value is None:
        return "n/a (one class only)"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.6f}"
