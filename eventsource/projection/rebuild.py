"""Blue/green rebuild: build version N+1 beside the live version N, then swap atomically.

1. ``rebuild(projection_v2, ...)`` creates version 2's own tables and checkpoints and
   applies the topics into them (the replay code: exactly-once batches, dead-letter policy)
   while version 1 keeps serving through the views (``<name>_<table>``).
2. When version 2 has caught up, :func:`swap_version` flips the views and the
   ``eventsource_projections`` pointer in **one database transaction**, and only if every
   partition's checkpoint of version 2 is at or past version 1's (read under lock, so
   version 1's runner cannot commit a batch in between): readers see version 1 or
   version 2, complete, never an empty or half-built model and never an older one. If
   version 1 moved on meanwhile, ``rebuild`` catches up again and retries the swap.
3. Version 1's tables stay (queryable by their physical names) until an explicit
   :func:`drop_version`.

After the swap, a running ``eventsource run`` of the projection switches to version 2 by
itself (see :mod:`eventsource.service.follow`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, inspect, select

from eventsource.codec import EventCodec
from eventsource.domain import Position
from eventsource.errors import ConfigurationError, ProjectionError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection.bounds import find_bounds
from eventsource.projection.checkpoints import checkpoints_table, read_checkpoints
from eventsource.projection.deadletter import SqlParkingLot, dlq_end_offsets
from eventsource.projection.definition import Projection
from eventsource.projection.ranges import ProgressCallback, apply_range
from eventsource.projection.replay import refuse_if_running
from eventsource.projection.store import (
    create_read_model_engine,
    ensure_schema,
    live_version,
    projections_table,
    set_live_version,
)
from eventsource.projection.tables import create_framework_tables

__all__ = ["RebuildResult", "drop_version", "rebuild", "swap_version"]


@dataclass(slots=True)
class RebuildResult:
    """What a rebuild did. ``previous_version`` is None when nothing was live before."""

    projection: str
    version: int
    previous_version: int | None
    swapped: bool
    rounds: int
    applied: int
    seconds: float


def rebuild(
    projection: Projection,
    settings: KafkaSettings,
    database_url: str | Engine,
    *,
    swap: bool = True,
    restart: bool = False,
    max_rounds: int = 10,
    batch_size: int = 5000,
    codec: EventCodec | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 3600.0,
    allow_running: bool = False,
    after: Sequence[Position] = (),
) -> RebuildResult:
    """Build ``projection.version`` in its own tables; swap it live once caught up.

    An interrupted rebuild resumes from its checkpoints; ``restart=True`` empties the new
    version's tables first. ``swap=False`` only builds (swap later with
    :func:`swap_version`). Raises ConfigurationError if this version is already live or
    its runner is running (``allow_running=True`` skips that check). ``after``: positions
    just written that the build must include (see :func:`~.replay.replay`).
    """
    if not allow_running:
        refuse_if_running(settings, projection)  # version N+1's runner would race the build
    engine = _engine(database_url)
    started = time.monotonic()
    try:
        with engine.connect() as conn:
            previous = live_version(conn, projection.name)
        if previous == projection.version:
            raise ConfigurationError(
                f"version {projection.version} of projection {projection.name!r} is already "
                "live: bump the projection's `version` to rebuild blue/green, or use replay "
                "to refill the live version in place"
            )
        ensure_schema(engine, projection)  # makes this version live if none was
        create_framework_tables(engine)
        if restart:
            _reset(
                engine,
                projection,
                dlq_end_offsets(settings, projection.name, topic_prefix=projection.topic_prefix),
            )
        applied, rounds, swapped = 0, 0, False
        while rounds < max_rounds and not swapped:
            rounds += 1
            left = max(timeout - (time.monotonic() - started), 1.0)
            stop = find_bounds(settings, projection, None, None, None, None, after=after).stop
            result = apply_range(
                projection,
                settings,
                engine,
                stop,
                batch_size=batch_size,
                codec=codec,
                progress=progress,
                timeout=left,
            )
            applied += result.applied
            if not swap or previous is None:
                break
            swapped = swap_version(projection, engine, raise_if_behind=False)
        if swap and previous is not None and not swapped:
            raise ProjectionError(
                f"version {projection.version} of {projection.name!r} did not catch up with "
                f"live version {previous} in {max_rounds} rounds (it keeps moving); its tables "
                "and checkpoints are kept: run rebuild again, or run its runner and call "
                "swap_version when the lag is small"
            )
        return RebuildResult(
            projection.name,
            projection.version,
            previous,
            swapped or previous is None,
            rounds,
            applied,
            time.monotonic() - started,
        )
    finally:
        if isinstance(database_url, str):
            engine.dispose()


def swap_version(
    projection: Projection, database_url: str | Engine, *, raise_if_behind: bool = True
) -> bool:
    """Make ``projection.version`` live in one transaction, if it is at least as far as
    the live version on every partition both read. Returns whether it swapped."""
    engine = _engine(database_url)
    p = projection
    try:
        with engine.begin() as conn:
            pointer = select(projections_table.c.live_version).where(
                projections_table.c.projection == p.name
            )
            if conn.dialect.name == "postgresql":
                pointer = pointer.with_for_update()
            row = conn.execute(pointer).first()
            live = None if row is None else int(row[0])
            if live == p.version:
                return True
            behind: dict[str, tuple[int, int]] = {}
            if live is not None:
                old = read_checkpoints(conn, p.name, live, for_update=True)
                new = read_checkpoints(conn, p.name, p.version, for_update=True)
                behind = {
                    f"{t}[{n}]": (new.get((t, n), 0), o)
                    for (t, n), o in old.items()
                    if t in p.topics and new.get((t, n), 0) < o  # topics both versions read
                }
            if behind:
                raise _Behind(
                    f"version {p.version} of {p.name!r} is behind live version {live} "
                    f"(checkpoint v{p.version}, v{live}): {behind}; nothing was swapped: "
                    "let it catch up (rebuild or its runner) and swap again"
                )
            set_live_version(conn, p, p.version)
        return True
    except _Behind as exc:
        if raise_if_behind:
            raise ProjectionError(str(exc)) from None
        return False
    finally:
        if isinstance(database_url, str):
            engine.dispose()


def drop_version(projection: Projection, database_url: str | Engine, version: int) -> list[str]:
    """Drop ``version``'s tables (named from ``projection``'s table declarations), its
    checkpoints and dead-letter bookkeeping. Refuses the live version. Returns the
    tables dropped."""
    engine = _engine(database_url)
    p = projection
    try:
        with engine.begin() as conn:
            live = live_version(conn, p.name)
            if live == version:
                raise ConfigurationError(
                    f"version {version} of projection {p.name!r} is live and cannot be "
                    "dropped: swap another version live first (rebuild / swap_version)"
                )
            existing = set(inspect(conn).get_table_names())
            quote = conn.dialect.identifier_preparer.quote
            dropped = []
            for logical in p.tables:
                name = p.physical_name(logical, version)
                if name in existing:
                    conn.exec_driver_sql(f"DROP TABLE {quote(name)}")
                    dropped.append(name)
            c = checkpoints_table.c
            conn.execute(
                delete(checkpoints_table).where(c.projection == p.name, c.version == version)
            )
            create_framework_tables(conn)
            SqlParkingLot(p.name, version).clear(conn)
        return dropped
    finally:
        if isinstance(database_url, str):
            engine.dispose()


class _Behind(Exception):
    """The new version is behind the live one; the swap transaction is rolled back."""


def _engine(database_url: str | Engine) -> Engine:
    return create_read_model_engine(database_url) if isinstance(database_url, str) else database_url


def _reset(engine: Engine, projection: Projection, dlq_ends: dict[int, int]) -> None:
    p = projection
    with engine.begin() as conn:
        for table in p.tables.values():
            conn.execute(delete(table))
        c = checkpoints_table.c
        conn.execute(
            delete(checkpoints_table).where(c.projection == p.name, c.version == p.version)
        )
        SqlParkingLot(p.name, p.version).clear(conn, dlq_ends)
