"""ScanningRemoteEventStore: a full event store for a process that owns no partition."""

from __future__ import annotations

from typing import TypeVar

from eventsource.domain import Aggregate
from eventsource.kafka.config import KafkaSettings
from eventsource.store.routing.client import RemoteEventStore
from eventsource.store.routing.ports import ClientCodec
from eventsource.store.routing.scan import SCAN_TIMEOUT_S, PartitionScanLoader

__all__ = ["ScanningRemoteEventStore"]

A = TypeVar("A", bound=Aggregate)


class ScanningRemoteEventStore(RemoteEventStore):
    """A :class:`RemoteEventStore` that also loads, by scanning: an :class:`EventStore`.

    Appends and versions go to the owner; ``load`` folds the aggregate's committed records
    from its whole partition of ``<topic_prefix><aggregate_type>.events`` (slow: see
    :class:`~eventsource.store.routing.PartitionScanLoader`). The loaded version is a
    snapshot: an append at that version still fails with ``ConcurrencyError`` if the owner
    moved on.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: ClientCodec,
        *,
        timeout: float = 10.0,
        topic_prefix: str = "",
        scan_timeout: float = SCAN_TIMEOUT_S,
    ) -> None:
        super().__init__(settings, codec, timeout=timeout)
        self.loader = PartitionScanLoader(
            settings, codec, topic_prefix=topic_prefix, timeout=scan_timeout
        )

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        """The aggregate folded from its partition; ``AggregateNotFoundError`` if none."""
        return self.loader.load(aggregate_cls, aggregate_id)
