"""Reading a partition back: catch-up before serving, and tail reads after uncertain commits.

The owner reads its partition ``read_committed`` from a start offset up to the last stable
offset, which ``enable.partition.eof`` reports once the fetch position reaches it (control
records — transaction markers — occupy offsets but are never delivered, so counting
records against the high watermark would be wrong). It runs only after
``init_transactions()``, which resolved any transaction an older writer left open, so the
last stable offset is the true end.

Poison records (no key, bad CloudEvents headers, undecodable payload, an event type the
aggregate cannot apply) stop the catch-up with a :class:`~eventsource.errors.DecodeError`
naming topic, partition and offset: folding past an event we cannot read would make every
later version check of that aggregate wrong, so the store refuses to serve the partition.
For the same reason an ``@apply`` that raises stops it with
:class:`~eventsource.errors.ApplyError`, and a gap or a duplicate in an aggregate's
versions with :class:`~eventsource.errors.VersionSequenceError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from eventsource.codec import EventCodec, parse_headers
from eventsource.domain import Aggregate
from eventsource.errors import (
    ApplyError,
    DecodeError,
    MissingHandlerError,
    StoreUnavailableError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.fetch import next_batch
from eventsource.kafka.names import reader_group
from eventsource.store.contiguity import check_next_version
from eventsource.store.kafka.index import VersionIndex

__all__ = ["TailRead", "read_partition"]

_BATCH = 5000


@dataclass(slots=True)
class TailRead:
    """What a read from ``start`` to the end found."""

    start: int
    end: int = 0
    """Offset after the last record or marker: where the next read starts."""
    records: int = 0
    offsets_by_event_id: dict[str, int] = field(default_factory=dict)
    """``ce_id`` -> offset of each event read (only when asked for)."""


def read_partition(
    settings: KafkaSettings,
    topic: str,
    partition: int,
    codec: EventCodec,
    index: VersionIndex[Aggregate],
    progress: TailRead,
    *,
    timeout: float,
    collect_event_ids: bool = False,
) -> TailRead:
    """Fold every committed event of ``topic[partition]`` from ``progress.end`` into ``index``.

    ``progress`` is updated record by record, so after a failure a new call continues
    where this one stopped and never folds an event twice. Returns ``progress``.
    """
    start = progress.end
    consumer = Consumer(
        settings.consumer_config(
            reader_group(settings.application_id, "catchup"),
            **{
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 100,
            },
        )
    )
    result = progress
    # A stall timeout, not a total one: a long partition may take minutes to read.
    deadline = time.monotonic() + timeout
    last_error = "none"
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        while True:
            messages = next_batch(consumer, 0.5, _BATCH)
            for message in messages:
                error = message.error()
                if error is None:
                    _fold(message, topic, partition, codec, index, result, collect_event_ids)
                elif error.code() == KafkaError._PARTITION_EOF:
                    result.end = max(result.end, message.offset() or 0)
                    return result
                elif error.fatal():
                    raise StoreUnavailableError(
                        f"reading {topic}[{partition}] from offset {start} failed: {error.str()}"
                    )
                else:  # transient (broker restarting, leader moving): librdkafka retries
                    last_error = error.str()
            if any(m.error() is None for m in messages):
                deadline = time.monotonic() + timeout
            elif time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"reading {topic}[{partition}] from offset {start} made no progress for "
                    f"{timeout:.0f}s (at offset {result.end}, {result.records} events read, "
                    f"last error: {last_error}): check the broker at {settings.bootstrap_servers}"
                )
    except KafkaException as exc:
        raise StoreUnavailableError(
            f"reading {topic}[{partition}] from offset {start} failed: {exc}"
        ) from exc
    finally:
        consumer.close()


def _fold(
    message: Message,
    topic: str,
    partition: int,
    codec: EventCodec,
    index: VersionIndex[Aggregate],
    result: TailRead,
    collect_event_ids: bool,
) -> None:
    offset = message.offset() or 0
    key = message.key()
    if not key:
        raise DecodeError(
            "record has no key, so it belongs to no aggregate: only eventsource writers "
            "may produce to events topics",
            topic=topic,
            partition=partition,
            offset=offset,
        )
    try:
        aggregate_id = key.decode("utf-8")
        metadata = parse_headers(cast("list[tuple[str, bytes | None]] | None", message.headers()))
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"record key {key[:40]!r} is not UTF-8 text, so it is no aggregate id",
            topic=topic,
            partition=partition,
            offset=offset,
        ) from exc
    except DecodeError as exc:
        raise exc.at(topic, partition, offset) from exc
    event = codec.decode_at(message.value(), topic, partition, offset)
    try:
        version = index.apply(aggregate_id, (event,))
    except MissingHandlerError as exc:
        raise DecodeError(
            f"event {metadata.event_id} ({metadata.event_type}) cannot be applied to "
            f"{index.aggregate_cls.__name__} {aggregate_id!r}: {exc}",
            topic=topic,
            partition=partition,
            offset=offset,
        ) from exc
    except Exception as exc:  # an @apply handler raised: the partition cannot be folded
        raise ApplyError(
            f"the @apply handler of {index.aggregate_cls.__name__} raised "
            f"{type(exc).__name__}: {exc} on event {metadata.event_id} "
            f"({metadata.event_type}), version {metadata.version} of {aggregate_id!r} at "
            f"{topic}[{partition}]@{offset}: fix the handler (it must accept every event "
            "ever written) before this partition can be served"
        ) from exc
    check_next_version(topic, partition, offset, aggregate_id, version - 1, metadata.version)
    result.records += 1
    result.end = offset + 1
    if collect_event_ids:
        result.offsets_by_event_id[metadata.event_id] = offset
