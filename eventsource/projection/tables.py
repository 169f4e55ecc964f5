"""The framework's own tables in the read-model database, all on one ``MetaData``.

- ``eventsource_checkpoints``: per (projection, version, topic, partition) the next offset
  to apply, written in the same transaction as the handlers' changes.
- ``eventsource_projections``: the live version of each projection (what the views show).
- ``eventsource_parked``: parked aggregates of a projection version (policy PARK), with the
  source offsets of their first and latest dead letter.
- ``eventsource_dlq_checkpoints``: per DLQ partition, the next dead letter to replay.
- ``eventsource_dlq_diverted``: source positions a *committed* batch sent to the DLQ;
  written in the diverting batch's transaction, so a dead letter whose batch never
  committed (an orphan: the process died after the DLQ flush) is never replayed.
- ``eventsource_dlq_applied``: source positions ``dlq replay`` applied (each once).
- ``eventsource_dlq_discarded``: source positions an operator discarded (``dlq discard``,
  ``dlq unpark``); replay never applies them.

:func:`create_framework_tables` creates whichever are missing.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
)

__all__ = [
    "DLQ_APPLIED",
    "DLQ_CHECKPOINTS",
    "DLQ_DISCARDED",
    "DLQ_DIVERTED",
    "FRAMEWORK_METADATA",
    "PARKED",
    "checkpoints_table",
    "create_framework_tables",
    "projections_table",
]

FRAMEWORK_METADATA = MetaData()

checkpoints_table = Table(
    "eventsource_checkpoints",
    FRAMEWORK_METADATA,
    Column("projection", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

projections_table = Table(
    "eventsource_projections",
    FRAMEWORK_METADATA,
    Column("projection", String(64), primary_key=True),
    Column("live_version", Integer, nullable=False),
)

PARKED = Table(
    "eventsource_parked",
    FRAMEWORK_METADATA,
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
    FRAMEWORK_METADATA,
    Column("projection", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)


def _position_table(name: str, *extra: Column[object]) -> Table:
    return Table(
        name,
        FRAMEWORK_METADATA,
        Column("projection", String(64), primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("topic", String(255), primary_key=True),
        Column("partition", Integer, primary_key=True),
        Column("offset", BigInteger, primary_key=True),
        *extra,
    )


DLQ_DIVERTED = _position_table("eventsource_dlq_diverted")
DLQ_APPLIED = _position_table("eventsource_dlq_applied")
DLQ_DISCARDED = _position_table(
    "eventsource_dlq_discarded",
    Column("reason", String(255), nullable=False),
    Column("discarded_at", DateTime(timezone=True), nullable=False),
)

#: PostgreSQL advisory lock serializing the creation of these tables across processes
#: (concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog).
DDL_LOCK = 7245196508735961


def create_framework_tables(bind: Engine | Connection) -> None:
    """Create the framework tables that do not exist yet.

    With a Connection, inside its transaction (a rolled-back batch takes them with it).
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            create_framework_tables(conn)
        return
    tables = FRAMEWORK_METADATA.sorted_tables
    if all(bind.dialect.has_table(bind, t.name) for t in tables):
        return
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"SELECT pg_advisory_xact_lock({DDL_LOCK})")
    FRAMEWORK_METADATA.create_all(bind, checkfirst=True)
