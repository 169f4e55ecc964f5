"""Parked aggregates and DLQ-replay bookkeeping, as tables in the read-model database.

``eventsource_parked``: one row per parked (projection, version, topic, aggregate id) with
the offsets of its first and latest dead letter. Rows are written in the batch's own
transaction, so a parked aggregate and the checkpoint that passed its record commit
together. ``last_offset`` is what makes unparking safe while a runner is still diverting:
``dlq replay`` deletes the row only if it still names the last record the replay applied.

``eventsource_dlq_checkpoints``: next DLQ offset to replay, per (projection, version, DLQ
partition). ``eventsource_dlq_applied``: source positions already re-applied, so that a
dead letter written twice (crash after the DLQ flush, before the batch commit) is applied
once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    insert,
    select,
    update,
)

from eventsource.projection.hooks import RawRecord

__all__ = [
    "DLQ_APPLIED",
    "DLQ_CHECKPOINTS",
    "PARKED",
    "SqlParkingLot",
    "create_dlq_tables",
    "read_dlq_checkpoints",
    "write_dlq_checkpoints",
]

metadata = MetaData()

PARKED = Table(
    "eventsource_parked",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("aggregate_id", String(255), primary_key=True),
    Column("partition", Integer, nullable=False),
    Column("first_offset", BigInteger, nullable=False),
    Column("last_offset", BigInteger, nullable=False),
    Column("stage", String(16), nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
)

DLQ_CHECKPOINTS = Table(
    "eventsource_dlq_checkpoints",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

DLQ_APPLIED = Table(
    "eventsource_dlq_applied",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
)


#: PostgreSQL advisory lock serializing the creation of these tables across processes
#: (concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog).
_DDL_LOCK = 7245196508735962


def create_dlq_tables(bind: Engine | Connection) -> None:
    """Create the dead-letter bookkeeping tables if they do not exist.

    With a Connection, inside its transaction (a rolled-back batch takes them with it).
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            create_dlq_tables(conn)
        return
    missing = [t for t in metadata.sorted_tables if not bind.dialect.has_table(bind, t.name)]
    if not missing:
        return
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_DDL_LOCK})")
    metadata.create_all(bind, checkfirst=True)


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
    """Parked aggregates of one projection version."""

    def __init__(self, projection: str, version: int) -> None:
        self.projection = projection
        self.version = version

    def _mine(self) -> list[ColumnElement[bool]]:
        return [PARKED.c.projection == self.projection, PARKED.c.version == self.version]

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

    def clear(self, conn: Connection, dlq_ends: Mapping[int, int] | None = None) -> None:
        """Forget every parked aggregate, DLQ checkpoint and applied mark of this version.

        ``dlq_ends`` (the DLQ's end offsets now): start later DLQ replays there, so dead
        letters of the model being thrown away are never applied to the new one.
        """
        conn.execute(delete(PARKED).where(*self._mine()))
        for table in (DLQ_CHECKPOINTS, DLQ_APPLIED):
            conn.execute(
                delete(table).where(
                    and_(table.c.projection == self.projection, table.c.version == self.version)
                )
            )
        if dlq_ends:
            write_dlq_checkpoints(conn, self.projection, self.version, dlq_ends)
