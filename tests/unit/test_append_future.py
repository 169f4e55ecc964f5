"""The append future: a ``concurrent.futures.Future`` sharing its writer's condition."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future, as_completed, wait
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from eventsource.domain import Position
from eventsource.errors import ConcurrencyError
from eventsource.store.kafka.future import AppendFuture, resolve_all, start_all
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.port import AppendResult


def result(aggregate_id: str, offset: int) -> AppendResult:
    return AppendResult(aggregate_id, 1, (Position("t", 0, offset),))


def blocked_in_wait(condition: threading.Condition, thread: threading.Thread) -> None:
    """Return once ``thread`` waits on ``condition`` (fails if it ended instead)."""
    while True:
        with condition:
            if condition._waiters:  # type: ignore[attr-defined]
                return
        assert thread.is_alive(), "the waiter returned instead of waiting"
        thread.join(0.01)


def test_futures_sharing_a_condition_start_and_resolve_together_then_call_back_in_order() -> None:
    condition = threading.Condition()
    futures = [AppendFuture(condition) for _ in range(3)]
    calls: list[str] = []
    futures[0].add_done_callback(lambda f: calls.append(f"0:{f.result().aggregate_id}"))
    futures[2].add_done_callback(lambda f: calls.append("2a"))
    futures[2].add_done_callback(lambda f: calls.append("2b"))
    assert isinstance(futures[0], Future) and not futures[0].done()
    assert start_all(condition, futures) == [True, True, True]
    assert all(f.running() for f in futures)
    resolve_all(condition, [(f, result(f"a-{n}", n)) for n, f in enumerate(futures)])
    assert calls == ["0:a-0", "2a", "2b"]
    assert [f.result(0).positions[0].offset for f in futures] == [0, 1, 2]
    assert futures[1].exception(0) is None and futures[1].done() and not futures[1].cancelled()
    late: list[AppendFuture] = []
    futures[1].add_done_callback(lambda f: late.append(f))  # type: ignore[arg-type]
    assert late == [futures[1]]  # already done: called at once


def test_a_future_cancelled_while_queued_is_left_out_and_its_waiters_learn_it() -> None:
    condition = threading.Condition()
    kept, cancelled = AppendFuture(condition), AppendFuture(condition)
    assert cancelled.cancel() and cancelled.cancelled()
    waiting = threading.Thread(target=lambda: wait([cancelled, kept], timeout=30))
    waiting.start()
    assert start_all(condition, [kept, cancelled]) == [True, False]
    assert not kept.cancel()  # running: too late to cancel
    with pytest.raises(CancelledError):
        cancelled.result(0)
    with pytest.raises(CancelledError):
        cancelled.exception(0)
    resolve_all(condition, [(kept, result("a-1", 7))])
    waiting.join(30)
    assert not waiting.is_alive()


def test_a_waiter_woken_for_another_future_of_its_writer_keeps_waiting_until_its_own() -> None:
    condition = threading.Condition()
    mine, other = AppendFuture(condition), AppendFuture(condition)
    start_all(condition, [mine, other])
    outcome: list[object] = []
    waiter = threading.Thread(target=lambda: outcome.append(mine.result(60)))
    waiter.start()
    blocked_in_wait(condition, waiter)
    resolve_all(condition, [(other, result("a-2", 2))])  # notify_all wakes the waiter too
    blocked_in_wait(condition, waiter)  # ...which went back to waiting
    assert outcome == []  # it did not return early or time out
    resolve_all(condition, [(mine, result("a-1", 1))])
    waiter.join(30)
    assert outcome == [result("a-1", 1)]


def test_an_unfinished_future_times_out_and_a_failed_one_raises_its_error() -> None:
    condition = threading.Condition()
    future = AppendFuture(condition)
    start_all(condition, [future])
    with pytest.raises(FutureTimeout):
        future.result(0.01)
    with pytest.raises(FutureTimeout):
        future.exception(0.01)
    error = ConcurrencyError("a-1", 1, 2)
    future.set_exception(error)  # Future's own method, on the shared condition
    assert future.exception(0) is error
    with pytest.raises(ConcurrencyError):
        future.result(0)
    assert "raised ConcurrencyError" in repr(future)


def test_append_futures_work_with_wait_and_as_completed() -> None:
    condition = threading.Condition()
    futures = [AppendFuture(condition) for _ in range(4)]
    start_all(condition, futures)
    done, pending = wait(futures, timeout=0)
    assert not done and len(pending) == 4
    finisher = threading.Thread(
        target=lambda: resolve_all(
            condition, [(f, result(f"a-{n}", n)) for n, f in enumerate(futures)]
        )
    )
    finisher.start()
    assert {f.result().aggregate_id for f in as_completed(futures, timeout=30)} == {
        "a-0",
        "a-1",
        "a-2",
        "a-3",
    }
    finisher.join(30)


def test_starting_or_resolving_a_future_twice_is_a_bug_that_says_so() -> None:
    condition = threading.Condition()
    future = AppendFuture(condition)
    start_all(condition, [future])
    with pytest.raises(RuntimeError, match="started twice"):
        start_all(condition, [future])
    resolve_all(condition, [(future, result("a-1", 1))])
    with pytest.raises(RuntimeError, match="resolved twice"):
        resolve_all(condition, [(future, result("a-1", 1))])


def test_a_request_is_the_future_its_caller_holds() -> None:
    condition = threading.Condition()
    request = AppendRequest(
        aggregate_type="bank.account",
        aggregate_id="a-1",
        events=(),
        payloads=(),
        event_ids=(),
        expected_version=0,
        condition=condition,
    )
    assert isinstance(request, Future) and request._condition is condition
    assert (request.base_version, request.time, request.key) == (0, None, b"a-1")
    assert request.cancel()  # queued, not taken by the writer yet: cancellable
    assert start_all(condition, [request]) == [False]


def test_callbacks_run_in_order_after_an_error_too_and_one_that_raises_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    condition = threading.Condition()
    future = AppendFuture(condition)
    calls: list[str] = []

    def broken(f: Future[AppendResult]) -> None:
        raise RuntimeError("callback bug")

    future.add_done_callback(lambda f: calls.append("first"))  # kept without a list
    future.add_done_callback(broken)  # the second makes the list
    future.add_done_callback(lambda f: calls.append(type(f.exception()).__name__))
    start_all(condition, [future])
    future.set_exception(ConcurrencyError("a-1", 1, 2))  # Future's own method
    assert calls == ["first", "ConcurrencyError"]
    logged = [r for r in caplog.records if r.message.startswith("exception calling callback")]
    assert len(logged) == 1 and "callback bug" in caplog.text
    future.add_done_callback(broken)  # already done: called at once, and logged again
    assert len([r for r in caplog.records if r.message.startswith("exception calling")]) == 2
