"""The base of both Kafka stores: set-up, validation, and serving through a writer.

:class:`KafkaEventStore` (one process owns every partition) and
:class:`GroupedKafkaEventStore` (partitions shared through a consumer group) differ in how
they find the writer that may serve an aggregate; their set-up and argument checks, and
appending, loading and reading a version through that writer, are the same and live here.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from functools import lru_cache
from types import MappingProxyType, TracebackType
from typing import Self, TypeVar

from eventsource.codec import EventCodec
from eventsource.domain import Aggregate
from eventsource.errors import (
    AggregateNotFoundError,
    ConfigurationError,
    MissingHandlerError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.admin import EVENTS_TOPIC_CONFIG
from eventsource.kafka.config import KafkaSettings
from eventsource.store.appending import AppendCall, AppenderBase, failed
from eventsource.store.kafka.admission import check_record_sizes
from eventsource.store.kafka.ids import new_event_id
from eventsource.store.kafka.options import WriterOptions
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.kafka.writer import PartitionWriter
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import AppendResult, events_topic

__all__ = ["ServedByWriters", "wait_for"]

A = TypeVar("A", bound=Aggregate)


class ServedByWriters(AppenderBase):
    """Both stores: set-up, checks, and ``append`` / ``load`` / ``version`` via a writer.

    A store says how it finds the writer of an aggregate (:meth:`_local_writer`), whether
    that writer may serve reads now (:meth:`_serving`), and how it starts and closes.
    """

    _record_limits: Mapping[str, int] = MappingProxyType({})
    """Per events topic, the largest record it takes (read by ``start()``)."""

    def __init__(
        self,
        settings: KafkaSettings,
        aggregates: Sequence[type[Aggregate]],
        *,
        codec: EventCodec | None,
        partitions: int,
        topic_prefix: str,
        topic_config: Mapping[str, str] | None,
        options: WriterOptions | None,
    ) -> None:
        kind = type(self).__name__
        if not aggregates:
            raise ConfigurationError(f"{kind} needs at least one aggregate class")
        if partitions < 1:
            raise ConfigurationError(f"{kind} needs partitions >= 1, got {partitions}")
        self.settings = settings
        self.aggregates = {cls.aggregate_type: cls for cls in aggregates}
        self._handled = {t: frozenset(cls.event_types()) for t, cls in self.aggregates.items()}
        self.codec = codec or EventCodec.for_events(
            [event for cls in aggregates for event in cls.event_types()]
        )
        self.partitions = partitions
        self.topic_prefix = topic_prefix
        self._topics = {t: events_topic(t, topic_prefix) for t in self.aggregates}
        self.topic_config = dict(EVENTS_TOPIC_CONFIG if topic_config is None else topic_config)
        self.options = (options or WriterOptions()).resolved(settings)
        self.source = self.options.ce_source
        self.append_timeout = self.options.timeout
        self._started = False
        self._closed = False

    def start(self, timeout: float = 60.0) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- addressing -----------------------------------------------------------------
    def topic_for(self, aggregate_type: str) -> str:
        return self._topics.get(aggregate_type) or events_topic(aggregate_type, self.topic_prefix)

    def writer_for(self, aggregate_type: str, aggregate_id: str) -> PartitionWriter:
        """The local writer of the aggregate's partition (for tests and diagnostics)."""
        topic = self._topics.get(aggregate_type)
        if topic is None:
            raise ConfigurationError(
                f"aggregate type {aggregate_type!r} is not served by this store (it serves "
                f"{sorted(self.aggregates)}): pass its class in "
                f"{type(self).__name__}(aggregates=...)"
            )
        if aggregate_id.startswith("\x00"):
            raise ValueError(
                f"aggregate id {aggregate_id!r} may not start with NUL (reserved for the "
                "store's own records)"
            )
        if self._closed or not self._started:
            raise StoreUnavailableError(
                f"the {type(self).__name__} is "
                + ("closed" if self._closed else "not started: call start() first"),
                retriable=False,
            )
        return self._local_writer(topic, aggregate_id)

    def _partition(self, aggregate_id: str) -> int:
        return _partition(aggregate_id, self.partitions)

    def _local_writer(self, topic: str, aggregate_id: str) -> PartitionWriter:
        """The writer of the aggregate's partition in this process, or a typed refusal."""
        raise NotImplementedError

    def _serving(self, aggregate_type: str, aggregate_id: str) -> PartitionWriter:
        """The writer that may serve reads of this aggregate now, or a typed refusal."""
        writer = self.writer_for(aggregate_type, aggregate_id)
        writer.check_serving_reads()
        return writer

    # -- the port: append / append_async come from AppenderBase ---------------------
    def _start_append(self, call: AppendCall) -> Future[AppendResult]:
        """Queue an append; the future resolves after the group commit that holds it."""
        writer = self.writer_for(call.aggregate_type, call.aggregate_id)
        return self._answer(writer, self._submit(writer, call))

    def _outcome(
        self, future: Future[AppendResult], call: AppendCall, timeout: float | None
    ) -> AppendResult:
        return wait_for(
            future, call.aggregate_id, self.append_timeout if timeout is None else timeout
        )

    def _answer(
        self, writer: PartitionWriter, future: Future[AppendResult]
    ) -> Future[AppendResult]:
        """The future a caller gets for a queued request (a store may translate errors)."""
        return future

    def _start_many(self, calls: list[AppendCall]) -> list[Future[AppendResult]]:
        """Encode every command first, then queue each writer's share under one acquisition
        of its lock (a refused command fails its own future; the others go on)."""
        futures: list[Future[AppendResult]] = []
        queues: dict[PartitionWriter, list[AppendRequest]] = {}
        for call in calls:
            try:
                writer = self.writer_for(call.aggregate_type, call.aggregate_id)
                request = self._request(writer, call)
            except (ValueError, TypeError):
                raise  # nothing is queued yet
            except Exception as exc:
                futures.append(failed(exc))
                continue
            queue = queues.get(writer)
            if queue is None:
                queue = queues[writer] = []
            queue.append(request)
            futures.append(self._answer(writer, request))
        for writer, requests in queues.items():
            writer.submit_all(requests)
        return futures

    def _submit(self, writer: PartitionWriter, call: AppendCall) -> AppendRequest:
        """Check the event types, encode and queue one append (the request is its future)."""
        request = self._request(writer, call)
        writer.submit(request)
        return request

    def _request(self, writer: PartitionWriter, call: AppendCall) -> AppendRequest:
        """Check the event types and sizes, and encode one append (not queued yet)."""
        aggregate_type, aggregate_id, events = call.aggregate_type, call.aggregate_id, call.events
        handled = self._handled[aggregate_type]
        encode = self.codec.encode
        for event in events:
            if type(event) not in handled:
                raise MissingHandlerError(
                    f"{writer.index.aggregate_cls.__name__} has no @apply handler for "
                    f"{type(event).__name__}; nothing was written to {aggregate_id!r}"
                )
        given = call.payloads
        if given is not None and len(given) == len(events):  # routed: the client's bytes
            payloads: tuple[bytes, ...] = tuple(map(self.codec.reuse_or_encode, events, given))
            event_ids: tuple[str, ...] = tuple([new_event_id() for _ in events])
        elif len(events) == 1:  # the usual command
            payloads = (encode(events[0]),)
            event_ids = (new_event_id(),)
        else:
            payloads = tuple([encode(event) for event in events])
            event_ids = tuple([new_event_id() for _ in events])
        request = AppendRequest(  # positional: one per append
            aggregate_type,
            aggregate_id,
            tuple(events),
            payloads,
            event_ids,
            call.expected_version,
            call.correlation_id,
            call.causation_id,
            None,
            writer.lock,
        )
        limit = self._record_limits.get(writer.topic)
        check_record_sizes(request, limit, writer.topic, self.source)
        return request

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


_partition = lru_cache(maxsize=1 << 16)(partition_for_id)


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
