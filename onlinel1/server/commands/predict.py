"""``predict``: probabilities or margins of a batch, optionally with each
row's largest contributions.

What a prediction costs is bounded before it is paid: the batch has at
most ``max_request_rows`` rows (Trainer.decode), the reply's size is
computed from the arrays and refused (``too_large``) beyond
``max_reply_bytes`` before it is written, and the reply is written
straight from the arrays (wire.pack_floats, wire.pack_contributions), with
no Python object per row or contribution.  A prediction or contribution
that is not finite is never answered as a result: it is a ``numeric``
error naming the rows.

With ``names: true`` (and ``top_k``) the reply also maps each key of the
contributions whose name the daemon knows to that name: the request's own
string features (row-wise), then the model's name table (the names of the
string features it learned from rows, kept with ``--keep-names`` or
loaded with the model).  Crossed features (interactions) have no name.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import msgpack
import numpy as np

from onlinel1._kernels import topk, wire
from onlinel1.server import admission, protocol
from onlinel1.server.protocol import ProtocolError
from onlinel1.server.results import Result

OP = "predict"
MAX_TOP_K = 1000
OUTPUTS = ("auto", "probability", "margin")
#: An error names at most this many of the rows it is about.
NAMED_ROWS = 10


def run(daemon: Any, msg: dict) -> Result:
    trainer = daemon.models.get(protocol.model_name(msg))
    want_names = msg.get("names", False)
    if not isinstance(want_names, bool):
        raise ProtocolError(protocol.BAD_REQUEST,
                            f"names must be true or false, got {want_names!r}")
    # The names of the request's own string features (row-wise), and the
    # model's table for the others (docs/protocol.md, "predict").
    request_names: dict[int, str] | None = {} if want_names else None
    batch = (trainer.decode(msg, learning=False, names=request_names) if want_names
             else trainer.decode(msg, learning=False))
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
    if output == "margin" or (output == "auto" and loss not in ("log", "poisson")):
        predictions = learner.decision_function(batch, check=False)
    else:
        predictions = learner.predict(batch, check=False)
    predictions = np.ascontiguousarray(predictions, dtype=np.float64)
    check_finite("predictions", predictions, lambda at: at)
    chosen = contributions(learner, batch, top_k) if top_k else None
    if chosen is not None:
        check_finite("contributions", chosen.values(), lambda at: chosen.rows()[at])
    names = None
    if want_names and chosen is not None:
        known = names_of(chosen, request_names or {}, getattr(trainer, "names", None) or {})
        names = protocol.Packed(msgpack.packb(known, use_bin_type=True))
    size = reply_size(msg.get("id"), predictions, chosen, names)
    limit = admission.reply_cap(trainer.config)
    if size > limit:
        setting = admission.reply_cap_setting(trainer.config)
        raise ProtocolError(protocol.TOO_LARGE,
                            f"the reply would be {size} bytes, more than {setting} ({limit}): "
                            f"ask for fewer rows at a time"
                            + (" or a smaller top_k" if top_k else ""))
    result: dict[str, Any] = {"predictions": protocol.Packed(wire.pack_floats(predictions))}
    if chosen is not None:
        result["contributions"] = protocol.Packed(chosen.pack())
    if names is not None:
        result["names"] = names
    return Result(result)


def names_of(chosen: "Contributions", *tables: dict[int, str]) -> dict[int, str]:
    """``{key: name}`` of the distinct keys among the chosen contributions
    that one of ``tables`` names (the first that does); a Python object
    per distinct named key, none per contribution."""
    out: dict[int, str] = {}
    if not any(tables):
        return out
    for key in np.unique(chosen.keys[chosen.positions]).tolist():
        for table in tables:
            name = table.get(key)
            if name is not None:
                out[key] = name
                break
    return out


def check_finite(what: str, values: np.ndarray,
                 rows_of: Callable[[np.ndarray], np.ndarray]) -> None:
    """``numeric``, naming the rows (0-based in the batch), unless every
    value is finite (``rows_of(indices)``: the rows of those values)."""
    if np.isfinite(values).all():
        return
    named = np.unique(rows_of(np.flatnonzero(~np.isfinite(values))))
    shown = ", ".join(map(str, named[:NAMED_ROWS].tolist())) + (", ..." if named.size > NAMED_ROWS
                                                                  else "")
    raise ProtocolError(protocol.NUMERIC,
                        f"{what} of {named.size} row(s) are not finite (rows {shown}; rows count "
                        f"from 0 in the batch): the model's weights or these rows' values "
                        f"overflow, so nothing is answered")


def reply_size(request_id: Any, predictions: np.ndarray, chosen: "Contributions | None",
               names: "protocol.Packed | None" = None) -> int:
    """The exact size of the reply, computed before it is written."""
    fields: dict[str, Any] = {"predictions": None}
    if chosen is not None:
        fields["contributions"] = None
    if names is not None:
        fields["names"] = None
    # Each None is one byte in the skeleton; the packed values replace them.
    size = len(protocol.encode_result(request_id, fields)) - len(fields)
    size += wire.floats_size(predictions.size)
    if chosen is not None:
        size += chosen.packed_size()
    if names is not None:
        size += len(names.data)
    return size


@dataclasses.dataclass(frozen=True)
class Contributions:
    """Each row's largest contributions: row i has the next ``counts[i]``
    of ``positions`` (indices of the batch's features), the largest
    |w_i x_i| first; ``keys`` are the batch's keys, ``contrib`` every
    feature's w_i x_i."""

    counts: np.ndarray
    positions: np.ndarray
    keys: np.ndarray
    contrib: np.ndarray

    def values(self) -> np.ndarray:
        return self.contrib[self.positions]

    def rows(self) -> np.ndarray:
        """The row of each chosen contribution."""
        return np.repeat(np.arange(self.counts.size), self.counts)

    def packed_size(self) -> int:
        return wire.contributions_size(self.counts, self.positions, self.keys)

    def pack(self) -> bytes:
        return wire.pack_contributions(self.counts, self.positions, self.keys, self.contrib)

    def tolist(self) -> list:
        """As the reply gives them: per row, [key, w_i x_i] pairs."""
        bounds = np.concatenate([[0], np.cumsum(self.counts)]).tolist()
        keys = self.keys[self.positions].tolist()
        values = self.values().tolist()
        return [[[k, v] for k, v in zip(keys[lo:hi], values[lo:hi])]
                for lo, hi in zip(bounds[:-1], bounds[1:])]


def contributions(learner: Any, batch: Any, top_k: int) -> Contributions:
    """Each row's ``top_k`` largest |w_i x_i| (ties: the earlier feature
    first), zeros left out; over the whole batch in one compiled loop
    (onlinel1/_kernels/topk.pyx), O(nnz log top_k)."""
    contrib = np.ascontiguousarray(learner.weights_of(batch.keys) * batch.values, dtype=np.float64)
    counts, positions = topk.top_positions(batch.indptr, contrib, top_k)
    return Contributions(counts, positions, batch.keys, contrib)
