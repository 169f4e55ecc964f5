"""Repository: load and save one aggregate type through any :class:`EventStore`."""

from __future__ import annotations

from typing import Generic, TypeVar

from eventsource.domain import Aggregate
from eventsource.errors import AggregateNotFoundError
from eventsource.store.port import AppendResult, EventStore

__all__ = ["Repository"]

A = TypeVar("A", bound=Aggregate)


class Repository(Generic[A]):
    """Typed access to aggregates of one class.

    ``save`` appends the aggregate's pending events with its committed version as the
    expected version, so a concurrent change raises ``ConcurrencyError`` and writes
    nothing; the aggregate then still holds its pending events::

        accounts = Repository(store, Account)
        account = accounts.create("acc-1")
        account.open(owner="Ada")
        accounts.save(account)
    """

    def __init__(self, store: EventStore, aggregate_cls: type[A]) -> None:
        self.store = store
        self.aggregate_cls = aggregate_cls

    def create(self, aggregate_id: str) -> A:
        """A new, empty aggregate (nothing is stored until :meth:`save`)."""
        return self.aggregate_cls(aggregate_id)

    def get(self, aggregate_id: str) -> A:
        """The stored aggregate; ``AggregateNotFoundError`` if it has no events."""
        return self.store.load(self.aggregate_cls, aggregate_id)

    def get_or_none(self, aggregate_id: str) -> A | None:
        """The stored aggregate, or ``None`` if it has no events."""
        try:
            return self.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def save(
        self,
        aggregate: A,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> AppendResult:
        """Append the pending events; on success they become committed.

        With no pending events nothing is written and the result has no positions.
        """
        pending = aggregate.pending_events
        if not pending:
            return AppendResult(aggregate.id, aggregate.version, ())
        result = self.store.append(
            self.aggregate_cls.aggregate_type,
            aggregate.id,
            pending,
            aggregate.committed_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        aggregate.mark_committed()
        return result
