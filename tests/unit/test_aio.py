"""The asyncio facade on the in-memory store and on futures completed by other threads."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import weakref
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from eventsource.aio import AsyncRepository, Loader, await_future, wait_for_positions
from eventsource.domain import Position
from eventsource.errors import (
    AggregateNotFoundError,
    ConcurrencyError,
    ConfigurationError,
    WaitTimeoutError,
)
from eventsource.store.memory import InMemoryEventStore
from eventsource.store.port import Appender
from examples.bank.domain import Account
from examples.bank.projections import AccountBalances


def opened(accounts: AsyncRepository[Account], account_id: str) -> Account:
    account = accounts.create(account_id)
    account.open(owner="Ada")
    return account


def test_the_in_memory_store_is_an_appender_and_a_loader() -> None:
    store = InMemoryEventStore()
    assert isinstance(store, Appender) and isinstance(store, Loader)


class AppendOnly:
    """An appender that cannot load, as a GroupRouter."""

    def __init__(self) -> None:
        self.inner = InMemoryEventStore()
        self.append = self.inner.append
        self.append_async = self.inner.append_async
        self.append_many = self.inner.append_many
        self.version = self.inner.version


def test_an_appender_that_cannot_load_needs_a_loader_for_get() -> None:
    async def scenario() -> Account:
        router = AppendOnly()
        accounts = AsyncRepository(router, Account)
        await accounts.save(opened(accounts, "acc-1"))
        with pytest.raises(ConfigurationError, match="loader="):
            await accounts.get("acc-1")
        return await AsyncRepository(router, Account, loader=router.inner).get("acc-1")

    assert asyncio.run(scenario()).version == 1


def test_a_saved_aggregate_is_read_back_with_its_version() -> None:
    async def scenario() -> tuple[Account, int]:
        accounts = AsyncRepository(InMemoryEventStore(), Account)
        account = opened(accounts, "acc-1")
        account.deposit(Decimal("5.00"))
        result = await accounts.save(account)
        assert (result.version, len(result.positions)) == (2, 2)
        assert not account.pending_events and account.committed_version == 2
        return await accounts.get("acc-1"), await accounts.version("acc-1")

    again, version = asyncio.run(scenario())
    assert (again.balance, again.version, version) == (Decimal("5.00"), 2, 2)


def test_get_of_an_unknown_aggregate_raises_and_get_or_none_returns_none() -> None:
    async def scenario() -> Account | None:
        accounts = AsyncRepository(InMemoryEventStore(), Account)
        with pytest.raises(AggregateNotFoundError):
            await accounts.get("nobody")
        return await accounts.get_or_none("nobody")

    assert asyncio.run(scenario()) is None


def test_racing_saves_at_one_version_have_one_winner_and_the_losers_keep_their_events() -> None:
    async def scenario() -> list[BaseException | None]:
        store = InMemoryEventStore()
        accounts = AsyncRepository(store, Account)
        await accounts.save(opened(accounts, "acc-1"))
        copies = [await accounts.get("acc-1") for _ in range(10)]
        for copy in copies:
            copy.deposit(Decimal(1))
        outcomes = await asyncio.gather(*(accounts.save(c) for c in copies), return_exceptions=True)
        assert await accounts.version("acc-1") == 2
        return [o if isinstance(o, BaseException) else None for o in outcomes]

    outcomes = asyncio.run(scenario())
    errors = [o for o in outcomes if o is not None]
    assert len(errors) == 9 and all(isinstance(e, ConcurrencyError) for e in errors)


def test_a_loser_of_a_race_keeps_its_pending_events() -> None:
    async def scenario() -> Account:
        accounts = AsyncRepository(InMemoryEventStore(), Account)
        await accounts.save(opened(accounts, "acc-1"))
        first, second = await accounts.get("acc-1"), await accounts.get("acc-1")
        first.deposit(Decimal(1))
        second.deposit(Decimal(2))
        await accounts.save(first)
        with pytest.raises(ConcurrencyError):
            await accounts.save(second)
        return second

    loser = asyncio.run(scenario())
    assert (len(loser.pending_events), loser.committed_version) == (1, 1)


def test_save_all_writes_every_aggregate_and_refuses_one_aggregate_twice() -> None:
    async def scenario() -> list[int]:
        accounts = AsyncRepository(InMemoryEventStore(), Account)
        results = await accounts.save_all([opened(accounts, f"acc-{i}") for i in range(5)])
        with pytest.raises(ValueError, match="acc-9"):
            await accounts.save_all([opened(accounts, "acc-9"), opened(accounts, "acc-9")])
        return [r.version for r in results]

    assert asyncio.run(scenario()) == [1] * 5


def test_save_all_raises_the_first_failure_after_committing_the_others() -> None:
    async def scenario() -> list[Account]:
        accounts = AsyncRepository(InMemoryEventStore(), Account)
        await accounts.save(opened(accounts, "acc-1"))
        stale = opened(accounts, "acc-1")  # a second "open" at version 0: loses
        fresh = opened(accounts, "acc-2")
        with pytest.raises(ConcurrencyError):
            await accounts.save_all([stale, fresh])
        return [stale, fresh]

    stale, fresh = asyncio.run(scenario())
    assert (len(stale.pending_events), len(fresh.pending_events)) == (1, 0)


def test_a_future_completed_by_another_thread_reaches_the_loop() -> None:
    async def scenario() -> list[int]:
        futures: list[Future[int]] = [Future() for _ in range(200)]

        def complete() -> None:
            for n, future in enumerate(futures):
                future.set_result(n)

        thread = threading.Thread(target=complete)
        waits = asyncio.gather(*(await_future(f) for f in futures))
        thread.start()
        results = await waits
        thread.join()
        return list(results)

    assert asyncio.run(scenario()) == list(range(200))


def test_cancelling_the_awaiting_task_leaves_the_store_future_running() -> None:
    async def scenario() -> Future[int]:
        future: Future[int] = Future()
        assert future.set_running_or_notify_cancel()  # as a writer does when it starts
        task = asyncio.create_task(await_future(future))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        future.set_result(7)  # the commit ends after the caller gave up
        await asyncio.sleep(0.01)
        return future

    future = asyncio.run(scenario())
    assert not future.cancelled() and future.result() == 7


def test_cancelling_the_awaiting_task_never_cancels_a_queued_store_future() -> None:
    async def scenario() -> Future[int]:
        future: Future[int] = Future()  # queued, not started: cancel() would succeed
        task = asyncio.create_task(await_future(future))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return future

    future = asyncio.run(scenario())
    assert not future.cancelled() and not future.done()


def test_a_store_future_failing_raises_its_error_in_the_awaiting_task() -> None:
    async def scenario() -> None:
        future: Future[int] = Future()
        threading.Timer(0.01, lambda: future.set_exception(ConcurrencyError("a", 1, 2))).start()
        await await_future(future)

    with pytest.raises(ConcurrencyError):
        asyncio.run(scenario())


def test_async_wait_for_positions_times_out_naming_the_position(tmp_path: Path) -> None:
    async def scenario() -> None:
        await wait_for_positions(
            "balances", str(tmp_path / "rm.db"), [Position("t", 2, 7)], timeout=0.05
        )

    with pytest.raises(WaitTimeoutError, match=r"t\[2\]@7 \(checkpoint 0\)"):
        asyncio.run(scenario())


def test_async_wait_for_no_positions_returns_at_once(tmp_path: Path) -> None:
    asyncio.run(wait_for_positions(AccountBalances(), str(tmp_path / "rm.db"), [], timeout=0))


def test_a_loop_that_awaited_a_store_future_is_freed_once_closed() -> None:
    async def scenario() -> weakref.ref[asyncio.AbstractEventLoop]:
        future: Future[int] = Future()
        threading.Timer(0.01, future.set_result, (1,)).start()
        assert await await_future(future) == 1
        return weakref.ref(asyncio.get_running_loop())

    loop = asyncio.run(scenario())
    gc.collect()
    assert loop() is None, "the bridge keeps a closed event loop alive"


def test_a_store_future_ending_after_its_loop_closed_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: Future[int] = Future()

    async def scenario() -> asyncio.Task[int]:
        task = asyncio.create_task(await_future(future))  # still waiting when the loop closes
        await asyncio.sleep(0)
        return task

    assert asyncio.run(scenario()).cancelled()  # asyncio.run cancels what is left
    with caplog.at_level(logging.DEBUG):
        future.set_result(1)  # the writer's thread, after the service's loop ended
    assert future.result() == 1 and caplog.records == []


def completed_in_one_burst(futures: list[Future[int]]) -> threading.Thread:
    """A thread that completes ``futures`` in order, as a group commit does."""

    def complete() -> None:
        for n, future in enumerate(futures):
            future.set_result(n)

    return threading.Thread(target=complete)


def test_a_woken_task_runs_in_its_own_context() -> None:
    request: contextvars.ContextVar[int] = contextvars.ContextVar("request")

    async def scenario() -> list[tuple[int, int, bool]]:
        futures: list[Future[int]] = [Future() for _ in range(50)]

        async def handler(n: int) -> tuple[int, int, bool]:
            request.set(n)
            me = asyncio.current_task()
            result = await await_future(futures[n])
            return result, request.get(), asyncio.current_task() is me

        waits = asyncio.gather(*(handler(n) for n in range(50)))
        await asyncio.sleep(0)  # every handler is waiting
        thread = completed_in_one_burst(futures)
        thread.start()
        results = await waits
        thread.join()
        return results

    assert asyncio.run(scenario()) == [(n, n, True) for n in range(50)]


def test_in_debug_mode_tasks_are_woken_through_the_loop_with_the_same_outcomes() -> None:
    async def scenario() -> list[int]:
        futures: list[Future[int]] = [Future() for _ in range(50)]
        waits = asyncio.gather(*(await_future(f) for f in futures))
        thread = completed_in_one_burst(futures)
        thread.start()
        results = await waits
        thread.join()
        return results

    assert asyncio.run(scenario(), debug=True) == list(range(50))


def test_a_task_whose_futures_are_done_at_once_does_not_starve_the_others() -> None:
    async def scenario() -> list[str]:
        order: list[str] = []

        async def busy() -> None:
            for n in range(50):  # the in-memory store's futures are done when returned
                future: Future[int] = Future()
                future.set_result(n)
                assert await await_future(future) == n
            order.append("busy")

        async def other() -> None:
            await asyncio.sleep(0)
            order.append("other")

        await asyncio.gather(busy(), other())
        return order

    assert asyncio.run(scenario()) == ["other", "busy"]


def test_a_store_future_cancelled_by_its_caller_cancels_the_await() -> None:
    async def scenario() -> None:
        future: Future[int] = Future()
        task = asyncio.create_task(await_future(future))
        await asyncio.sleep(0)
        assert future.cancel()  # queued, cancelled by whoever holds it
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scenario())


def test_a_task_raising_system_exit_when_woken_leaves_the_others_woken_later() -> None:
    loop = asyncio.new_event_loop()
    futures: list[Future[int]] = [Future(), Future()]

    async def leaving() -> None:
        await await_future(futures[0])
        raise SystemExit(3)

    async def staying() -> int:
        return await await_future(futures[1])

    try:
        first, second = loop.create_task(leaving()), loop.create_task(staying())
        loop.run_until_complete(asyncio.sleep(0))  # both wait
        thread = completed_in_one_burst(futures)
        thread.start()
        thread.join()  # one burst: both completions are in one drain
        with pytest.raises(SystemExit):
            loop.run_until_complete(second)
        assert not second.done()
        assert loop.run_until_complete(asyncio.wait_for(second, 10)) == 1
        with pytest.raises(SystemExit):
            first.result()
    finally:
        loop.close()


class PythonFutureLoop(asyncio.SelectorEventLoop):
    """A loop whose futures are asyncio's pure-Python ones (a loop may bring its own)."""

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.futures._PyFuture(loop=self)  # type: ignore[attr-defined,no-any-return]


def test_tasks_waiting_on_pure_python_futures_are_woken_with_their_outcomes() -> None:
    async def scenario() -> list[int]:
        futures: list[Future[int]] = [Future() for _ in range(50)]
        waits = asyncio.gather(*(await_future(f) for f in futures))
        await asyncio.sleep(0)
        thread = completed_in_one_burst(futures)
        thread.start()
        results = await waits
        thread.join()
        return results

    with asyncio.Runner(loop_factory=PythonFutureLoop) as runner:
        assert runner.run(scenario()) == list(range(50))
