"""``GroupedKafkaEventStore``: several writer processes share the partitions of a topic.

Beside the single-owner :class:`~eventsource.store.kafka.KafkaEventStore`, this mode lets
each process own the partitions the writers group (:mod:`.ownership`) assigns to it:

* on assignment it starts a :class:`SnapshotPartitionWriter` per partition, which fences
  the previous owner, restores the snapshots, catches up, then serves (appends meanwhile
  fail with the retriable ``StoreUnavailableError``);
* on revocation it stops taking appends for the partition, finishes the queued ones and
  releases the writer before the group moves the partition on;
* an append, load or version for a partition it does not own fails at once with the
  retriable ``NotOwnerError`` naming the owner (see :mod:`.group_store_route` to send
  commands there).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate, Event
from eventsource.errors import (
    ConfigurationError,
    NotOwnerError,
    StoreUnavailableError,
)
from eventsource.kafka.admin import EVENTS_TOPIC_CONFIG, ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka.group_store_futures import fenced_as_not_owner
from eventsource.store.kafka.ownership import OwnerDirectory, PartitionOwnership
from eventsource.store.kafka.served import ServedByWriters
from eventsource.store.kafka.snapshots import SNAPSHOTS_TOPIC_CONFIG, snapshots_topic
from eventsource.store.kafka.snapshots_writer import SnapshotPartitionWriter
from eventsource.store.kafka.topic_policy import check_events_topic
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import AppendResult, check_append_arguments, events_topic

__all__ = ["GroupedKafkaEventStore"]

A = TypeVar("A", bound=Aggregate)

_MEMBER = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_MEMBER_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class GroupedKafkaEventStore(ServedByWriters):
    """:class:`~eventsource.store.port.EventStore` serving the partitions this member owns.

    ``member`` names this process in the group (and in ``NotOwnerError``\\ s); give each
    process a stable, unique one (a pod name, say). ``directory`` holds one SQLite file per
    owned partition. ``cache_size`` bounds the aggregates each partition keeps in memory.
    ``partitions`` is used only when the store creates the topics.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        aggregates: Sequence[type[Aggregate]],
        *,
        directory: Path,
        member: str | None = None,
        codec: EventCodec | None = None,
        partitions: int = 6,
        source: str | None = None,
        max_batch_events: int = 1000,
        topic_prefix: str = "",
        topic_config: Mapping[str, str] | None = None,
        append_timeout: float | None = None,
        cache_size: int = 10_000,
        local_catchup_limit: int = 100_000,
        session_timeout_ms: int = 6000,
    ) -> None:
        if not aggregates:
            raise ConfigurationError("GroupedKafkaEventStore needs at least one aggregate class")
        self.settings = settings
        self.aggregates = {cls.aggregate_type: cls for cls in aggregates}
        self._handled = {t: frozenset(cls.event_types()) for t, cls in self.aggregates.items()}
        self.codec = codec or EventCodec.for_events(
            [event for cls in aggregates for event in cls.event_types()]
        )
        self.directory = directory
        if member is None:
            member = _MEMBER_CHARS.sub("-", f"{socket.gethostname()}-{os.getpid()}")
        self.member = member
        if not _MEMBER.match(self.member):
            raise ConfigurationError(
                f"member {self.member!r} must be 1-100 letters, digits, '.', '_' or '-' "
                "(it names the member's routing topics), unique per process"
            )
        self.partitions = partitions
        self.source = source or f"/eventsource/{settings.application_id}"
        self.topic_prefix = topic_prefix
        self.topic_config = dict(EVENTS_TOPIC_CONFIG if topic_config is None else topic_config)
        self.max_batch_events = max_batch_events
        self.cache_size = cache_size
        self.local_catchup_limit = local_catchup_limit
        delivery = settings.delivery_timeout_ms / 1000
        self.append_timeout = 2 * delivery + 5 if append_timeout is None else append_timeout
        self._types = {self.topic_for(t): t for t in self.aggregates}
        self._writers: dict[tuple[str, int], SnapshotPartitionWriter] = {}
        self._retiring: dict[tuple[str, int], SnapshotPartitionWriter] = {}
        self._lock = threading.Lock()
        self.owners = OwnerDirectory(settings)
        self.ownership = PartitionOwnership(
            settings,
            list(self._types),
            member=self.member,
            on_assign=self._take,
            on_revoke=self._release,
            session_timeout_ms=session_timeout_ms,
        )
        self._started = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> GroupedKafkaEventStore:
        """Create missing topics and join the writers group (does not wait for catch-up)."""
        if self._started:
            return self
        limits: dict[str, int] = {}
        for topic, aggregate_type in self._types.items():
            ensure_topic(self.settings, topic, self.partitions, config=self.topic_config)
            limits[topic] = check_events_topic(self.settings, topic)
            ensure_topic(
                self.settings,
                snapshots_topic(aggregate_type, self.topic_prefix),
                self.partitions,
                config=SNAPSHOTS_TOPIC_CONFIG,
            )
        self._record_limits = limits
        self.ownership.start(timeout)
        self._started = True
        return self

    def wait_serving(self, timeout: float) -> bool:
        """Whether every partition owned now serves within ``timeout`` seconds."""
        with self._lock:
            writers = list(self._writers.values())
        return all(w.wait_ready(timeout) and w.state == "serving" for w in writers)

    def close(self) -> None:
        """Release every partition (finishing queued appends) and leave the group."""
        self._closed = True
        self.ownership.close()
        self._release(list(self._writers))
        with self._lock:
            retiring, self._retiring = list(self._retiring.values()), {}
        for writer in retiring:  # released while restoring: let them end, close their files
            writer.close()

    def __enter__(self) -> GroupedKafkaEventStore:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def owned(self) -> dict[tuple[str, int], SnapshotPartitionWriter]:
        """The writers of the partitions this member owns now (a copy)."""
        with self._lock:
            return dict(self._writers)

    # -- ownership callbacks (membership thread) ----------------------------------------
    def _take(self, partitions: list[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            aggregate_type = self._types[topic]
            writer = SnapshotPartitionWriter(
                self.settings,
                topic,
                partition,
                self.aggregates[aggregate_type],
                self.codec,
                source=self.source,
                snapshot_topic=snapshots_topic(aggregate_type, self.topic_prefix),
                directory=self.directory,
                cache_size=self.cache_size,
                local_catchup_limit=self.local_catchup_limit,
                max_batch_events=self.max_batch_events,
            )
            with self._lock:
                writer.predecessor = self._retiring.pop((topic, partition), None)
                self._writers[(topic, partition)] = writer
            writer.start()  # fences, restores and catches up on its own thread

    def _release(self, partitions: list[tuple[str, int]]) -> None:
        with self._lock:  # from now on: NotOwnerError
            writers = [self._writers.pop(p) for p in partitions if p in self._writers]
        for writer in writers:
            # A serving writer finishes its queued appends; one still restoring has none,
            # and may be stuck in a long catch-up: do not hold the rebalance up for it.
            writer.close(30.0 if writer.state == "serving" else 1.0)
            if not writer.stopped:
                with self._lock:  # a later owner in this process waits for it to end
                    self._retiring[(writer.topic, writer.partition)] = writer

    # -- addressing -----------------------------------------------------------------
    def topic_for(self, aggregate_type: str) -> str:
        return events_topic(aggregate_type, self.topic_prefix)

    def writer_for(self, aggregate_type: str, aggregate_id: str) -> SnapshotPartitionWriter:
        """The local writer of the aggregate's partition, or ``NotOwnerError``."""
        if aggregate_type not in self.aggregates:
            raise ConfigurationError(
                f"aggregate type {aggregate_type!r} is not served by this store (it serves "
                f"{sorted(self.aggregates)}): pass its class in aggregates=..."
            )
        if aggregate_id.startswith("\x00"):
            raise ValueError(f"aggregate id {aggregate_id!r} may not start with NUL (reserved)")
        if self._closed or not self._started:
            raise StoreUnavailableError(
                "the grouped Kafka event store is "
                + ("closed" if self._closed else "not started: call start() first"),
                retriable=False,
            )
        topic = self.topic_for(aggregate_type)
        partition = partition_for_id(aggregate_id, self.partitions)
        with self._lock:
            writer = self._writers.get((topic, partition))
        if writer is None:
            raise self._not_owner(topic, partition, aggregate_id)
        return writer

    def _not_owner(self, topic: str, partition: int, aggregate_id: str) -> NotOwnerError:
        try:
            owner = self.owners.owner_of(topic, partition)
        except StoreUnavailableError:
            owner = None
        named = f"owned by {owner}" if owner else "unassigned (a rebalance is in progress)"
        return NotOwnerError(
            f"writer {self.member!r} does not own {topic}[{partition}] of aggregate "
            f"{aggregate_id!r}; it is {named}: send the command to its owner "
            "(GroupRouter does) or retry after the rebalance"
        )

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
        """Queue an append at the local owner; ``NotOwnerError`` if this is not the owner."""
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
        return fenced_as_not_owner(request.future, writer.where, self.member)

    def _serving(self, aggregate_type: str, aggregate_id: str) -> SnapshotPartitionWriter:
        writer = self.writer_for(aggregate_type, aggregate_id)
        writer.check_serving_reads()
        if writer.state != "serving":
            raise StoreUnavailableError(
                f"writer {self.member!r} is taking over {writer.where} ({writer.state}: "
                "fencing, restoring snapshots, catching up); retry shortly"
            )
        return writer
