"""The Kafka adapter of the event store.

:class:`KafkaEventStore`: one process writes every partition. :class:`GroupedKafkaEventStore`
(with :class:`GroupRouter` and :func:`serve_routing`): several writer processes share the
partitions through a consumer group (:mod:`eventsource.store.kafka.scaleout`).
"""

from eventsource.store.kafka.options import WriterOptions
from eventsource.store.kafka.scaleout import GroupedKafkaEventStore, GroupRouter, serve_routing
from eventsource.store.kafka.store import KafkaEventStore

__all__ = [
    "GroupRouter",
    "GroupedKafkaEventStore",
    "KafkaEventStore",
    "WriterOptions",
    "serve_routing",
]
