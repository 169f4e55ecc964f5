"""A request fails alone: size and @apply errors never fail the batch-mates of a group commit.

Each test holds the partition writer inside a transaction (its fault hook waits) while the
requests under test queue up, so they all land in the same next group commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from eventsource.domain import Aggregate
from eventsource.errors import ApplyError, EventTooLargeError
from eventsource.kafka.admin import EVENTS_TOPIC_CONFIG, ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account, AccountOpened
from tests.integration.fragile import FRAGILE, Fragile, Poked, solo_grouped_store

pytestmark = pytest.mark.integration

Hold = Callable[..., Any]  # the ``hold`` fixture of conftest.py

ACCOUNT = "bank.account"


def single(settings: KafkaSettings, name: str, cls: type[Aggregate]) -> KafkaEventStore:
    settings = settings.model_copy(update={"application_id": name})
    return KafkaEventStore(settings, [cls], partitions=1, topic_prefix=f"{name}.")


def committed_records(settings: KafkaSettings, topic: str) -> int:
    """How many committed records ``topic[0]`` holds."""
    consumer = Consumer(settings.consumer_config("count", **{"enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    count = 0
    try:
        while True:
            message = consumer.poll(10)
            assert message is not None, f"no end of {topic}[0] within 10s"
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                return count
            assert error is None, error
            count += 1
    finally:
        consumer.close()


def test_an_event_over_the_topics_record_limit_is_refused_alone_before_it_is_queued(
    kafka_settings: KafkaSettings, unique_name: str, hold: Hold
) -> None:
    with single(kafka_settings, unique_name, Account) as store:
        writer = store.writer_for(ACCOUNT, "first")
        opened = [AccountOpened(owner="a")]
        with hold(writer, lambda: store.append_async(ACCOUNT, "first", opened, 0)) as (
            first,
            release,
        ):
            small = [
                store.append_async(ACCOUNT, f"small-{n}", [AccountOpened(owner=str(n))], 0)
                for n in range(3)
            ]
            with pytest.raises(EventTooLargeError) as caught:
                store.append_async(ACCOUNT, "huge", [AccountOpened(owner="x" * 2_000_000)], 0)
            small += [
                store.append_async(ACCOUNT, f"small-{n}", [AccountOpened(owner=str(n))], 0)
                for n in range(3, 5)
            ]
            release()
            assert first.result(30).version == 1
        assert [f.result(30).version for f in small] == [1] * 5
        message = str(caught.value)
        assert re.search(r"about 200\d{4} bytes, over the 1000000 bytes", message), message
        assert "max.message.bytes" in message and "nothing was written" in message
        assert not caught.value.retriable
        assert store.version(ACCOUNT, "huge") == 0


def test_an_apply_that_raises_refuses_that_append_alone_and_writes_nothing(
    kafka_settings: KafkaSettings, unique_name: str, hold: Hold
) -> None:
    with single(kafka_settings, unique_name, Fragile) as store:
        topic = store.topic_for(FRAGILE)
        assert store.append(FRAGILE, "f-1", [Poked()], 0).version == 1
        writer = store.writer_for(FRAGILE, "f-1")
        poke = [Poked()]
        with hold(writer, lambda: store.append_async(FRAGILE, "f-0", poke, 0)) as (
            first,
            release,
        ):
            before = store.append_async(FRAGILE, "f-1", [Poked()], 1)
            bad = store.append_async(FRAGILE, "f-1", [Poked(), Poked(explode=True)], 2)
            after = store.append_async(FRAGILE, "f-1", [Poked()], 2)
            other = store.append_async(FRAGILE, "f-2", [Poked()], 0)
            release()
            assert first.result(30).version == 1
        assert before.result(30).version == 2
        with pytest.raises(ApplyError) as caught:
            bad.result(30)
        assert after.result(30).version == 3  # the refused request took no version
        assert other.result(30).version == 1
        message = str(caught.value)
        assert "RuntimeError: handler failed" in message and "version 4 of 'f-1'" in message
        assert "nothing was written" in message
        assert store.version(FRAGILE, "f-1") == 3
        assert store.load(Fragile, "f-1").version == 3
        assert committed_records(kafka_settings, topic) == 5  # none of the refused request
    # A restart folds the same history: the partition was never left unrecoverable.
    with single(kafka_settings, unique_name, Fragile) as again:
        assert again.version(FRAGILE, "f-1") == 3


def test_the_grouped_store_refuses_an_apply_that_raises_without_failing_the_batch(
    kafka_settings: KafkaSettings, unique_name: str, tmp_path: Path, hold: Hold
) -> None:
    with solo_grouped_store(kafka_settings, unique_name, tmp_path) as store:
        writer = store.writer_for(FRAGILE, "f-1")
        poke = [Poked()]
        with hold(writer, lambda: store.append_async(FRAGILE, "f-0", poke, 0)) as (
            first,
            release,
        ):
            good = store.append_async(FRAGILE, "f-1", [Poked()], 0)
            bad = store.append_async(FRAGILE, "f-2", [Poked(explode=True)], 0)
            release()
            assert first.result(30).version == 1
        assert good.result(30).version == 1
        with pytest.raises(ApplyError, match="nothing was written"):
            bad.result(30)
        assert store.version(FRAGILE, "f-2") == 0


def test_a_group_commit_larger_than_the_topics_record_batch_limit_still_commits(
    kafka_settings: KafkaSettings, unique_name: str, hold: Hold
) -> None:
    """The topic's ``max.message.bytes`` bounds a record *batch*: many small events of one
    group commit must leave in batches under it, not fail together."""
    topic = f"{unique_name}.{ACCOUNT}.events"
    ensure_topic(
        kafka_settings, topic, 1, config={**EVENTS_TOPIC_CONFIG, "max.message.bytes": "20000"}
    )
    with single(kafka_settings, unique_name, Account) as store:
        writer = store.writer_for(ACCOUNT, "first")
        opened = [AccountOpened(owner="a")]
        with hold(writer, lambda: store.append_async(ACCOUNT, "first", opened, 0)) as (
            first,
            release,
        ):
            many = [
                store.append_async(ACCOUNT, f"acc-{n}", [AccountOpened(owner="o" * 2000)], 0)
                for n in range(40)
            ]
            release()
            assert first.result(30).version == 1
        assert [f.result(60).version for f in many] == [1] * 40
