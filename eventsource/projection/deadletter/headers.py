"""The ``dlq_*`` headers of a dead letter: built when it is written, parsed when it is read.

A dead letter is the consumed record unchanged (key, value, original headers) plus:

=========================  =========================================================
``dlq_source_topic``       where the record was consumed from
``dlq_source_partition``
``dlq_source_offset``
``dlq_stage``              decode | schema | handler | parked (:class:`Stage`)
``dlq_exception_class``    the error's class, ``module.QualName``
``dlq_exception_message``  the error's message, secrets redacted, at most 1000 chars
``dlq_projection_version``
``dlq_time``               ISO 8601, UTC
``dlq_marked``             ``1``: the diverting batch records the source position in
                           ``eventsource_dlq_diverted`` (replay applies the dead letter
                           only if that batch committed); absent on older dead letters
=========================  =========================================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsource.domain import Position
from eventsource.errors import ProjectionError
from eventsource.projection.types import RawRecord, Stage

__all__ = [
    "DLQ_HEADER_PREFIX",
    "DeadLetterRecord",
    "Headers",
    "PoisonRecord",
    "build_dlq_headers",
    "header_value",
    "parse_dead_letter",
    "redact_message",
]

Headers = list[tuple[str, bytes | None]]

DLQ_HEADER_PREFIX = "dlq_"
MAX_MESSAGE_CHARS = 1000


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
        ("dlq_stage", Stage(poison.stage).value.encode()),
        ("dlq_exception_class", exc_class.encode()),
        ("dlq_exception_message", message.encode()),
        ("dlq_projection_version", str(projection_version).encode()),
        ("dlq_time", stamp.encode()),
        ("dlq_marked", b"1"),
    ]


def header_value(headers: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead letter: the original record plus why and where it failed."""

    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  #: the original headers (``dlq_*`` removed)
    source: Position
    stage: str  #: decode | schema | handler | parked
    exception_class: str
    exception_message: str
    projection_version: int | None
    dead_lettered_at: datetime | None
    #: the diverting batch recorded its source position (see ``eventsource_dlq_diverted``)
    marked: bool = False

    @property
    def aggregate_id(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")

    def original(self) -> RawRecord:
        """The record as it was consumed from its source topic."""
        return RawRecord(
            topic=self.source.topic,
            partition=self.source.partition,
            offset=self.source.offset,
            key=self.key,
            value=self.value,
            headers=self.headers,
            timestamp_ms=None,
        )


def parse_dead_letter(message: Any) -> DeadLetterRecord:
    """A consumed DLQ message (confluent-kafka ``Message``) as a typed record;
    ProjectionError if it was not written by eventsource's dead-letter handler."""
    raw = message.headers() or []
    items = list(raw.items()) if isinstance(raw, dict) else list(raw)
    headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in items)
    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
    topic = header_value(headers, "dlq_source_topic")
    partition = header_value(headers, "dlq_source_partition")
    offset = header_value(headers, "dlq_source_offset")
    if topic is None or partition is None or offset is None:
        raise ProjectionError(
            f"record {where} has no dlq_source_topic/partition/offset headers: it was not "
            "written by eventsource's dead-letter handler; remove it or skip past its offset"
        )
    version = header_value(headers, "dlq_projection_version")
    stamp = header_value(headers, "dlq_time")
    try:
        source = Position(topic, int(partition), int(offset))
        dead_lettered_at = datetime.fromisoformat(stamp) if stamp else None
        projection_version = int(version) if version else None
    except ValueError as exc:
        raise ProjectionError(f"record {where} has malformed dlq_* headers: {exc}") from exc
    return DeadLetterRecord(
        dlq_partition=message.partition() or 0,
        dlq_offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=tuple((k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)),
        source=source,
        stage=header_value(headers, "dlq_stage") or "",
        exception_class=header_value(headers, "dlq_exception_class") or "",
        exception_message=header_value(headers, "dlq_exception_message") or "",
        projection_version=projection_version,
        dead_lettered_at=dead_lettered_at,
        marked=header_value(headers, "dlq_marked") == "1",
    )
