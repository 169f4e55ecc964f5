"""The event store: the port, the in-memory adapter and the repository.

The Kafka adapter lives in :mod:`eventsource.store.kafka` (it imports confluent-kafka).
"""

from eventsource.store.memory import InMemoryEventStore
from eventsource.store.port import ANY, AppendCall, Appender, AppendResult, EventStore
from eventsource.store.repository import Repository

__all__ = [
    "ANY",
    "AppendCall",
    "AppendResult",
    "Appender",
    "EventStore",
    "InMemoryEventStore",
    "Repository",
]
