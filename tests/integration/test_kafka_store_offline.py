"""Kafka store behaviour that needs no running broker.

Bounded waits (an unreachable broker, appends that outlive their timeout), the version
index, event ids. They live beside the Kafka store's other tests.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from decimal import Decimal

import pytest

from eventsource.errors import BrokerUnreachableError, StoreUnavailableError, UncertainCommitError
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.kafka.ids import new_event_id
from eventsource.store.kafka.index import VersionIndex
from eventsource.store.kafka.served import wait_for
from eventsource.store.port import AppendResult
from examples.bank.domain import Account, AccountOpened, MoneyDeposited


def test_an_append_that_never_started_is_cancelled_and_reported_as_nothing_written() -> None:
    queued: Future[AppendResult] = Future()
    with pytest.raises(StoreUnavailableError, match="nothing was written"):
        wait_for(queued, "acc-1", 0.01)
    assert queued.cancelled()


def test_an_append_in_flight_at_its_timeout_is_reported_as_uncertain() -> None:
    in_flight: Future[AppendResult] = Future()
    assert in_flight.set_running_or_notify_cancel()
    with pytest.raises(UncertainCommitError, match="reload the aggregate"):
        wait_for(in_flight, "acc-1", 0.01)


def test_starting_against_an_unreachable_broker_fails_as_unavailable() -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = KafkaSettings(bootstrap_servers=address)
    store = KafkaEventStore(settings, [Account])
    with pytest.raises(BrokerUnreachableError, match="no Kafka broker answered") as caught:
        store.start(timeout=3)
    # one typed error, a kind of StoreUnavailableError, naming the address and the fix
    assert isinstance(caught.value, StoreUnavailableError)
    assert address in str(caught.value) and "EVENTSOURCE_BOOTSTRAP_SERVERS" in str(caught.value)


def test_the_index_hands_out_deep_copies_and_installs_committed_states() -> None:
    index = VersionIndex(Account)
    assert index.apply("a", [AccountOpened(owner="Ada")]) == 1
    states = index.scratch_many(["a", "b", "a"])
    assert set(states) == {"a", "b"} and states["b"].version == 0
    states["a"].apply_event(MoneyDeposited(amount=Decimal(2)))
    states["a"].apply_event(MoneyDeposited(amount=Decimal(3)))
    states["b"].apply_event(AccountOpened(owner="Bob"))
    assert index.version("a") == 1  # scratch copies change nothing until installed
    index.install(states)
    copy = index.snapshot("a")
    assert copy is not None and copy.version == 3
    copy.balance = Decimal(1000)
    again = index.snapshot("a")
    assert again is not None and again.balance == Decimal(5)
    assert (index.version("b"), index.version("nobody"), index.snapshot("nobody")) == (1, 0, None)
    assert len(index) == 2


def test_event_ids_are_distinct_random_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(5000)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids
    assert len(set(ids)) == len(ids)
