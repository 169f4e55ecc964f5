"""The GroupRouter's parts that need no broker: its retry timer and its client pool."""

from __future__ import annotations

import logging
import threading
from typing import cast

import pytest

from eventsource.store.kafka.scaleout.client_pool import ClientPool
from eventsource.store.kafka.scaleout.retry_timer import RetryTimer
from eventsource.store.routing import RemoteEventStore


def test_the_timer_runs_actions_in_the_order_they_are_due() -> None:
    timer = RetryTimer("test-timer")
    timer.start_thread()
    ran: list[str] = []
    done = threading.Event()
    try:
        timer.call_later(0.3, lambda: (ran.append("late"), done.set()))
        timer.call_later(0.0, lambda: ran.append("soon"))
        assert done.wait(30)
        assert ran == ["soon", "late"]
        assert timer.waiting == 0
    finally:
        timer.close()


def test_closing_the_timer_runs_the_waiting_actions_at_once_and_later_ones_too() -> None:
    timer = RetryTimer("test-timer")
    timer.start_thread()
    ran: list[str] = []
    timer.call_later(3600, lambda: ran.append("waiting"))
    assert timer.waiting == 1
    timer.close()
    assert ran == ["waiting"]
    timer.call_later(3600, lambda: ran.append("after close"))
    assert ran == ["waiting", "after close"]
    assert not timer.alive


def test_an_action_that_raises_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timer = RetryTimer("test-timer")
    timer.start_thread()
    ran = threading.Event()

    def fails() -> None:
        raise RuntimeError("boom")

    try:
        with caplog.at_level(logging.ERROR):
            timer.call_later(0.0, fails)
            timer.call_later(0.0, ran.set)
            assert ran.wait(30)
        assert "retry action" in caplog.text and "boom" in caplog.text
    finally:
        timer.close()


class FakeClient:
    def __init__(self, member: str) -> None:
        self.member = member
        self.closed = False

    def close(self) -> None:
        self.closed = True


def pool(**options: object) -> tuple[ClientPool, dict[str, FakeClient]]:
    made: dict[str, FakeClient] = {}

    def factory(member: str) -> RemoteEventStore:
        made[member] = FakeClient(member)
        return cast("RemoteEventStore", made[member])

    return ClientPool(factory, **options), made  # type: ignore[arg-type]


def test_a_client_dropped_while_in_use_is_closed_through_close_later_when_released() -> None:
    later: list[RemoteEventStore] = []
    clients, made = pool(max_clients=1, close_later=later.append)
    a = clients.acquire("a")
    with clients.use("b"):  # "a" is dropped (one client at most) but still in use
        assert not made["a"].closed
    clients.release("a", a)
    assert later == [a]  # closed by the router's timer, not on the releasing thread
    assert not made["a"].closed
    assert clients.members == ["b"]


def test_an_idle_client_is_closed_when_dropped_and_in_use_ones_are_not() -> None:
    clients, made = pool(max_clients=1)
    with clients.use("a"):
        pass
    with clients.use("b"):
        assert made["a"].closed  # idle: closed at once
        clients.retain(["a"], force=True)  # "b" owns nothing any more, but is in use
        assert not made["b"].closed
    assert made["b"].closed  # closed once its use ended
    assert clients.members == []


def test_two_calls_starting_a_client_for_one_member_at_once_keep_one_and_close_the_other() -> None:
    made: list[FakeClient] = []
    clients: ClientPool

    def factory(member: str) -> RemoteEventStore:
        made.append(FakeClient(member))
        mine = made[-1]
        if len(made) == 1:  # a second call for the member arrives while this one starts
            clients.release(member, clients.acquire(member))
        return cast("RemoteEventStore", mine)

    clients = ClientPool(factory)
    kept = clients.acquire("a")
    assert kept is made[1] and not made[1].closed  # the one registered first
    assert made[0].closed
    clients.release("a", kept)
    assert clients.members == ["a"]
