"""What a partition writer does when a transaction fails: abort, fence, or find the truth.

The uncertain-commit rule: a ``commit_transaction`` that times out or fails with a
retriable or unknown error may or may not have committed. Retrying would risk a duplicate,
so the producer is dropped; a new one's ``init_transactions()`` makes the coordinator finish
the old transaction (commit or abort) and fences the old producer; then the partition tail
is re-read ``read_committed`` from the last known end and every caller is told the truth,
matched by event id (``ce_id``): success with the positions found, or
``StoreUnavailableError`` (nothing written). If that cannot be established in time the
caller gets ``UncertainCommitError`` and the writer keeps recovering on its own.

Every step here calls the Kafka client again, so none runs inside an ``except`` block: a
failure is kept, the block is left, then it is handled (a ``KafkaException`` raised while
another is handled would keep that one, its frames and the old producer alive for good;
see :mod:`eventsource.kafka.unchained`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from confluent_kafka import KafkaError, Producer

from eventsource.domain import Position
from eventsource.errors import (
    AuthorizationError,
    EventSourceError,
    FencedError,
    NotEnoughReplicasError,
    StoreError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.access import AUTHORIZATION_CODES, denied
from eventsource.kafka.replicas import replica_shortage
from eventsource.store.kafka.catchup import TailRead, read_partition
from eventsource.store.kafka.options import WriterState
from eventsource.store.kafka.producer import describe, is_fenced, kafka_error
from eventsource.store.kafka.request import AppendRequest
from eventsource.store.port import AppendResult

if TYPE_CHECKING:
    from eventsource.codec import EventCodec
    from eventsource.domain import Aggregate
    from eventsource.kafka.config import KafkaSettings
    from eventsource.store.kafka.index import VersionIndex

__all__ = ["CommitRecovery", "RecoveringWriter"]

log = logging.getLogger(__name__)

DIAGNOSE_TIMEOUT_S = 5.0
"""Bound of the replica-shortage diagnosis asked after a failed commit: it only improves the
error message, so it must not delay the error much."""

_FLUSH_FAILED = "Failed to flush all outstanding messages"
"""How librdkafka's ``commit_transaction`` says records were not all acknowledged."""

