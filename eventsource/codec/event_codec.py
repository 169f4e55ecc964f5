"""Events to self-describing Avro payloads and back.

Encoding writes Avro single-object encoding: ``C3 01``, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema, then the Avro binary body. Decoding also
recognises the Confluent wire format (``00`` + 4-byte big-endian schema id + body).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from io import BytesIO
from pathlib import Path
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError as FastavroResolutionError
from pydantic import ValidationError

from eventsource.codec.catalog import SINGLE_OBJECT_MAGIC, ReaderPlan, SchemaCatalog
from eventsource.codec.trusted import trusted_builder
from eventsource.codec.upcasting import Upcasters
from eventsource.domain import Event
from eventsource.errors import (
    BadMagicError,
    CorruptPayloadError,
    DecodeError,
    EncodeError,
    EventSourceError,
    PayloadValidationError,
    SchemaResolutionError,
    UnknownSchemaError,
)

__all__ = ["CONFLUENT_MAGIC", "EventCodec"]

CONFLUENT_MAGIC: Final = b"\x00"
_SINGLE_OBJECT_HEADER: Final = 10
_CONFLUENT_HEADER: Final = 5
_MAX_REPORTED_ERRORS: Final = 5

#: (writer schema, trusted builder or None, validator or None, the catalog's plan)
_Fast = tuple[Any, Callable[[Any], Event | None] | None, Callable[[Any], Event] | None, ReaderPlan]


class EventCodec:
    """Encodes events to bytes and decodes bytes to events, using a :class:`SchemaCatalog`."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog
        # Fingerprint -> (writer schema, trusted builder, validator, the catalog's plan) for
        # payloads of a current schema with no upcaster (the common case); validator None:
        # full path; builder None: always validate (see eventsource.codec.trusted).
        self._fast: dict[bytes, _Fast] = {}
        self._readers = catalog._readers  # the catalog's plans (cleared, never replaced)

    @classmethod
    def for_events(
        cls,
        event_types: Iterable[type[Event]],
        schema_dir: Path | None = None,
        upcasters: Upcasters | None = None,
    ) -> EventCodec:
        """A codec for ``event_types``, also reading every older version in ``schema_dir``
        (through ``upcasters``, by default those registered with ``@upcaster``)."""
        catalog = SchemaCatalog(upcasters)
        for event_type in event_types:
            catalog.register(event_type)
        if schema_dir is not None:
            catalog.load_directory(schema_dir)
        return cls(catalog)

    def encode(self, event: Event) -> bytes:
        """The single-object encoded payload of ``event``."""
        plan = self.catalog.writer_plan(type(event))
        datum = plan.to_datum(event)
        out = BytesIO()
        out.write(plan.header)
        try:
            schemaless_writer(out, plan.physical, datum)
        except EventSourceError:
            raise
        except Exception as exc:  # fastavro raises ValueError/TypeError/OverflowError/...
            raise EncodeError(
                f"cannot encode {plan.event_type.event_type()} as Avro: {exc} "
                "(a value outside its Avro type, e.g. more decimal places than the schema's "
                "scale or an int beyond 64 bits)"
            ) from exc
        return out.getvalue()

    def reuse_or_encode(self, event: Event, payload: bytes) -> bytes:
        """``payload`` if it is ``event`` as this codec writes it, else ``encode(event)``.

        For a payload that ``event`` was decoded from (a routed append: the client encoded
        it, the owner decoded it for the ``@apply`` trial): its 10-byte header names the
        writer schema, so when that is the event type's current schema the bytes are what
        :meth:`encode` would write (same schema, same datum) and need not be made again.
        Another header (an older schema, another framing) is encoded afresh, so what is
        written is always in the current schema.
        """
        if payload[:_SINGLE_OBJECT_HEADER] == self.catalog.writer_plan(type(event)).header:
            return payload
        return self.encode(event)

    def decode(self, payload: bytes | None) -> Event:
        """The event in ``payload``; raises a :class:`DecodeError` subclass if it has none."""
        if payload is None:
            raise CorruptPayloadError(
                "payload is None (a tombstone), which holds no event: events topics must "
                "not be compacted and producers must not write null values to them"
            )
        if payload[:2] == SINGLE_OBJECT_MAGIC or payload == SINGLE_OBJECT_MAGIC[:1]:
            if len(payload) < _SINGLE_OBJECT_HEADER:
                raise CorruptPayloadError(
                    f"single-object payload of {len(payload)} bytes is shorter than its "
                    "10-byte header (C3 01 + 8-byte fingerprint): it was truncated"
                )
            plan = self.catalog.reader_for_fingerprint(payload[2:_SINGLE_OBJECT_HEADER])
            start = _SINGLE_OBJECT_HEADER
        elif payload[:1] == CONFLUENT_MAGIC:
            if len(payload) < _CONFLUENT_HEADER:
                raise CorruptPayloadError(
                    f"Confluent-framed payload of {len(payload)} bytes is shorter than its "
                    "5-byte header (00 + 4-byte schema id): it was truncated"
                )
            schema_id = int.from_bytes(payload[1:_CONFLUENT_HEADER], "big")
            plan = self.catalog.reader_for_registry_id(schema_id)
            start = _CONFLUENT_HEADER
        else:
            raise BadMagicError(
                f"payload starts with {_preview(payload)}, which is neither Avro single-object "
                "encoding (C3 01) nor the Confluent wire format (00 + 4-byte schema id): "
                "it was not written by an Avro event producer"
            )
        return _read(plan, payload, start)

    def decode_at(self, payload: bytes | None, topic: str, partition: int, offset: int) -> Event:
        """Like :meth:`decode`; errors carry the record's topic, partition and offset.

        Fast path for a single-object payload of a current schema without upcasters: a
        prebuilt reader, then the model built from the Avro-typed datum without validating
        again what the schema guarantees (:mod:`eventsource.codec.trusted`; equal to
        ``model_validate``), else the model's validator. Anything unusual in it (an error,
        trailing bytes) goes through :meth:`decode`, which raises the exact error.
        """
        if payload is not None and payload[:2] == SINGLE_OBJECT_MAGIC:
            fingerprint = payload[2:_SINGLE_OBJECT_HEADER]
            fast = self._fast.get(fingerprint)
            # the catalog forgets its plans when it learns schemas: follow it
            if fast is None or self._readers.get(fingerprint) is not fast[3]:
                fast = self._learn(fingerprint)
            if fast is not None and fast[2] is not None:
                stream = BytesIO(payload)
                stream.seek(_SINGLE_OBJECT_HEADER)
                try:
                    datum = schemaless_reader(stream, fast[0], None)
                    if stream.tell() == len(payload):
                        build = fast[1]
                        if build is not None:
                            event = build(datum)
                            if event is not None:
                                return event
                        return fast[2](datum)
                except Exception:  # decode() below raises the exact error
                    pass
        try:
            return self.decode(payload)
        except DecodeError as exc:
            raise exc.at(topic, partition, offset) from exc.__cause__

    def renames(self, event_type: str) -> bool:
        """True when a record whose ``ce_type`` is ``event_type`` may decode to an event of
        another type: the name is an alias of a registered type, or an upcaster of it has
        another ``to_type``."""
        for step in self.catalog.upcasters.steps(event_type):
            if step.to_type != event_type:
                return True
        try:
            named = self.catalog.event_type_named(event_type)
        except UnknownSchemaError:
            return False
        return named.event_type() != event_type

    def _learn(self, fingerprint: bytes) -> _Fast | None:
        try:
            plan = self.catalog.reader_for_fingerprint(fingerprint)
        except DecodeError:
            return None  # unknown or unusable writer: not cached, decode() raises
        validate = build = None
        if plan.reader is None and plan.upcast is None:
            validate = plan.event_type.__pydantic_validator__.validate_python
            build = trusted_builder(plan.event_type)
        fast = self._fast[fingerprint] = (plan.writer, build, validate, plan)
        return fast


