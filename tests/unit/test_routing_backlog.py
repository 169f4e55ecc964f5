"""The append server's backlog: bounded, expiring, and holding no answered request for long."""

from __future__ import annotations

from concurrent.futures import Future

from eventsource.errors import OverloadedError
from eventsource.store.port import AppendResult
from eventsource.store.routing.backlog import Backlog


def answered(aggregate_id: str) -> Future[AppendResult]:
    future: Future[AppendResult] = Future()
    future.set_result(AppendResult(aggregate_id, 1, ()))
    return future


def test_answered_requests_leave_the_deadline_heap_under_steady_load() -> None:
    backlog = Backlog(10)
    waiting: Future[AppendResult] = Future()
    backlog.track(waiting, expires_at_ms=1_000)  # keeps the backlog from ever emptying
    for n in range(1_000):
        backlog.finished(backlog.track(answered(f"acc-{n}"), expires_at_ms=60_000))
    assert backlog.in_flight == 1
    assert backlog.tracked <= 2 * backlog.in_flight + 64 + 1
    # the request still waiting kept its deadline through the rebuilds
    backlog.expire(now_ms=2_000)
    assert waiting.cancelled() and backlog.expired == 1


def test_a_request_is_in_flight_until_finished_and_counted_once() -> None:
    backlog = Backlog(10)
    tracked = backlog.track(answered("acc-1"), expires_at_ms=60_000)
    assert backlog.in_flight == 1  # answered by the store, but its reply is not sent yet
    backlog.finished(tracked)
    backlog.finished(tracked)
    assert backlog.in_flight == 0
    assert backlog.wait_idle(0)


def test_a_finished_request_is_not_cancelled_at_its_deadline() -> None:
    backlog = Backlog(10)
    backlog.track(Future(), expires_at_ms=60_000)  # keeps the heap from being cleared
    pending: Future[AppendResult] = Future()
    backlog.finished(backlog.track(pending, expires_at_ms=1_000))
    backlog.expire(now_ms=2_000)
    assert not pending.cancelled() and backlog.expired == 0


def test_a_full_backlog_refuses_and_one_answer_makes_room() -> None:
    backlog = Backlog(2)
    first = backlog.track(Future(), expires_at_ms=60_000)
    backlog.track(Future(), expires_at_ms=60_000)
    refused = backlog.refusal("acc-9")
    assert isinstance(refused, OverloadedError) and "'acc-9'" in str(refused)
    backlog.finished(first)
    assert backlog.refusal("acc-9") is None


def test_appends_let_in_but_not_tracked_yet_count_against_the_bound() -> None:
    backlog = Backlog(3)
    backlog.track(Future(), expires_at_ms=60_000)
    assert backlog.refusal("acc-1", admitted=1) is None
    assert isinstance(backlog.refusal("acc-1", admitted=2), OverloadedError)


def test_a_batch_is_tracked_and_finished_under_one_lock_each_and_counted_once() -> None:
    backlog = Backlog(max_pending=3)
    futures: list[Future[AppendResult]] = [Future() for _ in range(2)]
    tracked = backlog.track_all([(f, 10**13) for f in futures])
    assert (backlog.in_flight, backlog.room()) == (2, 1)
    backlog.finished_all([tracked[0], tracked[0]])  # said twice: counted once
    assert (backlog.in_flight, backlog.room()) == (1, 2)
    backlog.finished_all(tracked)
    assert (backlog.in_flight, backlog.tracked) == (0, 0)
    assert backlog.wait_idle(0)
