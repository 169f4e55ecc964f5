"""Expected read models for the e2e tests, computed from the topic itself; a topic's
committed records, for the tests that check what was written."""

from __future__ import annotations

import time
from typing import cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from eventsource.codec import EventCodec, parse_headers
from eventsource.domain import Event
from eventsource.kafka.admin import end_offsets
from eventsource.kafka.config import KafkaSettings
from eventsource.testing.seed import by_aggregate, create_topic, fold, seed_events
from examples.bank.domain import Account
from examples.bank.projections import cents, sample_history

Records = dict[int, list[tuple[int, str, Event]]]


def seed_bank(
    settings: KafkaSettings, topic: str, events: int, *, seed: int = 7, partitions: int = 3
) -> None:
    create_topic(settings, topic, partitions=partitions)
    seed_events(settings, topic, sample_history(60, events, seed=seed))


def read_topic(settings: KafkaSettings, topic: str) -> Records:
    """Every committed record of ``topic``: partition -> [(offset, aggregate id, event)]."""
    codec = EventCodec.for_events(Account.event_types())
    consumer = Consumer(settings.consumer_config("e2e-reader", **{"enable.partition.eof": True}))
    try:
        partitions = sorted(consumer.list_topics(timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending, records = set(partitions), {p: [] for p in partitions}  # type: ignore[var-annotated]
        while pending:
            for msg in consumer.consume(1000, timeout=1.0):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                meta = parse_headers(msg.headers())
                records[msg.partition()].append(
                    (msg.offset(), meta.aggregate_id, codec.decode(msg.value()))
                )
        return records
    finally:
        consumer.close()


def expected_balances(
    records: Records, checkpoints: dict[int, int] | None = None
) -> dict[str, tuple[int, int]]:
    """(balance cents, events) per account after the records before each checkpoint."""
    history = [
        (aggregate_id, event)
        for partition, rows in records.items()
        for offset, aggregate_id, event in rows
        if checkpoints is None or offset < checkpoints.get(partition, 0)
    ]
    counts: dict[str, int] = {}
    for aggregate_id, _ in history:
        counts[aggregate_id] = counts.get(aggregate_id, 0) + 1
    return {a.id: (cents(a.balance), counts[a.id]) for a in fold(Account, history).values()}


__all__ = ["by_aggregate", "expected_balances", "read_events", "read_topic", "seed_bank"]


def read_events(
    settings: KafkaSettings, topic: str, codec: EventCodec
) -> list[tuple[str, int, str, Event]]:
    """Every committed record of ``topic``: (aggregate id, ce_sequence, ce_id, event)."""
    ends = end_offsets(settings, topic)
    consumer = Consumer(settings.consumer_config(f"{settings.application_id}.verify"))
    records: list[tuple[str, int, str, Event]] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        remaining = {p: end for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                assert message.error() is None, message.error()
                meta = parse_headers(cast("list[tuple[str, bytes | None]]", message.headers()))
                event = codec.decode_at(
                    message.value(), topic, message.partition() or 0, message.offset() or 0
                )
                records.append((meta.aggregate_id, meta.version, meta.event_id, event))
            # The end offset counts transaction markers, so compare positions, not offsets.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(remaining)]):
                if tp.offset >= remaining[tp.partition]:
                    del remaining[tp.partition]
        assert not remaining, f"could not read {topic} to its end: {remaining}"
    finally:
        consumer.close()
    return records
