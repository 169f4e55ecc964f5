"""Dead letters: what a projection does with a record it cannot apply.

A *poison record* is one whose payload cannot be decoded (stage ``decode``), whose schema
is unknown or whose datum violates the event model (stage ``schema``), or whose handler
still raises after ``retries`` attempts with exponential backoff (stage ``handler``).
The projection's :class:`DeadLetterPolicy` decides what happens next:

* ``STOP``: raise :class:`~eventsource.errors.ProjectionStoppedError`; the runner commits
  nothing at or past the record, so a restart meets the same record again.
* ``SKIP``: write the record to ``<projection>.dlq`` and go on.
* ``PARK``: like ``SKIP``, and the aggregate (the record's key) is parked: every later
  record of that aggregate goes to the DLQ too, in order, until ``dlq replay`` applies
  them and unparks it. Parked aggregates are rows of ``eventsource_parked``, written in
  the batch's own database transaction.

Guarantee: :meth:`DeadLetterHandler.before_commit` flushes the DLQ producer and raises if
any dead letter was not acknowledged by the broker (``acks=all``, idempotent producer).
The runner calls it before committing the batch's transaction, so a checkpoint never
passes a poison record whose dead letter is not durable. A crash between that flush and
the database commit re-processes the batch: the dead letter is then written twice (the
DLQ is at-least-once), and ``dlq replay`` drops the duplicate by its source position.

The runner talks to :class:`DeadLetterHandler` only; see :class:`FailureHook`.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from sqlalchemy import Connection

from eventsource.errors import (
    DecodeError,
    PayloadValidationError,
    ProjectionStoppedError,
    UnknownSchemaError,
)

__all__ = [
    "DLQ_HEADER_PREFIX",
    "DeadLetterHandler",
    "DeadLetterPolicy",
    "DeadLetterSink",
    "FailureHook",
    "PoisonRecord",
    "Stage",
    "build_dlq_headers",
    "call_with_retries",
    "dlq_topic",
    "redact_message",
    "stage_of",
]

T = TypeVar("T")
Headers = list[tuple[str, bytes]]

DLQ_HEADER_PREFIX = "dlq_"
MAX_MESSAGE_CHARS = 1000
MAX_BACKOFF_S = 30.0


class DeadLetterPolicy(enum.StrEnum):
    """What a projection does with a poison record."""

    STOP = "stop"
    SKIP = "skip"
    PARK = "park"


class Stage(enum.StrEnum):
    """Where a record failed (``dlq_stage`` header). ``parked``: diverted, did not fail."""

    DECODE = "decode"
    SCHEMA = "schema"
    HANDLER = "handler"
    PARKED = "parked"


def stage_of(exc: BaseException) -> Stage:
    """The stage a failure belongs to: unknown schema / invalid datum -> ``schema``."""
    if isinstance(exc, UnknownSchemaError | PayloadValidationError):
        return Stage.SCHEMA
    if isinstance(exc, DecodeError):
        return Stage.DECODE
    return Stage.HANDLER


def dlq_topic(projection_name: str) -> str:
    """The dead-letter topic of a projection."""
    return f"{projection_name}.dlq"


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """A consumed record that failed (or was diverted) and everything needed to say why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    stage: Stage
    exception: BaseException | None = None
    timestamp_ms: int | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


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
        cleaned = cleaned[: limit - 14] + "…[truncated]"
    return cleaned


def build_dlq_headers(
    record: PoisonRecord, *, projection_version: int, now: datetime | None = None
) -> Headers:
    """The record's original headers plus the ``dlq_*`` context headers.

    Original ``dlq_*`` headers are dropped first, so a record that went through the DLQ
    before carries exactly one, current, set.
    """
    exc = record.exception
    exc_class = "" if exc is None else f"{type(exc).__module__}.{type(exc).__qualname__}"
    message = "" if exc is None else redact_message(str(exc))
    stamp = (now or datetime.now(UTC)).isoformat()
    original = [(k, v) for k, v in record.headers if not k.startswith(DLQ_HEADER_PREFIX)]
    return [
        *original,
        ("dlq_source_topic", record.topic.encode()),
        ("dlq_source_partition", str(record.partition).encode()),
        ("dlq_source_offset", str(record.offset).encode()),
        ("dlq_stage", record.stage.value.encode()),
        ("dlq_exception_class", exc_class.encode()),
        ("dlq_exception_message", message.encode()),
        ("dlq_projection_version", str(projection_version).encode()),
        ("dlq_time", stamp.encode()),
    ]


