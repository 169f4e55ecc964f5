"""What the store knows about a recorded event besides its payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from eventsource.domain.event import Event

E = TypeVar("E", bound=Event, covariant=True)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record sits in Kafka. ``offset`` is the record's own offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """Envelope fields of one recorded event (the CloudEvents headers)."""

    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    version: int
    time: datetime
    correlation_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent(Generic[E]):
    """An event as read back from a store: payload, envelope and position."""

    event: E
    metadata: EventMetadata
    position: Position | None = None
