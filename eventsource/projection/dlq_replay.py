"""``dlq replay``: apply dead letters through the projection's handlers again (after a fix).

- Reads ``<projection>.dlq`` from this version's DLQ checkpoint to the end as of the call,
  keeps the records of this projection version, and applies them **in source order**
  (sorted by source topic, partition and offset), so an aggregate's events are applied in
  the order they were written even if the DLQ holds them interleaved.
- Exactly once: every applied source position is marked in ``eventsource_dlq_applied`` in
  the same transaction as the handler's changes; a dead letter written twice, or a replay
  that is run again, applies nothing twice.
- A parked aggregate is unparked in the transaction that applies its latest dead letter
  (``last_offset`` compare-and-delete), so the runner never applies a newer event of it
  before an older one still waiting in the DLQ.
- A record that still fails follows the projection's policy: STOP raises
  ProjectionStoppedError (what was applied before stays applied); SKIP / PARK write it to
  the DLQ again with fresh context headers (PARK also holds back the aggregate's later
  records in this replay), so the next ``dlq replay`` tries again.
- The DLQ checkpoint moves to the end only when the whole replay went through.

Records are held in memory to sort them: a DLQ is for exceptions, not for millions of
records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, insert, select

from eventsource.codec import EventCodec, parse_headers
from eventsource.errors import DecodeError, ProjectionError, UnknownSchemaError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection.context import Context
from eventsource.projection.deadletter import DeadLetterHandler, dead_letter_hook
from eventsource.projection.definition import Projection
from eventsource.projection.dlq_parking import (
    DLQ_APPLIED,
    SqlParkingLot,
    create_dlq_tables,
    read_dlq_checkpoints,
    write_dlq_checkpoints,
)
from eventsource.projection.dlq_records import DeadLetterRecord, iter_dead_letters
from eventsource.projection.hooks import DeadLetterPolicy, Failure, FailureAction, FailureHook
from eventsource.projection.hooks import Stage as HookStage
from eventsource.projection.store import create_read_model_engine, ensure_schema

__all__ = ["DlqReplayResult", "replay_dead_letters"]


@dataclass(slots=True)
class DlqReplayResult:
    """What a DLQ replay did."""

    applied: int = 0
    ignored: int = 0  #: event types the projection has no handler for
    duplicates: int = 0  #: source positions applied before
    other_version: int = 0  #: dead letters of another version of the projection
    dead_lettered_again: int = 0
    unparked: list[tuple[str, str]] = field(default_factory=list)


class _Stop(Exception):
    def __init__(self, failure: Failure, record: DeadLetterRecord) -> None:
        self.failure = failure
        self.record = record


def replay_dead_letters(
    projection: Projection,
    settings: KafkaSettings,
    database_url: str | Engine,
    *,
    codec: EventCodec | None = None,
    failure_hook: FailureHook | None = None,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DlqReplayResult:
    """Re-apply ``projection``'s dead letters; see the module docstring."""
    engine = (
        create_read_model_engine(database_url) if isinstance(database_url, str) else database_url
    )
    hook = failure_hook or dead_letter_hook(projection, settings)
    p = projection
    try:
        ensure_schema(engine, p)
        create_dlq_tables(engine)
        with engine.connect() as conn:
            start = read_dlq_checkpoints(conn, p.name, p.version)
        records = list(iter_dead_letters(settings, p.name, start=start, timeout=timeout))
        ends = dict(start)
        for record in records:
            ends[record.dlq_partition] = max(
                ends.get(record.dlq_partition, 0), record.dlq_offset + 1
            )
        mine = [r for r in records if r.projection_version in (None, p.version)]
        mine.sort(key=lambda r: (r.source.topic, r.source.partition, r.source.offset))
        result = DlqReplayResult(other_version=len(records) - len(mine))
        replayer = _Replayer(
            p, codec or EventCodec.for_events(p.event_types()), hook, result, sleep
        )
        with engine.connect() as conn:
            txn = conn.begin()
            try:
                replayer.apply_all(conn, mine)
                write_dlq_checkpoints(conn, p.name, p.version, ends)
                hook.before_commit(conn)
                txn.commit()
            except _Stop as stop:
                hook.before_commit(conn)
                txn.commit()  # what was applied before the poison record stays applied
                raise _stopped(p, stop) from stop.failure.error
            except BaseException:
                txn.rollback()
                hook.after_rollback()
                raise
        return result
    finally:
        if failure_hook is None:
            hook.close()
        if isinstance(database_url, str):
            engine.dispose()


