"""Repository behaviour beyond the contract suite."""

from __future__ import annotations

from decimal import Decimal

from eventsource.store.memory import InMemoryEventStore
from eventsource.store.repository import Repository
from examples.bank.domain import Account


def test_saving_without_pending_events_writes_nothing() -> None:
    store = InMemoryEventStore()
    accounts = Repository(store, Account)
    account = accounts.create("acc-1")
    result = accounts.save(account)
    assert (result.version, result.positions) == (0, ())
    assert store.all_events() == []


def test_get_or_none_returns_none_for_an_unknown_id() -> None:
    accounts = Repository(InMemoryEventStore(), Account)
    assert accounts.get_or_none("nobody") is None


def test_save_passes_correlation_and_causation_ids_to_the_store() -> None:
    store = InMemoryEventStore()
    accounts = Repository(store, Account)
    account = accounts.create("acc-1")
    account.open(owner="Ada")
    account.deposit(Decimal(2))
    accounts.save(account, correlation_id="c-1", causation_id="k-1")
    recorded = store.recorded_events("bank.account", "acc-1")
    assert {(r.metadata.correlation_id, r.metadata.causation_id) for r in recorded} == {
        ("c-1", "k-1")
    }
