"""Read ahead: produce the next items of an iterator in a second thread.

::

    with contextlib.closing(read_ahead(read_batches("train.vw", "vw"))) as batches:
        for batch in batches:          # block k+1 is parsed while block k is learned
            learner.learn(batch)

The compiled parser and the learner's kernel both release the GIL for
their loops, so on a machine with two cores the parsing of the next block
and the learning of the current one overlap.

What the wrapper guarantees:

* the items come in exactly the order of the plain iterator, each one the
  object the iterator produced;
* an exception raised by the iterator (a ``ParseError``, an ``OSError``)
  is raised in the consumer after exactly the items produced before it,
  as the same object (same type, attributes and traceback);
* memory stays bounded: at most ``depth`` items wait in the queue, plus
  the one the producer is working on, so the producer is never more than
  ``depth + 1`` items ahead of the consumer;
* when the consumer stops early (``close()``, which a ``for`` loop inside
  ``contextlib.closing`` does on ``break`` or on any exception, including
  KeyboardInterrupt; or the generator being garbage collected), the
  producer stops after the item it is producing, the source iterator is
  closed, and the thread is joined before ``close()`` returns;
* when the stream ends or fails, everything the producer did (for
  ``read_batches``: every update of its ``names`` dict, the closing of the
  file) happened before the consumer sees the end or the exception, and
  the thread has been joined.  A ``names`` dict filled by the reader must
  therefore only be read once the iteration is over (``onlinel1 train``
  saves the model after the last pass), never while it runs.

``depth=0`` is plain iteration in the consumer's thread (no thread at all).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

__all__ = ["DEFAULT_DEPTH", "THREAD_NAME", "read_ahead"]

T = TypeVar("T")

#: Items queued ahead of the consumer by default: one would be enough to
#: keep two cores busy, two absorbs jitter in the time a block takes.
DEFAULT_DEPTH = 2
#: Name of the producer threads (tests and debuggers look for it).
THREAD_NAME = "onlinel1-read-ahead"
#: Seconds between two looks at the stop flag while a put or a get waits.
#: A put or get returns as soon as there is room or an item: this only
#: bounds how long a stopped producer can stay blocked.
POLL_INTERVAL = 0.05
#: Seconds ``close()`` waits for a producer stuck in the source iterator
#: (e.g. reading a pipe that stays silent) before leaving it behind: it is
#: a daemon thread and ends at its next item.
JOIN_TIMEOUT = 5.0

_ITEM, _END, _ERROR = "item", "end", "error"


def read_ahead(iterable: Iterable[T], depth: int = DEFAULT_DEPTH, *,
               join_timeout: float = JOIN_TIMEOUT) -> Iterator[T]:
    """The items of ``iterable``, produced by a daemon thread up to
    ``depth`` items ahead of the consumer (``depth=0``: plain iteration).

    The thread starts at the first ``next()``; ``close()`` the generator
    (or use ``contextlib.closing``) to stop it early.  See the module
    docstring for the guarantees.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    if not join_timeout > 0:
        raise ValueError(f"join_timeout must be > 0 seconds, got {join_timeout!r}")
    iterator = iter(iterable)
    if depth == 0:
        return _plain(iterator)
    return _ahead(iterator, depth, join_timeout)


def _plain(iterator: Iterator[T]) -> Iterator[T]:
    # ``yield from`` passes close() on to the source, as the threaded
    # version does.
    yield from iterator


def _ahead(iterator: Iterator[T], depth: int, join_timeout: float) -> Iterator[T]:
    channel: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(iterator, channel, stop),
                              name=THREAD_NAME, daemon=True)
    thread.start()
    finished = False       # the producer sent its last message
    try:
        while True:
            kind, value = _get(channel, thread)
            if kind is _ITEM:
                yield value
            elif kind is _END:
                finished = True
                return
            else:
                finished = True
                raise value
    finally:
        stop.set()
        # Free the queued items and the producer's blocked put, if any:
        # it then sees the stop flag before taking another item.
        _drain(channel)
        # A finished producer only has to return; a stopped one finishes
        # the item it is producing first.
        thread.join(None if finished else join_timeout)


def _produce(iterator: Iterator, channel: queue.Queue, stop: threading.Event) -> None:
    """The producer thread: items, then one end or error message."""
    last: tuple[str, object] | None = None     # None: stopped by the consumer
    while not stop.is_set():
        try:
            item = next(iterator)
        except StopIteration:
            last = (_END, None)
            break
        except BaseException as exc:   # forwarded as is, whatever it is
            last = (_ERROR, exc)
            break
        if not _put(channel, stop, (_ITEM, item)):
            break
        del item
    # Close the source (a generator's finally: the file) in this thread and
    # before the last message, so that the consumer sees its effects once
    # it has the end or the error.
    close = getattr(iterator, "close", None)
    try:
        if close is not None:
            close()
    except BaseException as exc:
        if last is None:
            raise              # nobody listens any more: threading.excepthook
        if last[0] is _END:
            last = (_ERROR, exc)
        # else: the source's own error is the one to report.
    if last is not None:
        _put(channel, stop, last)


def _put(channel: queue.Queue, stop: threading.Event, message: tuple[str, object]) -> bool:
    """Put ``message`` once there is room; False if stopped first."""
    while not stop.is_set():
        try:
            channel.put(message, timeout=POLL_INTERVAL)
            return True
        except queue.Full:
            continue
    return False


def _get(channel: queue.Queue, thread: threading.Thread) -> tuple[str, object]:
    """The next message; a producer that died without one is an error
    rather than a hang."""
    while True:
        try:
            return channel.get(timeout=POLL_INTERVAL)
        except queue.Empty:
            if not thread.is_alive():
                try:
                    return channel.get_nowait()   # its last put, just before it ended
                except queue.Empty:
                    raise RuntimeError("the read-ahead thread ended without "
                                       "passing on an end or an error") from None


def _drain(channel: queue.Queue) -> None:
    while True:
        try:
            channel.get_nowait()
        except queue.Empty:
            return