class _Replayer:
    def __init__(
        self,
        projection: Projection,
        codec: EventCodec,
        hook: FailureHook,
        result: DlqReplayResult,
        sleep: Callable[[float], None],
    ) -> None:
        self.p = projection
        self.codec = codec
        self.hook = hook
        self.result = result
        self.sleep = sleep
        self.parking = SqlParkingLot(projection.name, projection.version)
        self.held: set[tuple[str, str]] = set()

    def apply_all(self, conn: Connection, records: list[DeadLetterRecord]) -> None:
        ctx = Context(conn, self.p.tables)
        for record in records:
            self.apply_one(conn, ctx, record)
        ctx.flush()

    def apply_one(self, conn: Connection, ctx: Context, record: DeadLetterRecord) -> None:
        src, raw = record.source, record.original()
        if _already_applied(conn, self.p, record):
            self.result.duplicates += 1
            return
        ident = (src.topic, record.aggregate_id or "")
        if (
            record.key is not None
            and ident in self.held
            and isinstance(self.hook, DeadLetterHandler)
        ):
            self.hook.hold(raw, conn)
            self.result.dead_lettered_again += 1
            return
        meta = None
        try:
            meta = parse_headers(record.headers)
            entry = self.p.handlers_by_type.get(meta.event_type)
            event = None
            if entry is None and self.codec.renames(meta.event_type):  # renamed by upcaster
                event = self.codec.decode_at(record.value, src.topic, src.partition, src.offset)
                entry = self.p.handlers_by_type.get(event.event_type())
            if entry is None:
                self.result.ignored += 1
                self._done(conn, record)
                return
            if event is None:
                event = self.codec.decode_at(record.value, src.topic, src.partition, src.offset)
        except DecodeError as exc:
            stage: HookStage = "schema" if isinstance(exc, UnknownSchemaError) else "decode"
            self._fail(conn, record, Failure(self.p, stage, raw, exc, 1, meta))
            return
        ctx.meta, ctx.position = meta, src
        attempts = 0
        while True:
            attempts += 1
            try:
                with conn.begin_nested():
                    entry[1](self.p, event, ctx)
                    ctx.flush()
            except Exception as exc:
                ctx.discard()
                if attempts <= self.p.retries:
                    self.sleep(self.p.retry_backoff_s * attempts)
                    continue
                failure = Failure(self.p, "handler", raw, exc, attempts, meta, event)
                self._fail(conn, record, failure)
                return
            self.result.applied += 1
            self._done(conn, record)
            return

    def _done(self, conn: Connection, record: DeadLetterRecord) -> None:
        src = record.source
        conn.execute(
            insert(DLQ_APPLIED).values(
                projection=self.p.name,
                version=self.p.version,
                topic=src.topic,
                partition=src.partition,
                offset=src.offset,
            )
        )
        agg = record.aggregate_id
        if agg is not None and self.parking.unpark_if_last(conn, src.topic, agg, src.offset):
            self.result.unparked.append((src.topic, agg))

    def _fail(self, conn: Connection, record: DeadLetterRecord, failure: Failure) -> None:
        if self.hook.on_failure(failure, conn) is FailureAction.STOP:
            raise _Stop(failure, record)
        self.result.dead_lettered_again += 1
        if self.p.policy is DeadLetterPolicy.PARK and record.aggregate_id is not None:
            self.held.add((record.source.topic, record.aggregate_id))


def _already_applied(conn: Connection, p: Projection, record: DeadLetterRecord) -> bool:
    c, src = DLQ_APPLIED.c, record.source
    found = conn.execute(
        select(c.offset).where(
            c.projection == p.name,
            c.version == p.version,
            c.topic == src.topic,
            c.partition == src.partition,
            c.offset == src.offset,
        )
    ).first()
    return found is not None


def _stopped(p: Projection, stop: _Stop) -> ProjectionError:
    from eventsource.projection.hooks import stopped_error

    error = stopped_error(stop.failure)
    return type(error)(
        f"dlq replay of {p.name!r} v{p.version} stopped at dead letter "
        f"{p.name}.dlq[{stop.record.dlq_partition}]@{stop.record.dlq_offset}: {error}"
    )
