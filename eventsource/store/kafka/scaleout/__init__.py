"""Scale-out writers: several processes share the partitions of the events topics.

* :mod:`.ownership`: the writers consumer group whose assignment *is* the ownership;
* :mod:`.group_store`: :class:`GroupedKafkaEventStore`, serving the partitions it owns;
* :mod:`.snapshots`, :mod:`.snapshots_index`, :mod:`.snapshots_writer`: the partition
  writer that restores from (and writes) the compacted snapshot topic;
* :mod:`.group_store_route`: :class:`GroupRouter`, sending each command to the owner
  (:mod:`.routed_append`: one append, sent and sent again, without a thread).
"""

from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from eventsource.store.kafka.scaleout.group_store_route import (
    GroupRouter,
    member_settings,
    serve_routing,
)

__all__ = ["GroupRouter", "GroupedKafkaEventStore", "member_settings", "serve_routing"]
