"""Put events on a topic without the event store, and fold them in memory.

For tests and benchmarks of the read side: :func:`seed_events` writes events exactly as
the event store would (key = aggregate id, Avro single-object payload, CloudEvents headers,
Kafka's murmur2 partitioner) through a transactional producer, then commits or aborts.
:func:`fold` is the pure in-memory expectation a read model is compared with.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from confluent_kafka import Consumer, Producer

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import Aggregate, Event, EventMetadata, Position
from eventsource.errors import StoreError
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import reader_group
from eventsource.kafka.stable import wait_until_readable

__all__ = ["SeedEvent", "by_aggregate", "create_topic", "fold", "seed_events", "wait_readable"]

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True, slots=True)
class SeedEvent:
    """One event of one aggregate; ``version`` is counted per aggregate when omitted."""

    aggregate_id: str
    event: Event
    version: int | None = None


def create_topic(settings: KafkaSettings, topic: str, partitions: int = 3) -> None:
    """Create an events topic (kept forever) if missing and wait until it is usable."""
    ensure_topic(settings, topic, partitions)


def seed_events(
    settings: KafkaSettings,
    topic: str,
    events: Iterable[SeedEvent],
    *,
    aggregate_type: str = "bank.account",
    codec: EventCodec | None = None,
    commit: bool = True,
    transaction_size: int = 5000,
    source: str = "/eventsource/testing/seed",
) -> list[Position]:
    """Produce ``events`` to ``topic`` in transactions of ``transaction_size`` records.

    With ``commit=False`` every transaction is aborted instead: a ``read_committed``
    consumer must never see those events. Returns the records' positions, in input order,
    once they are readable (Kafka writes commit markers after ``commit_transaction()``
    returns; see :func:`eventsource.kafka.stable.wait_until_readable`).
    """
    items = list(events)
    codec = codec or EventCodec.for_events({type(e.event) for e in items})
    versions: dict[str, int] = {}
    producer = Producer(
        settings.transactional_producer_config(
            reader_group(settings.application_id, f"seed.{topic}", unique=True),
            **{"partitioner": "murmur2_random", "linger.ms": 20},
        )
    )
    positions: list[Position | None] = [None] * len(items)
    errors: list[str] = []

    def report(index: int):  # type: ignore[no-untyped-def]
        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            if err is not None:
                errors.append(str(err))
            else:
                positions[index] = Position(msg.topic(), msg.partition(), msg.offset())

        return on_delivery

    now = datetime.now(UTC)
    producer.init_transactions(30)
    try:
        for start in range(0, len(items), transaction_size):
            producer.begin_transaction()
            for index in range(start, min(start + transaction_size, len(items))):
                item = items[index]
                version = item.version or versions.get(item.aggregate_id, 0) + 1
                versions[item.aggregate_id] = version
                meta = EventMetadata(
                    event_id=str(uuid.uuid4()),
                    event_type=item.event.event_type(),
                    aggregate_type=aggregate_type,
                    aggregate_id=item.aggregate_id,
                    version=version,
                    time=now,
                )
                headers: list[tuple[str, str | bytes | None]] = [
                    *build_headers(meta, source=source)
                ]
                producer.produce(
                    topic,
                    codec.encode(item.event),
                    key=item.aggregate_id.encode(),
                    headers=headers,
                    on_delivery=report(index),
                )
                producer.poll(0)
            if commit:
                producer.commit_transaction(60)
            else:
                producer.flush(60)
                producer.abort_transaction(60)
    finally:
        producer.flush(10)
    if errors:
        raise StoreError(f"seeding {topic!r} failed: {errors[:3]}")
    written = [p for p in positions if p is not None]
    if commit and written:
        # Seeded means readable: a read right after this returns sees every record.
        wait_readable(settings, written)
    return written


def wait_readable(
    settings: KafkaSettings, positions: Iterable[Position], timeout: float = 30.0
) -> None:
    """:func:`~eventsource.kafka.stable.wait_until_readable` with a consumer of its own:
    for a test that wrote through a store or a raw transactional producer and is about
    to read "up to now" (the end offsets, a replay, a run until caught up)."""
    consumer = Consumer(
        settings.consumer_config(reader_group(settings.application_id, "seed-check"))
    )
    try:
        wait_until_readable(consumer, positions, timeout)
    finally:
        consumer.close()


def fold(aggregate_cls: type[A], events: Iterable[SeedEvent | tuple[str, Event]]) -> dict[str, A]:
    """Pure in-memory state of every aggregate after ``events`` (the expected read model)."""
    histories: dict[str, list[Event]] = {}
    for item in events:
        aggregate_id, event = (
            (item.aggregate_id, item.event) if isinstance(item, SeedEvent) else item
        )
        histories.setdefault(aggregate_id, []).append(event)
    return {
        aggregate_id: aggregate_cls.rehydrate(aggregate_id, history)
        for aggregate_id, history in histories.items()
    }


def by_aggregate(events: Sequence[SeedEvent]) -> dict[str, int]:
    """Number of events per aggregate id."""
    counts: dict[str, int] = {}
    for item in events:
        counts[item.aggregate_id] = counts.get(item.aggregate_id, 0) + 1
    return counts
