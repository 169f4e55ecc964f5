"""Where a projection stands: per partition, its checkpoint, the end offset and the lag."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition
from sqlalchemy import Engine, select

from eventsource.errors import ProjectionError
from eventsource.kafka.admin import topic_not_found
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.metadata import existing_topics
from eventsource.kafka.names import reader_group
from eventsource.kafka.reach import is_unreachable, unreachable_error
from eventsource.projection.checkpoints import checkpoints_table, read_checkpoints
from eventsource.projection.dberrors import retry_transient
from eventsource.projection.definition import Projection
from eventsource.projection.store import create_read_model_engine, live_version, read_only

__all__ = ["PartitionStatus", "RunStats", "projection_status", "projection_versions"]


@dataclass(slots=True)
class RunStats:
    """Counts of one ``run`` / ``run_until_caught_up`` call."""

    applied: int = 0  #: records whose handler ran
    ignored: int = 0  #: records of event types the projection has no handler for
    dead_lettered: int = 0  #: poison records the failure hook took
    duplicates: int = 0  #: records below a stored checkpoint (already applied)
    batches: int = 0
    seconds: float = 0.0

    @property
    def events(self) -> int:
        """Records processed in any way (applied, ignored or dead-lettered)."""
        return self.applied + self.ignored + self.dead_lettered


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """One partition of a projection. ``checkpoint`` is the next offset to apply."""

    topic: str
    partition: int
    checkpoint: int
    end_offset: int
    lag: int


def projection_status(
    projection: Projection,
    settings: KafkaSettings,
    database: str | Engine,
    *,
    timeout: float = 10.0,
) -> list[PartitionStatus]:
    """Checkpoints from the read-model database against the topics' last stable offsets.

    Partitions never applied show checkpoint 0. Works without a running runner. Creates
    nothing: a SQLite database that does not exist raises DatabaseNotFoundError. A
    connection lost while reading is retried until ``timeout``.
    """
    engine = (
        create_read_model_engine(database, must_exist=True)
        if isinstance(database, str)
        else database
    )

    def read() -> dict[tuple[str, int], int]:
        with engine.connect() as raw, read_only(raw) as conn:
            if live_version(conn, projection.name) is None:
                return {}
            return read_checkpoints(conn, projection.name, projection.version)

    try:
        stored = retry_transient(
            read, projection, doing="reading checkpoints", deadline=time.monotonic() + timeout
        )
    finally:
        if isinstance(database, str):
            engine.dispose()
    consumer = Consumer(settings.consumer_config(reader_group(settings.application_id, "status")))
    try:
        metadata = existing_topics(consumer, projection.topics, timeout)
        result = []
        for topic in projection.topics:
            info = metadata[topic]
            if info is None:
                raise topic_not_found(topic, settings, f" of projection {projection.name!r}")
            for partition in sorted(info.partitions):
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout, cached=False
                )
                checkpoint = stored.get((topic, partition), 0)
                result.append(
                    PartitionStatus(topic, partition, checkpoint, high, max(0, high - checkpoint))
                )
        return result
    except KafkaException as exc:
        if is_unreachable(exc):
            raise unreachable_error(settings, timeout) from exc
        raise ProjectionError(f"cannot read end offsets of {projection.topics}: {exc}") from exc
    finally:
        consumer.close()


def projection_versions(
    projection: Projection, database: str | Engine
) -> tuple[list[int], int | None]:
    """Every version of the projection the database knows (with checkpoints, live, or the
    definition's own), oldest first, and the live one (None before the first run).
    Creates nothing (DatabaseNotFoundError for a SQLite file that does not exist)."""
    engine = (
        create_read_model_engine(database, must_exist=True)
        if isinstance(database, str)
        else database
    )
    try:
        with engine.connect() as raw, read_only(raw) as conn:
            live = live_version(conn, projection.name)
            stored: set[int] = set()
            if live is not None:  # the framework tables exist
                c = checkpoints_table.c
                stored = {
                    int(v)
                    for (v,) in conn.execute(
                        select(c.version).where(c.projection == projection.name).distinct()
                    )
                }
    finally:
        if isinstance(database, str):
            engine.dispose()
    versions = stored | {projection.version} | ({live} if live is not None else set())
    return sorted(versions), live
