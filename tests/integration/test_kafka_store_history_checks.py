"""The store trusts its events topic only if Kafka keeps every record and versions follow.

Versions are rebuilt from the topic at every start: a topic that deletes or compacts records,
or a history with a gap or a duplicate, would make appends check against wrong versions.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate, Event, apply
from eventsource.errors import ApplyError, TopicRetentionError, VersionSequenceError
from eventsource.kafka.admin import describe_topic, ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import GroupedKafkaEventStore, KafkaEventStore
from eventsource.store.routing.scan import load_by_scan
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.integration.foreign_records import produce_foreign

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
CODEC = EventCodec.for_events(Account.event_types())


def store_of(settings: KafkaSettings, name: str, **update: object) -> KafkaEventStore:
    settings = settings.model_copy(update={"application_id": name, **update})
    return KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{name}.")


def produce(settings: KafkaSettings, topic: str, history: list[tuple[Event, int]]) -> None:
    """Write ``(event, version)`` records of ``acc-1`` as a foreign producer would."""
    produce_foreign(Producer(settings.producer_config()), topic, history, "/tests/history")


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"retention.ms": "1000"}, "retention.ms=1000"),
        ({"retention.ms": "-1", "retention.bytes": "1048576"}, "retention.bytes=1048576"),
        ({"retention.ms": "-1", "cleanup.policy": "compact"}, "cleanup.policy=compact"),
        ({}, "retention.ms=604800000"),  # the broker's default: seven days
    ],
)
def test_the_store_refuses_an_events_topic_that_can_lose_records(
    config: dict[str, str], named: str, kafka_settings: KafkaSettings, unique_name: str
) -> None:
    topic = f"{unique_name}.{ACCOUNT}.events"
    ensure_topic(kafka_settings, topic, 1, config=config)
    with pytest.raises(TopicRetentionError) as caught:
        store_of(kafka_settings, unique_name).start(timeout=60)
    message = str(caught.value)
    assert topic in message and named in message
    assert "kafka-configs" in message and "retention.ms=-1,retention.bytes=-1" in message
    assert "allow_lossy_events_topics" in message


def test_an_explicit_opt_out_accepts_a_topic_with_finite_retention(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    ensure_topic(
        kafka_settings, f"{unique_name}.{ACCOUNT}.events", 1, config={"retention.ms": "1000000"}
    )
    with store_of(kafka_settings, unique_name, allow_lossy_events_topics=True) as store:
        assert store.append(ACCOUNT, "acc-1", [AccountOpened(owner="Ada")], 0).version == 1


def test_the_grouped_store_refuses_an_events_topic_that_can_lose_records(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path
) -> None:
    ensure_topic(
        kafka_settings, f"{unique_name}.{ACCOUNT}.events", 1, config={"retention.ms": "1000"}
    )
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    store = GroupedKafkaEventStore(
        settings, [Account], directory=tmp_path, partitions=1, topic_prefix=f"{unique_name}."
    )
    with pytest.raises(TopicRetentionError, match=r"retention\.ms=1000"):
        store.start()
    store.close()


def test_topics_the_store_creates_keep_every_record(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    with store_of(kafka_settings, unique_name) as store:
        info = describe_topic(kafka_settings, store.topic_for(ACCOUNT))
    assert {
        k: info.config.get(k) for k in ("retention.ms", "retention.bytes", "cleanup.policy")
    } == {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
    }


@pytest.mark.parametrize(
    ("versions", "kind", "offset"),
    [([1, 3], "a gap", 1), ([1, 2, 2], "a duplicate", 2), ([2], "a gap", 0)],
)
def test_catch_up_refuses_a_gap_or_a_duplicate_in_an_aggregates_versions(
    versions: list[int], kind: str, offset: int, kafka_settings: KafkaSettings, unique_name: str
) -> None:
    topic = f"{unique_name}.{ACCOUNT}.events"
    ensure_topic(kafka_settings, topic, 1)
    history: list[tuple[Event, int]] = [(AccountOpened(owner="Ada"), versions[0])]
    history += [(MoneyDeposited(amount=Decimal(1)), v) for v in versions[1:]]
    produce(kafka_settings, topic, history)
    with pytest.raises(VersionSequenceError) as caught:
        store_of(kafka_settings, unique_name).start(timeout=60)
    message = str(caught.value)
    assert f"{topic}[0]@{offset}" in message and "'acc-1'" in message and kind in message
    assert f"holds version {versions[-1]}" in message
    # The non-owner's scan shares the check.
    with pytest.raises(VersionSequenceError, match=kind):
        load_by_scan(kafka_settings, CODEC, topic, Account, "acc-1", timeout=30)


class Poked(Event):
    __namespace__ = "tests.history"
    explode: bool = False


class Lenient(Aggregate):
    aggregate_type = "tests.history"

    @apply
    def _poked(self, event: Poked) -> None:
        pass


class Strict(Aggregate):
    """The same aggregate after a change that made its handler reject old events."""

    aggregate_type = "tests.history"

    @apply
    def _poked(self, event: Poked) -> None:
        if event.explode:
            raise ValueError("explode is no longer allowed")


def test_catch_up_names_the_aggregate_version_and_offset_of_an_apply_that_raises(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    prefix = f"{unique_name}."
    with KafkaEventStore(settings, [Lenient], partitions=1, topic_prefix=prefix) as store:
        store.append("tests.history", "h-1", [Poked(), Poked(explode=True)], 0)
        topic = store.topic_for("tests.history")
    with pytest.raises(ApplyError) as caught:
        KafkaEventStore(settings, [Strict], partitions=1, topic_prefix=prefix).start(timeout=60)
    message = str(caught.value)
    assert "ValueError: explode is no longer allowed" in message
    assert "version 2 of 'h-1'" in message and f"{topic}[0]@1" in message
