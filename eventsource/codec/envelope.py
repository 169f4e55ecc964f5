"""CloudEvents Kafka protocol binding, binary mode: event metadata as record headers.

The payload stays pure Avro; everything a consumer needs to route or filter travels in
headers, so it can be read without decoding the value. Header values are UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from eventsource.domain import EventMetadata
from eventsource.errors import DecodeError, EncodeError

__all__ = [
    "AGGREGATE_TYPE",
    "CAUSATION_ID",
    "CONTENT_TYPE",
    "CORRELATION_ID",
    "ID",
    "SEQUENCE",
    "SOURCE",
    "SPECVERSION",
    "SUBJECT",
    "TIME",
    "TRACEPARENT",
    "TYPE",
    "HeaderTemplate",
    "RecordMetadata",
    "build_headers",
    "header_template",
    "parse_headers",
    "read_headers",
    "utc_stamp",
]

SPECVERSION: Final = "ce_specversion"
ID: Final = "ce_id"
SOURCE: Final = "ce_source"
TYPE: Final = "ce_type"
SUBJECT: Final = "ce_subject"
TIME: Final = "ce_time"
SEQUENCE: Final = "ce_sequence"
AGGREGATE_TYPE: Final = "ce_aggregatetype"
CORRELATION_ID: Final = "ce_correlationid"
CAUSATION_ID: Final = "ce_causationid"
CONTENT_TYPE: Final = "content-type"
TRACEPARENT: Final = "traceparent"

_SPEC: Final = (SPECVERSION, b"1.0")
_REQUIRED: Final = (ID, TYPE, SUBJECT, TIME, SEQUENCE, AGGREGATE_TYPE)  # see read_headers
_SPECS: Final = frozenset({None, b"1.0"})
_FIELDS: Final = (
    "event_id",
    "event_type",
    "aggregate_type",
    "aggregate_id",
    "version",
    "time",
    "correlation_id",
    "causation_id",
)
_TIME_FORMAT: Final = b"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"


def build_headers(
    meta: EventMetadata,
    *,
    source: str,
    content_type: str = "application/avro",
    traceparent: str | None = None,
) -> list[tuple[str, bytes]]:
    """The CloudEvents headers of one event record.

    ``source`` identifies the producing application (CloudEvents ``source``, a URI-reference
    such as ``/bank/accounts``). ``traceparent`` (W3C trace context) is passed through.
    """
    try:
        stamp = utc_stamp(meta.time)
    except EncodeError as exc:
        raise EncodeError(
            f"cannot build headers of event {meta.event_id} ({meta.event_type}, aggregate "
            f"{meta.aggregate_id!r} version {meta.version}): {exc}"
        ) from None
    headers = header_template(source, meta.event_type, meta.aggregate_type, content_type).headers(
        meta.event_id.encode(),
        meta.aggregate_id.encode(),
        stamp,
        meta.version,
        meta.correlation_id,
        meta.causation_id,
    )
    if traceparent is not None:
        headers.append((TRACEPARENT, traceparent.encode()))
    return headers


def utc_stamp(time: datetime) -> bytes:
    """``time`` as the RFC 3339 UTC ``ce_time`` value, e.g. ``b"2024-05-01T12:00:00.000000Z"``.

    Raises :class:`EncodeError` for a naive datetime (its instant is unknown).
    """
    offset = time.utcoffset()
    if offset is None:
        raise EncodeError(
            f"its time {time.isoformat()} is naive; use an aware UTC datetime such as "
            "datetime.now(UTC)"
        )
    if offset:
        time = time - offset
    # %-formatting is the cheapest exact RFC 3339 rendering (isoformat needs a tz dance).
    return _TIME_FORMAT % (
        time.year,
        time.month,
        time.day,
        time.hour,
        time.minute,
        time.second,
        time.microsecond,
    )


class HeaderTemplate:
    """The CloudEvents headers of one (source, event type, aggregate type), prebuilt.

    Five of the nine headers are the same for every event of a type, so they are encoded
    once; :meth:`headers` adds the four that vary (id, subject, time, sequence) and the
    optional correlation and causation ids, in the order :func:`build_headers` writes.
    """

    __slots__ = ("_aggregate_type", "_content_type", "_source", "_type")

    def __init__(
        self,
        *,
        source: str,
        event_type: str,
        aggregate_type: str,
        content_type: str = "application/avro",
    ) -> None:
        self._source = (SOURCE, source.encode())
        self._type = (TYPE, event_type.encode())
        self._content_type = (CONTENT_TYPE, content_type.encode())
        self._aggregate_type = (AGGREGATE_TYPE, aggregate_type.encode())

    def headers(
        self,
        event_id: bytes,
        subject: bytes,
        stamp: bytes,
        version: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> list[tuple[str, bytes]]:
        """The headers of one event: ``event_id`` and ``subject`` (the aggregate id) as UTF-8
        bytes, ``stamp`` from :func:`utc_stamp`, ``version`` the event's aggregate version."""
        headers = [
            _SPEC,
            (ID, event_id),
            self._source,
            self._type,
            (SUBJECT, subject),
            (TIME, stamp),
            self._content_type,
            (SEQUENCE, b"%d" % version),
            self._aggregate_type,
        ]
        if correlation_id is not None:
            headers.append((CORRELATION_ID, correlation_id.encode()))
        if causation_id is not None:
            headers.append((CAUSATION_ID, causation_id.encode()))
        return headers


