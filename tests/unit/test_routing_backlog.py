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
        backlog.track(answered(f"acc-{n}"), expires_at_ms=60_000)
    assert backlog.in_flight == 1
    assert backlog.tracked <= 2 * backlog.in_flight + 64 + 1
    # the request still waiting kept its deadline through the rebuilds
    backlog.expire(now_ms=2_000)
    assert waiting.cancelled() and backlog.expired == 1
    assert backlog.in_flight == 0


def test_a_full_backlog_refuses_and_one_answer_makes_room() -> None:
    backlog = Backlog(2)
    first: Future[AppendResult] = Future()
    backlog.track(first, expires_at_ms=60_000)
    backlog.track(Future(), expires_at_ms=60_000)
    refused = backlog.refusal("acc-9")
    assert isinstance(refused, OverloadedError) and "'acc-9'" in str(refused)
    first.set_result(AppendResult("acc-1", 1, ()))
    assert backlog.refusal("acc-9") is None


def test_appends_let_in_but_not_tracked_yet_count_against_the_bound() -> None:
    backlog = Backlog(3)
    backlog.track(Future(), expires_at_ms=60_000)
    assert backlog.refusal("acc-1", admitted=1) is None
    assert isinstance(backlog.refusal("acc-1", admitted=2), OverloadedError)