_SHORTAGE_SYMPTOMS = frozenset(
    {
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


def _fail(request: AppendRequest, error: EventSourceError, cause: BaseException | None) -> None:
    error.__cause__ = cause
    request.set_exception(error)


class RecoveringWriter(Protocol):
    """What :class:`CommitRecovery` needs of the partition writer it recovers."""

    settings: KafkaSettings
    topic: str
    partition: int
    codec: EventCodec
    index: VersionIndex[Aggregate]
    op_timeout: float
    stall_timeout: float
    end_offset: int
    transactional_id: str
    producer: Producer | None
    shortage: str | None

    @property
    def closing(self) -> bool: ...

    @property
    def where(self) -> str: ...

    def new_producer(self, timeout: float) -> Producer: ...

    def fail_queued(self) -> None: ...

    def fault(self, stage: str) -> None: ...

    def set_state(self, state: WriterState) -> None: ...

    def close_producer(self) -> None: ...


class CommitRecovery:
    """Failure handling of one :class:`~eventsource.store.kafka.writer.PartitionWriter`.

    Runs on the writer's thread, between two group commits.
    """

    def __init__(self, writer: RecoveringWriter) -> None:
        self.writer = writer

    # -- failures before the commit was requested: nothing can have been written -----
    def fail_uncommitted(self, accepted: list[AppendRequest], exc: BaseException) -> None:
        if is_fenced(exc):
            self.become_fenced(accepted, exc, during_commit=False)
            return
        shortage = self.diagnose(exc)
        for request in accepted:
            refused = self.refused(request, exc)
            _fail(
                request,
                refused
                if refused is not None
                else NotEnoughReplicasError(
                    f"append to {request.aggregate_id!r} failed, nothing was written: {shortage}"
                )
                if shortage
                else StoreUnavailableError(
                    f"append to {request.aggregate_id!r} on {self.writer.where} failed before its "
                    f"transaction was committed ({describe(exc)}); nothing was written: retry"
                ),
                exc,
            )
        producer = self.writer.producer
        assert producer is not None
        abort_exc: Exception | None = None
        try:
            producer.abort_transaction(self.writer.op_timeout)
        except Exception as exc:
            abort_exc = exc  # handled below, outside the except block (module docstring)
        if abort_exc is None:
            return
        if is_fenced(abort_exc):
            self.become_fenced([], abort_exc, during_commit=False)
            return
        log.warning(
            "abort on %s failed (%s): replacing the producer",
            self.writer.where,
            describe(abort_exc),
        )
        self.resolve_uncertain([], abort_exc)

    def commit_failed(self, accepted: list[AppendRequest], exc: BaseException) -> None:
        if is_fenced(exc):
            self.become_fenced(accepted, exc, during_commit=True)
            return
        error = kafka_error(exc)
        if error is not None and error.txn_requires_abort() and not error.fatal():
            self.fail_uncommitted(accepted, exc)  # the broker refused the commit
            return
        if error is not None and error.str().startswith(_FLUSH_FAILED):
            # commit_transaction() sends EndTxn only after every record was acknowledged:
            # a flush that timed out means the transaction was not committed (a record was
            # refused, e.g. NOT_ENOUGH_REPLICAS, or its leader is gone). Abort it.
            self.fail_uncommitted(accepted, exc)
            return
        log.warning("commit on %s is uncertain (%s): resolving", self.writer.where, describe(exc))
        self.resolve_uncertain(accepted, exc)

    def become_fenced(
        self, accepted: list[AppendRequest], exc: BaseException, *, during_commit: bool
    ) -> None:
        """Stop serving; tell each caller the truth about its append.

        Fenced before the commit was requested: nothing was written (``FencedError``).
        Fenced *during* the commit: the commit may have happened before the takeover; the
        newer writer's ``init_transactions`` has finished our transaction either way, so
        the partition tail says which (matched by event id); if it cannot be read, the
        caller gets ``UncertainCommitError``, never "nothing written".
        """
        self.writer.set_state(WriterState.FENCED)
        self.writer.fail_queued()
        self.writer.close_producer()
        if during_commit:
            end = self.writer.end_offset
            self.settle_fenced(accepted, exc, TailRead(start=end, end=end))
            return
        for request in accepted:
            _fail(request, self._fenced_error(request, "before appending to"), exc)

    def _fenced_error(self, request: AppendRequest, when: str) -> FencedError:
        return FencedError(
            f"the writer of {self.writer.where} was fenced by a newer writer with "
            f"transactional.id {self.writer.transactional_id!r} {when} "
            f"{request.aggregate_id!r}; nothing was written: send the command to the new "
            "owner"
        )

    def settle_fenced(
        self, pending: list[AppendRequest], exc: BaseException, progress: TailRead
    ) -> None:
        """After a fence during a commit: find each pending append's events, or say uncertain."""
        if not pending:
            return
        w = self.writer
        try:
            read_partition(
                w.settings,
                w.topic,
                w.partition,
                w.codec,
                w.index,
                progress,
                timeout=w.stall_timeout,
                collect_event_ids=True,
            )
        except StoreUnavailableError as read_exc:
            for request in pending:
                _fail(
                    request,
                    UncertainCommitError(
                        f"the writer of {w.where} was fenced by a newer writer while "
                        f"committing {request.aggregate_id!r}, and the partition could not be "
                        f"re-read to tell whether the commit happened ({read_exc}): reload the "
                        "aggregate from the new owner (its version tells) before retrying"
                    ),
                    exc,
                )
            return
        self._answer(
            pending,
            progress,
            exc,
            lambda request: self._fenced_error(request, "while committing"),
        )

    # -- uncertain outcome: replace the producer, re-read the tail, tell the truth ----
    def resolve_uncertain(self, accepted: list[AppendRequest], exc: BaseException) -> None:
        self.writer.set_state(WriterState.RECOVERING)
        self.writer.fail_queued()
        self.writer.close_producer()
        deadline = time.monotonic() + 2 * self.writer.op_timeout
        progress = TailRead(start=self.writer.end_offset, end=self.writer.end_offset)
        pending = list(accepted)
        while True:
            outcome = self._reconnect(deadline if pending else None)
            if outcome == "ready":
                try:
                    read_partition(
                        self.writer.settings,
                        self.writer.topic,
                        self.writer.partition,
                        self.writer.codec,
                        self.writer.index,
                        progress,
                        timeout=max(
                            self.writer.op_timeout, self.writer.settings.catchup_stall_timeout_s
                        ),
                        collect_event_ids=True,
                    )
                except StoreUnavailableError as read_exc:
                    log.warning("re-reading %s failed (%s)", self.writer.where, read_exc)
                    self.writer.end_offset = progress.end
                    self.writer.close_producer()
                    continue
                self.writer.end_offset = progress.end
                self._answer(pending, progress, exc)
                self.writer.set_state(WriterState.SERVING)
                return
            if outcome == "timeout":
                self._tell_uncertain(pending, exc)
                pending = []
                continue
            if outcome == "fenced":  # the newer writer's init has finished our transaction
                self.settle_fenced(pending, exc, progress)
                return
            self._tell_uncertain(pending, exc)  # closing
            return

    def refused(self, request: AppendRequest, exc: BaseException) -> AuthorizationError | None:
        """The missing ACL, when the broker refused the transaction for want of one
        (an ACL revoked while the store runs; a missing one is told at ``start()``)."""
        error = kafka_error(exc)
        if error is None or error.code() not in AUTHORIZATION_CODES:
            return None
        writer = self.writer
        if error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            kind, name = "transactional id", writer.transactional_id
        else:
            kind, name = "topic", writer.topic
        return denied(
            writer.settings,
            kind,
            name,
            "WRITE",
            f"append to {request.aggregate_id!r} on {writer.where} was refused, nothing was "
            "written",
        )

    def diagnose(self, exc: BaseException) -> str | None:
        """Why the cluster cannot take appends right now, when replicas are short.

        Asked only for errors a replica shortage causes (a refused or timed-out record, a
        transaction coordinator that cannot write its log), and bounded by
        :data:`DIAGNOSE_TIMEOUT_S`.
        """
        error = kafka_error(exc)
        if error is None or error.code() not in _SHORTAGE_SYMPTOMS:
            return None
        writer = self.writer
        shortage = replica_shortage(
            writer.settings, writer.topic, writer.partition, timeout=DIAGNOSE_TIMEOUT_S
        )
        writer.shortage = shortage
        return shortage

    def _reconnect(self, deadline: float | None) -> str:
        pause = 0.2
        while True:
            if self.writer.closing:  # released: never fence the partition's new owner
                return "closing"
            self.writer.fail_queued()
            remaining = self.writer.op_timeout if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            try:
                self.writer.fault("before_init")
                if self.writer.closing:
                    return "closing"
                self.writer.producer = self.writer.new_producer(
                    min(self.writer.op_timeout, remaining)
                )
                return "ready"
            except Exception as exc:
                failure = exc  # handled below, outside the except block (module docstring)
            if is_fenced(failure):
                self.become_fenced([], failure, during_commit=False)
                return "fenced"
            log.warning(
                "reconnecting %s failed (%s): retrying", self.writer.where, describe(failure)
            )
            self.diagnose(failure)  # refusals meanwhile say why, when replicas are short
            threading.Event().wait(pause)
            pause = min(pause * 2, 2.0)

    def _answer(
        self,
        pending: list[AppendRequest],
        tail: TailRead,
        exc: BaseException,
        nothing_written: Callable[[AppendRequest], StoreError] | None = None,
    ) -> None:
        found = tail.offsets_by_event_id
        for request in pending:
            offsets = [found.get(event_id) for event_id in request.event_ids]
            present = [o for o in offsets if o is not None]
            if len(present) == len(offsets):
                positions = tuple(
                    Position(self.writer.topic, self.writer.partition, o) for o in present
                )
                version = request.base_version + len(request.events)
                request.set_result(AppendResult(request.aggregate_id, version, positions))
            elif not present and nothing_written is not None:
                _fail(request, nothing_written(request), exc)
            elif not present:
                _fail(
                    request,
                    StoreUnavailableError(
                        f"the commit of {request.aggregate_id!r} on {self.writer.where} failed "
                        f"({describe(exc)}) and its events are not on the topic after the old "
                        "transaction was resolved: nothing was written; retry"
                    ),
                    exc,
                )
            else:  # a transaction is atomic: this means someone else wrote our event ids
                _fail(
                    request,
                    UncertainCommitError(
                        f"only {len(present)} of {len(offsets)} events of {request.aggregate_id!r} "
                        f"were found on {self.writer.where}: reload the aggregate before retrying"
                    ),
                    exc,
                )

    def _tell_uncertain(self, pending: list[AppendRequest], exc: BaseException) -> None:
        for request in pending:
            _fail(
                request,
                UncertainCommitError(
                    f"the commit of {request.aggregate_id!r} on {self.writer.where} failed "
                    f"({describe(exc)}) and the broker at {self.writer.settings.bootstrap_servers} "
                    "did not answer within "
                    f"{2 * self.writer.op_timeout:.0f}s to tell whether it happened: reload the "
                    "aggregate (its version tells) before retrying"
                ),
                exc,
            )
