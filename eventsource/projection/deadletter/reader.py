"""Reading a projection's dead-letter topic: typed dead-letter records (``dlq list``)."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping

from confluent_kafka import Consumer, TopicPartition

from eventsource.errors import ProjectionError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.fetch import next_batch
from eventsource.kafka.metadata import existing_topics
from eventsource.kafka.names import dlq_reader_group, dlq_topic
from eventsource.projection.deadletter.headers import DeadLetterRecord, parse_dead_letter

__all__ = ["dlq_end_offsets", "iter_dead_letters", "list_dead_letters"]


def iter_dead_letters(
    settings: KafkaSettings,
    projection_name: str,
    *,
    start: Mapping[int, int] | None = None,
    timeout: float = 30.0,
    topic_prefix: str = "",
) -> Generator[DeadLetterRecord, None, None]:
    """Dead letters from ``start`` (DLQ partition -> offset; default 0) up to the end as of
    the call, in DLQ order. Nothing if the DLQ topic does not exist yet."""
    topic = dlq_topic(projection_name, topic_prefix)
    consumer = Consumer(settings.consumer_config(dlq_reader_group(settings.application_id)))
    try:
        info = existing_topics(consumer, [topic], timeout)[topic]
        if info is None:
            return
        ends: dict[int, int] = {}
        assign = []
        for partition in sorted(info.partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout)
            first = (start or {}).get(partition, 0)
            if first < high:
                ends[partition] = int(high)
                assign.append(TopicPartition(topic, partition, first))
        if not assign:
            return
        consumer.assign(assign)
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise ProjectionError(
                    f"reading {topic!r} did not reach its end offsets {ends} within {timeout}s"
                )
            for message in next_batch(consumer, 0.5, 500):
                if message.error() is not None:
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                if partition in ends and offset < ends[partition]:
                    yield parse_dead_letter(message)
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset is not None and tp.offset >= ends[tp.partition or 0]:
                    del ends[tp.partition or 0]
    finally:
        consumer.close()


def list_dead_letters(
    settings: KafkaSettings,
    projection_name: str,
    *,
    limit: int | None = None,
    version: int | None = None,
    timeout: float = 30.0,
    topic_prefix: str = "",
) -> list[DeadLetterRecord]:
    """The projection's dead letters, oldest first (optionally of one version only)."""
    found: list[DeadLetterRecord] = []
    records = iter_dead_letters(
        settings, projection_name, timeout=timeout, topic_prefix=topic_prefix
    )
    try:
        for record in records:
            if version is not None and record.projection_version not in (None, version):
                continue
            found.append(record)
            if limit is not None and len(found) >= limit:
                break
    finally:
        records.close()  # closes the consumer now, not at garbage collection
    return found


def dlq_end_offsets(
    settings: KafkaSettings, projection_name: str, *, timeout: float = 30.0, topic_prefix: str = ""
) -> dict[int, int]:
    """End offset of every partition of the DLQ topic; empty if it does not exist."""
    topic = dlq_topic(projection_name, topic_prefix)
    consumer = Consumer(settings.consumer_config(dlq_reader_group(settings.application_id)))
    try:
        info = existing_topics(consumer, [topic], timeout)[topic]
        if info is None:
            return {}
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout)[1])
            for p in sorted(info.partitions)
        }
    finally:
        consumer.close()
