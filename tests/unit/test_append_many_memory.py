"""``append_many`` and ``Repository.save_all``: many commands in one call, each on its own."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventsource.errors import ConcurrencyError, StoreUnavailableError
from eventsource.store import AppendCall, InMemoryEventStore, Repository
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

ACCOUNT = Account.aggregate_type


def deposit(amount: str) -> MoneyDeposited:
    return MoneyDeposited(amount=Decimal(amount))


def test_each_command_is_checked_and_written_alone_in_the_order_given() -> None:
    store = InMemoryEventStore()
    store.append(ACCOUNT, "a-1", [AccountOpened(owner="ann")], 0)
    futures = store.append_many(
        [
            AppendCall(ACCOUNT, "a-1", [deposit("1")], 1),
            AppendCall(ACCOUNT, "a-2", [deposit("2")], 3),  # a-2 is new: conflict
            AppendCall(ACCOUNT, "a-1", [deposit("3"), deposit("4")], 2),  # after the first
            AppendCall(ACCOUNT, "a-3", [AccountOpened(owner="bo")], 0, "corr-1", "cmd-1"),
        ]
    )
    assert [f.result().version for f in (futures[0], futures[2], futures[3])] == [2, 4, 1]
    error = futures[1].exception()
    assert isinstance(error, ConcurrencyError) and (error.expected, error.actual) == (3, 0)
    assert store.version(ACCOUNT, "a-2") == 0  # nothing of the refused command
    assert store.load(Account, "a-1").balance == Decimal("8")


def test_an_argument_error_in_any_command_raises_before_any_command_starts() -> None:
    store = InMemoryEventStore()
    good = AppendCall(ACCOUNT, "a-1", [AccountOpened(owner="ann")], 0)
    with pytest.raises(ValueError, match="needs at least one event"):
        store.append_many([good, AppendCall(ACCOUNT, "a-2", [], 0)])
    with pytest.raises(TypeError, match="takes AppendCall tuples, got tuple"):
        store.append_many([good, (ACCOUNT, "a-2", [deposit("1")], 0)])  # type: ignore[list-item]
    assert store.version(ACCOUNT, "a-1") == 0  # the good command never started
    assert store.append_many([]) == []


def test_a_command_refused_before_it_starts_fails_its_own_future() -> None:
    store = InMemoryEventStore()
    store.close()
    (future,) = store.append_many([AppendCall(ACCOUNT, "a-1", [AccountOpened(owner="a")], 0)])
    assert isinstance(future.exception(), StoreUnavailableError)


def test_save_all_commits_the_written_aggregates_and_raises_the_first_failure() -> None:
    store = InMemoryEventStore()
    accounts = Repository(store, Account)
    ann, bo, idle = accounts.create("a-1"), accounts.create("a-2"), accounts.create("a-3")
    ann.open("ann")
    bo.open("bo")
    assert [r.version for r in accounts.save_all([ann, bo, idle])] == [1, 1, 0]
    assert ann.pending_events == bo.pending_events == ()
    stale = accounts.get("a-2")
    bo.deposit(Decimal("5"))
    accounts.save(bo)  # the stale copy no longer matches
    ann.deposit(Decimal("1"))
    stale.deposit(Decimal("2"))
    with pytest.raises(ConcurrencyError):
        accounts.save_all([stale, ann])
    assert ann.pending_events == () and accounts.get("a-1").version == 2  # written
    assert len(stale.pending_events) == 1 and accounts.get("a-2").balance == Decimal("5")
    with pytest.raises(ValueError, match="same aggregate more than once"):
        accounts.save_all([ann, ann])
