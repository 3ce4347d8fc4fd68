"""read_ahead: the items of an iterator produced in a second thread, in the
same order, with the same errors at the same place, in bounded memory, and
no thread left behind however the consumer stops."""
from __future__ import annotations

import _thread
import contextlib
import itertools
import signal
import sys
import threading
import time

import pytest

from onlinel1.io import ParseError, read_ahead, read_batches
from onlinel1.io import readahead
from onlinel1.io.readahead import THREAD_NAME

from conftest import SAMPLES, shared_path, wait_for

A9A = SAMPLES / "a9a_head2000.svm"
VW = SAMPLES / "vw0002_head60.vw"


def producers():
    """The read-ahead threads alive right now."""
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    assert producers() == [], "a read-ahead thread from an earlier test is still running"
    yield
    assert producers() == [], "this test left a read-ahead thread running"


def same_batches(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        for name in ("indptr", "keys", "values", "labels", "weights"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), name
            if x is not None:
                assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


class Source:
    """An iterator of 0, 1, 2, ... (``n`` items, or endless) that records,
    for every item, the thread that produced it and how far ahead of the
    consumer's requests it was; ``fail_at``: raise ``error`` instead of
    that item; ``gate_at``: wait for ``gate`` before producing that item."""

    def __init__(self, n=None, fail_at=None, error=None, gate_at=None):
        self.n, self.fail_at, self.error, self.gate_at = n, fail_at, error, gate_at
        self.produced = 0          # items asked of the source so far
        self.requested = 0         # next() calls the consumer has started
        self.max_ahead = 0
        self.threads = []
        self.closed = False
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def __iter__(self):
        return self

    def __next__(self):
        if self.n is not None and self.produced >= self.n:
            raise StopIteration
        self.produced += 1
        self.max_ahead = max(self.max_ahead, self.produced - self.requested)
        self.threads.append(threading.current_thread().name)
        if self.produced == self.gate_at:
            self.waiting.set()
            assert self.gate.wait(30), "the test never opened the gate"
        if self.produced == self.fail_at:
            raise self.error
        return self.produced - 1

    def close(self):
        self.closed = True


def take(source, items):
    """The consumer's side: count the request, then take the next item."""
    source.requested += 1
    return next(items)


# ------------------------------------------------------------ same stream

@pytest.mark.parametrize("batch_size", [1, 100, 777, 8192])
def test_a_real_file_gives_the_same_batches_in_the_same_order(batch_size):
    expected = list(read_batches(A9A, "svmlight", batch_size=batch_size))
    got = list(read_ahead(read_batches(A9A, "svmlight", batch_size=batch_size), depth=2))
    same_batches(got, expected)
    assert producers() == []     # joined by the time the iteration ends


def test_vw_names_are_complete_once_the_iteration_ends():
    plain_names, ahead_names = {}, {}
    expected = list(read_batches(VW, "vw", batch_size=7, names=plain_names))
    got = list(read_ahead(read_batches(VW, "vw", batch_size=7, names=ahead_names, block_size=64)))
    same_batches(got, expected)
    assert ahead_names == plain_names and len(plain_names) > 50


def test_the_full_a9a_from_shared():
    path = shared_path("a9a/a9a.train.svm")
    expected = list(read_batches(path, "svmlight", batch_size=1000))
    got = list(read_ahead(read_batches(path, "svmlight", batch_size=1000), depth=1))
    same_batches(got, expected)
    assert sum(b.n_rows for b in got) == 32561


def test_the_items_are_the_objects_the_source_produced_in_the_producer_thread():
    objects = [object() for _ in range(50)]
    threads = []

    def source():
        for o in objects:
            threads.append(threading.current_thread().name)
            yield o

    got = list(read_ahead(source(), depth=3))
    assert len(got) == 50 and all(a is b for a, b in zip(got, objects))
    assert set(threads) == {THREAD_NAME}


def test_depth_zero_is_plain_iteration_in_the_consumer_thread():
    source = Source(10)
    items = read_ahead(source, depth=0)
    assert take(source, items) == 0
    assert producers() == [] and source.produced == 1    # nothing read ahead
    assert list(items) == list(range(1, 10))
    assert set(source.threads) == {threading.current_thread().name}


def test_an_empty_source():
    assert list(read_ahead(iter([]))) == []


@pytest.mark.parametrize("depth", ["2", 1.5, True, -1])
def test_bad_depths(depth):
    with pytest.raises(ValueError, match="depth must be an integer >= 0"):
        read_ahead([], depth=depth)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="join_timeout"):
        read_ahead([], join_timeout=0)
    with pytest.raises(TypeError):
        read_ahead(5)


# ----------------------------------------------------------------- errors

@pytest.mark.parametrize("fail_at", [1, 6, 40])
def test_an_error_comes_after_exactly_the_items_before_it(fail_at):
    error = ParseError("data.svm:17: bad feature 'x:y'", "data.svm", 17)
    source = Source(100, fail_at=fail_at, error=error)
    got = []
    with pytest.raises(ParseError) as info:
        for item in read_ahead(source, depth=2):
            got.append(item)
    assert got == list(range(fail_at - 1))
    assert info.value is error                     # the same object: type, attributes
    assert (info.value.source, info.value.line) == ("data.svm", 17)
    # Its traceback still shows where the producer raised it.
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "__next__" in frames
    assert source.closed


