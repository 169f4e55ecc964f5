"""``AsyncRepository``: the :class:`~eventsource.store.Repository` for asyncio code.

Appends go through the store's ``append_async`` and reach the loop through
:func:`~eventsource.aio.bridge.await_future` (no thread per append). Loads and versions run
in an executor: a load may fold a partition (a non-owner's ``PartitionScanLoader``), read a local
snapshot store or ask the owner over Kafka, and none of that may block the loop.

Outcomes are the sync API's, raised from ``await``:

- written: the :class:`~eventsource.store.AppendResult`; the aggregate's pending events
  become committed;
- nothing written: ``ConcurrencyError``, ``NotOwnerError``, ``StoreUnavailableError``,
  ``MissingHandlerError``, ``EncodeError``...; the aggregate keeps its pending events;
- uncertain: ``UncertainCommitError``; the aggregate keeps its pending events, reload it.

A cancelled ``save`` raises ``CancelledError`` and leaves the append running: if it had
started it commits or fails on its own, exactly once. The aggregate keeps its pending
events (the caller cannot know which outcome happened): treat it like an uncertain
commit and reload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

from eventsource.aio.bridge import await_future
from eventsource.aio.ports import Loader
from eventsource.domain import Aggregate
from eventsource.errors import AggregateNotFoundError, ConfigurationError
from eventsource.store.port import Appender, AppendResult
from eventsource.store.repository import finish_saves, start_saves

__all__ = ["AsyncRepository"]

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


class AsyncRepository(Generic[A]):
    """Typed async access to aggregates of one class::

        accounts = AsyncRepository(store, Account)
        account = accounts.create("acc-1")
        account.open(owner="Ada")
        await accounts.save(account)
        again = await accounts.get("acc-1")

    ``store`` is any :class:`~eventsource.store.port.Appender` (every event store,
    ``RemoteEventStore``, ``GroupRouter``). ``loader`` loads aggregates for :meth:`get`;
    by default the store itself, when it can (a ``RemoteEventStore`` or ``GroupRouter``
    cannot: pass one, e.g. a ``PartitionScanLoader``).
    ``executor`` runs loads and versions (``None``: the loop's default executor).
    """

    def __init__(
        self,
        store: Appender,
        aggregate_cls: type[A],
        *,
        loader: Loader | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.aggregate_cls = aggregate_cls
        self.loader = loader if loader is not None or not isinstance(store, Loader) else store
        self.executor = executor

    def create(self, aggregate_id: str) -> A:
        """A new, empty aggregate (nothing is stored until :meth:`save`)."""
        return self.aggregate_cls(aggregate_id)

    async def get(self, aggregate_id: str) -> A:
        """The stored aggregate; ``AggregateNotFoundError`` if it has no events."""
        loader = self.loader
        if loader is None:
            raise ConfigurationError(
                f"{type(self.store).__name__} appends but cannot load aggregates: create the "
                "AsyncRepository with loader=... (e.g. a PartitionScanLoader)"
            )
        return await self._off_loop(lambda: loader.load(self.aggregate_cls, aggregate_id))

    async def get_or_none(self, aggregate_id: str) -> A | None:
        """The stored aggregate, or ``None`` if it has no events."""
        try:
            return await self.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    async def version(self, aggregate_id: str) -> int:
        """The stored version of the aggregate (0 when it has no events)."""
        aggregate_type = self.aggregate_cls.aggregate_type
        return await self._off_loop(lambda: self.store.version(aggregate_type, aggregate_id))

    async def save(
        self,
        aggregate: A,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> AppendResult:
        """Append the pending events at the aggregate's committed version.

        With no pending events nothing is written and the result has no positions.
        """
        pending = aggregate.pending_events
        if not pending:
            return AppendResult(aggregate.id, aggregate.version, ())
        future = self.store.append_async(
            self.aggregate_cls.aggregate_type,
            aggregate.id,
            pending,
            aggregate.committed_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        result = await await_future(future)
        aggregate.mark_committed()
        return result

    async def save_all(
        self,
        aggregates: Sequence[A],
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> list[AppendResult]:
        """Save several aggregates at once (one append each, not one transaction).

        Every append is started by one ``append_many`` call before any is awaited, so they
        share group commits (an argument error of any starts none). Once all
        have ended, the written ones are committed on their aggregates; if any failed, the
        first failure (in the order given) is raised, and each aggregate's
        ``pending_events`` tells whether it was written.
        """
        started = start_saves(
            self.store, self.aggregate_cls.aggregate_type, aggregates, correlation_id, causation_id
        )
        outcomes = iter(
            await asyncio.gather(
                *(await_future(f) for _, f in started if f is not None), return_exceptions=True
            )
        )
        return finish_saves([(a, None if f is None else next(outcomes)) for a, f in started])

    async def _off_loop(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)
