"""The Kafka adapter of the event store: partition writers, catch-up, version index."""

from eventsource.store.kafka.store import KafkaEventStore
from eventsource.store.kafka.writer import PartitionWriter

__all__ = ["KafkaEventStore", "PartitionWriter"]
