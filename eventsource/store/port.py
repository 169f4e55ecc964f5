"""The event store port: what every adapter (in-memory, Kafka) promises.

Expected version semantics: ``expected_version`` is the number of events the aggregate
has before this append (0 = the aggregate must be new). The append succeeds only if the
store's version equals it; otherwise :class:`~eventsource.errors.ConcurrencyError` is raised
and nothing is written. ``expected_version=ANY`` (-1) skips the check: use it only for
events whose order relative to concurrent commands does not matter (e.g. imports).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol, TypeVar, runtime_checkable

from eventsource.domain import Aggregate, Event, Position
from eventsource.kafka.names import events_topic

__all__ = [
    "ANY",
    "AppendCall",
    "AppendResult",
    "Appender",
    "EventStore",
    "check_append_arguments",
    "events_topic",
]

ANY: Final = -1
"""``expected_version`` that skips the optimistic concurrency check."""

A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Outcome of a successful append.

    ``version`` is the aggregate's new version (number of events it has now); ``positions``
    holds one position per appended event, in order.
    """

    aggregate_id: str
    version: int
    positions: tuple[Position, ...]


class AppendCall(NamedTuple):
    """One append's arguments (a command): what :meth:`Appender.append_many` takes, and what
    a store queues, sends or sends again once they are checked.

    Immutable; a named tuple rather than a frozen dataclass because one is made per append:
    0.3 µs instead of 1.5 µs (a frozen dataclass sets each field through
    ``object.__setattr__``), of the 18 µs of CPU a one-event append costs a Kafka store.
    """

    aggregate_type: str
    aggregate_id: str
    events: Sequence[Event]
    expected_version: int
    correlation_id: str | None = None
    causation_id: str | None = None
    payloads: Sequence[bytes] | None = None
    """The events as they were decoded from, one per event (a routed append): a store may
    write them instead of encoding the events again (:meth:`EventCodec.reuse_or_encode`
    decides); ``None``: encode the events."""


@runtime_checkable
class Appender(Protocol):
    """Append with an expected version and read a version: what routing needs.

    Every store is one; so are :class:`~eventsource.store.routing.RemoteEventStore` and
    :class:`~eventsource.store.kafka.GroupRouter`, which send the call to the owner of the
    aggregate's partition. ``append_async`` returns at once; its
    :class:`concurrent.futures.Future` completes with the result or the typed error that
    ``append`` would raise.
    """

    def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> AppendResult:
        """Append ``events`` atomically if the aggregate has ``expected_version`` events.

        Raises ``ConcurrencyError`` (nothing written) on a version mismatch.
        """
        ...

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
        """Start the append; the future completes with what :meth:`append` would give."""
        ...

    def append_many(self, calls: Iterable[AppendCall]) -> list[Future[AppendResult]]:
        """Start several appends at once, one future per command, in order; each command
        is checked, written and answered on its own (see ``AppenderBase.append_many``)."""
        ...

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        """Number of stored events of the aggregate (0 when unknown)."""
        ...


@runtime_checkable
class EventStore(Appender, Protocol):
    """An :class:`Appender` that also loads aggregates by id, and closes."""

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        """The aggregate with every stored event applied; ``AggregateNotFoundError`` if none."""
        ...

    def close(self) -> None:
        """Release resources; later calls fail."""
        ...


def check_append_arguments(
    aggregate_id: str, events: Sequence[Event], expected_version: int
) -> None:
    """Reject arguments no adapter can honour (programming errors, not store failures)."""
    if not aggregate_id:
        raise ValueError("append needs a non-empty aggregate id")
    if not events:
        raise ValueError(f"append to {aggregate_id!r} needs at least one event")
    if expected_version < ANY:
        raise ValueError(
            f"expected_version for {aggregate_id!r} must be >= 0 (or ANY = -1), "
            f"got {expected_version}"
        )
    for event in events:
        if not isinstance(event, Event):
            raise TypeError(f"append to {aggregate_id!r} got {type(event).__name__}, not an Event")
