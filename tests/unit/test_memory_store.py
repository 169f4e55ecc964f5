"""The in-memory store passes the event store contract, plus its own specifics."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from eventsource.codec import EventCodec
from eventsource.domain import Event
from eventsource.errors import SchemaError, StoreUnavailableError
from eventsource.store.memory import InMemoryEventStore
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import EventStore
from eventsource.testing.contract import EventStoreContract
from examples.bank.domain import Account, AccountOpened, MoneyDeposited


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[EventStore]:
        with InMemoryEventStore() as store:
            yield store


def test_positions_use_the_events_topic_and_kafkas_partition_of_the_id() -> None:
    store = InMemoryEventStore(partitions=3)
    result = store.append("bank.account", "acc-7", [AccountOpened(owner="Ada")], 0)
    (position,) = result.positions
    assert position.topic == "bank.account.events"
    assert position.partition == partition_for_id("acc-7", 3)
    assert position.offset == 0


def test_offsets_count_per_partition_across_aggregates() -> None:
    store = InMemoryEventStore(partitions=1)
    store.append("bank.account", "a", [AccountOpened(owner="A")], 0)
    result = store.append("bank.account", "b", [AccountOpened(owner="B")], 0)
    assert result.positions[0].offset == 1


def test_recorded_events_carry_versions_and_correlation_ids() -> None:
    store = InMemoryEventStore()
    store.append(
        "bank.account",
        "acc-1",
        [AccountOpened(owner="Ada"), MoneyDeposited(amount=Decimal(3))],
        0,
        correlation_id="corr-1",
        causation_id="cmd-1",
    )
    recorded = store.recorded_events("bank.account", "acc-1")
    assert [r.metadata.version for r in recorded] == [1, 2]
    assert {r.metadata.correlation_id for r in recorded} == {"corr-1"}
    assert {r.metadata.causation_id for r in recorded} == {"cmd-1"}
    assert len({r.metadata.event_id for r in recorded}) == 2
    assert store.all_events() == recorded


@pytest.mark.parametrize(
    ("aggregate_id", "events", "expected", "error"),
    [
        ("", [AccountOpened(owner="A")], 0, ValueError),
        ("acc", [], 0, ValueError),
        ("acc", [AccountOpened(owner="A")], -2, ValueError),
        ("acc", ["not an event"], 0, TypeError),
    ],
)
def test_invalid_append_arguments_are_rejected_before_anything_is_written(
    aggregate_id: str, events: list[object], expected: int, error: type[Exception]
) -> None:
    store = InMemoryEventStore()
    with pytest.raises(error):
        store.append("bank.account", aggregate_id, events, expected)  # type: ignore[arg-type]
    assert store.all_events() == []


def test_a_closed_store_refuses_appends() -> None:
    store = InMemoryEventStore()
    store.close()
    with pytest.raises(StoreUnavailableError):
        store.append("bank.account", "acc", [AccountOpened(owner="A")], 0)


def test_with_a_codec_events_make_the_wire_round_trip_on_append() -> None:
    codec = EventCodec.for_events(Account.event_types())
    store = InMemoryEventStore(codec=codec)
    original = MoneyDeposited(amount=Decimal("1.50"))
    store.append("bank.account", "acc-1", [AccountOpened(owner="Ada"), original], 0)
    stored = store.recorded_events("bank.account", "acc-1")[1].event
    assert stored == original
    assert stored is not original


def test_with_a_codec_an_event_the_wire_format_cannot_carry_is_rejected() -> None:
    store = InMemoryEventStore(codec=EventCodec.for_events(Account.event_types()))
    with pytest.raises(SchemaError, match="not registered"):
        store.append("bank.account", "acc-1", [Unregistered()], 0)
    assert store.all_events() == []


class Unregistered(Event):
    __namespace__ = "tests.memory"


def test_both_adapters_satisfy_the_event_store_protocol() -> None:
    from eventsource.kafka.config import KafkaSettings
    from eventsource.store.kafka import KafkaEventStore

    assert isinstance(InMemoryEventStore(), EventStore)
    assert isinstance(KafkaEventStore(KafkaSettings(), [Account]), EventStore)
