"""Repository: load and save one aggregate type through any :class:`EventStore`."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from eventsource.domain import Aggregate
from eventsource.errors import AggregateNotFoundError
from eventsource.store.port import AppendCall, Appender, AppendResult, EventStore

__all__ = ["Repository", "check_distinct", "finish_saves", "start_saves"]

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

    def save_all(
        self,
        aggregates: Sequence[A],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> list[AppendResult]:
        """Save several aggregates in one call: one append each (not one transaction), all
        started at once through the store's ``append_many``, so they share group commits.

        Each append succeeds or fails on its own (its expected version is the aggregate's
        committed version). Once all have ended, the written aggregates' pending events
        become committed; if any failed, the first failure (in the order given) is raised,
        and each aggregate's ``pending_events`` tells whether it was written. Results are in
        the order given (an aggregate with nothing pending: no positions, nothing written).
        """
        started = start_saves(
            self.store, self.aggregate_cls.aggregate_type, aggregates, correlation_id, causation_id
        )
        # exception() waits: every append the store started ends (written, refused, or
        # uncertain), then its result or error is the outcome.
        return finish_saves(
            [(a, None if f is None else (f.exception() or f.result())) for a, f in started]
        )


def check_distinct(aggregates: Sequence[Aggregate]) -> None:
    """``save_all`` saves each aggregate once: the same one twice would race itself."""
    ids = [aggregate.id for aggregate in aggregates]
    if len(set(ids)) != len(ids):
        raise ValueError(
            "save_all got the same aggregate more than once; its appends would race "
            f"each other at one expected version: {sorted(i for i in ids if ids.count(i) > 1)}"
        )


def start_saves(
    store: Appender,
    aggregate_type: str,
    aggregates: Sequence[A],
    correlation_id: str | None,
    causation_id: str | None,
) -> list[tuple[A, Future[AppendResult] | None]]:
    """``save_all``'s first half: one ``append_many`` for every aggregate with pending
    events; each aggregate with its append's future (``None``: nothing to write)."""
    check_distinct(aggregates)
    futures = iter(
        store.append_many(
            [
                AppendCall(
                    aggregate_type,
                    aggregate.id,
                    pending,
                    aggregate.committed_version,
                    correlation_id,
                    causation_id,
                )
                for aggregate in aggregates
                if (pending := aggregate.pending_events)
            ]
        )
    )
    return [(a, next(futures) if a.pending_events else None) for a in aggregates]


def finish_saves(
    outcomes: Sequence[tuple[A, AppendResult | BaseException | None]],
) -> list[AppendResult]:
    """``save_all``'s second half, once every append has ended: the written aggregates'
    pending events become committed; the first failure is raised, else the results."""
    results: list[AppendResult] = []
    failure: BaseException | None = None
    for aggregate, outcome in outcomes:
        if outcome is None:
            results.append(AppendResult(aggregate.id, aggregate.version, ()))
        elif isinstance(outcome, BaseException):
            failure = failure or outcome
        else:
            aggregate.mark_committed()
            results.append(outcome)
    if failure is not None:
        raise failure
    return results
