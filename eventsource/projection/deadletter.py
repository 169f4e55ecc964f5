"""Dead letters: what a projection does with a record it cannot apply.

A *poison record* is one whose payload cannot be decoded (stage ``decode``: bad magic,
truncated body, datum that violates the event model), whose writer schema is unknown
(stage ``schema``), or whose handler still raises after the projection's ``retries``
(stage ``handler``; the runner retries with backoff). The projection's
:class:`DeadLetterPolicy` decides what happens next:

* ``STOP``: the runner commits what came before the record and raises
  :class:`~eventsource.errors.ProjectionStoppedError`; the checkpoint stays *at* the
  record, so a restart meets it again.
* ``SKIP``: the record goes to ``<projection>.dlq`` and the runner goes on.
* ``PARK``: like ``SKIP``, and the aggregate (the record's key) is parked: every later
  record of that aggregate goes to the DLQ too (stage ``parked``), in order, until
  ``dlq replay`` applies them and unparks it. Parked aggregates are rows of
  ``eventsource_parked`` written in the batch's own database transaction.

**Durability guarantee.** :meth:`DeadLetterHandler.before_commit` flushes the DLQ producer
(idempotent, ``acks=all``) and raises :class:`~eventsource.errors.DeadLetterError` if any
dead letter of the batch was not acknowledged; the runner calls it right before committing
the batch's transaction, so no checkpoint ever passes a poison record whose dead letter is
not durable on the broker. A crash after that flush and before the database commit
re-processes the batch and writes the dead letter a second time: the DLQ is
*at-least-once*, and ``dlq replay`` applies each source position once.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection

from eventsource.domain import EventMetadata
from eventsource.projection.dlq_parking import SqlParkingLot, create_dlq_tables
from eventsource.projection.hooks import (
    DeadLetterPolicy,
    Failure,
    FailureAction,
    FailureHook,
    RawRecord,
    StopOnFailure,
)

if TYPE_CHECKING:
    from eventsource.kafka.config import KafkaSettings
    from eventsource.projection.definition import Projection

__all__ = [
    "DLQ_HEADER_PREFIX",
    "DeadLetterHandler",
    "DeadLetterPolicy",
    "DeadLetterSink",
    "PoisonRecord",
    "Stage",
    "build_dlq_headers",
    "dead_letter_hook",
    "dlq_topic",
    "header_value",
    "redact_message",
]

Headers = list[tuple[str, bytes | None]]

DLQ_HEADER_PREFIX = "dlq_"
MAX_MESSAGE_CHARS = 1000


class Stage(enum.StrEnum):
    """Where a record failed (``dlq_stage`` header). ``parked``: diverted, did not fail."""

    DECODE = "decode"
    SCHEMA = "schema"
    HANDLER = "handler"
    PARKED = "parked"


def dlq_topic(projection_name: str) -> str:
    """The dead-letter topic of a projection."""
    return f"{projection_name}.dlq"


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """A consumed record that failed (or was diverted), and why."""

    record: RawRecord
    stage: Stage
    exception: BaseException | None = None

    @property
    def where(self) -> str:
        r = self.record
        return f"{r.topic}[{r.partition}]@{r.offset}"


_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b([\w.\-]*(?:password|passwd|secret|token|api[_\-.]?key|credentials|jaas\.config)"
    r"[\w.\-]*)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)]+)"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]+):[^@\s/]+@")


def redact_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` without secret values (``password=…``, URL credentials), cut to ``limit``."""
    cleaned = _URL_CREDENTIALS.sub(r"\1:***@", message)
    cleaned = _SECRET_ASSIGNMENT.sub(r"\1\2***", cleaned)
    if len(cleaned) > limit:
        marker = "…[truncated]"
        cleaned = cleaned[: limit - len(marker)] + marker
    return cleaned


def build_dlq_headers(
    poison: PoisonRecord, *, projection_version: int, now: datetime | None = None
) -> Headers:
    """The record's original headers plus the ``dlq_*`` context headers.

    Original ``dlq_*`` headers are dropped first, so a record that went through the DLQ
    before carries exactly one, current, set.
    """
    exc, r = poison.exception, poison.record
    exc_class = "" if exc is None else f"{type(exc).__module__}.{type(exc).__qualname__}"
    message = "" if exc is None else redact_message(str(exc))
    stamp = (now or datetime.now(UTC)).isoformat()
    original = [(k, v) for k, v in r.headers if not k.startswith(DLQ_HEADER_PREFIX)]
    return [
        *original,
        ("dlq_source_topic", r.topic.encode()),
        ("dlq_source_partition", str(r.partition).encode()),
        ("dlq_source_offset", str(r.offset).encode()),
        ("dlq_stage", poison.stage.value.encode()),
        ("dlq_exception_class", exc_class.encode()),
        ("dlq_exception_message", message.encode()),
        ("dlq_projection_version", str(projection_version).encode()),
        ("dlq_time", stamp.encode()),
    ]


def header_value(headers: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


class DeadLetterSink(Protocol):
    """Where dead letters go: the Kafka producer, or a list in unit tests."""

    def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> None: ...

    def flush(self) -> None:
        """Block until everything sent is durable; raise DeadLetterError if not."""

    def close(self) -> None: ...


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
        self._send(PoisonRecord(record, Stage.PARKED))
        if record.key is not None:
            self.parking.park(connection, record, _aggregate_id(record), Stage.PARKED)

    def on_failure(self, failure: Failure, connection: Connection) -> FailureAction:
        """STOP under policy STOP; else dead-letter the record (and park its aggregate)."""
        if self.policy is DeadLetterPolicy.STOP:
            return FailureAction.STOP
        record, stage = failure.record, Stage(failure.stage)
        self._send(PoisonRecord(record, stage, failure.error))
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
    def _parked_set(self, connection: Connection) -> set[tuple[str, str]]:
        if self._parked is None:
            if not self._tables_ready:
                create_dlq_tables(connection)
                self._tables_ready = True
            self._parked = self.parking.load(connection)
        return self._parked

    def _send(self, poison: PoisonRecord) -> None:
        # Held back until before_commit: a batch that is rolled back (and re-applied on
        # the runner's careful path) must not leave a dead letter behind.
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
    from eventsource.projection.dlq_producer import KafkaDeadLetterSink, ensure_dlq_topic

    topic = dlq_topic(projection.name)

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