@pytest.mark.parametrize("batch_size", [1, 100, 5000])
def test_a_malformed_line_in_a_real_file_surfaces_at_the_same_place(tmp_path, batch_size):
    lines = A9A.read_text().splitlines(keepends=True)
    lines[1233] = "-1 3:1 x:y\n"
    bad = tmp_path / "bad.svm"
    bad.write_text("".join(lines))

    def collect(batches):
        got = []
        with pytest.raises(ParseError) as info:
            for batch in batches:
                got.append(batch)
        return got, info.value

    expected, plain_error = collect(read_batches(bad, "svmlight", batch_size=batch_size))
    got, error = collect(read_ahead(read_batches(bad, "svmlight", batch_size=batch_size,
                                                 block_size=4096)))
    same_batches(got, expected)
    assert sum(b.n_rows for b in got) == 1233
    assert type(error) is ParseError
    assert (str(error), error.source, error.line) == (str(plain_error), str(bad), 1234)


def test_an_error_closing_the_source_is_reported():
    class Failing(Source):
        def close(self):
            raise OSError("cannot close")

    with pytest.raises(OSError, match="cannot close"):
        list(read_ahead(Failing(3)))


# -------------------------------------------------- bounded memory (depth)

@pytest.mark.parametrize("depth", [1, 2, 5])
def test_the_producer_is_never_more_than_depth_plus_one_items_ahead(depth):
    n = 30
    source = Source(n)
    items = read_ahead(source, depth=depth)
    for k in range(1, n + 1):
        assert take(source, items) == k - 1
        # It does read ahead, as far as it may ...
        wait_for(lambda: source.produced, lambda p: p >= min(k + depth + 1, n),
                 what=f"the producer reading ahead of item {k}")
        # ... and never further.
        assert source.max_ahead <= depth + 1, source.max_ahead
    assert source.max_ahead == depth + 1
    with pytest.raises(StopIteration):
        take(source, items)


# ----------------------------------------------- stopping early, no leaks

def leave_by_break(source):
    with contextlib.closing(read_ahead(source, depth=2)) as items:
        for item in items:
            if item == 3:
                break


def leave_by_exception(source):
    with pytest.raises(ValueError, match="consumer failed"):
        with contextlib.closing(read_ahead(source, depth=2)) as items:
            for item in items:
                if item == 3:
                    raise ValueError("consumer failed")


def leave_by_keyboard_interrupt(source):
    with pytest.raises(KeyboardInterrupt):
        with contextlib.closing(read_ahead(source, depth=2)) as items:
            for item in items:
                if item == 3:
                    raise KeyboardInterrupt


def leave_by_close(source):
    items = read_ahead(source, depth=2)
    for item in items:
        if item == 3:
            items.close()          # GeneratorExit at the yield
            return


def leave_by_dropping_it(source):
    items = read_ahead(source, depth=2)
    next(items), next(items), next(items), next(items)
    del items                      # garbage collected, hence closed


@pytest.mark.parametrize("leave", [leave_by_break, leave_by_exception,
                                   leave_by_keyboard_interrupt, leave_by_close,
                                   leave_by_dropping_it])
def test_a_consumer_that_stops_early_stops_and_joins_the_producer(leave):
    source = Source()                # endless: only the stop flag ends it
    leave(source)
    # Joined before close() returned: no wait needed.
    assert producers() == []
    assert source.closed
    # Stopped promptly: 4 items taken, at most depth + 1 = 3 more.
    assert 4 <= source.produced <= 7


def test_a_producer_stuck_in_its_source_does_not_hang_the_consumer():
    # E.g. `onlinel1 send -` reading a pipe that stays silent, then ^C.
    source = Source(gate_at=2)
    items = read_ahead(source, depth=2, join_timeout=0.2)
    assert next(items) == 0
    wait_for(source.waiting.is_set, what="the producer blocked in its source")
    start = time.monotonic()
    items.close()
    assert time.monotonic() - start < 5.0
    # Left behind as a daemon thread, it ends as soon as its source returns.
    [stuck] = producers()
    source.gate.set()
    wait_for(lambda: not stuck.is_alive(), what="the stuck producer ending")
    assert source.closed and source.produced == 2


@pytest.fixture
def sigint_raises():
    """Python's own SIGINT handler for the test, whatever the suite was
    started with: under an ignored or replaced SIGINT ``interrupt_main``
    raises nothing.  (A fresh-clone CI run on 5142c3a once waited 30 s
    here for an interrupt that never came; the cause is not proven.)"""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_while_waiting_for_the_next_item(sigint_raises):
    # ^C while the consumer waits for a block the producer is still reading.
    source = Source(gate_at=2)
    items = read_ahead(source, depth=2, join_timeout=0.2)
    assert next(items) == 0

    main = threading.main_thread().ident

    def waiting_for_an_item():
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code is readahead._get.__code__:
                return True
            frame = frame.f_back
        return False

    def interrupt():
        # Once the consumer waits inside next(), as it would at a real ^C.
        wait_for(waiting_for_an_item, what="the consumer waiting for an item")
        _thread.interrupt_main()     # what a SIGINT does

    helper = threading.Thread(target=interrupt)
    helper.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            next(items)
    finally:
        helper.join(30)
    assert time.monotonic() - start < 10.0
    with pytest.raises(StopIteration):
        next(items)                      # a closed generator stays closed
    # The producer was told to stop: once its source returns, it ends
    # without passing anything on.
    [stuck] = producers()
    source.gate.set()
    wait_for(lambda: not stuck.is_alive(), what="the producer ending")
    assert source.closed and source.produced == 2


def test_several_read_aheads_at_once_are_independent():
    a = read_ahead(read_batches(A9A, "svmlight", batch_size=300))
    b = read_ahead(read_batches(A9A, "svmlight", batch_size=300))
    got = [(x, y) for x, y in itertools.zip_longest(a, b)]
    assert len(got) == 7
    for x, y in got:
        same_batches([x], [y])
