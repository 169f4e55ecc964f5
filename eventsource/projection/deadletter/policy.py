"""The SKIP / PARK failure hook: what a projection does with a record it cannot apply.

A *poison record* is one whose payload cannot be decoded (stage ``decode``: bad magic,
truncated body, datum that violates the event model), whose writer schema is unknown
(stage ``schema``), or whose handler still raises after the projection's ``retries``
(stage ``handler``; the runner retries with backoff). The projection's
:class:`DeadLetterPolicy` decides what happens next:

* ``STOP``: the runner commits what came before the record and raises
  :class:`~eventsource.errors.ProjectionStoppedError`; the checkpoint stays *at* the
  record, so a restart meets it again.
* ``SKIP``: the record goes to the projection's DLQ topic and the runner goes on.
* ``PARK``: like ``SKIP``, and the aggregate (the record's key) is parked: every later
  record of that aggregate goes to the DLQ too (stage ``parked``), in order, until
  ``dlq replay`` applies them and unparks it (or ``dlq unpark`` gives them up).

**Durability.** :meth:`DeadLetterHandler.before_commit` flushes the DLQ producer
(idempotent, ``acks=all``) and raises :class:`~eventsource.errors.DeadLetterError` if any
dead letter of the batch was not acknowledged; the runner calls it right before committing
the batch's transaction, so no checkpoint ever passes a poison record whose dead letter is
not durable on the broker. The same transaction records each diverted source position
(``eventsource_dlq_diverted``): a crash after the flush and before the commit leaves an
*orphan* dead letter whose record the restarted runner applies normally; replay skips
such orphans, because their diverting batch never committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from eventsource.domain import EventMetadata
from eventsource.kafka.names import dlq_topic
from eventsource.projection.deadletter.headers import Headers, PoisonRecord, build_dlq_headers
from eventsource.projection.deadletter.parking import SqlParkingLot
from eventsource.projection.deadletter.sink import DeadLetterSink
from eventsource.projection.tables import create_framework_tables
from eventsource.projection.types import (
    DeadLetterPolicy,
    Failure,
    FailureAction,
    FailureHook,
    RawRecord,
    Stage,
    StopOnFailure,
)

if TYPE_CHECKING:
    from eventsource.kafka.config import KafkaSettings
    from eventsource.projection.definition import Projection

__all__ = ["DeadLetterHandler", "dead_letter_hook"]


@dataclass
class DeadLetterHandler:
    """The SKIP / PARK failure hook of one runner (used by the runner's thread only).

    The parked set is read from the database on the first call of every batch, inside the
    batch's transaction, so it follows partition moves and ``dlq replay`` unparking.
    """

    projection: str
    version: int
    policy: DeadLetterPolicy
    sink_factory: Callable[[], DeadLetterSink]
    parking: SqlParkingLot
    sent: int = field(default=0, init=False)
    _sink: DeadLetterSink | None = field(default=None, init=False)
    _parked: set[tuple[str, str]] | None = field(default=None, init=False)
    _tables_ready: bool = field(default=False, init=False)
    _pending: list[tuple[bytes | None, bytes | None, Headers]] = field(
        default_factory=list, init=False
    )

    # --- FailureHook -------------------------------------------------------------------
    def intercept(self, record: RawRecord, meta: EventMetadata, connection: Connection) -> bool:
        """Divert a later record of a parked aggregate to the DLQ (its order is kept)."""
        if self.policy is not DeadLetterPolicy.PARK or record.key is None:
            return False
        if (record.topic, _aggregate_id(record)) not in self._parked_set(connection):
            return False
        self.hold(record, connection)
        return True

    def hold(self, record: RawRecord, connection: Connection) -> None:
        """Send a record of a parked aggregate to the DLQ (stage ``parked``) and move the
        aggregate's ``last_offset`` to it, so it stays parked until this one is replayed."""
        self._send(PoisonRecord(record, Stage.PARKED), connection)
        if record.key is not None:
            self.parking.park(connection, record, _aggregate_id(record), Stage.PARKED)

    def on_failure(self, failure: Failure, connection: Connection) -> FailureAction:
        """STOP under policy STOP; else dead-letter the record (and park its aggregate)."""
        if self.policy is DeadLetterPolicy.STOP:
            return FailureAction.STOP
        record, stage = failure.record, Stage(failure.stage)
        self._send(PoisonRecord(record, stage, failure.error), connection)
        if self.policy is DeadLetterPolicy.PARK and record.key is not None:
            parked = self._parked_set(connection)
            self.parking.park(connection, record, _aggregate_id(record), stage)
            parked.add((record.topic, _aggregate_id(record)))
        return FailureAction.SKIP

    def before_commit(self, connection: Connection) -> None:
        """Make every dead letter of this batch durable, or raise so nothing commits."""
        pending, self._pending = self._pending, []
        if pending:
            if self._sink is None:
                self._sink = self.sink_factory()
            for key, value, headers in pending:
                self._sink.send(key, value, headers)
            self._sink.flush()
            self.sent += len(pending)
        self._parked = None  # re-read in the next batch's transaction

    def after_rollback(self) -> None:
        self._pending.clear()
        self._parked = None
        self._tables_ready = False  # a CREATE TABLE in the rolled-back batch is gone too

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    # --- internals -----------------------------------------------------------------------
    def _ready(self, connection: Connection) -> None:
        if not self._tables_ready:
            create_framework_tables(connection)
            self._tables_ready = True

    def _parked_set(self, connection: Connection) -> set[tuple[str, str]]:
        if self._parked is None:
            self._ready(connection)
            self._parked = self.parking.load(connection)
        return self._parked

    def _send(self, poison: PoisonRecord, connection: Connection) -> None:
        # Held back until before_commit: a batch that is rolled back (and re-applied on
        # the runner's careful path) must not leave a dead letter behind. The diverted
        # mark is written now, in the batch's transaction: it commits with the batch.
        self._ready(connection)
        self.parking.mark_diverted(connection, poison.record)
        headers = build_dlq_headers(poison, projection_version=self.version)
        self._pending.append((poison.record.key, poison.record.value, headers))


def _aggregate_id(record: RawRecord) -> str:
    return (record.key or b"").decode("utf-8", "replace")


def dead_letter_hook(projection: Projection, settings: KafkaSettings) -> FailureHook:
    """The failure hook for ``projection.policy``: STOP, or a DLQ-writing handler.

    The DLQ topic is created (if missing) the first time a dead letter is written.
    """
    if projection.policy is DeadLetterPolicy.STOP:
        return StopOnFailure()
    from eventsource.projection.deadletter.sink import KafkaDeadLetterSink, ensure_dlq_topic

    topic = dlq_topic(projection.name, projection.topic_prefix)

    def open_sink() -> DeadLetterSink:
        ensure_dlq_topic(settings, topic)
        return KafkaDeadLetterSink(settings, topic)

    return DeadLetterHandler(
        projection=projection.name,
        version=projection.version,
        policy=projection.policy,
        sink_factory=open_sink,
        parking=SqlParkingLot(projection.name, projection.version),
    )
