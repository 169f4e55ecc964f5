"""Giving dead letters up: ``dlq discard`` and ``dlq unpark``.

Some dead letters can never be applied (the event was wrong, and a compensating event was
written since). Discarding records their source positions in
``eventsource_dlq_discarded`` (with a reason and a time), so ``dlq replay`` never applies
them; the dead letters stay on the DLQ topic (Kafka records are not deleted), and
``dlq list`` still shows them.

- :func:`discard_dead_letters`: the dead letters of one aggregate, of a DLQ offset range,
  or all of them. A parked aggregate whose dead letters are then all settled (applied or
  discarded) is unparked in the same transaction.
- :func:`unpark_aggregates`: unpark aggregates now (by id, or those with dead letters in a
  DLQ offset range): their pending dead letters are discarded in the same transaction, so
  the runner applies the aggregates' new events and replay never applies an old one after
  them.

Only dead letters of this projection version, from the version's DLQ checkpoint on, are
considered; orphans (their diverting batch never committed) are left alone, replay skips
them anyway. Unparking compares the parked row's ``last_offset`` with the newest dead
letter read: if a running runner diverted a newer record meanwhile, the aggregate stays
parked and the result says so (run the command again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from eventsource.domain import Position
from eventsource.errors import ConfigurationError
from eventsource.kafka.config import KafkaSettings
from eventsource.projection.deadletter.headers import DeadLetterRecord
from eventsource.projection.deadletter.parking import SqlParkingLot, read_dlq_checkpoints
from eventsource.projection.deadletter.reader import iter_dead_letters
from eventsource.projection.definition import Projection
from eventsource.projection.store import create_read_model_engine
from eventsource.projection.tables import create_framework_tables

__all__ = ["DiscardResult", "discard_dead_letters", "unpark_aggregates"]

#: (DLQ partition, first offset, last offset), both ends included
OffsetRange = tuple[int, int, int]


@dataclass(slots=True)
class DiscardResult:
    """What a discard or unpark did."""

    discarded: list[Position] = field(default_factory=list)  #: source positions given up
    settled_before: int = 0  #: selected dead letters already applied or discarded
    unparked: list[tuple[str, str]] = field(default_factory=list)  #: (topic, aggregate id)
    still_parked: list[tuple[str, str]] = field(default_factory=list)  #: a newer one came


def discard_dead_letters(
    projection: Projection,
    settings: KafkaSettings,
    database_url: str | Engine,
    *,
    aggregate_id: str | None = None,
    dlq_offsets: OffsetRange | None = None,
    everything: bool = False,
    reason: str = "discarded by operator",
    timeout: float = 60.0,
) -> DiscardResult:
    """Discard the selected dead letters (see the module docstring).

    Select with ``aggregate_id``, ``dlq_offsets=(partition, first, last)`` (both given:
    both must match), or ``everything=True``; ConfigurationError when nothing selects.
    """
    _check_selection(aggregate_id, dlq_offsets, everything, "discard")

    def chosen(r: DeadLetterRecord) -> bool:
        return everything or (
            (aggregate_id is None or r.aggregate_id == aggregate_id)
            and (dlq_offsets is None or _in_range(r, dlq_offsets))
        )

    return _settle(projection, settings, database_url, chosen, False, reason, timeout)


def unpark_aggregates(
    projection: Projection,
    settings: KafkaSettings,
    database_url: str | Engine,
    *,
    aggregate_ids: Sequence[str] = (),
    dlq_offsets: OffsetRange | None = None,
    reason: str = "unparked by operator",
    timeout: float = 60.0,
) -> DiscardResult:
    """Unpark aggregates, discarding their pending dead letters (see the module docstring).

    Select with ``aggregate_ids``, or ``dlq_offsets=(partition, first, last)``: every
    aggregate with a dead letter in that range. ConfigurationError when nothing selects.
    """
    _check_selection(aggregate_ids or None, dlq_offsets, False, "unpark")
    return _settle(
        projection,
        settings,
        database_url,
        lambda r: (
            (r.aggregate_id in aggregate_ids)
            or (dlq_offsets is not None and _in_range(r, dlq_offsets))
        ),
        True,
        reason,
        timeout,
        extra_aggregates=aggregate_ids,
    )


def _check_selection(by_id: object, offsets: OffsetRange | None, every: bool, what: str) -> None:
    if by_id is None and offsets is None and not every:
        raise ConfigurationError(
            f"dlq {what} needs a selection: an aggregate id, a DLQ offset range"
            + (", or all dead letters" if what == "discard" else "")
        )
    if offsets is not None and (offsets[1] < 0 or offsets[2] < offsets[1]):
        raise ConfigurationError(
            f"dlq {what}: offset range {offsets[1]}-{offsets[2]} is empty or negative; "
            "give FIRST-LAST with 0 <= FIRST <= LAST (DLQ offsets, as `dlq list` shows them)"
        )


def _in_range(record: DeadLetterRecord, offsets: OffsetRange) -> bool:
    partition, first, last = offsets
    return record.dlq_partition == partition and first <= record.dlq_offset <= last


def _settle(
    p: Projection,
    settings: KafkaSettings,
    database_url: str | Engine,
    chosen: Callable[[DeadLetterRecord], bool],
    unpark_chosen: bool,
    reason: str,
    timeout: float,
    extra_aggregates: Sequence[str] = (),
) -> DiscardResult:
    engine = (
        create_read_model_engine(database_url) if isinstance(database_url, str) else database_url
    )
    lot = SqlParkingLot(p.name, p.version)
    result = DiscardResult()
    try:
        create_framework_tables(engine)
        with engine.connect() as conn:
            start = read_dlq_checkpoints(conn, p.name, p.version)
        records = [
            r
            for r in iter_dead_letters(
                settings, p.name, start=start, timeout=timeout, topic_prefix=p.topic_prefix
            )
            if r.projection_version in (None, p.version)
        ]
        with engine.begin() as conn:
            live = [r for r in records if not r.marked or lot.is_diverted(conn, r.source)]
            selected = [r for r in live if chosen(r)]
            targets = {
                (r.source.topic, r.aggregate_id) for r in selected if r.aggregate_id is not None
            }
            if unpark_chosen:  # every pending dead letter of a chosen aggregate goes
                parked = lot.load(conn)
                targets |= {(t, a) for t, a in parked if a in extra_aggregates}
                selected = [r for r in live if (r.source.topic, r.aggregate_id) in targets]
            for r in sorted(
                selected, key=lambda r: (r.source.topic, r.source.partition, r.source.offset)
            ):
                if lot.is_applied(conn, r.source) or not lot.mark_discarded(conn, r.source, reason):
                    result.settled_before += 1
                else:
                    result.discarded.append(r.source)
            _unpark(conn, lot, live, targets, result, force=unpark_chosen)
        return result
    finally:
        if isinstance(database_url, str):
            engine.dispose()


def _unpark(
    conn: Connection,
    lot: SqlParkingLot,
    live: list[DeadLetterRecord],
    targets: set[tuple[str, str]],
    result: DiscardResult,
    *,
    force: bool,
) -> None:
    parked = lot.load(conn)
    for topic, agg in sorted(t for t in targets if t in parked):
        mine = [r.source for r in live if (r.source.topic, r.aggregate_id) == (topic, agg)]
        if not force and lot.settled(conn, mine) != set(mine):
            continue  # dead letters of it still wait for a replay: it stays parked
        newest = max((s.offset for s in mine), default=None)
        row = next(
            (r for r in lot.parked_rows(conn) if (r["topic"], r["aggregate_id"]) == (topic, agg)),
            None,
        )
        last = None if row is None else int(str(row["last_offset"]))
        if last is not None and (newest is None or last <= newest):
            lot.unpark_if_last(conn, topic, agg, last)
            result.unparked.append((topic, agg))
        else:
            result.still_parked.append((topic, agg))
