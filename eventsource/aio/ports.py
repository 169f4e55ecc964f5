"""What the async facade needs of a store: the sync port plus ``append_async``.

Structural, so the Kafka stores, ``RemoteEventStore`` and the in-memory store fit without
being imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol, TypeVar, runtime_checkable

from eventsource.domain import Aggregate, Event
from eventsource.store.port import AppendResult

__all__ = ["AsyncAppendStore"]

A = TypeVar("A", bound=Aggregate)


@runtime_checkable
class AsyncAppendStore(Protocol):
    """Appends that complete a future; loads and versions that may block (off the loop)."""

    def append_async(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Future[AppendResult]:
        """Queue an append without blocking; the future tells its outcome."""
        ...

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        """The aggregate with every stored event applied; ``AggregateNotFoundError`` if none."""
        ...

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        """Number of stored events of the aggregate (0 when unknown)."""
        ...
