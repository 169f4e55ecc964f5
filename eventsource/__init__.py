"""eventsource: Apache Kafka as a correct and fast event store.

The facade holds the names most code needs; everything else is reachable from its
subpackage (``eventsource.codec``, ``eventsource.store``, ``eventsource.projection``,
``eventsource.errors``, ``eventsource.testing``).
"""

from eventsource.domain import Aggregate, Event, apply
from eventsource.kafka.config import KafkaSettings
from eventsource.projection import (
    Context,
    DeadLetterPolicy,
    Projection,
    ProjectionRunner,
    on,
    table,
    wait_for_positions,
)
from eventsource.store import EventStore, InMemoryEventStore, Repository
from eventsource.store.kafka import KafkaEventStore

__version__ = "0.1.0"

__all__ = [
    "Aggregate",
    "Context",
    "DeadLetterPolicy",
    "Event",
    "EventStore",
    "InMemoryEventStore",
    "KafkaEventStore",
    "KafkaSettings",
    "Projection",
    "ProjectionRunner",
    "Repository",
    "apply",
    "on",
    "table",
    "wait_for_positions",
]
