"""``dlq replay``: apply dead letters through the projection's handlers again (after a fix).

- Reads the projection's DLQ topic from this version's DLQ checkpoint to the end as of the
  call, keeps the records of this projection version, and applies them **in source order**
  (sorted by source topic, partition and offset), so an aggregate's events are applied in
  the order they were written even if the DLQ holds them interleaved.
- Only dead letters whose diverting batch committed: a batch records each source position
  it diverts (``eventsource_dlq_diverted``) in its own transaction; a dead letter without
  that mark is an *orphan* (the process died after the DLQ flush and before the commit, and
  the record was applied normally after the restart) and is skipped.
- Exactly once: every applied source position is marked in ``eventsource_dlq_applied`` in
  the same transaction as the handler's changes; a dead letter written twice, or a replay
  that is run again, applies nothing twice. Positions discarded by ``dlq discard`` or
  ``dlq unpark`` (``eventsource_dlq_discarded``) are never applied.
- Each record goes through the same routine as the runner's careful path
  (:class:`~eventsource.projection.apply.RecordApplier`): a database error that is not the
  record's fault rolls the replay back and is raised (nothing is dead-lettered again for
  it); a record that still fails follows the projection's policy: STOP raises
  ProjectionStoppedError (what was applied before stays applied); SKIP / PARK write it to
  the DLQ again with fresh context headers (PARK also holds back the aggregate's later
  records in this replay), so the next ``dlq replay`` tries again.
- A parked aggregate is unparked in the transaction that settles (applies or skips as
  discarded) its latest dead letter (``last_offset`` compare-and-delete), so the runner
  never applies a newer event of it before an older one still waiting in the DLQ.
- The DLQ checkpoint moves to the end only when the whole replay went through.

Records are held in memory to sort them: a DLQ is for exceptions, not for millions of
records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from eventsource.codec import EventCodec
from eventsource.errors import ProjectionError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import dlq_topic
from eventsource.projection.apply import Applied, RecordApplier, RecordStopped
from eventsource.projection.context import Context
from eventsource.projection.deadletter.headers import DeadLetterRecord
from eventsource.projection.deadletter.parking import (
    SqlParkingLot,
    read_dlq_checkpoints,
    write_dlq_checkpoints,
)
from eventsource.projection.deadletter.policy import DeadLetterHandler, dead_letter_hook
from eventsource.projection.deadletter.reader import iter_dead_letters
from eventsource.projection.definition import Projection
from eventsource.projection.store import create_read_model_engine, ensure_schema
from eventsource.projection.tables import create_framework_tables
from eventsource.projection.types import DeadLetterPolicy, FailureHook, stopped_error

__all__ = ["DlqReplayResult", "replay_dead_letters"]


@dataclass(slots=True)
class DlqReplayResult:
    """What a DLQ replay did."""

    applied: int = 0
    ignored: int = 0  #: event types the projection has no handler for
    duplicates: int = 0  #: source positions applied before
    other_version: int = 0  #: dead letters of another version of the projection
    dead_lettered_again: int = 0
    orphans: int = 0  #: dead letters whose diverting batch never committed
    discarded: int = 0  #: dead letters discarded by ``dlq discard`` / ``dlq unpark``
    unparked: list[tuple[str, str]] = field(default_factory=list)


class _Stop(Exception):
    def __init__(self, stop: RecordStopped, record: DeadLetterRecord) -> None:
        self.stop = stop
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
        create_framework_tables(engine)
        with engine.connect() as conn:
            start = read_dlq_checkpoints(conn, p.name, p.version)
        records = list(
            iter_dead_letters(
                settings, p.name, start=start, timeout=timeout, topic_prefix=p.topic_prefix
            )
        )
        ends = dict(start)
        for record in records:
            ends[record.dlq_partition] = max(
                ends.get(record.dlq_partition, 0), record.dlq_offset + 1
            )
        mine = [r for r in records if r.projection_version in (None, p.version)]
        mine.sort(key=lambda r: (r.source.topic, r.source.partition, r.source.offset))
        result = DlqReplayResult(other_version=len(records) - len(mine))
        codec = codec or EventCodec.for_events(p.event_types())
        replayer = _Replayer(p, RecordApplier(p, codec, hook, sleep), result)
        stopped: _Stop | None = None
        with engine.connect() as conn:
            txn = conn.begin()
            try:
                try:
                    replayer.apply_all(conn, mine)
                    write_dlq_checkpoints(conn, p.name, p.version, ends)
                except _Stop as stop:
                    # Committed after this block: before_commit produces the dead letters,
                    # and a Kafka call failing while the stop is handled would keep it (and
                    # its frames) alive for good (see eventsource.kafka.unchained).
                    stopped = stop
                hook.before_commit(conn)
                txn.commit()  # on a stop, what was applied before the poison record stays
            except BaseException:
                txn.rollback()
                hook.after_rollback()
                raise
        if stopped is not None:
            raise _stopped(p, stopped) from stopped.stop.failure.error
        return result
    finally:
        if failure_hook is None:
            hook.close()
        if isinstance(database_url, str):
            engine.dispose()


class _Replayer:
    def __init__(self, projection: Projection, applier: RecordApplier, result: DlqReplayResult):
        self.p = projection
        self.applier = applier
        self.hook = applier.hook
        self.result = result
        self.parking = SqlParkingLot(projection.name, projection.version)
        self.held: set[tuple[str, str]] = set()

    def apply_all(self, conn: Connection, records: list[DeadLetterRecord]) -> None:
        ctx = Context(conn, self.p.tables)
        for record in records:
            self.apply_one(conn, ctx, record)
        ctx.flush()

    def apply_one(self, conn: Connection, ctx: Context, record: DeadLetterRecord) -> None:
        src, raw = record.source, record.original()
        if self.parking.is_applied(conn, src):
            self.result.duplicates += 1
            return
        if self.parking.is_discarded(conn, src):
            self.result.discarded += 1
            self._unpark_if_last(conn, record)
            return
        if record.marked and not self.parking.is_diverted(conn, src):
            self.result.orphans += 1  # its batch never committed; the runner applied it
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
        try:
            outcome = self.applier.apply(conn, ctx, raw, intercept=False)
        except RecordStopped as stop:
            raise _Stop(stop, record) from None
        if outcome is Applied.DEAD_LETTERED:
            self.result.dead_lettered_again += 1
            if self.p.policy is DeadLetterPolicy.PARK and record.aggregate_id is not None:
                self.held.add(ident)
            return
        if outcome is Applied.IGNORED:
            self.result.ignored += 1
        else:
            self.result.applied += 1
        self.parking.mark_applied(conn, src)
        self._unpark_if_last(conn, record)

    def _unpark_if_last(self, conn: Connection, record: DeadLetterRecord) -> None:
        src, agg = record.source, record.aggregate_id
        if agg is not None and self.parking.unpark_if_last(conn, src.topic, agg, src.offset):
            self.result.unparked.append((src.topic, agg))


def _stopped(p: Projection, stop: _Stop) -> ProjectionError:
    error = stopped_error(stop.stop.failure)
    return type(error)(
        f"dlq replay of {p.name!r} v{p.version} stopped at dead letter "
        f"{dlq_topic(p.name, p.topic_prefix)}[{stop.record.dlq_partition}]"
        f"@{stop.record.dlq_offset}: {error}"
    )
