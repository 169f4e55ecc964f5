"""The partition writer: the single writer of one partition of an events topic.

One thread per partition owns a transactional producer whose ``transactional.id`` is
``<application_id>.<topic>.<partition>``; its ``init_transactions()`` fences every older
writer of the partition. Appends queue up; the thread takes everything queued (up to
``max_batch_events``) into one transaction — a group commit — after checking each request's
expected version against the index plus the versions earlier requests of the same batch
will create. Mismatches fail with ``ConcurrencyError`` and write nothing; a request that
lost only to an earlier request of the same batch learns its answer after that batch's
outcome, so the version its error names really exists.

Failure rules (``docs/concepts/write-path.md``):

* fenced (``_FENCED``, ``PRODUCER_FENCED``, ``INVALID_PRODUCER_EPOCH``): the batch and every
  later append fail with ``FencedError``;
* an error before the commit was requested: abort, ``StoreUnavailableError`` (nothing
  written);
* a commit whose outcome is unknown: a new producer's ``init_transactions()`` resolves the
  old transaction, the partition tail is re-read, and each caller learns the truth.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from confluent_kafka import KafkaError, KafkaException, Producer

from eventsource.codec import EventCodec
from eventsource.codec.envelope import HeaderTemplate, utc_stamp
from eventsource.domain import Aggregate, Event, Position
from eventsource.errors import (
    ConcurrencyError,
    FencedError,
    NotEnoughReplicasError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import writer_transactional_id
from eventsource.lifecycle import ServiceThread
from eventsource.store.kafka.admission import TrialFold
from eventsource.store.kafka.catchup import TailRead, read_partition
from eventsource.store.kafka.index import VersionIndex
from eventsource.store.kafka.options import WriterOptions, WriterState
from eventsource.store.kafka.producer import (
    DeliveryMark,
    describe,
    dispose,
    is_fenced,
    kafka_error,
    new_producer,
)
from eventsource.store.kafka.recovery import CommitRecovery
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.port import ANY, AppendResult

__all__ = ["FaultHook", "PartitionWriter"]

log = logging.getLogger(__name__)

FaultHook = Callable[[str], None]
"""Test hook called at ``"before_init"`` (before every ``init_transactions``),
``"before_commit"``, ``"commit"`` (instead of committing, if it raises) and
``"after_commit"``; an exception it raises is handled like a Kafka failure."""

_DOWN = (WriterState.FENCED, WriterState.FAILED)
_TRANSIENT_INIT = frozenset(
    {
        KafkaError._TIMED_OUT,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.CONCURRENT_TRANSACTIONS,
    }
)
_PASSING = (WriterState.STARTING, WriterState.RECOVERING)


class PartitionWriter(ServiceThread):
    """Single writer of ``topic[partition]``: catch-up, then group-committed appends.

    ``options`` must be resolved (:meth:`WriterOptions.resolved`); the stores do that.
    """

    record_limit: int | None = None
    """The largest record batch the events topic takes (set by the store before start)."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        partition: int,
        aggregate_cls: type[Aggregate],
        codec: EventCodec,
        options: WriterOptions,
    ) -> None:
        super().__init__(f"eventsource-writer-{topic}-{partition}")
        self.settings = settings
        self.topic = topic
        self.partition = partition
        self.codec = codec
        self.options = options
        self.source = options.ce_source
        self.max_batch_events = options.max_batch_events
        self.transactional_id = writer_transactional_id(settings.application_id, topic, partition)
        self.index: VersionIndex[Aggregate] = VersionIndex(aggregate_cls)
        self.fault_hook: FaultHook | None = None
        self._templates: dict[type[Event], HeaderTemplate] = {}
        self.op_timeout = settings.delivery_timeout_ms / 1000
        self.stall_timeout = max(self.op_timeout, settings.catchup_stall_timeout_s)
        """A catch-up or tail re-read that receives nothing for this long fails."""
        self.state = WriterState.STARTING
        self.end_offset = 0
        self.shortage: str | None = None  # why the cluster cannot take appends, if known
        self.producer: Producer | None = None
        self._queue: collections.deque[AppendRequest] = collections.deque()
        self._mutex = threading.RLock()
        self._cond = threading.Condition(self._mutex)
        self._idle = False  # the thread waits for appends (under the lock): submit wakes it
        self.recovery = CommitRecovery(self)
        self.served = False
        """Whether the writer reached ``SERVING`` (it may have stopped since)."""
        self.on_down: Callable[[PartitionWriter], None] | None = None
        """Called on the writer thread when it stops fenced or failed without being closed
        (the grouped store retries the partition or gives it up)."""

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]"

    # -- lifecycle (ServiceThread: close() finishes what is queued, then stops) --------
    def start(self) -> None:
        """Fence older writers and catch up on the writer thread (see ``wait_ready``)."""
        self.start_thread()

    @property
    def closing(self) -> bool:
        """Set by ``close()``: the writer takes nothing new and never fences again."""
        return self.stopping

    @property
    def stopped(self) -> bool:
        """Whether the writer thread has ended (or never started)."""
        return not self.alive

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def submit(self, request: AppendRequest) -> None:
        with self._mutex:  # the condition's lock, without Condition's Python-level wrappers
            if self.state is not WriterState.SERVING or self.closing:
                request.future.set_exception(self._refusal())
                return
            self._queue.append(request)
            if self._idle:  # while a transaction runs nobody waits: skip the notify
                self._cond.notify()

    def _refusal(self) -> Exception:
        if self.state is WriterState.FENCED:
            return FencedError(
                f"the writer of {self.where} was fenced by a newer writer with transactional.id "
                f"{self.transactional_id!r}: this process no longer owns the partition; "
                "send commands to the new owner or restart the store"
            )
        if self.state is WriterState.FAILED:
            return StoreUnavailableError(
                f"the writer of {self.where} failed ({self.start_error}); restart the store",
                retriable=False,
            )
        if self.closing or self.state is WriterState.CLOSED:
            return StoreUnavailableError(f"the writer of {self.where} is closed", retriable=False)
        if self.shortage is not None:
            return NotEnoughReplicasError(f"nothing was written: {self.shortage}")
        return StoreUnavailableError(
            f"the writer of {self.where} is {self.state} (reconnecting to the broker at "
            f"{self.settings.bootstrap_servers}); nothing was written: retry shortly"
        )

    def _prepare(self) -> None:
        try:
            self.producer = self._fence()
            tail = read_partition(
                self.settings,
                self.topic,
                self.partition,
                self.codec,
                self.index,
                self.restore(),
                timeout=self.stall_timeout,
            )
            self.end_offset = tail.end
            self.caught_up(tail)
        except BaseException:  # start_error; the thread ends
            self.set_state(WriterState.CLOSED if self.closing else WriterState.FAILED)
            raise
        self.served = True
        self.set_state(WriterState.SERVING)

    def _fence(self) -> Producer:
        """A producer that fenced older writers; transient coordinator errors are retried."""
        deadline = time.monotonic() + max(2 * self.op_timeout, self.stall_timeout)
        pause = 0.2
        while True:
            # A writer released before it got here must not fence the partition's new owner.
            self.fault("before_init")
            if self.closing:
                raise StoreUnavailableError(
                    f"the writer of {self.where} was closed before it fenced older writers",
                    retriable=False,
                )
            try:
                return self.new_producer(self.op_timeout * 2)
            except KafkaException as exc:
                error = kafka_error(exc)
                transient = (
                    error is not None
                    and not is_fenced(exc)
                    and (error.retriable() or error.code() in _TRANSIENT_INIT)
                )
                if not transient or time.monotonic() + pause > deadline:
                    raise
                log.warning("fencing on %s failed (%s): retrying", self.where, describe(exc))
            self._stopping.wait(pause)
            pause = min(pause * 2, 2.0)

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                self._process(batch)
            except Exception as exc:  # a bug, or an @apply handler that raised
                self._crash(batch, exc)
                return

    def _cleanup(self) -> None:
        if self.state not in _DOWN:
            self.set_state(WriterState.CLOSED)
        self.fail_queued()
        self.close_producer()
        down = self.on_down
        if down is not None and not self.closing and self.state in _DOWN:
            down(self)

    def restore(self) -> TailRead:
        """Where catch-up starts (after fencing); a subclass may restore snapshots first."""
        return TailRead(start=0)

    def caught_up(self, tail: TailRead) -> None:
        """Called once catch-up reached the end, before serving (a hook for subclasses)."""

    def _crash(self, batch: list[AppendRequest], exc: Exception) -> None:
        """Stop serving: after an unexpected error the index may not match the topic."""
        log.exception("the writer of %s stopped after an unexpected error", self.where)
        self.start_error = exc
        self.set_state(WriterState.FAILED)
        for request in batch:
            if not request.future.done():
                request.future.set_exception(
                    UncertainCommitError(
                        f"the writer of {self.where} stopped after an unexpected error while "
                        f"appending to {request.aggregate_id!r} ({type(exc).__name__}: {exc}); "
                        "restart the store and reload the aggregate before retrying"
                    )
                )

    def check_serving_reads(self) -> None:
        """Reads are served from the index only while the writer serves.

        While it recovers (a commit's outcome being established) or starts, a read waits
        up to ``options.read_wait`` seconds for it to serve, then fails with the
        retriable ``StoreUnavailableError``: it never sees the index before an uncertain
        batch, or half of a multi-event append being re-read.
        """
        if self.state is WriterState.SERVING:  # the common case: no lock
            return
        state = self._settled_state(self.options.read_wait)
        if state is WriterState.SERVING:
            return
        if state in _PASSING:
            raise StoreUnavailableError(
                f"the writer of {self.where} is {state} (establishing the outcome of a "
                f"commit, or catching up) and did not serve within {self.options.read_wait:g}s;"
                " nothing was read: retry shortly"
            )
        raise self._refusal()

    def _settled_state(self, timeout: float) -> WriterState:
        """The state once not starting or recovering, or after ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self.state not in _PASSING or self.closing, timeout)
            return self.state

    def set_state(self, state: WriterState) -> None:
        with self._cond:
            self.state = state
            if state is WriterState.SERVING:
                self.shortage = None
            self._cond.notify_all()

    def _take_batch(self) -> list[AppendRequest] | None:
        with self._cond:
            while not self._queue:
                if self.closing or self.state is WriterState.FENCED:
                    return None
                self._idle = True
                try:
                    self._cond.wait(0.5)
                finally:
                    self._idle = False
            batch: list[AppendRequest] = []
            events = 0
            while self._queue and (
                not batch or events + len(self._queue[0].events) <= self.max_batch_events
            ):
                request = self._queue.popleft()
                batch.append(request)
                events += len(request.events)
        # A caller that gave up while its request was queued cancelled it: skip it.
        return [r for r in batch if r.future.set_running_or_notify_cancel()]

    def fail_queued(self) -> None:
        """Fail every queued request (never produced, so nothing was written)."""
        with self._cond:
            queued, self._queue = self._queue, collections.deque()
        for request in queued:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(self._refusal())

    # -- one group commit -----------------------------------------------------------
    def _process(self, batch: list[AppendRequest]) -> None:
        accepted: list[AppendRequest] = []
        # A request that loses only to an earlier request of this same batch waits for the
        # batch's outcome: if that transaction does not commit, the loser's expected
        # version may be right after all, and a ConcurrencyError would name a version that
        # never existed.
        deferred: list[AppendRequest] = []
        committed = self.index.versions([r.aggregate_id for r in batch])
        tentative = dict(committed)
        trial = TrialFold(self.index, self.where)  # an @apply that raises fails alone
        for request in batch:
            current = tentative[request.aggregate_id]
            expected = request.expected_version
            if expected != ANY and expected != current:
                if current != committed[request.aggregate_id]:
                    deferred.append(request)
                else:
                    request.future.set_exception(
                        ConcurrencyError(request.aggregate_id, expected, current)
                    )
                continue
            if (refused := trial.refusal(request)) is not None:
                request.future.set_exception(refused)
                continue
            request.base_version = current
            tentative[request.aggregate_id] = current + len(request.events)
            accepted.append(request)
        if accepted:
            self._transact(accepted)
        if not deferred:
            return
        if self.state is WriterState.SERVING:
            self._process(deferred)  # checked again against what the topic now holds
        else:
            for request in deferred:
                request.future.set_exception(self._refusal())

    def _transact(self, accepted: list[AppendRequest]) -> None:
        producer = self.producer
        assert producer is not None  # serving implies a producer
        first, last = DeliveryMark(), DeliveryMark()
        try:
            producer.begin_transaction()
            self._produce(producer, accepted, first, last)
            if self.fault_hook is not None:
                producer.flush(self.op_timeout)  # let the records reach the log first
                self.fault("before_commit")
        except Exception as exc:
            self.recovery.fail_uncommitted(accepted, exc)
            return
        try:
            self.fault("commit")
            # commit_transaction flushes first; a failed record makes it raise.
            producer.commit_transaction(self.op_timeout)
            self.fault("after_commit")
        except Exception as exc:
            self.recovery.commit_failed(accepted, exc)
            return
        self._settle(producer, accepted, first, last)

    def _produce(
        self,
        producer: Producer,
        accepted: list[AppendRequest],
        first: DeliveryMark,
        last: DeliveryMark,
    ) -> None:
        # Delivery reports only for the batch's first and last record: each Python callback
        # costs a GIL round trip, and offsets in between follow (see _settle). Headers come
        # from per-event-type templates; the clock is read once per transaction.
        total = sum(len(r.events) for r in accepted)
        last_mark = last if total > 1 else first.both(last)
        now = utc_stamp(datetime.now(UTC))
        templates = self._templates
        produce, topic, partition = producer.produce, self.topic, self.partition
        produced = 0
        for request in accepted:
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
                headers = cast(
                    "list[tuple[str, str | bytes | None]]",  # list is invariant; bytes it is
                    template.headers(
                        event_id.encode(), key, stamp, version, correlation_id, causation_id
                    ),
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

    def _settle(
        self,
        producer: Producer,
        accepted: list[AppendRequest],
        first: DeliveryMark,
        last: DeliveryMark,
    ) -> None:
        """Give every event its offset, then complete the committed batch.

        One producer alone writes this partition inside one transaction, so the batch's
        records are contiguous: first.offset .. last.offset. Should that ever not hold, the
        offsets are established by re-reading the tail, matched by event id.
        """
        for _ in range(100):
            producer.poll(0 if _ == 0 else 0.05)  # serve the two delivery reports
            if first.offset is not None and last.offset is not None:
                break
        total = sum(len(r.events) for r in accepted)
        if first.offset is None or last.offset is None or last.offset - first.offset + 1 != total:
            self.recovery.resolve_uncertain(
                accepted,
                RuntimeError(
                    f"committed batch of {total} events has delivery offsets "
                    f"{first.offset}..{last.offset}: positions established by re-reading"
                ),
            )
            return
        offset = first.offset
        for request in accepted:
            request.offsets = list(range(offset, offset + len(request.events)))
            offset += len(request.events)
        self.complete(accepted)

    def complete(self, accepted: list[AppendRequest]) -> None:
        """The batch is committed: fold it into the index, then answer the callers."""
        topic, partition = self.topic, self.partition
        versions = self.index.apply_batch([(r.aggregate_id, r.events) for r in accepted])
        self.end_offset = max(self.end_offset, accepted[-1].offsets[-1] + 1)
        for request, version in zip(accepted, versions, strict=True):
            positions = tuple([Position(topic, partition, o) for o in request.offsets])
            request.future.set_result(AppendResult(request.aggregate_id, version, positions))

    def fault(self, stage: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage)

    # -- producers ------------------------------------------------------------------
    def new_producer(self, timeout: float) -> Producer:
        return new_producer(
            self.settings, self.transactional_id, timeout, batch_bytes=self.record_limit
        )

    def close_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            dispose(producer)
