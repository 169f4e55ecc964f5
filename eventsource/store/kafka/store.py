"""``KafkaEventStore``: Kafka as an event store with a per-aggregate expected version.

One events topic per aggregate type (``<topic_prefix><aggregate_type>.events``, created if
missing), one :class:`PartitionWriter` per partition. ``start()`` returns once every writer
has fenced older writers and caught up; only then are appends and loads served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from functools import lru_cache
from types import TracebackType
from typing import TypeVar

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate, Event
from eventsource.errors import (
    ConfigurationError,
    StoreUnavailableError,
)
from eventsource.kafka.admin import EVENTS_TOPIC_CONFIG, ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.served import ServedByWriters
from eventsource.store.kafka.topic_policy import check_events_topic
from eventsource.store.kafka.writer import PartitionWriter
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import AppendResult, check_append_arguments, events_topic

__all__ = ["KafkaEventStore"]

A = TypeVar("A", bound=Aggregate)


class KafkaEventStore(ServedByWriters):
    """:class:`~eventsource.store.port.EventStore` on Kafka, single writer per partition.

    ``append_timeout`` (seconds) bounds every append; it defaults to twice the settings'
    ``delivery_timeout_ms`` plus 5 s. ``topic_prefix`` namespaces the topics (and so the
    ``transactional.id``\\ s), e.g. per environment or per test. ``topic_config`` overrides
    the events topic configuration used when a topic is created (``min.insync.replicas``
    belongs there on a multi-broker cluster).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        aggregates: Sequence[type[Aggregate]],
        *,
        codec: EventCodec | None = None,
        partitions: int = 6,
        source: str | None = None,
        max_batch_events: int = 1000,
        topic_prefix: str = "",
        topic_config: Mapping[str, str] | None = None,
        append_timeout: float | None = None,
    ) -> None:
        if not aggregates:
            raise ConfigurationError("KafkaEventStore needs at least one aggregate class")
        if max_batch_events < 1:
            raise ConfigurationError(f"max_batch_events must be >= 1, got {max_batch_events}")
        self.settings = settings
        self.aggregates = {cls.aggregate_type: cls for cls in aggregates}
        self._handled = {t: frozenset(cls.event_types()) for t, cls in self.aggregates.items()}
        self.codec = codec or EventCodec.for_events(
            [event for cls in aggregates for event in cls.event_types()]
        )
        self.partitions = partitions
        self.source = source or f"/eventsource/{settings.application_id}"
        self.topic_prefix = topic_prefix
        self.topic_config = dict(EVENTS_TOPIC_CONFIG if topic_config is None else topic_config)
        self.max_batch_events = max_batch_events
        delivery = settings.delivery_timeout_ms / 1000
        self.append_timeout = 2 * delivery + 5 if append_timeout is None else append_timeout
        self._writers: dict[tuple[str, int], PartitionWriter] = {}
        self._started = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> KafkaEventStore:
        """Create missing topics, fence older writers, catch up; then serve."""
        if self._started:
            return self
        limits: dict[str, int] = {}
        for aggregate_type, cls in self.aggregates.items():
            topic = self.topic_for(aggregate_type)
            ensure_topic(
                self.settings,
                topic,
                self.partitions,
                config=self.topic_config,
                timeout=min(timeout, 30.0),
            )
            limits[topic] = check_events_topic(self.settings, topic, timeout=min(timeout, 30.0))
            for partition in range(self.partitions):
                writer = PartitionWriter(
                    self.settings,
                    topic,
                    partition,
                    cls,
                    self.codec,
                    source=self.source,
                    max_batch_events=self.max_batch_events,
                )
                self._writers[(aggregate_type, partition)] = writer
        self._record_limits = limits
        for writer in self._writers.values():
            writer.start()
        failures: list[BaseException] = []
        for writer in self._writers.values():
            if not writer.wait_ready(timeout):
                failures.append(
                    StoreUnavailableError(
                        f"the writer of {writer.where} did not catch up within {timeout:.0f}s"
                    )
                )
            elif writer.start_error is not None:
                failures.append(writer.start_error)
        if failures:
            self.close()
            first = failures[0]
            if isinstance(first, Exception):
                raise first
            raise StoreUnavailableError(f"the store could not start: {first}")
        self._started = True
        return self

    def close(self) -> None:
        """Finish queued appends, stop every writer and release their producers."""
        self._closed = True
        for writer in self._writers.values():
            writer.close()

    def __enter__(self) -> KafkaEventStore:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- addressing -----------------------------------------------------------------
    def topic_for(self, aggregate_type: str) -> str:
        return events_topic(aggregate_type, self.topic_prefix)

    def writer_for(self, aggregate_type: str, aggregate_id: str) -> PartitionWriter:
        """The writer that owns ``aggregate_id`` (for tests and diagnostics)."""
        if aggregate_type not in self.aggregates:
            raise ConfigurationError(
                f"aggregate type {aggregate_type!r} is not served by this store (it serves "
                f"{sorted(self.aggregates)}): pass its class in KafkaEventStore(aggregates=...)"
            )
        if self._closed or not self._started:
            raise StoreUnavailableError(
                "the Kafka event store is "
                + ("closed" if self._closed else "not started: call start() first"),
                retriable=False,
            )
        return self._writers[(aggregate_type, _partition(aggregate_id, self.partitions))]

    # -- the port -------------------------------------------------------------------
    def append_async(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Future[AppendResult]:
        """Queue an append; the future resolves after the group commit that holds it."""
        check_append_arguments(aggregate_id, events, expected_version)
        writer = self.writer_for(aggregate_type, aggregate_id)
        request = self._submit(
            writer,
            aggregate_type,
            aggregate_id,
            events,
            expected_version,
            correlation_id,
            causation_id,
        )
        return request.future

    def _serving(self, aggregate_type: str, aggregate_id: str) -> PartitionWriter:
        writer = self.writer_for(aggregate_type, aggregate_id)
        writer.check_serving_reads()
        return writer


_partition = lru_cache(maxsize=1 << 16)(partition_for_id)
