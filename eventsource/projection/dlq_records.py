"""Reading ``<projection>.dlq``: typed dead-letter records (what ``dlq list`` shows)."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, Message, TopicPartition

from eventsource.domain import Position
from eventsource.errors import ProjectionError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection.deadletter import DLQ_HEADER_PREFIX, dlq_topic, header_value
from eventsource.projection.hooks import RawRecord

__all__ = [
    "DeadLetterRecord",
    "dlq_end_offsets",
    "iter_dead_letters",
    "list_dead_letters",
    "parse_dead_letter",
]

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead letter: the original record plus why and where it failed."""

    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers  #: the original headers (``dlq_*`` removed)
    source: Position
    stage: str  #: decode | schema | handler | parked
    exception_class: str
    exception_message: str
    projection_version: int | None
    dead_lettered_at: datetime | None

    @property
    def aggregate_id(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")

    def original(self) -> RawRecord:
        """The record as it was consumed from its source topic."""
        return RawRecord(
            topic=self.source.topic,
            partition=self.source.partition,
            offset=self.source.offset,
            key=self.key,
            value=self.value,
            headers=self.headers,
            timestamp_ms=None,
        )


def parse_dead_letter(message: Message) -> DeadLetterRecord:
    """A consumed DLQ message as a typed record; ProjectionError if it is not one."""
    raw = message.headers() or []
    items = list(raw.items()) if isinstance(raw, dict) else list(raw)
    headers: Headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in items)
    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
    topic = header_value(headers, "dlq_source_topic")
    partition = header_value(headers, "dlq_source_partition")
    offset = header_value(headers, "dlq_source_offset")
    if topic is None or partition is None or offset is None:
        raise ProjectionError(
            f"record {where} has no dlq_source_topic/partition/offset headers: it was not "
            "written by eventsource's dead-letter handler; remove it or skip past its offset"
        )
    version = header_value(headers, "dlq_projection_version")
    stamp = header_value(headers, "dlq_time")
    try:
        source = Position(topic, int(partition), int(offset))
        dead_lettered_at = datetime.fromisoformat(stamp) if stamp else None
        projection_version = int(version) if version else None
    except ValueError as exc:
        raise ProjectionError(f"record {where} has malformed dlq_* headers: {exc}") from exc
    return DeadLetterRecord(
        dlq_partition=message.partition() or 0,
        dlq_offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=tuple((k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)),
        source=source,
        stage=header_value(headers, "dlq_stage") or "",
        exception_class=header_value(headers, "dlq_exception_class") or "",
        exception_message=header_value(headers, "dlq_exception_message") or "",
        projection_version=projection_version,
        dead_lettered_at=dead_lettered_at,
    )


def iter_dead_letters(
    settings: KafkaSettings,
    projection_name: str,
    *,
    start: Mapping[int, int] | None = None,
    timeout: float = 30.0,
) -> Generator[DeadLetterRecord, None, None]:
    """Dead letters from ``start`` (DLQ partition -> offset; default 0) up to the end as of
    the call, in DLQ order. Nothing if the DLQ topic does not exist yet."""
    topic = dlq_topic(projection_name)
    consumer = Consumer(settings.consumer_config(f"{settings.application_id}.dlq-reader"))
    try:
        info = consumer.list_topics(timeout=timeout).topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
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
            for message in consumer.consume(num_messages=500, timeout=0.5):
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
) -> list[DeadLetterRecord]:
    """The projection's dead letters, oldest first (optionally of one version only)."""
    found: list[DeadLetterRecord] = []
    records = iter_dead_letters(settings, projection_name, timeout=timeout)
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
    settings: KafkaSettings, projection_name: str, *, timeout: float = 30.0
) -> dict[int, int]:
    """End offset of every partition of the DLQ topic; empty if it does not exist."""
    topic = dlq_topic(projection_name)
    consumer = Consumer(settings.consumer_config(f"{settings.application_id}.dlq-reader"))
    try:
        info = consumer.list_topics(timeout=timeout).topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return {}
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout)[1])
            for p in sorted(info.partitions)
        }
    finally:
        consumer.close()
