"""``predict``: probabilities or margins of a batch, optionally with each
row's largest contributions."""
from __future__ import annotations

from typing import Any

import numpy as np

from onlinel1.server import protocol
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.results import Result

OP = "predict"
MAX_TOP_K = 1000
OUTPUTS = ("auto", "probability", "margin")


def run(daemon: Any, msg: dict) -> Result:
    trainer = daemon.models.get(protocol.model_name(msg))
    batch = protocol.decode_batch(msg, need_labels=False)
    trainer.check(batch, learning=False)
    # One reference for the whole request: a swap between two requests
    # never mixes two models in one answer.
    learner = trainer.learner
    output = msg.get("output", "auto")
    loss = learner.options.loss
    if output not in OUTPUTS:
        raise ProtocolError(protocol.BAD_REQUEST,
                            f"output must be 'auto', 'probability' or 'margin', got {output!r}")
    if output == "probability" and loss != "log":
        raise ProtocolError(protocol.BAD_REQUEST,
                            f"output 'probability' needs the log loss; this model's loss is {loss!r}")
    top_k = msg.get("top_k", 0)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
        raise ProtocolError(protocol.BAD_REQUEST,
                            f"top_k must be an integer from 0 to {MAX_TOP_K}, got {top_k!r}")
    if output == "margin" or (output == "auto" and loss != "log"):
        predictions = learner.decision_function(batch, check=False)
    else:
        predictions = learner.predict(batch, check=False)
    result: dict[str, Any] = {"predictions": predictions.tolist()}
    if top_k:
        result["contributions"] = contributions(learner, batch, top_k)
    return Result(result)


def contributions(learner: Any, batch: Any, top_k: int) -> list:
    """Each row's ``top_k`` largest |w_i x_i|, as [key, w_i x_i] pairs."""
    contrib = learner.weights_of(batch.keys) * batch.values
    out = []
    for i in range(batch.n_rows):
        lo, hi = batch.indptr[i], batch.indptr[i + 1]
        part = contrib[lo:hi]
        order = np.argsort(-np.abs(part), kind="stable")[:top_k]
        keys = batch.keys[lo:hi][order].tolist()
        out.append([[k, v] for k, v in zip(keys, part[order].tolist()) if v != 0.0])
    return out
