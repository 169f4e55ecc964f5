"""Dead-letter bookkeeping in the read-model database: parked aggregates, DLQ checkpoints,
and the marks that say what became of each dead letter's source position.

``eventsource_parked`` rows are written in the batch's own transaction, so a parked
aggregate and the checkpoint that passed its record commit together. ``last_offset`` is
what makes unparking safe while a runner is still diverting: replay deletes the row only if
it still names the last record it settled.

Marks (tables in :mod:`eventsource.projection.tables`), per source position:

- *diverted*: a batch sent the record to the DLQ and committed (written in that batch's
  transaction; a dead letter without it is an orphan of a batch that never committed);
- *applied*: ``dlq replay`` applied it;
- *discarded*: an operator gave it up (``dlq discard`` / ``dlq unpark``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, Table, and_, case, delete, insert, select, update

from eventsource.domain import Position
from eventsource.projection.tables import (
    DLQ_APPLIED,
    DLQ_CHECKPOINTS,
    DLQ_DISCARDED,
    DLQ_DIVERTED,
    PARKED,
)
from eventsource.projection.types import RawRecord

__all__ = ["SqlParkingLot", "read_dlq_checkpoints", "write_dlq_checkpoints"]


def read_dlq_checkpoints(conn: Connection, projection: str, version: int) -> dict[int, int]:
    """Next DLQ offset to replay per DLQ partition (missing: from the beginning)."""
    c = DLQ_CHECKPOINTS.c
    rows = conn.execute(
        select(c.partition, c.next_offset).where(c.projection == projection, c.version == version)
    )
    return {int(part): int(offset) for part, offset in rows}


def write_dlq_checkpoints(
    conn: Connection, projection: str, version: int, ends: Mapping[int, int]
) -> None:
    """Set the next DLQ offset to replay per DLQ partition."""
    stored = read_dlq_checkpoints(conn, projection, version)
    c = DLQ_CHECKPOINTS.c
    for partition, offset in sorted(ends.items()):
        if partition in stored:
            conn.execute(
                update(DLQ_CHECKPOINTS)
                .where(c.projection == projection, c.version == version, c.partition == partition)
                .values(next_offset=offset)
            )
        else:
            conn.execute(
                insert(DLQ_CHECKPOINTS).values(
                    projection=projection, version=version, partition=partition, next_offset=offset
                )
            )


class SqlParkingLot:
    """Parked aggregates and dead-letter marks of one projection version."""

    def __init__(self, projection: str, version: int) -> None:
        self.projection = projection
        self.version = version

    def _mine(self, table: Table = PARKED) -> list[ColumnElement[bool]]:
        return [table.c.projection == self.projection, table.c.version == self.version]

    # --- parked aggregates ----------------------------------------------------------------
    def load(self, conn: Connection) -> set[tuple[str, str]]:
        rows = conn.execute(select(PARKED.c.topic, PARKED.c.aggregate_id).where(*self._mine()))
        return {(topic, agg) for topic, agg in rows}

    def park(self, conn: Connection, record: RawRecord, aggregate_id: str, stage: str) -> None:
        """Park the aggregate, or move its ``last_offset`` up to ``record`` if parked."""
        found = conn.execute(
            update(PARKED)
            .where(
                *self._mine(), PARKED.c.topic == record.topic, PARKED.c.aggregate_id == aggregate_id
            )
            # Never backwards: a record dead-lettered again by ``dlq replay`` must not hide
            # a later one the runner diverted meanwhile.
            .values(
                last_offset=case(
                    (PARKED.c.last_offset < record.offset, record.offset),
                    else_=PARKED.c.last_offset,
                )
            )
        )
        if found.rowcount:
            return
        conn.execute(
            insert(PARKED).values(
                projection=self.projection,
                version=self.version,
                topic=record.topic,
                aggregate_id=aggregate_id,
                partition=record.partition,
                first_offset=record.offset,
                last_offset=record.offset,
                stage=stage,
                parked_at=datetime.now(UTC),
            )
        )

    def unpark_if_last(
        self, conn: Connection, topic: str, aggregate_id: str, last_offset: int
    ) -> bool:
        """Unpark when ``last_offset`` is still the aggregate's latest dead letter."""
        gone = conn.execute(
            delete(PARKED).where(
                *self._mine(),
                PARKED.c.topic == topic,
                PARKED.c.aggregate_id == aggregate_id,
                PARKED.c.last_offset == last_offset,
            )
        )
        return bool(gone.rowcount)

    def parked_rows(self, conn: Connection) -> list[dict[str, object]]:
        """Every parked aggregate of this version, oldest first (for status and the CLI)."""
        rows = conn.execute(
            select(PARKED).where(*self._mine()).order_by(PARKED.c.parked_at, PARKED.c.topic)
        )
        return [dict(row._mapping) for row in rows]

    # --- marks ----------------------------------------------------------------------------
    def mark_diverted(self, conn: Connection, record: RawRecord) -> None:
        """Record, in the diverting batch's transaction, that ``record`` went to the DLQ."""
        if not self._has(conn, DLQ_DIVERTED, record.position):
            conn.execute(insert(DLQ_DIVERTED).values(**self._key(record.position)))

    def mark_applied(self, conn: Connection, position: Position) -> None:
        conn.execute(insert(DLQ_APPLIED).values(**self._key(position)))

    def mark_discarded(self, conn: Connection, position: Position, reason: str) -> bool:
        """Record that replay must never apply ``position``; False if it already was."""
        if self._has(conn, DLQ_DISCARDED, position):
            return False
        conn.execute(
            insert(DLQ_DISCARDED).values(
                **self._key(position), reason=reason[:255], discarded_at=datetime.now(UTC)
            )
        )
        return True

    def is_diverted(self, conn: Connection, position: Position) -> bool:
        return self._has(conn, DLQ_DIVERTED, position)

    def is_applied(self, conn: Connection, position: Position) -> bool:
        return self._has(conn, DLQ_APPLIED, position)

    def is_discarded(self, conn: Connection, position: Position) -> bool:
        return self._has(conn, DLQ_DISCARDED, position)

    def settled(self, conn: Connection, positions: Iterable[Position]) -> set[Position]:
        """Those of ``positions`` that were applied or discarded."""
        return {p for p in positions if self.is_applied(conn, p) or self.is_discarded(conn, p)}

    def _key(self, position: Position) -> dict[str, object]:
        return {
            "projection": self.projection,
            "version": self.version,
            "topic": position.topic,
            "partition": position.partition,
            "offset": position.offset,
        }

    def _has(self, conn: Connection, table: Table, position: Position) -> bool:
        c = table.c
        found = conn.execute(
            select(c.offset).where(
                *self._mine(table),
                c.topic == position.topic,
                c.partition == position.partition,
                c.offset == position.offset,
            )
        ).first()
        return found is not None

    def clear(self, conn: Connection, dlq_ends: Mapping[int, int] | None = None) -> None:
        """Forget every parked aggregate, DLQ checkpoint and mark of this version.

        ``dlq_ends`` (the DLQ's end offsets now): start later DLQ replays there, so dead
        letters of the model being thrown away are never applied to the new one.
        """
        for table in (PARKED, DLQ_CHECKPOINTS, DLQ_DIVERTED, DLQ_APPLIED, DLQ_DISCARDED):
            conn.execute(
                delete(table).where(
                    and_(table.c.projection == self.projection, table.c.version == self.version)
                )
            )
        if dlq_ends:
            write_dlq_checkpoints(conn, self.projection, self.version, dlq_ends)
