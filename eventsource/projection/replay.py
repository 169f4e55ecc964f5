"""Replay a projection version over a range of its topics: from the beginning, an offset or
a timestamp, optionally up to an offset or a timestamp (both bounds inclusive).

What a replay does to the read model (``reset=True``, the default): it makes the version's
tables equal to the fold of exactly the events in the range. In one database transaction
it empties the version's tables, forgets its parked aggregates and DLQ-replay marks, and
sets its checkpoints to the range's start; then it applies the range with the same batch
code as the runner (one transaction per batch, checkpoints included, dead-letter policy
applied). Replaying the same range twice gives the same tables.

``reset=False`` (``eventsource replay --keep``) resumes: it keeps the tables and the
committed checkpoints and applies from each partition's checkpoint up to the stop, so an
interrupted replay called again with ``reset=False`` and the same bounds ends with exactly
the fold of the range (every record applied once). The start bound only places partitions
that have no checkpoint yet.

Replaying the *live* version in place means its readers see the tables refill. To rebuild
without that, bump the projection's version and use :mod:`eventsource.projection.rebuild`
(blue/green), which runs this same code into the new version's tables and swaps. Stop the
version's runner during an in-place replay: both would write the same tables.

Replay uses its own consumer with explicit partition assignment (no consumer group, no
rebalances) and ``read_committed``. Each of its database transactions (the reset, the
first read of the checkpoints, every batch) is retried while the database is unavailable
(a dropped connection), like the runner's, until ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, delete

from eventsource.codec import EventCodec
from eventsource.domain import Position
from eventsource.errors import ConfigurationError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection.bounds import Bounds, OffsetSpec, find_bounds, resolve_bounds
from eventsource.projection.checkpoints import (
    ensure_checkpoint_rows,
    read_checkpoints,
    write_checkpoints,
)
from eventsource.projection.dberrors import retry_transient
from eventsource.projection.deadletter import SqlParkingLot, dlq_end_offsets
from eventsource.projection.definition import Projection
from eventsource.projection.ranges import (
    ProgressCallback,
    ReplayProgress,
    ReplayResult,
    apply_range,
)
from eventsource.projection.runner import default_group_id
from eventsource.projection.store import create_read_model_engine, ensure_schema
from eventsource.projection.tables import create_framework_tables
from eventsource.projection.types import FailureHook

__all__ = [
    "Bounds",
    "ProgressCallback",
    "ReplayProgress",
    "ReplayResult",
    "apply_range",
    "find_bounds",
    "refuse_if_running",
    "replay",
    "resolve_bounds",
]


def replay(
    projection: Projection,
    settings: KafkaSettings,
    database_url: str | Engine,
    *,
    from_offset: OffsetSpec | None = None,
    from_time: datetime | None = None,
    to_offset: OffsetSpec | None = None,
    to_time: datetime | None = None,
    reset: bool = True,
    batch_size: int = 5000,
    codec: EventCodec | None = None,
    failure_hook: FailureHook | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 600.0,
    allow_running: bool = False,
    after: Sequence[Position] = (),
) -> ReplayResult:
    """Replay ``projection`` (its own version) over the range; see the module docstring.

    ``from_offset`` / ``to_offset``: one offset for every partition, or a mapping
    ``{(topic, partition): offset}`` (partitions not named use the beginning / the end).
    ``from_time`` / ``to_time``: timezone-aware datetimes, resolved per partition with
    Kafka's ``offsets_for_times`` (first record whose timestamp is >= the time).
    ``after``: positions the caller wrote (an append's result) that a stop "as of now"
    must include: the stop offsets are taken once the last stable offset has passed them
    (Kafka writes commit markers after ``commit_transaction()`` returns, so "now" can lag
    an append that has returned for a moment).
    Raises ConfigurationError if the version's runner is running (its consumer group has
    members; ``allow_running=True`` skips the check), WaitTimeoutError if the range was not
    applied within ``timeout`` seconds.
    """
    if not allow_running:
        refuse_if_running(settings, projection)
    engine = (
        create_read_model_engine(database_url) if isinstance(database_url, str) else database_url
    )
    try:
        ensure_schema(engine, projection)
        create_framework_tables(engine)
        bounds = find_bounds(
            settings,
            projection,
            from_offset,
            from_time,
            to_offset,
            to_time,
            min(timeout, 30.0),
            after=after,
        )
        retry_transient(
            lambda: _prepare(engine, projection, settings, bounds, reset=reset),
            projection,
            doing="resetting the replayed version",
            deadline=time.monotonic() + timeout,
        )
        return apply_range(
            projection,
            settings,
            engine,
            bounds.stop,
            batch_size=batch_size,
            codec=codec,
            failure_hook=failure_hook,
            progress=progress,
            timeout=timeout,
            start=bounds.start if reset else None,
        )
    finally:
        if isinstance(database_url, str):
            engine.dispose()


def refuse_if_running(
    settings: KafkaSettings, projection: Projection, timeout: float = 10.0
) -> None:
    """ConfigurationError if the projection version's consumer group has live members.

    A running runner keeps its own positions and would write past a replay's reset.
    """
    group = default_group_id(settings, projection)
    admin = AdminClient(settings.admin_config())
    deadline = time.monotonic() + timeout
    while True:
        try:
            description = admin.describe_consumer_groups([group])[group].result(timeout=timeout)
            break
        except KafkaException as exc:
            # A coordinator still loading (fresh broker, moved group) answers retriably.
            if _coordinator_busy(exc) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            error = exc
        # no permission to describe: say so, do not guess
        raise ConfigurationError(
            f"cannot tell whether the runner of {projection!r} (group {group!r}) is running: "
            f"{error}; stop it and pass allow_running=True"
        ) from error
    if description.members:
        hosts = sorted({m.host for m in description.members})
        raise ConfigurationError(
            f"the runner of {projection!r} is running (group {group!r}, "
            f"{len(description.members)} member(s) on {hosts}): stop it before replaying "
            "this version in place, or rebuild blue/green into a new version (a member that "
            "crashed stays listed until the group's session timeout; if you are sure it is "
            "gone, pass allow_running=True)"
        )


def _coordinator_busy(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (
        error.retriable()
        or error.code()
        in (
            KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.COORDINATOR_NOT_AVAILABLE,
        )
    )


def _prepare(
    engine: Engine, projection: Projection, settings: KafkaSettings, bounds: Bounds, *, reset: bool
) -> None:
    p = projection
    dlq_ends = dlq_end_offsets(settings, p.name, topic_prefix=p.topic_prefix) if reset else {}
    with engine.begin() as conn:
        if reset:
            for table in p.tables.values():
                conn.execute(delete(table))
            SqlParkingLot(p.name, p.version).clear(conn, dlq_ends)
            ensure_checkpoint_rows(conn, p.name, p.version, bounds.start)
            write_checkpoints(conn, p.name, p.version, bounds.start)
            return
        # Resume: the committed checkpoints are where the tables stand; moving them would
        # apply records twice (or skip some). Only partitions without one start at the
        # range's start.
        stored = read_checkpoints(conn, p.name, p.version, bounds.start, for_update=True)
        fresh = {tp: o for tp, o in bounds.start.items() if tp not in stored}
        ensure_checkpoint_rows(conn, p.name, p.version, fresh)
        write_checkpoints(conn, p.name, p.version, fresh)
