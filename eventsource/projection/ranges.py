"""Applying a range of records: from a version's stored checkpoints up to stop offsets,
with the runner's batch code (one transaction per batch, checkpoints included, dead-letter
policy applied). The building block of :mod:`~eventsource.projection.replay` and
:mod:`~eventsource.projection.rebuild`; it has its own consumer with explicit partition
assignment (no consumer group, no rebalances).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine

from eventsource.codec import EventCodec
from eventsource.errors import ProjectionError, WaitTimeoutError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.fetch import next_batch
from eventsource.kafka.names import reader_group
from eventsource.projection.batch import BatchApplier
from eventsource.projection.checkpoints import TopicPartition as TP
from eventsource.projection.checkpoints import ensure_checkpoint_rows, read_checkpoints
from eventsource.projection.dberrors import retry_transient
from eventsource.projection.deadletter import dead_letter_hook
from eventsource.projection.definition import Projection
from eventsource.projection.types import FailureHook, NullListener

__all__ = ["ProgressCallback", "ReplayProgress", "ReplayResult", "apply_range"]


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    """Reported after every batch: what a progress bar shows.

    Counts are offsets, so transaction markers are included with the events.
    """

    events_done: int
    events_total: int
    rate: float  #: events per second since the start
    lag_left: int  #: records between the current positions and the stop offsets
    elapsed_s: float


@dataclass(slots=True)
class ReplayResult:
    """What a replay did. Offsets are next offsets (exclusive) per (topic, partition)."""

    start: dict[TP, int]
    stop: dict[TP, int]
    applied: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    checkpoints: dict[TP, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.applied + self.ignored + self.dead_lettered


ProgressCallback = Callable[[ReplayProgress], None]


def apply_range(
    projection: Projection,
    settings: KafkaSettings,
    engine: Engine,
    stop: Mapping[TP, int],
    *,
    batch_size: int = 5000,
    codec: EventCodec | None = None,
    failure_hook: FailureHook | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 600.0,
    start: Mapping[TP, int] | None = None,
) -> ReplayResult:
    """Apply records from the stored checkpoints up to ``stop`` (exclusive) per partition.

    The building block of replay and rebuild: exactly-once through the runner's batch code.
    """
    p = projection
    started = time.monotonic()
    deadline = started + timeout

    def read_begin() -> dict[TP, int]:
        with engine.begin() as conn:
            ensure_checkpoint_rows(conn, p.name, p.version, stop)
            return read_checkpoints(conn, p.name, p.version, stop)

    begin = retry_transient(read_begin, p, doing="reading checkpoints", deadline=deadline)
    result = ReplayResult(start=dict(start or begin), stop=dict(stop), checkpoints=dict(begin))
    total = sum(max(stop[tp] - begin.get(tp, 0), 0) for tp in stop)
    hook = failure_hook or dead_letter_hook(p, settings)
    applier = BatchApplier(
        p, engine, codec or EventCodec.for_events(p.event_types()), hook, NullListener()
    )
    consumer = Consumer(
        settings.consumer_config(
            reader_group(settings.application_id, f"replay.{p.name}.v{p.version}")
        )
    )
    try:
        open_parts = [tp for tp in stop if result.checkpoints.get(tp, 0) < stop[tp]]
        if open_parts:
            consumer.assign(
                [TopicPartition(t, n, result.checkpoints.get((t, n), 0)) for t, n in open_parts]
            )
        while open_parts:
            if time.monotonic() - started > timeout:
                raise WaitTimeoutError(
                    f"replay of {p!r} did not reach its stop offsets within {timeout}s; "
                    f"(checkpoint, stop): {_behind(result.checkpoints, stop)}. It resumes "
                    "from the checkpoints: call again with reset=False and the same bounds"
                )
            open_parts = _step(consumer, applier, result, stop, open_parts, batch_size, deadline)
            if progress is not None:
                progress(_progress(result, stop, total, time.monotonic() - started))
    finally:
        consumer.close()
        if failure_hook is None:
            hook.close()
    result.seconds = time.monotonic() - started
    return result


def _step(
    consumer: Consumer,
    applier: BatchApplier,
    result: ReplayResult,
    stop: Mapping[TP, int],
    open_parts: list[TP],
    batch_size: int,
    deadline: float,
) -> list[TP]:
    good: list[Any] = []
    for message in next_batch(consumer, 0.5, batch_size):
        error = message.error()
        if error is not None:
            if error.fatal():
                raise ProjectionError(f"Kafka consumer failed during replay: {error.str()}")
            continue
        key: TP = (message.topic() or "", message.partition() or 0)
        offset = message.offset()
        if offset is not None and offset < stop.get(key, 0):
            good.append(message)
    positions = {
        (tp.topic, tp.partition): min(tp.offset, stop[(tp.topic, tp.partition)])
        for tp in consumer.position([TopicPartition(t, n) for t, n in open_parts])
        if tp.offset >= 0
    }
    outcome = retry_transient(  # one transaction, checkpoints included: safe to repeat
        lambda: applier.apply(good, positions) if good else applier.advance(positions),
        applier.projection,
        doing="batch",
        deadline=deadline,
    )
    result.applied += outcome.applied
    result.ignored += outcome.ignored
    result.dead_lettered += outcome.dead_lettered
    result.checkpoints.update(outcome.next_offsets or {})
    done = [tp for tp in open_parts if result.checkpoints.get(tp, 0) >= stop[tp]]
    if done:
        consumer.pause([TopicPartition(t, n) for t, n in done])
    return [tp for tp in open_parts if tp not in done]


def _progress(
    result: ReplayResult,
    stop: Mapping[TP, int],
    total: int,
    elapsed: float,
) -> ReplayProgress:
    lag = sum(max(stop[tp] - result.checkpoints.get(tp, 0), 0) for tp in stop)
    done = total - lag
    return ReplayProgress(
        events_done=done,
        events_total=total,
        rate=done / elapsed if elapsed > 0 else 0.0,
        lag_left=lag,
        elapsed_s=elapsed,
    )


def _behind(done: Mapping[TP, int], stop: Mapping[TP, int]) -> dict[str, tuple[int, int]]:
    return {
        f"{t}[{n}]": (done.get((t, n), 0), o)
        for (t, n), o in stop.items()
        if done.get((t, n), 0) < o
    }
