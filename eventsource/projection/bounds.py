"""The range a replay covers: per partition, the first offset applied and the first not.

Asked as offsets, times, or nothing (the whole topic as of now), clamped into what the
partitions hold (watermarks), and taken only once positions the caller wrote are readable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition

from eventsource.domain import Position
from eventsource.errors import ConfigurationError
from eventsource.kafka.admin import topic_not_found
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.metadata import existing_topics
from eventsource.kafka.names import reader_group
from eventsource.kafka.stable import wait_until_readable
from eventsource.projection.checkpoints import TopicPartition as TP
from eventsource.projection.definition import Projection

__all__ = ["Bounds", "OffsetSpec", "find_bounds", "resolve_bounds", "to_millis"]

#: One offset for every partition, or ``{(topic, partition): offset}``.
OffsetSpec = int | Mapping[TP, int]


@dataclass(frozen=True, slots=True)
class Bounds:
    """A replay range: per partition, the first offset applied and the first one not."""

    start: dict[TP, int]
    stop: dict[TP, int]


def resolve_bounds(
    watermarks: Mapping[TP, tuple[int, int]],
    *,
    from_offset: OffsetSpec | None = None,
    to_offset: OffsetSpec | None = None,
    from_time_offsets: Mapping[TP, int] | None = None,
    to_time_offsets: Mapping[TP, int] | None = None,
) -> Bounds:
    """Compute ``start`` / ``stop`` per partition from low/high watermarks and the asks.

    ``to_offset`` is inclusive (stop = offset + 1). Time offsets are what
    ``offsets_for_times`` answered (-1: no record that late, i.e. the end). Everything is
    clamped into ``[low, high]``: a start below the low watermark (deleted by retention)
    starts at the oldest record still there, a stop beyond the high watermark stops at the
    end as of now. A start after the stop is an error.
    """
    if from_offset is not None and from_time_offsets is not None:
        raise ConfigurationError("give a start offset or a start time, not both")
    if to_offset is not None and to_time_offsets is not None:
        raise ConfigurationError("give a stop offset or a stop time, not both")
    start: dict[TP, int] = {}
    stop: dict[TP, int] = {}
    for tp, (low, high) in sorted(watermarks.items()):
        first = low
        if from_offset is not None:
            asked = _for(from_offset, tp, "from_offset")
            first = low if asked is None else asked
        elif from_time_offsets is not None:
            found = from_time_offsets.get(tp, -1)
            first = high if found < 0 else found
        end = high
        if to_offset is not None:
            asked = _for(to_offset, tp, "to_offset")
            end = high if asked is None else asked + 1
        elif to_time_offsets is not None:
            found = to_time_offsets.get(tp, -1)
            end = high if found < 0 else found
        first = min(max(first, low), high)
        end = min(max(end, low), high)
        if first > end:
            raise ConfigurationError(
                f"replay range of {tp[0]}[{tp[1]}] is empty the wrong way round: it starts at "
                f"offset {first} but stops before {end}; check the from/to bounds"
            )
        start[tp], stop[tp] = first, end
    return Bounds(start, stop)


def _for(spec: OffsetSpec, tp: TP, what: str) -> int | None:
    value = spec if isinstance(spec, int) else spec.get(tp)
    if value is not None and value < 0:
        raise ConfigurationError(f"{what} for {tp[0]}[{tp[1]}] is {value}: offsets are >= 0")
    return value


def to_millis(when: datetime) -> int:
    """Epoch milliseconds of a timezone-aware datetime (naive ones are refused)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ConfigurationError(
            f"replay time {when.isoformat()} has no timezone: give an aware datetime "
            "(e.g. 2026-01-31T12:00:00+00:00)"
        )
    return int(when.timestamp() * 1000)


def find_bounds(
    settings: KafkaSettings,
    projection: Projection,
    from_offset: OffsetSpec | None,
    from_time: datetime | None,
    to_offset: OffsetSpec | None,
    to_time: datetime | None,
    timeout: float = 30.0,
    *,
    after: Sequence[Position] = (),
) -> Bounds:
    """Ask the broker for watermarks and time offsets, then compute the range (once the
    positions ``after`` are readable)."""
    consumer = Consumer(
        settings.consumer_config(reader_group(settings.application_id, "replay-bounds"))
    )
    try:
        partitions = _partitions(consumer, projection, timeout)
        if after:
            wait_until_readable(consumer, after, timeout)
        marks = {
            tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=timeout)
            for tp in partitions
        }
        from_times = _offsets_for_time(consumer, partitions, from_time, timeout)
        to_times = _offsets_for_time(consumer, partitions, to_time, timeout, after=True)
    finally:
        consumer.close()
    return resolve_bounds(
        {tp: (int(lo), int(hi)) for tp, (lo, hi) in marks.items()},
        from_offset=from_offset,
        to_offset=to_offset,
        from_time_offsets=from_times,
        to_time_offsets=to_times,
    )


def _partitions(consumer: Consumer, projection: Projection, timeout: float) -> list[TP]:
    metadata = existing_topics(consumer, projection.topics, timeout)
    found: list[TP] = []
    for topic in projection.topics:
        info = metadata[topic]
        if info is None:
            raise topic_not_found(topic, None, f" of projection {projection.name!r}")
        found.extend((topic, n) for n in sorted(info.partitions))
    return found


def _offsets_for_time(
    consumer: Consumer,
    partitions: list[TP],
    when: datetime | None,
    timeout: float,
    *,
    after: bool = False,
) -> dict[TP, int] | None:
    """First offset whose timestamp is >= ``when`` (``after``: > ``when``); -1 for none."""
    if when is None:
        return None
    millis = to_millis(when) + (1 if after else 0)
    asked = [TopicPartition(t, n, millis) for t, n in partitions]
    return {
        (tp.topic, tp.partition): int(tp.offset)
        for tp in consumer.offsets_for_times(asked, timeout=timeout)
    }
