"""Applying one consumed batch: handlers' changes and checkpoints in one DB transaction.

Fast path: the whole batch in one transaction, deferred statements flushed as
``executemany``, checkpoints written, commit. If anything in it fails, the transaction is
rolled back and the batch is applied again on the careful path: one savepoint per record,
so a failing record can be retried, dead-lettered or stopped at without losing its
neighbours. Both paths first read (and on PostgreSQL lock) the stored checkpoints and skip
records below them, so a record is never applied twice even if two processes briefly both
hold its partition during a rebalance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any

from sqlalchemy import Connection, Engine

from eventsource.codec import EventCodec
from eventsource.codec.envelope import read_headers
from eventsource.errors import ProjectionError
from eventsource.gcpause import gc_paused, gc_resumed
from eventsource.projection.apply import Applied, RecordApplier, RecordStopped, raw_record
from eventsource.projection.checkpoints import (
    TopicPartition,
    ensure_checkpoint_rows,
    read_checkpoints,
    write_checkpoints,
)
from eventsource.projection.context import Context
from eventsource.projection.dberrors import is_permanent_db_error, is_transient_db_error
from eventsource.projection.definition import Projection
from eventsource.projection.types import (
    FailureHook,
    RunnerListener,
    Stage,
    StopOnFailure,
    stopped_error,
)

__all__ = ["BatchApplier", "BatchOutcome", "is_permanent_db_error", "is_transient_db_error"]

_topic, _partition = methodcaller("topic"), methodcaller("partition")


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did. ``next_offsets`` are the checkpoints now stored."""

    applied: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    next_offsets: dict[TopicPartition, int] | None = None
    #: (stage, error) of each dead letter, told to the listener once the batch committed
    dead_letters: list[tuple[Stage, BaseException]] = field(default_factory=list)


