"""What both Kafka stores serve the same way once a partition writer is found.

:class:`KafkaEventStore` (one process owns every partition) and
:class:`GroupedKafkaEventStore` (partitions shared through a consumer group) differ in how
they find the writer that may serve an aggregate; appending, loading and reading a version
through that writer are the same, and live here.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from types import MappingProxyType
from typing import TypeVar

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate, Event
from eventsource.errors import (
    AggregateNotFoundError,
    ConfigurationError,
    MissingHandlerError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.store.kafka.admission import check_record_sizes
from eventsource.store.kafka.ids import new_event_id
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.kafka.writer import PartitionWriter
from eventsource.store.port import AppendResult

__all__ = ["ServedByWriters", "wait_for"]

A = TypeVar("A", bound=Aggregate)


class ServedByWriters:
    """``append`` / ``load`` / ``version`` in terms of ``append_async`` and ``_serving``."""

    append_timeout: float
    codec: EventCodec
    _handled: dict[str, frozenset[type[Event]]]
    _record_limits: Mapping[str, int] = MappingProxyType({})
    """Per events topic, the largest record it takes (set by ``start()``)."""

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
        raise NotImplementedError

    def _serving(self, aggregate_type: str, aggregate_id: str) -> PartitionWriter:
        """The writer that may serve reads of this aggregate now, or a typed refusal."""
        raise NotImplementedError

    def _submit(
        self,
        writer: PartitionWriter,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> AppendRequest:
        """Check the event types, encode and queue one append; the request's future tells."""
        handled = self._handled[aggregate_type]
        encode = self.codec.encode
        for event in events:
            if type(event) not in handled:
                raise MissingHandlerError(
                    f"{writer.index.aggregate_cls.__name__} has no @apply handler for "
                    f"{type(event).__name__}; nothing was written to {aggregate_id!r}"
                )
        request = AppendRequest(
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            events=tuple(events),
            payloads=tuple([encode(event) for event in events]),
            event_ids=tuple([new_event_id() for _ in events]),
            expected_version=expected_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        check_record_sizes(request, self._record_limits.get(writer.topic), writer.topic)
        writer.submit(request)
        return request

    def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        timeout: float | None = None,
    ) -> AppendResult:
        future = self.append_async(
            aggregate_type,
            aggregate_id,
            events,
            expected_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        return wait_for(future, aggregate_id, self.append_timeout if timeout is None else timeout)

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        writer = self._serving(aggregate_cls.aggregate_type, aggregate_id)
        if writer.index.aggregate_cls is not aggregate_cls:
            raise ConfigurationError(
                f"the store folds {aggregate_cls.aggregate_type!r} as "
                f"{writer.index.aggregate_cls.__qualname__}, not {aggregate_cls.__qualname__}"
            )
        state = writer.index.snapshot(aggregate_id)
        if state is None:
            raise AggregateNotFoundError(
                f"{aggregate_cls.aggregate_type} {aggregate_id!r} has no events on "
                f"{writer.where}: create it as a new aggregate (expected version 0)"
            )
        assert isinstance(state, aggregate_cls)
        return state

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        return self._serving(aggregate_type, aggregate_id).index.version(aggregate_id)


def wait_for(future: Future[AppendResult], aggregate_id: str, timeout: float) -> AppendResult:
    """The append's result; a timeout tells whether anything can have been written."""
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.cancel():
            raise StoreUnavailableError(
                f"the append to {aggregate_id!r} did not start within {timeout:.0f}s (the "
                "writer is busy or reconnecting); it was cancelled, nothing was written: retry"
            ) from None
        raise UncertainCommitError(
            f"the append to {aggregate_id!r} did not finish within {timeout:.0f}s and may "
            "still commit: reload the aggregate (its version tells) before retrying"
        ) from None
