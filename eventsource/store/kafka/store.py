"""``KafkaEventStore``: Kafka as an event store with a per-aggregate expected version.

One events topic per aggregate type (``<topic_prefix><aggregate_type>.events``, created if
missing), one :class:`PartitionWriter` per partition. ``start()`` returns once every writer
has fenced older writers and caught up; only then are appends and loads served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate
from eventsource.errors import StoreUnavailableError
from eventsource.kafka.access import check_topic_operations
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.options import WriterOptions
from eventsource.store.kafka.served import ServedByWriters
from eventsource.store.kafka.topic_policy import check_events_topic
from eventsource.store.kafka.writer import PartitionWriter

__all__ = ["TOPIC_SETUP_TIMEOUT_S", "KafkaEventStore"]

TOPIC_SETUP_TIMEOUT_S = 30.0
"""Bound of each events topic's creation and policy check during :meth:`start` (never more
than ``start``'s own ``timeout``); then ``StoreUnavailableError``."""


class KafkaEventStore(ServedByWriters):
    """:class:`~eventsource.store.port.EventStore` on Kafka, single writer per partition.

    ``topic_prefix`` namespaces the topics (and so the ``transactional.id``\\ s), e.g. per
    environment or per test. ``topic_config`` overrides the events topic configuration used
    when a topic is created (``min.insync.replicas`` belongs there on a multi-broker
    cluster). ``options`` (:class:`WriterOptions`): ``source``, ``max_batch_events``,
    ``append_timeout``.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        aggregates: Sequence[type[Aggregate]],
        *,
        codec: EventCodec | None = None,
        partitions: int = 6,
        topic_prefix: str = "",
        topic_config: Mapping[str, str] | None = None,
        options: WriterOptions | None = None,
    ) -> None:
        super().__init__(
            settings,
            aggregates,
            codec=codec,
            partitions=partitions,
            topic_prefix=topic_prefix,
            topic_config=topic_config,
            options=options,
        )
        self._writers: dict[tuple[str, int], PartitionWriter] = {}

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
                timeout=min(timeout, TOPIC_SETUP_TIMEOUT_S),
            )
            limits[topic] = check_events_topic(
                self.settings, topic, timeout=min(timeout, TOPIC_SETUP_TIMEOUT_S)
            )
            # A missing ACL is told now, by the broker's answer, before anything is written.
            check_topic_operations(
                self.settings,
                topic,
                ("READ", "WRITE"),
                f"the event store cannot append to {topic!r}",
                min(timeout, TOPIC_SETUP_TIMEOUT_S),
            )
            for partition in range(self.partitions):
                writer = self._writers[(topic, partition)] = PartitionWriter(
                    self.settings, topic, partition, cls, self.codec, self.options
                )
                writer.record_limit = limits[topic]
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
            writer.close(self.settings.close_timeout_s)

    # -- addressing -----------------------------------------------------------------
    def _local_writer(self, topic: str, aggregate_id: str) -> PartitionWriter:
        return self._writers[(topic, self._partition(aggregate_id))]
