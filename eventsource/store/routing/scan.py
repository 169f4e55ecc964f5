"""The non-owner's slow path to an aggregate: read its partition of the events topic.

The owner loads from its in-memory index; a process without one can only fold the
aggregate's records, which costs a read of the whole partition (every aggregate that hashes
there). Fine for occasional loads and small topics; for hot paths, run the command in the
owner process.
"""

from __future__ import annotations

import time
from typing import TypeVar, cast

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventsource.codec import parse_headers
from eventsource.domain import Aggregate
from eventsource.errors import AggregateNotFoundError, StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import reader_group
from eventsource.store.contiguity import check_next_version
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import events_topic
from eventsource.store.routing.ports import EventReader
from eventsource.store.routing.topics import next_batch

__all__ = ["SCAN_TIMEOUT_S", "PartitionScanLoader", "load_by_scan"]

A = TypeVar("A", bound=Aggregate)

SCAN_TIMEOUT_S = 60.0
"""How long one scan may take (metadata, watermarks and reading the partition to its end)
before it gives up with ``StoreUnavailableError``."""


class PartitionScanLoader:
    """Loads aggregates in a process that does not own their partitions, by scanning.

    A :class:`~eventsource.aio.ports.Loader` (``load`` only): each call folds the
    aggregate's committed records, read from its whole partition of
    ``<topic_prefix><aggregate_type>.events``. Slow (a read of every aggregate that hashes
    there); the version it returns is a snapshot, so an append at that version still fails
    with ``ConcurrencyError`` if the owner moved on. Needs no start or close: each load
    opens and closes its own consumer.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: EventReader,
        *,
        topic_prefix: str = "",
        timeout: float = SCAN_TIMEOUT_S,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.settings = settings
        self.codec = codec
        self.topic_prefix = topic_prefix
        self.timeout = timeout

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        """The aggregate folded from its partition; ``AggregateNotFoundError`` if none."""
        topic = events_topic(aggregate_cls.aggregate_type, self.topic_prefix)
        return load_by_scan(
            self.settings, self.codec, topic, aggregate_cls, aggregate_id, self.timeout
        )


def load_by_scan(
    settings: KafkaSettings,
    codec: EventReader,
    topic: str,
    aggregate_cls: type[A],
    aggregate_id: str,
    timeout: float = SCAN_TIMEOUT_S,
) -> A:
    """Fold ``aggregate_id``'s committed events, read from its partition of ``topic``."""
    group = reader_group(settings.application_id, "scan", unique=True)
    consumer = Consumer(settings.consumer_config(group))
    # Only for the end offset: a read_committed client's watermark query answers the last
    # stable offset, which lags an acknowledged append until its commit markers are written.
    watermarks = Consumer(
        settings.consumer_config(group, **{"isolation.level": "read_uncommitted"})
    )
    try:
        return _scan(consumer, watermarks, codec, topic, aggregate_cls, aggregate_id, timeout)
    except KafkaException as exc:
        raise StoreUnavailableError(
            f"cannot read {topic!r} to load {aggregate_id!r}: {exc}; is the broker up?"
        ) from exc
    finally:
        watermarks.close()
        consumer.close()


def _scan(
    consumer: Consumer,
    watermarks: Consumer,
    codec: EventReader,
    topic: str,
    aggregate_cls: type[A],
    aggregate_id: str,
    timeout: float,
) -> A:
    described = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise AggregateNotFoundError(
            f"{aggregate_cls.aggregate_type} {aggregate_id!r}: events topic {topic!r} does not "
            "exist yet, so the aggregate has no events"
        )
    partition = partition_for_id(aggregate_id, len(described.partitions))
    # The high watermark (read_uncommitted), not the last stable offset: it is past every
    # record written so far, acknowledged appends included; reading committed records up to
    # it waits for their commit markers (or for an older open transaction to end).
    end = watermarks.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)[1]
    key = aggregate_id.encode("utf-8")
    aggregate = aggregate_cls(aggregate_id)
    consumer.assign([TopicPartition(topic, partition, 0)])
    deadline = time.monotonic() + timeout
    # read_committed: the position passes transaction markers and aborted records, so the
    # scan is done when the position (not the last record's offset) reaches the end.
    while (
        end > 0
        and (position := consumer.position([TopicPartition(topic, partition)])[0].offset) < end
    ):
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"reading {topic}[{partition}] up to offset {end} to load {aggregate_id!r} "
                f"took longer than {timeout:g}s (at offset {position}: a large partition, or "
                "a transaction still open there holding back the committed records after "
                "it): retry, or load it in the owner process"
            )
        for message in next_batch(consumer, 0.2, 5000):
            if message.error() is not None:
                raise StoreUnavailableError(f"reading {topic}[{partition}]: {message.error()}")
            if message.key() != key:
                continue
            offset = message.offset() or 0
            # Consumed records carry headers as a list of (str, bytes) pairs.
            headers = cast("list[tuple[str, bytes | None]] | None", message.headers())
            version = parse_headers(headers).version
            check_next_version(topic, partition, offset, aggregate_id, aggregate.version, version)
            aggregate.apply_event(codec.decode_at(message.value(), topic, partition, offset))
    if aggregate.version == 0:
        raise AggregateNotFoundError(
            f"{aggregate_cls.aggregate_type} {aggregate_id!r} has no events in "
            f"{topic}[{partition}]: create it as a new aggregate (expected version 0)"
        )
    return aggregate