@lru_cache(maxsize=1024)
def header_template(
    source: str, event_type: str, aggregate_type: str, content_type: str = "application/avro"
) -> HeaderTemplate:
    """The (cached) :class:`HeaderTemplate` of one source, event type and aggregate type."""
    return HeaderTemplate(
        source=source,
        event_type=event_type,
        aggregate_type=aggregate_type,
        content_type=content_type,
    )


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> EventMetadata:
    """The metadata carried by a record's CloudEvents headers.

    Raises :class:`DecodeError` naming the header that is missing or malformed. When a
    header repeats, the last value wins (Kafka's ``lastHeader`` convention).
    """
    return _parse_raw(dict(headers) if headers else {})


def _parse_raw(raw: dict[str, Any]) -> EventMetadata:
    try:
        sequence = raw[SEQUENCE].decode()
        time = datetime.fromisoformat(raw[TIME].decode())
        spec = raw.get(SPECVERSION)
        correlation_id = raw.get(CORRELATION_ID)
        causation_id = raw.get(CAUSATION_ID)
        meta = EventMetadata(
            event_id=raw[ID].decode(),
            event_type=raw[TYPE].decode(),
            aggregate_type=raw[AGGREGATE_TYPE].decode(),
            aggregate_id=raw[SUBJECT].decode(),
            version=int(sequence),
            time=time if time.tzinfo is UTC else time.astimezone(UTC),
            correlation_id=None if correlation_id is None else correlation_id.decode(),
            causation_id=None if causation_id is None else causation_id.decode(),
        )
    except (KeyError, AttributeError, ValueError):  # UnicodeDecodeError is a ValueError
        meta = None
    if meta is None or time.tzinfo is None or spec not in _SPECS or not _decimal(sequence):
        _explain(raw)  # slow path: say exactly what is wrong (or accept, e.g. specversion 1.1)
        if meta is None:
            raise DecodeError(f"malformed CloudEvents headers {list(raw)!r}")
    return meta


def read_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> RecordMetadata:
    """A record's metadata for routing: ``ce_type`` now, the other fields when read.

    Checks up front that every required CloudEvents header is present (else raises the
    :class:`DecodeError` :func:`parse_headers` raises); a malformed value (bad UTF-8, a
    non-decimal ``ce_sequence``, an unparsable ``ce_time``) raises that DecodeError when
    the field is first read.
    """
    raw: dict[str, Any] = dict(headers) if headers else {}
    # _REQUIRED spelled out: half the instructions of a set comparison with raw.keys()
    if not (
        ID in raw
        and TYPE in raw
        and SUBJECT in raw
        and TIME in raw
        and SEQUENCE in raw
        and AGGREGATE_TYPE in raw
        and raw.get(SPECVERSION) in _SPECS
    ):
        _parse_raw(raw)  # raises, naming the header (or accepts, e.g. specversion 1.1)
    value = raw[TYPE]
    kind = _TYPE_NAMES.get(value) if type(value) is bytes else None
    if kind is None:
        return RecordMetadata(raw)  # decodes ce_type (or raises, naming the header)
    # RecordMetadata(raw) without its checks, which this ce_type passed before
    meta = _new(RecordMetadata)
    _set_raw(meta, raw)
    _set_type(meta, kind)
    _set_full(meta, None)
    return meta


