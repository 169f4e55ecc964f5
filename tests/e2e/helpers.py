"""Expected read models for the e2e tests, computed from the topic itself."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from eventsource.codec import EventCodec, parse_headers
from eventsource.domain import Event
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


__all__ = ["by_aggregate", "expected_balances", "read_topic", "seed_bank"]
