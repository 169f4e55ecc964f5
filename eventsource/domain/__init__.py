"""Domain layer: events, aggregates and metadata. No I/O, no Kafka."""

from eventsource.domain.aggregate import Aggregate, apply
from eventsource.domain.event import Event
from eventsource.domain.metadata import EventMetadata, Position, RecordedEvent

__all__ = ["Aggregate", "Event", "EventMetadata", "Position", "RecordedEvent", "apply"]
