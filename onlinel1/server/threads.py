"""CPU priority of the daemon's threads.

On a machine whose cores are all busy, a reply waits for the ZeroMQ I/O
thread that writes it; if the I/O thread that reads the training stream
(hundreds of MB/s of large messages) is competing for the same cores, the
reply waits behind it.  The daemon therefore runs the training stream's I/O
thread at a lower priority (a higher nice value) than everything on the
request path.  Lowering a thread's priority needs no privilege; nothing
here raises one.

Linux keeps a nice value per thread (``setpriority(PRIO_PROCESS, tid)``);
elsewhere this module does nothing.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable, TypeVar

log = logging.getLogger("onlinel1.daemon")

T = TypeVar("T")

_TASKS = "/proc/self/task"


def thread_ids() -> set[int]:
    """The kernel thread ids of this process (empty where /proc is missing)."""
    try:
        return {int(tid) for tid in os.listdir(_TASKS)}
    except OSError:
        return set()


def started_by(make: Callable[[], T]) -> tuple[T, set[int]]:
    """``make()``, and the threads that appeared while it ran.

    libzmq starts a context's I/O and reaper threads when the first socket
    of the context is made, so ``started_by(lambda: ctx.socket(...))`` on a
    fresh context returns that context's threads.
    """
    before = thread_ids()
    made = make()
    return made, thread_ids() - before


def lower_priority(tids: set[int], nice: int) -> list[int]:
    """Give each thread of ``tids`` the nice value ``nice`` if that lowers
    its priority; return the ids changed.  Never raises: a thread that
    is gone or cannot be changed is logged and left alone."""
    changed = []
    if nice <= 0 or not sys.platform.startswith("linux"):
        return changed
    for tid in sorted(tids):
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                changed.append(tid)
        except OSError as exc:
            log.debug("thread %d keeps its priority: %s", tid, exc)
    return changed
