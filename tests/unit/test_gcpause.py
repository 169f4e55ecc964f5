"""The collector pause of a batch: counted across nesting and threads, and lifted while the
pausing thread waits (``gc_resumed``)."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from eventsource import gcpause
from eventsource.gcpause import gc_paused, gc_resumed
from eventsource.projection import Projection
from eventsource.projection.dberrors import retry_transient
from examples.bank.domain import Account


class Balances(Projection):
    name = "gcpause"
    aggregates = (Account,)


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_a_pause_is_lifted_when_the_last_nested_pause_ends() -> None:
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resumed_lifts_every_pause_of_this_thread_and_restores_them() -> None:
    with gc_paused(), gc_paused():
        with gc_resumed():
            assert gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resumed_outside_a_pause_changes_nothing() -> None:
    with gc_resumed():
        assert gc.isenabled()
    gc.disable()
    with gc_resumed():  # a collector the application turned off stays off
        assert not gc.isenabled()
    gc.enable()


def test_resumed_keeps_another_threads_pause() -> None:
    paused, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            paused.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert paused.wait(10)
        with gc_paused(), gc_resumed():  # this thread's pause lifted, the other's holds
            assert not gc.isenabled()
    finally:
        release.set()
        thread.join(10)
    assert gc.isenabled()


def test_a_database_retry_waits_with_the_collector_running() -> None:
    seen: list[bool] = []
    failures = iter([OperationalError("SELECT 1", {}, Exception("connection refused"))])

    def call() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "done"

    class Watched(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            seen.append(gc.isenabled())
            return False

    stop = Watched()
    with gc_paused():
        assert retry_transient(call, Balances(), doing="batch", stop=stop) == "done"
        assert not gc.isenabled()
    assert seen == [True]


def test_overlapping_pauses_of_several_threads_do_not_hold_the_collector_off_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two runner threads whose steps overlap: each leaves its pause only while the other
    # holds one, so the count never reaches zero; cyclic garbage is still collected within
    # the bound. The bound is shortened for the test (before it existed, the attribute was
    # set and ignored: the garbage waited forever).
    monkeypatch.setattr(gcpause, "MAX_PAUSE_S", 0.05, raising=False)
    holding = [False, False]
    handovers = [0]
    cond = threading.Condition()
    stop = threading.Event()

    def runner(me: int) -> None:
        other = 1 - me
        while not stop.is_set():
            with gc_paused(), cond:
                holding[me] = True
                cond.notify_all()
                while not holding[other] and not stop.is_set():
                    cond.wait(0.01)
                holding[me] = False  # the other is inside its pause now
                handovers[0] += 1
                cond.notify_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    try:
        with cond:
            assert cond.wait_for(lambda: handovers[0] > 0, 10)  # the count is above zero
        assert not gc.isenabled()

        class Node:
            peer: object = None

        node = Node()
        node.peer = node
        collected = threading.Event()
        weakref.finalize(node, collected.set)
        del node
        # waits for the condition; the deadline is only a cap against waiting forever
        found = collected.wait(20)
        assert not gc.isenabled()  # collected with the pauses still overlapping
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert found, f"a reference cycle was not collected in {handovers[0]} handovers"
    assert gc.isenabled()


class Node:
    peer: object = None


def cycle() -> threading.Event:
    """A reference cycle dropped at once: the event is set once the collector freed it."""
    node = Node()
    node.peer = node
    collected = threading.Event()
    weakref.finalize(node, collected.set)
    return collected


def test_a_pause_that_allocates_past_the_bound_collects_the_young_generations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A busy writer process: pauses nest and overlap, the count never reaches zero, and
    # MAX_PAUSE_S is far away; the allocation bound still collects the garbage cycles.
    monkeypatch.setattr(gcpause, "MAX_PAUSE_ALLOCATIONS", 2_000)
    with gc_paused():
        collected = cycle()
        kept = [[] for _ in range(1_000)]  # half the bound: not yet
        with gc_paused():
            pass
        assert not collected.is_set()
        kept += [[] for _ in range(1_500)]  # past the bound: the next pause or resume collects
        with gc_paused():
            assert collected.is_set()
            assert gc.get_count()[0] < 100
        assert not gc.isenabled()
    assert gc.isenabled()
    assert len(kept) == 2_500


def test_a_pause_never_collects_for_a_collector_the_application_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gcpause, "MAX_PAUSE_ALLOCATIONS", 100)
    monkeypatch.setattr(gcpause, "MAX_PAUSE_S", 0.0)
    gc.disable()
    try:
        with gc_paused():
            collected = cycle()
            kept = [[] for _ in range(500)]
            with gc_paused():
                pass
            assert not collected.is_set()
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.collect()
    assert collected.is_set()
    assert len(kept) == 500


def test_a_pause_ends_when_its_block_raises() -> None:
    with pytest.raises(RuntimeError, match="in the batch"), gc_paused(), gc_paused():
        raise RuntimeError("in the batch")
    assert gc.isenabled()
    with gc_paused():  # the count went back to zero: a new pause starts afresh
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_pause_resumed_for_a_wait_that_raises_is_held_again() -> None:
    with gc_paused():
        with pytest.raises(TimeoutError), gc_resumed():
            assert gc.isenabled()
            raise TimeoutError("the backoff was cut short")
        assert not gc.isenabled()
    assert gc.isenabled()