class BatchApplier:
    """Applies batches of confluent-kafka messages for one projection."""

    def __init__(
        self,
        projection: Projection,
        engine: Engine,
        codec: EventCodec,
        hook: FailureHook,
        listener: RunnerListener,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.projection = projection
        self.engine = engine
        self.codec = codec
        self.hook = hook
        self.listener = listener
        self.sleep = sleep
        self._intercepting = not isinstance(hook, StopOnFailure)
        self._statements: dict[tuple[Any, ...], Any] = {}
        self._record = RecordApplier(projection, codec, hook, sleep)

    def apply(self, messages: Sequence[Any], positions: dict[TopicPartition, int]) -> BatchOutcome:
        """Apply ``messages``; ``positions`` are consumer positions taken after the consume.

        Raises ProjectionStoppedError when the hook answers STOP (everything before the
        poison record is committed first), or the database error when it is transient.
        """
        try:
            return self._run(messages, positions, careful=False)
        except Exception as exc:
            self.hook.after_rollback()
            if is_transient_db_error(exc) or is_permanent_db_error(exc):
                raise  # not the records' fault: the runner retries or stops
        try:
            with gc_resumed():  # record by record, retries sleeping, the hook producing
                return self._run(messages, positions, careful=True)
        except RecordStopped as stop:
            raise stopped_error(stop.failure) from stop.failure.error
        except Exception:
            self.hook.after_rollback()
            raise

    def advance(self, positions: dict[TopicPartition, int]) -> BatchOutcome:
        """Move checkpoints to consumer positions that passed only transaction markers."""
        p = self.projection
        with self.engine.connect() as conn, conn.begin():
            floors = read_checkpoints(conn, p.name, p.version, positions, for_update=True)
            changed = {tp: o for tp, o in positions.items() if tp in floors and o > floors[tp]}
            write_checkpoints(conn, p.name, p.version, changed)
        return BatchOutcome(next_offsets={**floors, **changed})

    def _run(
        self, messages: Sequence[Any], positions: dict[TopicPartition, int], *, careful: bool
    ) -> BatchOutcome:
        p = self.projection
        outcome = BatchOutcome()
        partitions: set[TopicPartition] = set(
            zip(map(_topic, messages), map(_partition, messages), strict=True)
        )
        stop: RecordStopped | None = None
        with self.engine.connect() as conn, conn.begin():
            floors = read_checkpoints(conn, p.name, p.version, partitions, for_update=True)
            if len(floors) < len(partitions):  # callers that did not create the rows first
                ensure_checkpoint_rows(conn, p.name, p.version, partitions - floors.keys())
                floors = read_checkpoints(conn, p.name, p.version, partitions, for_update=True)
            next_offsets = dict(floors)
            ctx = Context(conn, p.tables, self._statements)
            if careful:
                stop = self._careful_loop(conn, ctx, messages, floors, next_offsets, outcome)
            else:
                with gc_paused():
                    self._fast_loop(conn, ctx, messages, floors, next_offsets, outcome)
                    ctx.flush()
            if stop is None:
                ctx.flush()
                for tp, position in positions.items():
                    if tp in next_offsets and position > next_offsets[tp]:
                        next_offsets[tp] = position
            changed = {tp: o for tp, o in next_offsets.items() if o != floors.get(tp)}
            write_checkpoints(conn, p.name, p.version, changed)
            self.hook.before_commit(conn)
        outcome.next_offsets = next_offsets
        for stage, error in outcome.dead_letters:  # committed: count each dead letter once
            self.listener.on_dead_letter(stage, error)
        if stop is not None:
            raise stop
        return outcome

    def _fast_loop(
        self,
        conn: Connection,
        ctx: Context,
        messages: Sequence[Any],
        floors: dict[TopicPartition, int],
        next_offsets: dict[TopicPartition, int],
        outcome: BatchOutcome,
    ) -> None:
        # The hot loop: everything it touches is a local; no per-record try. Same
        # decisions as RecordApplier.apply, without its error handling: any error rolls
        # the batch back and the careful path applies it record by record.
        projection = self.projection
        handlers = projection.handlers_by_type
        by_class = projection.handlers_by_class
        may_handle = self._record.may_handle
        decode = self.codec.decode_at
        intercept = self.hook.intercept if self._intercepting else None
        at = ctx.at
        floor = floors.get
        applied = ignored = duplicates = 0
        # records of one partition come in runs: its floor is looked up, and its next
        # offset stored, once per run (a failure discards next_offsets with the batch)
        run_topic, run_partition, low, end = "", -1, 0, -1
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if partition != run_partition or topic != run_topic:
                if end >= 0:
                    next_offsets[(run_topic, run_partition)] = end
                run_topic, run_partition, end = topic, partition, -1
                low = floor((topic, partition), 0)
            if offset < low:
                duplicates += 1
                continue
            end = offset + 1
            meta = read_headers(message.headers())
            event_type = meta.event_type
            if event_type not in handlers and not may_handle(event_type):
                ignored += 1
                continue
            if intercept is not None and intercept(raw_record(message), meta, conn):
                outcome.dead_letters.append(_parked(projection, message))
                continue
            event = decode(message.value(), topic, partition, offset)
            # dispatch on the decoded type: an upcaster may have changed it (to_type)
            entry = by_class.get(type(event)) or handlers.get(event.event_type())
            if entry is None:
                ignored += 1
                continue
            at(meta, topic, partition, offset)
            entry[1](projection, event, ctx)
            applied += 1
        if end >= 0:
            next_offsets[(run_topic, run_partition)] = end
        outcome.applied += applied
        outcome.ignored += ignored
        outcome.dead_lettered += len(outcome.dead_letters)
        outcome.duplicates += duplicates

    def _careful_loop(
        self,
        conn: Connection,
        ctx: Context,
        messages: Sequence[Any],
        floors: dict[TopicPartition, int],
        next_offsets: dict[TopicPartition, int],
        outcome: BatchOutcome,
    ) -> RecordStopped | None:
        for message in messages:
            tp = (message.topic(), message.partition())
            offset = message.offset()
            if offset < floors.get(tp, 0):
                outcome.duplicates += 1
                continue
            try:
                result = self._record.apply(conn, ctx, raw_record(message))
            except RecordStopped as stop:
                return stop
            if result is Applied.APPLIED:
                outcome.applied += 1
            elif result is Applied.IGNORED:
                outcome.ignored += 1
            elif result is Applied.DIVERTED:
                outcome.dead_lettered += 1
                outcome.dead_letters.append(_parked(self.projection, message))
            elif (failure := self._record.last_failure) is not None:  # DEAD_LETTERED
                outcome.dead_lettered += 1
                outcome.dead_letters.append((failure.stage, failure.error))
            next_offsets[tp] = offset + 1
        return None


def _parked(projection: Projection, message: Any) -> tuple[Stage, BaseException]:
    key = (message.key() or b"").decode("utf-8", "replace")
    return Stage.PARKED, ProjectionError(
        f"{message.topic()}[{message.partition()}]@{message.offset()}: aggregate {key!r} is "
        f"parked in projection {projection.name!r}, so this record went to the dead-letter "
        "topic; `dlq replay` applies it and unparks the aggregate"
    )