class RecordMetadata(EventMetadata):
    """:class:`EventMetadata` parsed lazily from a record's headers.

    ``event_type`` is decoded at once (routing needs it); ``aggregate_id`` and ``version``
    are decoded on each read (cheap); the other fields parse the whole envelope once, on
    first read, with :func:`parse_headers`'s checks and errors. Equal to (and hashing like)
    the eager :class:`EventMetadata` of the same headers.
    """

    __slots__ = ("_full", "_raw", "_type")
    _full: EventMetadata | None
    _raw: dict[str, Any]
    _type: str

    def __init__(self, raw: dict[str, Any] | None = None, **fields: Any) -> None:
        full = None
        if raw is None:  # dataclasses.replace(meta, ...): the fields are given
            full = EventMetadata(**fields)
            raw = {TYPE: full.event_type.encode(), SUBJECT: full.aggregate_id.encode()}
            raw[SEQUENCE] = str(full.version).encode()
        value = raw[TYPE]
        try:
            kind = value.decode()
        except (AttributeError, ValueError):
            kind = _parse_raw(raw).event_type  # raises, naming the header
        if len(_TYPE_NAMES) < _TYPE_NAMES_KEPT and type(value) is bytes:
            _TYPE_NAMES[value] = kind
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_type", kind)
        object.__setattr__(self, "_full", full)

    def parsed(self) -> EventMetadata:
        """The eager metadata (parses and checks every header once)."""
        full = self._full
        if full is None:
            full = _parse_raw(self._raw)
            object.__setattr__(self, "_full", full)
        return full

    @property
    def event_type(self) -> str:
        return self._type

    @property
    def aggregate_id(self) -> str:
        try:
            subject: str = self._raw[SUBJECT].decode()
        except (AttributeError, ValueError):
            return self.parsed().aggregate_id  # raises, naming the header
        return subject

    @property
    def version(self) -> int:
        text = self._raw[SEQUENCE]
        if text is not None and text.isdigit():  # bytes.isdigit: ASCII digits only
            return int(text)
        return self.parsed().version  # raises, naming the header

    @property
    def event_id(self) -> str:
        return self.parsed().event_id

    @property
    def aggregate_type(self) -> str:
        return self.parsed().aggregate_type

    @property
    def time(self) -> datetime:
        return self.parsed().time

    @property
    def correlation_id(self) -> str | None:
        return self.parsed().correlation_id

    @property
    def causation_id(self) -> str | None:
        return self.parsed().causation_id

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventMetadata):
            return self.parsed() == (other.parsed() if isinstance(other, RecordMetadata) else other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.parsed())

    def __repr__(self) -> str:
        return repr(self.parsed()).replace("EventMetadata(", "RecordMetadata(", 1)

    def __reduce__(self) -> tuple[Any, ...]:
        return (EventMetadata, tuple(getattr(self.parsed(), f) for f in _FIELDS))


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _explain(raw: dict[str, bytes | None]) -> None:
    values: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            continue
        try:
            values[name] = value.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"header {name!r} is not valid UTF-8: {value[:40]!r}") from exc
    missing = [name for name in _REQUIRED if name not in values]
    if missing:
        raise DecodeError(
            f"record lacks the CloudEvents header{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}"
            f"{_for_event(values)}: it was not written by an eventsource producer"
        )
    spec = values.get(SPECVERSION)
    if spec is not None and spec.split(".")[0] != "1":
        raise DecodeError(f"header {SPECVERSION} is {spec!r}; only CloudEvents 1.x is supported")
    _version(values[SEQUENCE], values)
    _time(values[TIME], values)


def _version(text: str, values: dict[str, str]) -> int:
    if not _decimal(text):
        raise DecodeError(
            f"header {SEQUENCE} is {text!r}{_for_event(values)}; expected the aggregate "
            "version as a decimal number"
        )
    return int(text)


def _time(text: str, values: dict[str, str]) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise DecodeError(
            f"header {TIME} is {text!r}{_for_event(values)}; expected an RFC 3339 "
            "timestamp with a UTC offset, e.g. 2024-05-01T12:00:00.000000Z"
        )
    return parsed.astimezone(UTC)


def _for_event(values: dict[str, str]) -> str:
    known = [f"{key}={values[key]!r}" for key in (ID, TYPE, SUBJECT) if key in values]
    return f" ({', '.join(known)})" if known else ""


#: ce_type header values already decoded (the few event types a reader meets), bounded
_TYPE_NAMES: dict[bytes, str] = {}
_TYPE_NAMES_KEPT: Final = 4096
_new = object.__new__
_set_raw = vars(RecordMetadata)["_raw"].__set__
_set_type = vars(RecordMetadata)["_type"].__set__
_set_full = vars(RecordMetadata)["_full"].__set__
