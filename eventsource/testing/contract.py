"""The event store contract: one test class every adapter must pass.

Subclass it in a test module and provide the ``store`` fixture (an empty or shared store
that can hold ``eventsource.testing.contract_domain.Account``; every test uses fresh
aggregate ids)::

    class TestMyStore(EventStoreContract):
        @pytest.fixture
        def store(self) -> Iterator[EventStore]:
            with MyStore() as store:
                yield store

The class name has no ``Test`` prefix, so pytest collects it only through subclasses.
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest

from eventsource.errors import AggregateNotFoundError, ConcurrencyError
from eventsource.kafka.names import events_topic
from eventsource.store.port import EventStore
from eventsource.store.repository import Repository
from eventsource.testing.contract_domain import (
    Account,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
)

__all__ = ["EventStoreContract"]

ACCOUNT = Account.aggregate_type


def _new_id() -> str:
    return f"acc-{uuid.uuid4().hex}"


class EventStoreContract:
    """Behaviour shared by every :class:`~eventsource.store.port.EventStore` adapter."""

    @pytest.fixture
    def store(self) -> EventStore:
        raise NotImplementedError("subclass EventStoreContract and provide a `store` fixture")

    def test_appending_to_a_new_aggregate_at_expected_version_0_gives_version_n(
        self, store: EventStore
    ) -> None:
        account_id = _new_id()
        result = store.append(ACCOUNT, account_id, [AccountOpened(owner="Ada")], 0)
        assert result.aggregate_id == account_id
        assert result.version == 1
        assert len(result.positions) == 1
        assert store.version(ACCOUNT, account_id) == 1

    def test_load_folds_every_stored_event_into_the_state(self, store: EventStore) -> None:
        account_id = _new_id()
        store.append(ACCOUNT, account_id, [AccountOpened(owner="Ada")], 0)
        store.append(ACCOUNT, account_id, [MoneyDeposited(amount=Decimal("10.50"))], 1)
        store.append(ACCOUNT, account_id, [MoneyWithdrawn(amount=Decimal("0.50"))], 2)
        account = store.load(Account, account_id)
        assert (account.owner, account.balance, account.version) == ("Ada", Decimal("10.00"), 3)
        assert account.pending_events == ()

    def test_loaded_aggregates_are_copies_that_do_not_change_the_store(
        self, store: EventStore
    ) -> None:
        account_id = _new_id()
        store.append(ACCOUNT, account_id, [AccountOpened(owner="Ada")], 0)
        first = store.load(Account, account_id)
        first.deposit(Decimal("99"))
        assert store.load(Account, account_id).balance == Decimal("0.00")

    def test_wrong_expected_version_raises_concurrency_error_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        account_id = _new_id()
        store.append(ACCOUNT, account_id, [AccountOpened(owner="Ada")], 0)
        for wrong in (0, 2, 7):
            with pytest.raises(ConcurrencyError) as caught:
                store.append(ACCOUNT, account_id, [MoneyDeposited(amount=Decimal(1))], wrong)
            assert (caught.value.expected, caught.value.actual) == (wrong, 1)
        assert store.version(ACCOUNT, account_id) == 1
        assert store.load(Account, account_id).balance == Decimal("0.00")

    def test_expected_version_any_skips_the_check(self, store: EventStore) -> None:
        account_id = _new_id()
        store.append(ACCOUNT, account_id, [AccountOpened(owner="Ada")], 0)
        result = store.append(ACCOUNT, account_id, [MoneyDeposited(amount=Decimal(5))], -1)
        assert result.version == 2

    def test_a_multi_event_append_is_atomic_with_contiguous_versions(
        self, store: EventStore
    ) -> None:
        account_id = _new_id()
        events = [AccountOpened(owner="Ada")] + [
            MoneyDeposited(amount=Decimal(i)) for i in range(1, 6)
        ]
        result = store.append(ACCOUNT, account_id, events, 0)
        assert result.version == 6
        assert len(result.positions) == 6
        with pytest.raises(ConcurrencyError):
            store.append(ACCOUNT, account_id, events[1:], 3)
        account = store.load(Account, account_id)
        assert (account.version, account.balance) == (6, Decimal(15))

    def test_positions_increase_within_the_aggregate_partition(self, store: EventStore) -> None:
        account_id = _new_id()
        first = store.append(ACCOUNT, account_id, [AccountOpened(owner="Ada")], 0)
        second = store.append(
            ACCOUNT,
            account_id,
            [MoneyDeposited(amount=Decimal(1)), MoneyDeposited(amount=Decimal(2))],
            1,
        )
        positions = first.positions + second.positions
        assert len({(p.topic, p.partition) for p in positions}) == 1
        assert positions[0].topic.endswith(events_topic(ACCOUNT))
        offsets = [p.offset for p in positions]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == len(offsets)

    def test_loading_an_unknown_aggregate_raises_not_found(self, store: EventStore) -> None:
        unknown = _new_id()
        with pytest.raises(AggregateNotFoundError):
            store.load(Account, unknown)
        assert store.version(ACCOUNT, unknown) == 0

    def test_concurrent_appends_at_the_same_expected_version_have_exactly_one_winner(
        self, store: EventStore
    ) -> None:
        account_id = _new_id()
        store.append(ACCOUNT, account_id, [AccountOpened(owner="Ada")], 0)
        contenders = 8
        barrier = threading.Barrier(contenders)
        outcomes: list[str] = []
        lock = threading.Lock()

        def contend(amount: int) -> None:
            barrier.wait()
            try:
                store.append(ACCOUNT, account_id, [MoneyDeposited(amount=Decimal(amount))], 1)
                outcome = "won"
            except ConcurrencyError:
                outcome = "lost"
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=contend, args=(i + 1,)) for i in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["lost"] * (contenders - 1) + ["won"]
        assert store.version(ACCOUNT, account_id) == 2

    def test_repository_round_trip_saves_pending_events_and_loads_them_back(
        self, store: EventStore
    ) -> None:
        accounts = Repository(store, Account)
        account = accounts.create(_new_id())
        account.open(owner="Grace")
        account.deposit(Decimal("40"))
        result = accounts.save(account)
        assert (result.version, account.pending_events, account.committed_version) == (2, (), 2)
        loaded = accounts.get(account.id)
        loaded.withdraw(Decimal("15"))
        accounts.save(loaded)
        again = accounts.get(account.id)
        assert (again.owner, again.balance, again.version) == ("Grace", Decimal("25"), 3)

    def test_repository_save_of_a_stale_aggregate_raises_and_keeps_its_pending_events(
        self, store: EventStore
    ) -> None:
        accounts = Repository(store, Account)
        account = accounts.create(_new_id())
        account.open(owner="Grace")
        accounts.save(account)
        stale, fresh = accounts.get(account.id), accounts.get(account.id)
        fresh.deposit(Decimal("1"))
        accounts.save(fresh)
        stale.deposit(Decimal("2"))
        with pytest.raises(ConcurrencyError):
            accounts.save(stale)
        assert len(stale.pending_events) == 1
        assert accounts.get(account.id).balance == Decimal("1")
