"""What ``train`` and ``predict`` share: an example's error named by its
line, a model's metrics on labelled examples, and how they are printed."""
from __future__ import annotations

from typing import Any, Iterable, TextIO

import numpy as np

from onlinel1.batch import Batch, BatchError
from onlinel1.cli.common import CommandError
from onlinel1.evaluation import Evaluation, format_metric
from onlinel1.learner import Learner

#: What an example that stopped the learner did (``NumericError.reason``).
STOPPED = {"margin": "its margin is not finite (feature values or importance too large?)",
           "update": "its weight update is not finite (feature values or importance too large?)",
           "store_full": "the weight store cannot grow"}


def line_of(batch: Batch, row: int | None) -> int | None:
    """The 1-based input line of ``row`` of a batch from the readers."""
    lines = getattr(batch, "lines", None)
    if row is None or lines is None or not 0 <= row < lines.size:
        return None
    return int(lines[row])


def where(source: str, batch: Batch, row: int | None) -> str:
    """``FILE:LINE`` (``FILE`` alone when no row is to blame)."""
    line = line_of(batch, row)
    return source if line is None else f"{source}:{line}"


def label_message(label: float, loss: str) -> str:
    if loss == "poisson":
        return (f"label {float(label)!r} is below 0, and the poisson loss needs counts "
                f"(labels >= 0)")
    return (f"label {float(label)!r} is not -1/+1 (or 0/1), which the {loss} loss needs; "
            f"for real-valued labels, train with --loss squared")


def batch_error(exc: BatchError, batch: Batch, source: str, loss: str) -> CommandError:
    """``exc`` (from checking ``batch``) as one line naming its input line."""
    row = exc.row
    if row is None:
        return CommandError(f"{source}: {exc}")
    what = str(exc)
    if exc.reason == "label_out_of_range":
        what = label_message(batch.labels[row], loss)
    elif exc.field == "labels" and exc.reason == "not_finite":
        what = f"label {float(batch.labels[row])!r} is not finite"
    elif exc.field == "values" and exc.reason == "not_finite":
        values = batch.values[batch.indptr[row]:batch.indptr[row + 1]]
        bad = values[~np.isfinite(values)]
        what = f"feature value {float(bad[0]) if bad.size else float('nan')!r} is not finite"
    elif exc.field == "weights":
        what = f"importance {float(batch.weights[row])!r} must be finite and >= 0"
    elif exc.reason == "max_features":
        keys = batch.keys[batch.indptr[row]:batch.indptr[row + 1]]
        what = (f"{np.unique(keys).size} distinct features, more than the memory budget "
                f"(--max-features) holds: it must hold one example whole")
    return CommandError(f"{where(source, batch, row)}: {what}")


def stopped_error(exc: Any, batch: Batch, source: str) -> CommandError:
    """A ``NumericError``/``StoreFullError`` as one line naming the line of
    the example that stopped the learner (train then stops unsaved)."""
    what = STOPPED.get(exc.reason, str(exc))
    return CommandError(f"{where(source, batch, exc.row)}: {what}; the model was not saved")


def features_only(batch: Batch) -> Batch:
    """``batch`` without its labels and importance (the same arrays)."""
    return Batch(batch.indptr, batch.keys, batch.values)


def check_labels(batch: Batch, labelled: np.ndarray, source: str, loss: str) -> None:
    """A CommandError naming the first labelled row whose label the loss
    cannot be evaluated on (-1/0/+1 for a classification loss)."""
    if loss in ("squared", "quantile"):
        return
    if loss == "poisson":
        bad = labelled & (batch.labels < 0)
    else:
        bad = labelled & ~np.isin(batch.labels, (-1.0, 0.0, 1.0))
    if bad.any():
        row = int(np.argmax(bad))
        raise CommandError(f"{where(source, batch, row)}: {label_message(batch.labels[row], loss)}")


def margins(learner: Learner, batch: Batch, source: str) -> np.ndarray:
    """The learner's margins of ``batch``; a bad value names its line."""
    try:
        return learner.decision_function(features_only(batch))
    except BatchError as exc:
        raise batch_error(exc, batch, source, learner.options.loss) from None


def evaluate(learner: Learner, batches: Iterable[Batch], source: str) -> Evaluation:
    """The metrics of ``learner`` on the (labelled) examples of ``batches``."""
    loss = learner.options.loss
    ev = Evaluation(loss, learner.options.quantile_tau)
    for batch in batches:
        labelled = np.isfinite(batch.labels)
        check_labels(batch, labelled, source, loss)
        m = margins(learner, batch, source)
        ev.add(m[labelled], batch.labels[labelled],
               None if batch.weights is None else batch.weights[labelled])
    return ev


def metric_items(result: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(name, value)`` lines of a summary, e.g. ("test log loss", "0.331")."""
    return [(f"{prefix}{name}", format_metric(value)) for name, value in result.items()]


def metric_line(result: dict[str, Any]) -> str:
    """One line of an evaluation: ``log loss 0.33  accuracy 0.84  AUC 0.90 (n examples)``."""
    parts = [f"{name} {format_metric(value)}" for name, value in result.items()
             if name != "examples"]
    return "  ".join(parts) + f"  ({result['examples']} examples)"


def print_items(items: list[tuple[str, str]], out: TextIO) -> None:
    width = max(len(k) for k, _ in items)
    for key, value in items:
        print(f"{key:<{width}}  {value}", file=out)
