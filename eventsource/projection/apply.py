"""Applying one record carefully: decode -> handler -> retry -> classify.

The one routine the batch path's careful mode and ``dlq replay`` both use, so that a record
gets the same treatment whichever of them applies it:

1. Headers are read; a record whose ``ce_type`` the projection neither handles nor may
   decode to a handled type (an alias or an upcaster's ``to_type``) is *ignored* unread.
2. The failure hook may *divert* it (its aggregate is parked).
3. The payload is decoded; the handler is chosen by the **decoded** event's type (an
   upcaster may have changed it); none: *ignored*.
4. The handler runs in a savepoint, ``1 + projection.retries`` times at most, sleeping
   ``retry_backoff_s * attempt`` in between.
5. Classification of an error: a database error that is not the record's fault (connection
   lost, database locked, missing table: see :mod:`eventsource.projection.dberrors`) is
   raised to the caller, who retries the whole batch or stops; a
   :class:`~eventsource.errors.DecodeError` (also one a handler raises reading a malformed
   header) fails at stage ``decode`` without retry; an unknown writer schema at
   ``schema``; anything else, a database error that the record alone triggers included
   (constraint, malformed JSON, integer overflow), at ``handler`` once retries are spent.
   The hook then answers: STOP raises :class:`RecordStopped`; SKIP dead-letters it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from eventsource.codec import EventCodec
from eventsource.codec.envelope import RecordMetadata, read_headers
from eventsource.domain import Event
from eventsource.errors import DecodeError, UnknownSchemaError
from eventsource.projection.context import Context
from eventsource.projection.dberrors import is_permanent_db_error, is_transient_db_error
from eventsource.projection.definition import Handler, Projection
from eventsource.projection.types import Failure, FailureAction, FailureHook, RawRecord, Stage

__all__ = ["Applied", "RecordApplier", "RecordStopped", "handler_for"]


class Applied(enum.Enum):
    """What became of one record."""

    APPLIED = "applied"
    IGNORED = "ignored"  #: the projection has no handler for its (decoded) type
    DIVERTED = "diverted"  #: the hook took it (a parked aggregate's record)
    DEAD_LETTERED = "dead_lettered"  #: it failed and the hook answered SKIP


class RecordStopped(Exception):
    """The hook answered STOP for this record's failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure.error))
        self.failure = failure


def handler_for(projection: Projection, event: Event) -> Handler | None:
    """The projection's handler for the decoded ``event`` (by its type, never by ce_type)."""
    entry = projection.handlers_by_class.get(type(event)) or projection.handlers_by_type.get(
        event.event_type()
    )
    return None if entry is None else entry[1]


class RecordApplier:
    """Applies single records of one projection through its failure hook."""

    def __init__(
        self,
        projection: Projection,
        codec: EventCodec,
        hook: FailureHook,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.projection = projection
        self.codec = codec
        self.hook = hook
        self.sleep = sleep
        self._renames: dict[str, bool] = {}
        #: the failure of the last record that came out DEAD_LETTERED
        self.last_failure: Failure | None = None

    def may_handle(self, event_type: str) -> bool:
        """Whether a record whose ``ce_type`` is ``event_type`` may reach a handler."""
        if event_type in self.projection.handlers_by_type:
            return True
        renames = self._renames.get(event_type)
        if renames is None:
            renames = self._renames[event_type] = self.codec.renames(event_type)
        return renames

    def apply(
        self, conn: Connection, ctx: Context, record: RawRecord, *, intercept: bool = True
    ) -> Applied:
        """Apply ``record`` in ``conn``'s transaction (see the module docstring).

        Raises :class:`RecordStopped` when the hook answers STOP, and a database error that
        is not the record's fault as it is.
        """
        p = self.projection
        meta: RecordMetadata | None = None
        try:
            meta = read_headers(record.headers)
            if not self.may_handle(meta.event_type):
                return Applied.IGNORED
            if intercept and self.hook.intercept(record, meta, conn):
                return Applied.DIVERTED
            event = self.codec.decode_at(
                record.value, record.topic, record.partition, record.offset
            )
        except DecodeError as exc:
            stage = Stage.SCHEMA if isinstance(exc, UnknownSchemaError) else Stage.DECODE
            return self._fail(conn, Failure(p, stage, record, exc, 1, meta))
        handler = handler_for(p, event)
        if handler is None:
            return Applied.IGNORED
        ctx.at(meta, record.topic, record.partition, record.offset)
        attempts = 0
        while True:
            attempts += 1
            try:
                with conn.begin_nested():
                    handler(p, event, ctx)
                    ctx.flush()
            except Exception as exc:
                ctx.discard()
                if is_transient_db_error(exc) or is_permanent_db_error(exc):
                    raise  # the database's fault, not the record's: the caller decides
                if isinstance(exc, DecodeError):  # a header the handler read is malformed
                    return self._fail(conn, Failure(p, Stage.DECODE, record, exc, 1, meta))
                if attempts <= p.retries:
                    self.sleep(p.retry_backoff_s * attempts)
                    continue
                failure = Failure(p, Stage.HANDLER, record, exc, attempts, meta, event)
                return self._fail(conn, failure)
            return Applied.APPLIED

    def _fail(self, conn: Connection, failure: Failure) -> Applied:
        if self.hook.on_failure(failure, conn) is FailureAction.STOP:
            raise RecordStopped(failure)
        self.last_failure = failure
        return Applied.DEAD_LETTERED


def raw_record(message: Any) -> RawRecord:
    """A confluent-kafka ``Message`` as a :class:`RawRecord`."""
    return RawRecord(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=tuple(message.headers() or ()),
        timestamp_ms=message.timestamp()[1] if message.timestamp()[0] else None,
    )
