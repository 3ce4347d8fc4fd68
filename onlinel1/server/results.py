"""What a command returns: a result now, or an explicit promise to answer later.

A command either returns ``Result(value)`` (answered at once), raises
``ProtocolError`` (answered at once with its code), or returns
``Deferred(attach)``: the daemon then calls ``attach(replier)`` and the
command's collaborator answers through that ``Replier`` when it can (a
snapshot once it is on disk, an acknowledged learn once the batch in hand
is done).  Every request is answered exactly once.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Mapping

from onlinel1.server import protocol

log = logging.getLogger("onlinel1.daemon")


@dataclasses.dataclass(frozen=True)
class Result:
    value: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Deferred:
    attach: Callable[["Replier"], None]


class Replier:
    """Answers one request, once: ``result`` or ``error``.  ``send(replier,
    reply)`` delivers the encoded reply (and times the request);
    ``on_error(code, model)`` counts an error."""

    __slots__ = ("_send", "envelope", "request_id", "op", "model", "started", "_done",
                 "_on_error")

    def __init__(self, send: Callable[["Replier", bytes], None], envelope: list[bytes],
                 request_id: Any, op: str, model: str | None, started: float,
                 on_error: Callable[[str, str | None], None]) -> None:
        self._send, self.envelope, self.request_id = send, envelope, request_id
        self.op, self.model, self.started = op, model, started
        self._on_error = on_error
        self._done = False

    def result(self, value: Mapping[str, Any]) -> None:
        self._answer(protocol.encode_result(self.request_id, value))

    def error(self, code: str, message: str) -> None:
        self._on_error(code, self.model)
        self._answer(protocol.encode_error(self.request_id, code, message))

    def _answer(self, reply: bytes) -> None:
        if self._done:
            log.error("a second reply to one %r request was not sent", self.op)
            return
        self._done = True
        self._send(self, reply)