def _read(plan: ReaderPlan, payload: bytes, start: int) -> Event:
    stream = BytesIO(payload)
    stream.seek(start)
    try:
        datum = schemaless_reader(stream, plan.writer, plan.reader)
    except FastavroResolutionError as exc:
        raise SchemaResolutionError(
            f"{plan.event_type.event_type()} cannot read a payload written with schema "
            f"{plan.writer_name!r}: {exc}"
        ) from exc
    except Exception as exc:  # fastavro raises EOFError/ValueError/UnicodeDecodeError/...
        raise CorruptPayloadError(
            f"Avro body of a {plan.writer_name} payload ({len(payload)} bytes) cannot be "
            f"read: {type(exc).__name__}: {exc}; the record is truncated or corrupt"
        ) from exc
    end = stream.tell()
    if end != len(payload):
        raise CorruptPayloadError(
            f"{plan.writer_name} payload has {len(payload) - end} unexpected bytes after its "
            f"Avro body (body ends at byte {end} of {len(payload)}): the record is corrupt"
        )
    if plan.upcast is not None:
        datum = plan.upcast(datum)  # type: ignore[arg-type]  # a record reads as a dict
    try:
        return plan.event_type.model_validate(datum)
    except ValidationError as exc:
        raise PayloadValidationError(
            f"decoded {plan.event_type.event_type()} does not satisfy its model: "
            f"{_problems(exc)}; fix the producer or add an upcaster for old events"
        ) from exc


def _problems(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']} "
        f"(got {_short(error.get('input'))})"
        for error in errors[:_MAX_REPORTED_ERRORS]
    ]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _preview(payload: bytes) -> str:
    if not payload:
        return "nothing (empty payload)"
    head = bytes(payload[:4]).hex(" ").upper()
    return f"{head}{' ...' if len(payload) > 4 else ''} ({len(payload)} bytes)"
