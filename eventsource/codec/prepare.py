"""Per-type encoding plans: from an event model to the datum fastavro writes, fast.

The datum is built straight from the models' ``__dict__`` (validated field values), which
is several times cheaper than ``model_dump()``: nested models become dicts, and only
values that need converting are touched.

fastavro's logical-type writers cost more than the rest of a small record's encoding, so
the encoder writes with a *physical* copy of the schema (logical types replaced by their
underlying primitive, which has the same parsing canonical form, fingerprint and bytes) and
converts the few values that need it itself:

* ``Decimal`` -> two's-complement unscaled bytes, refusing values that do not fit the
  schema's scale or precision (never rounding);
* ``datetime`` -> microseconds since the epoch, refusing naive datetimes (fastavro would
  read them as local time and silently shift the instant);
* ``date`` -> days since the epoch; ``UUID`` -> its string; ``Enum`` -> its value (symbol).

A record without such fields is written straight from its ``__dict__``.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable, Mapping
from decimal import Context, Decimal
from typing import Any, Final

from eventsource.errors import EncodeError

__all__ = ["Prepare", "encoding_plan"]

Prepare = Callable[[Any], Any]

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY: Final = dt.date(1970, 1, 1).toordinal()
# Exact decimal arithmetic for any precision Avro decimals are used with.
_EXACT: Final = Context(prec=1000)


def encoding_plan(schema: Mapping[str, Any]) -> tuple[dict[str, Any], Prepare]:
    """The physical schema to write ``schema`` with, and the event -> datum function."""
    walker = _Walker(f"{schema['namespace']}.{schema['name']}")
    physical, to_datum = walker.walk(schema, "")
    assert to_datum is not None  # a record always has a step
    return physical, to_datum


class _Walker:
    def __init__(self, event_name: str) -> None:
        self.event_name = event_name
        self.namespace = event_name.rpartition(".")[0]
        self.named: dict[str, Any] = {}
        self.prepared: dict[str, Prepare | None] = {}
        self.in_progress: set[str] = set()

    def walk(self, avro_type: Any, where: str) -> tuple[Any, Prepare | None]:
        if isinstance(avro_type, list):
            branches = [self.walk(branch, where) for branch in avro_type]
            steps = [step for _, step in branches if step is not None]
            return [b for b, _ in branches], _optional(steps[0]) if steps else None
        if isinstance(avro_type, str):
            return avro_type, self._reference(avro_type)
        kind = avro_type["type"]
        logical = avro_type.get("logicalType")
        if logical is not None:
            step = self._logical(logical, avro_type, where)
            if step is not None:
                return kind, step
        if kind == "enum":
            self._define(avro_type, _enum_value)
            return dict(avro_type), _enum_value
        if kind == "array":
            items, step = self.walk(avro_type["items"], f"{where}[]")
            return {**avro_type, "items": items}, _each(step)
        if kind == "map":
            values, step = self.walk(avro_type["values"], f"{where}[]")
            return {**avro_type, "values": values}, _each_value(step)
        if kind == "record":
            return self._record(avro_type, where)
        return dict(avro_type), None

    def _record(self, schema: Mapping[str, Any], where: str) -> tuple[Any, Prepare | None]:
        full_name = self._define(schema, None)
        self.in_progress.add(full_name)
        fields, steps = [], []
        for field in schema["fields"]:
            path = f"{where}.{field['name']}" if where else field["name"]
            field_type, step = self.walk(field["type"], path)
            fields.append({**field, "type": field_type})
            if step is not None:
                steps.append((field["name"], step))
        self.in_progress.discard(full_name)
        prepare = _fields(tuple(steps)) if steps else _field_values
        self.prepared[full_name] = prepare
        return {**schema, "fields": fields}, prepare

    def _define(self, schema: Mapping[str, Any], prepare: Prepare | None) -> str:
        name = schema["name"]
        full_name = name if "." in name else f"{schema.get('namespace', self.namespace)}.{name}"
        self.named[full_name] = schema
        self.prepared[full_name] = prepare
        return full_name

    def _reference(self, name: str) -> Prepare | None:
        full_name = name if "." in name else f"{self.namespace}.{name}"
        if full_name not in self.named:
            return None  # a primitive
        if full_name not in self.in_progress:
            return self.prepared[full_name]
        prepared = self.prepared
        # A recursive reference to a record still being walked: bind late.
        return lambda datum: (prepared[full_name] or _field_values)(datum)

    def _logical(self, logical: str, schema: Mapping[str, Any], where: str) -> Prepare | None:
        if logical == "decimal" and schema["type"] == "bytes":
            return self._decimal(schema["scale"], schema["precision"], where)
        if logical == "timestamp-micros":
            return self._timestamp(where)
        if logical == "date":
            return _days
        if logical == "uuid":
            return _uuid_text
        return None

    def _decimal(self, scale: int, precision: int, where: str) -> Prepare:
        limit = 10**precision
        event_name = self.event_name

        def to_bytes(value: Decimal) -> bytes:
            try:
                scaled = _EXACT.scaleb(value, scale)
                unscaled = int(scaled)
            except (ValueError, OverflowError, TypeError) as exc:
                raise EncodeError(
                    f"cannot encode {event_name}: field {where} holds {value!r}, which is "
                    "not a finite decimal"
                ) from exc
            if unscaled != scaled or not -limit < unscaled < limit:
                raise EncodeError(
                    f"cannot encode {event_name}: field {where} holds {value}, which does not "
                    f"fit decimal({precision}, {scale}); declare the field with "
                    "Field(max_digits=..., decimal_places=...) so the model rejects it, or "
                    "release a schema version with a larger precision or scale"
                )
            return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)

        return to_bytes

    def _timestamp(self, where: str) -> Prepare:
        event_name = self.event_name

        def to_micros(value: dt.datetime) -> int:
            if value.tzinfo is None or value.utcoffset() is None:
                raise EncodeError(
                    f"cannot encode {event_name}: field {where} holds the naive datetime "
                    f"{value.isoformat()}; Avro timestamps are UTC instants, so give it a "
                    "timezone (e.g. datetime.now(UTC)) or declare the field AwareDatetime"
                )
            delta = value - _EPOCH
            return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

        return to_micros


def _field_values(model: Any) -> Any:
    # A model's validated field values; a plain dict (e.g. from model_construct) as is.
    return getattr(model, "__dict__", model)


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _days(value: dt.date) -> int:
    return value.toordinal() - _EPOCH_DAY


def _uuid_text(value: uuid.UUID | str) -> str:
    return str(value)


def _optional(step: Prepare) -> Prepare:
    return lambda value: None if value is None else step(value)


def _each(step: Prepare | None) -> Prepare | None:
    if step is None:
        return None
    return lambda values: [step(value) for value in values]


def _each_value(step: Prepare | None) -> Prepare | None:
    if step is None:
        return None
    return lambda values: {key: step(value) for key, value in values.items()}


def _fields(steps: tuple[tuple[str, Prepare], ...]) -> Prepare:
    if len(steps) == 1:
        ((name, step),) = steps

        def prepare_one(model: Any) -> dict[str, Any]:
            datum = dict(getattr(model, "__dict__", model))  # never mutate the model
            datum[name] = step(datum[name])
            return datum

        return prepare_one

    def prepare(model: Any) -> dict[str, Any]:
        datum = dict(getattr(model, "__dict__", model))  # never mutate the model
        for name, step in steps:
            datum[name] = step(datum[name])
        return datum

    return prepare
