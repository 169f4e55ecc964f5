"""An in-memory event store for fast unit tests, with the Kafka adapter's semantics.

Positions mimic Kafka: topic ``<aggregate_type>.events``, the partition Kafka's default
partitioner gives the aggregate id, and per-partition offsets from 0. Thread-safe: one lock
guards every append, so concurrent appends at the same expected version have one winner.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from eventsource.domain import Aggregate, Event, EventMetadata, Position, RecordedEvent
from eventsource.errors import AggregateNotFoundError, ConcurrencyError, StoreUnavailableError
from eventsource.store.appending import AppendCall, AppenderBase, completed
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import ANY, AppendResult, events_topic

if TYPE_CHECKING:  # the codec (fastavro) is only needed when a test passes one
    from eventsource.codec import EventCodec

__all__ = ["InMemoryEventStore"]

A = TypeVar("A", bound=Aggregate)


class InMemoryEventStore(AppenderBase):
    """:class:`~eventsource.store.port.EventStore` kept in a dictionary.

    Use it in unit tests; it never touches Kafka. ``partitions`` only shapes the positions
    it reports, so they look like the Kafka adapter's. With a ``codec`` every event is
    encoded and decoded on append, so a test fails on an event the wire format cannot carry
    (``EncodeError``) just as the Kafka store would.
    """

    def __init__(
        self, *, partitions: int = 6, topic_prefix: str = "", codec: EventCodec | None = None
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self._partitions = partitions
        self._prefix = topic_prefix
        self._codec = codec
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str], list[RecordedEvent[Event]]] = {}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._closed = False

    def _start_append(self, call: AppendCall) -> Future[AppendResult]:
        return completed(self._append_now, call)

    def _append_now(self, call: AppendCall) -> AppendResult:
        aggregate_type, aggregate_id, events = call.aggregate_type, call.aggregate_id, call.events
        if self._codec is not None:  # what the Kafka store would write, read back
            codec = self._codec
            events = [codec.decode(codec.encode(event)) for event in events]
        topic = events_topic(aggregate_type, self._prefix)
        partition = partition_for_id(aggregate_id, self._partitions)
        now = datetime.now(UTC)
        with self._lock:
            self._check_open()
            stream = self._streams.setdefault((aggregate_type, aggregate_id), [])
            expected_version = call.expected_version
            if expected_version != ANY and expected_version != len(stream):
                raise ConcurrencyError(aggregate_id, expected_version, len(stream))
            offset = self._next_offset.get((topic, partition), 0)
            positions = []
            for event in events:
                position = Position(topic, partition, offset)
                metadata = EventMetadata(
                    event_id=str(uuid.uuid4()),
                    event_type=event.event_type(),
                    aggregate_type=aggregate_type,
                    aggregate_id=aggregate_id,
                    version=len(stream) + 1,
                    time=now,
                    correlation_id=call.correlation_id,
                    causation_id=call.causation_id,
                )
                stream.append(RecordedEvent(event, metadata, position))
                positions.append(position)
                offset += 1
            self._next_offset[(topic, partition)] = offset
            return AppendResult(aggregate_id, len(stream), tuple(positions))

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        recorded = self.recorded_events(aggregate_cls.aggregate_type, aggregate_id)
        if not recorded:
            raise AggregateNotFoundError(
                f"{aggregate_cls.aggregate_type} {aggregate_id!r} has no events in the "
                "in-memory store: append events first, or create it as a new aggregate"
            )
        return aggregate_cls.rehydrate(aggregate_id, (r.event for r in recorded))

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        with self._lock:
            return len(self._streams.get((aggregate_type, aggregate_id), ()))

    def recorded_events(self, aggregate_type: str, aggregate_id: str) -> list[RecordedEvent[Event]]:
        """Every stored event of one aggregate with its metadata and position, oldest first."""
        with self._lock:
            self._check_open()
            return list(self._streams.get((aggregate_type, aggregate_id), ()))

    def all_events(self) -> list[RecordedEvent[Event]]:
        """Every stored event, ordered by topic, partition and offset."""
        with self._lock:
            everything = [r for stream in self._streams.values() for r in stream]
        return sorted(everything, key=lambda r: _position_key(r.position))

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> InMemoryEventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError(
                "the in-memory event store is closed: create a new one", retriable=False
            )


def _position_key(position: Position | None) -> tuple[str, int, int]:
    assert position is not None  # every event recorded here has a position
    return (position.topic, position.partition, position.offset)
