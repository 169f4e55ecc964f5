"""Routing: any process appends through the owner of the aggregate's partition.

A process that does not own the events partitions never appends to them. Its
:class:`RemoteEventStore` sends each append as a request on
``<application_id>.append-requests``; the owner's :class:`AppendServer` executes it through
its own store (version check, transaction, fencing) and replies on
``<application_id>.append-replies``. The wire format is in ``docs/reference/routing.md``.

A :class:`RemoteEventStore` only appends (an ``Appender``); a
:class:`ScanningRemoteEventStore` also loads, by scanning the aggregate's partition (an
``EventStore``); a :class:`PartitionScanLoader` only loads.
"""

from eventsource.store.routing.client import RemoteEventStore
from eventsource.store.routing.scan import PartitionScanLoader
from eventsource.store.routing.scanning import ScanningRemoteEventStore
from eventsource.store.routing.server import AppendServer
from eventsource.store.routing.topics import replies_topic, requests_topic

__all__ = [
    "AppendServer",
    "PartitionScanLoader",
    "RemoteEventStore",
    "ScanningRemoteEventStore",
    "replies_topic",
    "requests_topic",
]
