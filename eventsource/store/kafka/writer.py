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
from contextlib import AbstractContextManager, nullcontext

from confluent_kafka import KafkaError, KafkaException, Producer

from eventsource.codec import EventCodec
from eventsource.codec.envelope import HeaderTemplate
from eventsource.domain import Aggregate, Event
from eventsource.errors import (
    FencedError,
    NotEnoughReplicasError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.gcpause import gc_paused
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import writer_transactional_id
from eventsource.store.kafka.catchup import TailRead, read_partition
from eventsource.store.kafka.group_commit import FaultHook, GroupCommits
from eventsource.store.kafka.index import VersionIndex
from eventsource.store.kafka.options import WriterOptions, WriterState
from eventsource.store.kafka.producer import (
    describe,
    dispose,
    is_fenced,
    kafka_error,
    new_producer,
)
from eventsource.store.kafka.recovery import CommitRecovery
from eventsource.store.kafka.request import AppendRequest

__all__ = ["FaultHook", "PartitionWriter"]

log = logging.getLogger(__name__)

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


class PartitionWriter(GroupCommits):
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
        self.lock = self._cond
        """Guards the queue, the state, and the futures of this writer's appends."""
        self._idle = False  # the thread waits for appends (under the lock): submit wakes it
        self.recovery = CommitRecovery(self)
        self.served = False
        """Whether the writer reached ``SERVING`` (it may have stopped since)."""
        self.on_down: Callable[[PartitionWriter], None] | None = None
        """Called on the writer thread when it stops fenced or failed without being closed
        (the grouped store retries the partition or gives it up)."""

    # -- lifecycle (ServiceThread: close() finishes what is queued, then stops) --------
    def start(self) -> None:
        """Fence older writers and catch up on the writer thread (see ``wait_ready``)."""
        self.start_thread()

    @property
    def stopped(self) -> bool:
        """Whether the writer thread has ended (or never started)."""
        return not self.alive

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

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
        # The collector is paused while a group commit is in flight: its requests, events
        # and folded states are never traversed nor promoted by the collections their
        # neighbours' allocations set off (eventsource.gcpause bounds the pause).
        pause: Callable[[], AbstractContextManager[None]] = (
            gc_paused if self.options.pause_collector else nullcontext
        )
        while (batch := self._take_batch()) is not None:
            try:
                with pause():
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
            if not request.done():
                request.set_exception(
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

    # -- producers ------------------------------------------------------------------
    def new_producer(self, timeout: float) -> Producer:
        return new_producer(
            self.settings, self.transactional_id, timeout, batch_bytes=self.record_limit
        )

    def close_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            dispose(producer)
