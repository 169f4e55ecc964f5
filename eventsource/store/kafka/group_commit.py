"""The append queue and group commits of a partition writer: admit, produce, commit, settle.

:class:`GroupCommits` is the half of :class:`~eventsource.store.kafka.writer.PartitionWriter`
that appends: callers queue requests (:meth:`GroupCommits.submit`); the writer's thread takes
everything queued, up to ``max_batch_events``, as one batch (starting its futures under one
lock, leaving out those a caller cancelled) and commits it:

1. **admit** (:meth:`GroupCommits._process`): each request's expected version is checked
   against the index plus the versions earlier requests of the batch will create, and its
   events are folded onto a private copy of its aggregate (:class:`TrialFold`), so an
   ``@apply`` that raises fails that request alone. A request that lost only to an earlier
   request of the same batch waits for the batch's outcome (if that transaction does not
   commit, its expected version may be right after all, and a ``ConcurrencyError`` would
   name a version that never existed), then is checked again;
2. **produce** the accepted requests' records in one transaction, with CloudEvents headers
   from per-event-type templates, and **commit** it;
3. **settle**: the records of one transaction of the partition's only producer are
   contiguous, so two delivery reports (first and last record) give every offset;
4. **complete**: the trial fold's copies become the committed states (events are folded
   once), and every caller's future is resolved in one go (:func:`resolve_all`).

Failures go to :class:`~eventsource.store.kafka.recovery.CommitRecovery`.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import compress
from operator import attrgetter

from confluent_kafka import Producer

from eventsource.codec.envelope import HeaderTemplate, utc_stamp
from eventsource.domain import Aggregate, Event, Position
from eventsource.errors import ConcurrencyError
from eventsource.gcpause import gc_resumed
from eventsource.lifecycle import ServiceThread
from eventsource.store.kafka.admission import Admitted, TrialFold
from eventsource.store.kafka.future import AppendFuture, resolve_all, start_all
from eventsource.store.kafka.index import VersionIndex
from eventsource.store.kafka.options import WriterState
from eventsource.store.kafka.producer import DeliveryMark
from eventsource.store.kafka.recovery import CommitRecovery
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.kafka.results import new_position, new_result
from eventsource.store.port import ANY, AppendResult

__all__ = ["FaultHook", "GroupCommits"]

FaultHook = Callable[[str], None]
"""Test hook called at ``"before_init"`` (before every ``init_transactions``),
``"before_commit"``, ``"commit"`` (instead of committing, if it raises) and
``"after_commit"``; an exception it raises is handled like a Kafka failure."""

_Headers = list[tuple[str, str | bytes | None]]  # what produce() takes (list is invariant)
_events = attrgetter("events")


class GroupCommits(ServiceThread):
    """The append queue and group commits of one partition (the writer's thread takes
    batches with :meth:`_take_batch` and commits each with :meth:`_process`)."""

    topic: str
    partition: int
    source: str
    index: VersionIndex[Aggregate]
    producer: Producer | None
    recovery: CommitRecovery
    state: WriterState
    end_offset: int
    op_timeout: float
    fault_hook: FaultHook | None
    max_batch_events: int
    _queue: collections.deque[AppendRequest]
    _mutex: threading.RLock
    _cond: threading.Condition
    _idle: bool  # the thread waits for appends (under the lock): submit wakes it
    _templates: dict[type[Event], HeaderTemplate]

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]"

    @property
    def closing(self) -> bool:
        """Set by ``close()``: the writer takes nothing new and never fences again."""
        return self.stopping

    def _refusal(self) -> Exception:
        """The error an append gets while the writer does not serve (the writer says)."""
        raise NotImplementedError

    def fault(self, stage: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage)

    # -- the queue ---------------------------------------------------------------------
    def submit(self, request: AppendRequest) -> None:
        """Queue one request (refused at once while the writer does not serve)."""
        self.submit_all((request,))

    def submit_all(self, requests: Sequence[AppendRequest]) -> None:
        """Queue requests in order, under one acquisition of the lock."""
        with self._mutex:  # the condition's lock, without Condition's Python-level wrappers
            if self.state is not WriterState.SERVING or self.closing:
                for request in requests:
                    request.set_exception(self._refusal())
                return
            self._queue.extend(requests)
            if self._idle:  # while a transaction runs nobody waits: skip the notify
                self._cond.notify()

    def _take_batch(self) -> list[AppendRequest] | None:
        """The next batch (``None``: stop); its futures are started, cancelled ones left out."""
        with self._cond:
            while not self._queue:
                if self.closing or self.state is WriterState.FENCED:
                    return None
                self._idle = True
                try:
                    self._cond.wait(0.5)
                finally:
                    self._idle = False
            queue, limit = self._queue, self.max_batch_events
            if len(queue) <= limit and sum(map(len, map(_events, queue))) <= limit:
                batch = list(queue)  # the usual case: everything queued fits one commit
                queue.clear()
            else:
                batch = []
                events = 0
                while queue and (not batch or events + len(queue[0].events) <= limit):
                    request = queue.popleft()
                    batch.append(request)
                    events += len(request.events)
            # A caller that gave up while its request was queued cancelled it: skip it.
            return list(compress(batch, start_all(self._cond, batch)))

    def fail_queued(self) -> None:
        """Fail every queued request (never produced, so nothing was written)."""
        with self._cond:
            queued, self._queue = self._queue, collections.deque()
        for request in queued:
            if request.set_running_or_notify_cancel():
                request.set_exception(self._refusal())

    # -- 1. admit ---------------------------------------------------------------------
    def _process(self, batch: list[AppendRequest]) -> None:
        deferred: list[AppendRequest] = []
        trial = TrialFold(self.index, self.where, [r.aggregate_id for r in batch])
        committed = trial.committed
        for request in batch:
            aggregate_id = request.aggregate_id
            current = trial.version(aggregate_id)
            expected = request.expected_version
            if expected != ANY and expected != current:
                if current != committed[aggregate_id]:
                    deferred.append(request)  # lost to this batch: wait for its outcome
                else:
                    request.set_exception(ConcurrencyError(aggregate_id, expected, current))
                continue
            request.base_version = current
            if (refused := trial.refusal(request)) is not None:
                request.set_exception(refused)
        admitted = trial.admitted()
        if admitted.requests:
            self._transact(admitted)
        if not deferred:
            return
        if self.state is WriterState.SERVING:
            self._process(deferred)  # checked again against what the topic now holds
        else:
            for request in deferred:
                request.set_exception(self._refusal())

    # -- 2. produce and commit --------------------------------------------------------
    def _transact(self, batch: Admitted) -> None:
        producer = self.producer
        assert producer is not None  # serving implies a producer
        first, last = DeliveryMark(), DeliveryMark()
        accepted = batch.requests
        # Failures are recovered after the except block: the recovery calls the client
        # again, and a KafkaException raised while one is handled would keep this frame
        # (and the producer) alive for good (see eventsource.kafka.unchained).
        failure: Exception | None = None
        try:
            producer.begin_transaction()
            self._produce(producer, batch, first, last)
            if self.fault_hook is not None:
                producer.flush(self.op_timeout)  # let the records reach the log first
                self.fault("before_commit")
        except Exception as exc:
            failure = exc
        if failure is not None:
            with gc_resumed():  # recovery waits for the broker: the collector may run
                self.recovery.fail_uncommitted(accepted, failure)
            return
        try:
            self.fault("commit")
            # commit_transaction flushes first; a failed record makes it raise.
            producer.commit_transaction(self.op_timeout)
            self.fault("after_commit")
        except Exception as exc:
            failure = exc
        if failure is not None:
            with gc_resumed():
                self.recovery.commit_failed(accepted, failure)
            return
        self._settle(producer, batch, first, last)

    def _produce(
        self, producer: Producer, batch: Admitted, first: DeliveryMark, last: DeliveryMark
    ) -> None:
        # Delivery reports only for the batch's first and last record: each Python callback
        # costs a GIL round trip, and offsets in between follow (see _settle). Headers come
        # from per-event-type templates; the clock is read once per transaction.
        total = batch.events
        last_mark = last if total > 1 else first.both(last)
        now = utc_stamp(datetime.now(UTC))
        templates = self._templates
        produce, topic, partition = producer.produce, self.topic, self.partition
        produced = 0
        for request in batch.requests:
            key = request.aggregate_id.encode()
            stamp = now if request.time is None else utc_stamp(request.time)
            correlation_id, causation_id = request.correlation_id, request.causation_id
            version = request.base_version
            for event, payload, event_id in zip(
                request.events, request.payloads, request.event_ids, strict=True
            ):
                version += 1
                template = templates.get(type(event))
                if template is None:
                    template = templates[type(event)] = HeaderTemplate(
                        source=self.source,
                        event_type=event.event_type(),
                        aggregate_type=request.aggregate_type,
                    )
                headers: _Headers = template.headers(  # type: ignore[assignment]
                    event_id.encode(), key, stamp, version, correlation_id, causation_id
                )
                produced += 1
                if produced == 1 or produced == total:
                    produce(
                        topic,
                        payload,
                        key,
                        partition=partition,
                        headers=headers,
                        on_delivery=first if produced == 1 and total > 1 else last_mark,
                    )
                else:
                    produce(topic, payload, key, partition=partition, headers=headers)

    # -- 3. settle ----------------------------------------------------------------------
    def _settle(
        self, producer: Producer, batch: Admitted, first: DeliveryMark, last: DeliveryMark
    ) -> None:
        """Give every event its offset, then complete the committed batch.

        One producer alone writes this partition inside one transaction, so the batch's
        records are contiguous: first.offset .. last.offset. Should that ever not hold, the
        offsets are established by re-reading the tail, matched by event id.
        """
        for attempt in range(100):
            producer.poll(0 if attempt == 0 else 0.05)  # serve the two delivery reports
            if first.offset is not None and last.offset is not None:
                break
        total = batch.events
        if first.offset is None or last.offset is None or last.offset - first.offset + 1 != total:
            with gc_resumed():
                self.recovery.resolve_uncertain(
                    batch.requests,
                    RuntimeError(
                        f"committed batch of {total} events has delivery offsets "
                        f"{first.offset}..{last.offset}: positions established by re-reading"
                    ),
                )
            return
        self.complete(batch, first.offset)

    # -- 4. complete --------------------------------------------------------------------
    def complete(self, batch: Admitted, offset: int) -> None:
        """The batch is committed from ``offset`` on: install its states, answer callers."""
        self.index.install(batch.states)
        topic, partition = self.topic, self.partition
        outcomes: list[tuple[AppendFuture, AppendResult]] = []
        for request in batch.requests:
            count = len(request.events)
            if count == 1:
                positions: tuple[Position, ...] = (new_position(topic, partition, offset),)
            else:
                positions = tuple(
                    [new_position(topic, partition, o) for o in range(offset, offset + count)]
                )
            offset += count
            result = new_result(request.aggregate_id, request.base_version + count, positions)
            outcomes.append((request, result))
        self.end_offset = max(self.end_offset, offset)
        resolve_all(self._cond, outcomes)