def call_with_retries(
    attempt: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt``; on an exception try again up to ``retries`` more times.

    The wait doubles each time (``backoff_s``, ``2*backoff_s``, ..., at most 30 s). The last
    exception propagates unchanged: the caller turns it into a dead letter.
    """
    failures = 0
    while True:
        try:
            return attempt()
        except Exception:
            if failures >= retries:
                raise
            sleep(min(backoff_s * (2**failures), MAX_BACKOFF_S))
            failures += 1


class DeadLetterSink(Protocol):
    """Where dead letters go (the Kafka producer, or a list in unit tests)."""

    def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> None: ...

    def flush(self) -> None:
        """Block until everything sent is durable; raise if anything was not."""

    def close(self) -> None: ...


class ParkingLot(Protocol):
    """Persistence of parked aggregates (see :mod:`eventsource.projection.dlq_parking`)."""

    def load(self, conn: Connection) -> set[tuple[str, str]]: ...

    def park(self, conn: Connection, record: PoisonRecord, aggregate_id: str) -> None: ...


class FailureHook(Protocol):
    """What the runner calls around poison records (implemented by DeadLetterHandler)."""

    def load(self, conn: Connection) -> None: ...

    def is_parked(self, topic: str, key: bytes | None) -> bool: ...

    def divert(self, record: PoisonRecord, conn: Connection) -> None: ...

    def handle(self, record: PoisonRecord, conn: Connection) -> None: ...

    def before_commit(self) -> None: ...

    def after_commit(self) -> None: ...

    def after_rollback(self) -> None: ...


@dataclass
class DeadLetterHandler:
    """Applies a projection's dead-letter policy; one per runner, used by its thread only.

    Per batch the runner calls :meth:`is_parked` / :meth:`divert` before decoding each
    record, :meth:`handle` for each poison record, :meth:`before_commit` before committing
    the batch's transaction and :meth:`after_commit` or :meth:`after_rollback` after it.
    """

    projection: str
    version: int
    policy: DeadLetterPolicy
    sink_factory: Callable[[], DeadLetterSink]
    parking: ParkingLot
    on_dead_letter: Callable[[Stage, BaseException | None], None] | None = None
    _sink: DeadLetterSink | None = field(default=None, init=False)
    _parked: set[tuple[str, str]] = field(default_factory=set, init=False)
    _pending_parks: set[tuple[str, str]] = field(default_factory=set, init=False)
    sent: int = field(default=0, init=False)

    def load(self, conn: Connection) -> None:
        """Read the parked aggregates (call on start and on every partition assignment)."""
        self._parked = self.parking.load(conn)
        self._pending_parks.clear()

    def is_parked(self, topic: str, key: bytes | None) -> bool:
        if key is None or not (self._parked or self._pending_parks):
            return False
        ident = (topic, key.decode("utf-8", "replace"))
        return ident in self._parked or ident in self._pending_parks

    def divert(self, record: PoisonRecord, conn: Connection) -> None:
        """Send a later record of a parked aggregate to the DLQ (its order is kept)."""
        parked = replace(record, stage=Stage.PARKED)
        self._send(parked)
        self.parking.park(conn, parked, _aggregate_id(parked))

    def handle(self, record: PoisonRecord, conn: Connection) -> None:
        """Apply the policy to a poison record; raises ProjectionStoppedError under STOP."""
        if self.policy is DeadLetterPolicy.STOP:
            exc = record.exception
            raise ProjectionStoppedError(
                f"projection {self.projection!r} v{self.version} stopped at poison record "
                f"{record.where} (stage {record.stage.value}: "
                f"{type(exc).__name__ if exc else 'no exception'}: "
                f"{redact_message(str(exc or ''), 300)}); nothing at or after this offset "
                "was committed: fix the handler or schema and restart, or switch the "
                "projection's policy to SKIP or PARK"
            ) from exc
        self._send(record)
        if self.policy is DeadLetterPolicy.PARK and record.key is not None:
            self.parking.park(conn, record, _aggregate_id(record))
            self._pending_parks.add((record.topic, _aggregate_id(record)))

    def before_commit(self) -> None:
        """Make every dead letter of this batch durable, or raise so nothing commits."""
        if self._sink is not None:
            self._sink.flush()

    def after_commit(self) -> None:
        self._parked |= self._pending_parks
        self._pending_parks.clear()

    def after_rollback(self) -> None:
        # The parked rows were rolled back; the batch will be re-read and re-decided.
        self._pending_parks.clear()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _send(self, record: PoisonRecord) -> None:
        if self._sink is None:
            self._sink = self.sink_factory()
        headers = build_dlq_headers(record, projection_version=self.version)
        self._sink.send(record.key, record.value, headers)
        self.sent += 1
        if self.on_dead_letter is not None:
            self.on_dead_letter(record.stage, record.exception)


def _aggregate_id(record: PoisonRecord) -> str:
    return (record.key or b"").decode("utf-8", "replace")


def header_value(headers: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found
