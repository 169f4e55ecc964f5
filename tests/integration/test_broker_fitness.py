"""The session broker is a real Kafka that can carry an event store.

Transactions, read_committed isolation, producer fencing and consumer-group balancing are
what the store and the projections rely on; each is checked here on the real broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from eventsource.domain import Position
from eventsource.kafka.config import KafkaSettings
from eventsource.testing.seed import wait_readable

pytestmark = pytest.mark.integration


@contextmanager
def consumer(config: dict[str, object]) -> Iterator[Consumer]:
    client = Consumer(config)
    try:
        yield client
    finally:
        client.close()


def read_partition(
    settings: KafkaSettings, topic: str, group: str, **overrides: object
) -> list[str]:
    """Every value in partition 0 up to its end, under the given isolation level."""
    with consumer(settings.consumer_config(group, **overrides)) as reader:
        low, high = reader.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        reader.assign([TopicPartition(topic, 0, low)])
        values: list[str] = []
        position = low
        for _ in range(200):
            if position >= high:
                break
            for message in reader.consume(100, timeout=0.5):
                assert message.error() is None, message.error()
                values.append(message.value().decode())
            position = reader.position([TopicPartition(topic, 0)])[0].offset
        # A read_committed consumer may stop at the last stable offset; that is the end here.
        return values


def delivered_to(positions: list[Position]) -> Callable[[KafkaError | None, Message], None]:
    """A delivery callback that records where each record landed."""

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        positions.append(Position(message.topic(), message.partition(), message.offset()))

    return on_delivery


def transactional_producer(settings: KafkaSettings, transactional_id: str) -> Producer:
    producer = Producer(settings.transactional_producer_config(transactional_id))
    producer.init_transactions(30)
    return producer


def test_a_transaction_commits_and_another_aborts(
    kafka_settings: KafkaSettings, create_topic: Callable[..., str], unique_name: str
) -> None:
    topic = create_topic(partitions=1)
    producer = transactional_producer(kafka_settings, unique_name)

    producer.begin_transaction()
    producer.produce(topic, value=b"committed-1", partition=0)
    producer.produce(topic, value=b"committed-2", partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted", partition=0)
    producer.flush(10)  # on the broker before the abort (abort purges unsent records)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed-3", partition=0)
    producer.commit_transaction(30)

    uncommitted = read_partition(
        kafka_settings, topic, unique_name, **{"isolation.level": "read_uncommitted"}
    )
    assert uncommitted == ["committed-1", "committed-2", "aborted", "committed-3"]


def test_a_read_committed_consumer_sees_committed_records_only(
    kafka_settings: KafkaSettings, create_topic: Callable[..., str], unique_name: str
) -> None:
    topic = create_topic(partitions=1)
    producer = transactional_producer(kafka_settings, unique_name)
    committed: list[Position] = []
    for value, commit in (("a", True), ("b", False), ("c", True), ("d", False)):
        producer.begin_transaction()
        on_delivery = delivered_to(committed) if commit else None
        producer.produce(topic, value=value.encode(), partition=0, on_delivery=on_delivery)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush(10)  # the aborted record really reaches the broker
            producer.abort_transaction(30)
    producer.flush(10)
    # Commit markers land after commit_transaction() returns: read once they are there.
    wait_readable(kafka_settings, committed)

    assert read_partition(kafka_settings, topic, unique_name) == ["a", "c"]
    everything = read_partition(
        kafka_settings, topic, unique_name, **{"isolation.level": "read_uncommitted"}
    )
    assert everything == ["a", "b", "c", "d"]


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(
    kafka_settings: KafkaSettings, create_topic: Callable[..., str], unique_name: str
) -> None:
    topic = create_topic(partitions=1)
    zombie = transactional_producer(kafka_settings, unique_name)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"from-the-zombie", partition=0)
    zombie.flush(10)

    successor = transactional_producer(kafka_settings, unique_name)

    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(30)
    error = raised.value.args[0]
    assert error.fatal(), error
    assert error.code() == KafkaError._FENCED, error
    committed: list[Position] = []
    successor.begin_transaction()
    successor.produce(
        topic, value=b"from-the-successor", partition=0, on_delivery=delivered_to(committed)
    )
    successor.commit_transaction(30)
    successor.flush(10)
    wait_readable(kafka_settings, committed)  # the commit marker lands after the return
    assert read_partition(kafka_settings, topic, unique_name) == ["from-the-successor"]


def test_a_consumer_group_with_two_members_splits_the_partitions(
    kafka_settings: KafkaSettings, create_topic: Callable[..., str], unique_name: str
) -> None:
    topic = create_topic(partitions=4)
    config = kafka_settings.consumer_config(unique_name, **{"session.timeout.ms": 10_000})
    with consumer(config) as first, consumer(config) as second:
        first.subscribe([topic])
        second.subscribe([topic])
        assignments: tuple[set[int], set[int]] = (set(), set())
        for _ in range(120):
            for member in (first, second):
                for message in member.consume(10, timeout=0.25):
                    assert message.error() is None or message.error().code() == (
                        KafkaError._PARTITION_EOF
                    )
            assignments = (
                {tp.partition for tp in first.assignment()},
                {tp.partition for tp in second.assignment()},
            )
            if assignments[0] and assignments[1] and len(assignments[0] | assignments[1]) == 4:
                break

    assert assignments[0] and assignments[1], f"one member got nothing: {assignments}"
    assert assignments[0].isdisjoint(assignments[1]), assignments
    assert assignments[0] | assignments[1] == {0, 1, 2, 3}
