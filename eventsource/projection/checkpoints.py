"""Checkpoints: per (projection, version, topic, partition), the next offset to apply.

They live in the read-model database and are written in the same transaction as the
handlers' changes, which is what makes a projection's effect exactly-once: a crash either
loses the batch and its checkpoint together, or keeps both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from eventsource.projection.tables import checkpoints_table

__all__ = [
    "TopicPartition",
    "checkpoints_table",
    "ensure_checkpoint_rows",
    "read_checkpoints",
    "write_checkpoints",
]

TopicPartition = tuple[str, int]


def read_checkpoints(
    conn: Connection,
    projection: str,
    version: int,
    partitions: Iterable[TopicPartition] | None = None,
    *,
    for_update: bool = False,
) -> dict[TopicPartition, int]:
    """Stored next offsets; all of the projection's, or only ``partitions``.

    ``for_update`` locks the rows until the transaction ends (PostgreSQL; SQLite's
    ``BEGIN IMMEDIATE`` already holds the database write lock), so two processes that
    briefly both think they own a partition cannot both apply the same records. Only the
    named partitions' rows are locked: replicas owning different partitions never wait.
    """
    c = checkpoints_table.c
    stmt = select(c.topic, c.partition, c.next_offset).where(
        c.projection == projection, c.version == version
    )
    wanted = None if partitions is None else set(partitions)
    if wanted is not None:
        if not wanted:
            return {}
        # Exactly these rows, so a lock never covers another replica's partitions.
        stmt = stmt.where(tuple_(c.topic, c.partition).in_(sorted(wanted)))
    if for_update and conn.dialect.name == "postgresql":
        # one lock order for every process: overlapping batches wait instead of deadlocking
        stmt = stmt.order_by(c.topic, c.partition).with_for_update()
    result: dict[TopicPartition, int] = {}
    for topic, partition, next_offset in conn.execute(stmt):
        result[(topic, partition)] = int(next_offset)
    return result


def ensure_checkpoint_rows(
    conn: Connection, projection: str, version: int, partitions: Iterable[TopicPartition]
) -> None:
    """Insert ``next_offset = 0`` rows where none exist, so later batches can lock them."""
    partitions = set(partitions)
    existing = read_checkpoints(conn, projection, version, partitions)
    missing = partitions - existing.keys()
    if missing:
        dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(checkpoints_table).on_conflict_do_nothing(),
            [
                {
                    "projection": projection,
                    "version": version,
                    "topic": t,
                    "partition": p,
                    "next_offset": 0,
                }
                for t, p in sorted(missing)
            ],
        )


def write_checkpoints(
    conn: Connection, projection: str, version: int, offsets: Mapping[TopicPartition, int]
) -> None:
    """Set next offsets (rows must exist: see :func:`ensure_checkpoint_rows`)."""
    if not offsets:
        return
    c = checkpoints_table.c
    stmt = (
        checkpoints_table.update()
        .where(
            c.projection == projection,
            c.version == version,
            c.topic == bindparam("b_topic"),
            c.partition == bindparam("b_partition"),
        )
        .values(next_offset=bindparam("b_next"))
    )
    conn.execute(
        stmt,
        [{"b_topic": t, "b_partition": p, "b_next": o} for (t, p), o in sorted(offsets.items())],
    )
