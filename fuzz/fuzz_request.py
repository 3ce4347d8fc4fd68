"""Fuzz the daemon's request decoder: one frame, as a ZeroMQ socket hands
it over, through everything the daemon does with it before a command runs.

* ``protocol.decode_message(frame, max_bytes)``, twice: once as the daemon
  does with a request (read-only bytes; msgpack's C decoder for frames up
  to ``SMALL_MESSAGE``, the zero-copy ``_Walker`` above), once as with a
  training frame (a writable buffer, as ``zmq.Frame.buffer`` is) with the
  walker forced for every size.  Where both decode, they must give the
  same map.
* ``protocol.model_name(msg)``.
* for a map with ``rows`` or ``csr``: the daemon's ``predict`` or
  ``learn`` command itself (on real ``Models``, learning in slices of 4
  features); ``protocol.decode_batch`` with and without labels, the batch
  checks of the daemon (``Learner.check``), and for a checked batch
  ``learn`` (in two slices) and ``predict`` on a tiny learner of one of
  the rules, then a save and a load of it.

Allowed: a value, ``ProtocolError``, ``BatchError``, ``NumericError``.
Anything else is a crash.
"""
from __future__ import annotations

import math
import sys

import msgpack  # noqa: F401  (imported before the instrumented block: not instrumented)
import numpy as np  # noqa: F401

import ol1fuzz

with ol1fuzz.instrumented(__name__ == "__main__"):
    from onlinel1.batch import Batch, BatchError
    from onlinel1.io import feature_key
    from onlinel1.server import protocol
    from onlinel1.server.commands import learn as learn_command
    from onlinel1.server.commands import predict as predict_command
    from onlinel1.server.config import DaemonConfig
    from onlinel1.server.models import Models
    from onlinel1.server.protocol import ProtocolError
    from onlinel1.server.replica import TrainingPolicy
    from onlinel1.server.results import Result

#: The daemon's default ``max_message_bytes`` (64 MiB): no fuzz input is near it.
MAX_BYTES = 64 * 1024 * 1024


def _decode(frame: memoryview, small_message: int):
    """``decode_message`` with the walker taking frames above ``small_message``."""
    saved = protocol.SMALL_MESSAGE
    protocol.SMALL_MESSAGE = small_message
    try:
        return protocol.decode_message(frame, MAX_BYTES)
    except ProtocolError as exc:
        assert exc.code in (protocol.MALFORMED, protocol.UNSUPPORTED_VERSION), exc.code
        return None
    finally:
        protocol.SMALL_MESSAGE = saved


def plain(value, depth: int = 0):
    """A decoded value with memoryviews as bytes (keys too) and NaN made
    comparable, for comparing the two decoders."""
    assert depth <= protocol.MAX_DEPTH + 1
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, float) and math.isnan(value):
        return ("nan", math.copysign(1.0, value))
    if isinstance(value, list):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return [(plain(k, depth + 1), plain(v, depth + 1)) for k, v in value.items()]
    return value


class _Daemon:
    """The part of ``Daemon`` the ``learn`` and ``predict`` commands use,
    around real ``Models`` (one ``default`` model of a tiny learner, every
    batch learned in slices of 4 features) and the training policy."""

    in_batch = False

    def __init__(self, data: bytes) -> None:
        self.policy = TrainingPolicy()
        self.models = Models(DaemonConfig(slice_nnz=4, keep_names=True), snapshots=False)
        self.models.add(self.models.make("default", ol1fuzz.tiny_learner(data)))

    def learn(self, trainer, batch) -> dict:
        return trainer.learn(batch, -1, lambda learned_s: False)   # no request waits


def run_commands(msg: dict, data: bytes) -> None:
    """The daemon's own ``predict`` and ``learn`` (``train`` is learned the
    same way) on the message: a result or a ``ProtocolError``; anything
    else the daemon would answer as ``internal``, a bug."""
    op = msg.get("op", "train")
    command = {"predict": predict_command, "learn": learn_command,
               "train": learn_command}.get(op) if isinstance(op, str) else None
    if command is None:
        return
    request_id = msg.get("id")
    try:
        result = command.run(_Daemon(data), msg)
    except ProtocolError as exc:
        assert exc.code in (protocol.BAD_REQUEST, protocol.BAD_BATCH, protocol.NUMERIC,
                            protocol.UNKNOWN_MODEL), exc.code
        protocol.encode_error(request_id, exc.code, exc.message)    # the reply is sent
        return
    assert isinstance(result, Result) and isinstance(result.value, dict), result
    protocol.encode_result(request_id, result.value)


def exercise(msg: dict, data: bytes) -> None:
    """Everything the daemon does with a decoded message before a command's
    own work, and the learning of the batch it carries."""
    try:
        name = protocol.model_name(msg)
        assert isinstance(name, str)
    except ProtocolError as exc:
        assert exc.code == protocol.BAD_REQUEST, exc.code
    if "rows" not in msg and "csr" not in msg:
        return
    run_commands(msg, data)
    for need_labels in (True, False):
        names: dict[int, str] = {}
        try:
            batch = protocol.decode_batch(msg, need_labels=need_labels, names=names)
        except ProtocolError as exc:
            assert exc.code in (protocol.BAD_REQUEST, protocol.BAD_BATCH), exc.code
            continue
        assert isinstance(batch, Batch)
        assert not need_labels or batch.labels is not None
        for key, name in names.items():     # a feature's name hashes back to its key
            assert isinstance(name, str) and feature_key(name) == key, (key, name)
        learner = ol1fuzz.tiny_learner(data)
        try:
            learner.check(batch, learning=need_labels)
        except BatchError as exc:
            assert exc.reason in BatchError.REASONS, exc.reason
            continue
        ol1fuzz.learn_and_predict(learner, batch, learning=need_labels, checked=True)


def parser_input(data: bytes) -> bytes:
    """The bytes the parser is given for ``data``: the frame itself."""
    return data


def test_one_input(data: bytes) -> None:
    # The request socket hands over bytes (read-only); the training socket a
    # zmq.Frame whose buffer is a writable memoryview.
    as_daemon = _decode(memoryview(data), protocol.SMALL_MESSAGE)
    walker = _decode(memoryview(bytearray(data)), 0)
    # (A top-level "rows" sends both to msgpack's decoder: nothing to compare.)
    if as_daemon is not None and walker is not None and "rows" not in as_daemon:
        assert plain(as_daemon) == plain(walker), "msgpack and the walker disagree"
    msg = walker if walker is not None else as_daemon    # the walker's: bins are views
    if msg is not None:
        exercise(msg, data)


if __name__ == "__main__":
    ol1fuzz.main(test_one_input)
