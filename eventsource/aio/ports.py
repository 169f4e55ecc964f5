"""What the async facade needs of a store: an :class:`~eventsource.store.port.Appender`
(``append_async`` and ``version``) and, to load aggregates, a :class:`Loader`.

Every event store is both. A ``RemoteEventStore`` or ``GroupRouter`` appends at the owner
but cannot load: pair it with a loader (a ``PartitionScanLoader``, say) in
``AsyncRepository``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from eventsource.domain import Aggregate
from eventsource.store.port import Appender

__all__ = ["Appender", "Loader"]

A = TypeVar("A", bound=Aggregate)


@runtime_checkable
class Loader(Protocol):
    """Loads an aggregate by id (may block: the async facade calls it in an executor)."""

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        """The aggregate with every stored event applied; ``AggregateNotFoundError`` if none."""
        ...
