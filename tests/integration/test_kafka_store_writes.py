"""What the Kafka event store writes, how it restarts, and the mistakes it refuses."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventsource.codec import EventCodec, parse_headers
from eventsource.domain import Event
from eventsource.errors import (
    ConfigurationError,
    MissingHandlerError,
    StoreUnavailableError,
)
from eventsource.kafka.admin import describe_topic, ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore, WriterOptions
from eventsource.store.partitioner import partition_for_id
from examples.bank.domain import Account, AccountOpened, MoneyDeposited, MoneyWithdrawn
from tests.integration.partition_records import read_partition

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"


def make_store(settings: KafkaSettings, name: str, **options: object) -> KafkaEventStore:
    settings = settings.model_copy(update={"application_id": name})
    options.setdefault("partitions", 3)
    return KafkaEventStore(settings, [Account], topic_prefix=f"{name}.", **options)  # type: ignore[arg-type]


def test_each_event_is_a_keyed_avro_record_with_cloudevents_headers_on_the_ids_partition(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    with make_store(
        kafka_settings, unique_name, options=WriterOptions(source="/bank/tests")
    ) as store:
        result = store.append(
            ACCOUNT,
            "acc-1",
            [AccountOpened(owner="Ada"), MoneyDeposited(amount=Decimal("12.34"))],
            0,
            correlation_id="corr-9",
            causation_id="cmd-9",
        )
        topic = store.topic_for(ACCOUNT)
    partition = partition_for_id("acc-1", 3)
    assert {(p.topic, p.partition) for p in result.positions} == {(topic, partition)}
    records = read_partition(kafka_settings, topic, partition)
    assert [r.offset() for r in records] == [p.offset for p in result.positions]
    codec = EventCodec.for_events(Account.event_types())
    events = [codec.decode(r.value()) for r in records]
    assert events == [AccountOpened(owner="Ada"), MoneyDeposited(amount=Decimal("12.34"))]
    metas = [parse_headers(r.headers()) for r in records]  # type: ignore[arg-type]
    assert [r.key() for r in records] == [b"acc-1", b"acc-1"]
    assert [m.version for m in metas] == [1, 2]
    assert {
        (m.aggregate_type, m.aggregate_id, m.correlation_id, m.causation_id) for m in metas
    } == {(ACCOUNT, "acc-1", "corr-9", "cmd-9")}
    assert dict(records[0].headers() or [])["ce_source"] == b"/bank/tests"
    assert len({m.event_id for m in metas}) == 2


def test_the_events_topic_is_created_to_keep_events_forever(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    with make_store(kafka_settings, unique_name, partitions=2) as store:
        info = describe_topic(kafka_settings, store.topic_for(ACCOUNT))
    assert info.partitions == 2
    assert info.config["retention.ms"] == "-1"
    assert info.config["cleanup.policy"] == "delete"


def test_a_restarted_store_catches_up_and_continues_the_versions(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    with make_store(kafka_settings, unique_name) as first:
        first.append(ACCOUNT, "acc-1", [AccountOpened(owner="Ada")], 0)
        before = first.append(ACCOUNT, "acc-1", [MoneyDeposited(amount=Decimal(50))], 1)
        for i in range(20):
            first.append(ACCOUNT, f"other-{i}", [AccountOpened(owner=str(i))], 0)
    with make_store(kafka_settings, unique_name) as second:
        assert second.version(ACCOUNT, "acc-1") == 2
        assert second.load(Account, "acc-1").balance == Decimal(50)
        assert all(second.version(ACCOUNT, f"other-{i}") == 1 for i in range(20))
        after = second.append(ACCOUNT, "acc-1", [MoneyWithdrawn(amount=Decimal(20))], 2)
        assert after.version == 3
        assert after.positions[0].offset > before.positions[0].offset
        assert second.load(Account, "acc-1").balance == Decimal(30)


def test_an_existing_topic_with_another_partition_count_is_a_configuration_error(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    ensure_topic(kafka_settings, f"{unique_name}.{ACCOUNT}.events", 2)
    store = make_store(kafka_settings, unique_name, partitions=3)
    with pytest.raises(ConfigurationError, match="exists with 2 partitions"):
        store.start()


def test_appending_an_event_the_aggregate_cannot_apply_writes_nothing(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    class Unrelated(Event):
        __namespace__ = "tests"

    with make_store(kafka_settings, unique_name) as store:
        with pytest.raises(MissingHandlerError, match="nothing was written"):
            store.append(ACCOUNT, "acc-1", [Unrelated()], 0)
        assert store.version(ACCOUNT, "acc-1") == 0


def test_unknown_aggregate_types_and_unstarted_or_closed_stores_are_refused(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    store = make_store(kafka_settings, unique_name)
    with pytest.raises(StoreUnavailableError, match="not started"):
        store.append(ACCOUNT, "acc-1", [AccountOpened(owner="A")], 0)
    with store, pytest.raises(ConfigurationError, match="not served by this store"):
        store.append("bank.loan", "loan-1", [AccountOpened(owner="A")], 0)
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.version(ACCOUNT, "acc-1")
