"""Per-type datum preparation before fastavro writes a ``model_dump()``.

``model_dump()`` already yields what fastavro writes for almost every type. Two things need
a step in between, and only types that contain them pay for it:

* ``Enum`` members become their value (the Avro symbol);
* ``datetime`` values must be timezone-aware: fastavro would read a naive one as local time,
  which silently shifts the instant, so the encoder refuses it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from eventsource.errors import EncodeError

__all__ = ["Prepare", "datum_preparer"]

Prepare = Callable[[Any], Any]


def datum_preparer(schema: Mapping[str, Any]) -> Prepare | None:
    """A function fixing up a ``model_dump()`` for ``schema``; None when nothing needs it."""
    return _Walker(f"{schema['namespace']}.{schema['name']}").walk(schema, "")


class _Walker:
    def __init__(self, event_name: str) -> None:
        self.event_name = event_name
        self.namespace = event_name.rpartition(".")[0]
        self.named: dict[str, Any] = {}
        self.prepared: dict[str, Prepare | None] = {}
        self.in_progress: set[str] = set()

    def walk(self, avro_type: Any, where: str) -> Prepare | None:
        if isinstance(avro_type, list):
            branch = avro_type[1] if avro_type[0] == "null" else avro_type[0]
            return _optional(self.walk(branch, where))
        if isinstance(avro_type, str):
            return self._reference(avro_type)
        kind = avro_type["type"]
        if avro_type.get("logicalType") == "timestamp-micros":
            return self._aware(where)
        if kind == "enum":
            self._define(avro_type, None)
            return _enum_value
        if kind == "array":
            return _each(self.walk(avro_type["items"], f"{where}[]"))
        if kind == "map":
            return _each_value(self.walk(avro_type["values"], f"{where}[]"))
        if kind == "record":
            return self._record(avro_type, where)
        return None

    def _record(self, schema: Mapping[str, Any], where: str) -> Prepare | None:
        full_name = self._define(schema, None)
        self.in_progress.add(full_name)
        steps = []
        for field in schema["fields"]:
            path = f"{where}.{field['name']}" if where else field["name"]
            step = self.walk(field["type"], path)
            if step is not None:
                steps.append((field["name"], step))
        self.in_progress.discard(full_name)
        if not steps:
            return None
        prepare = _fields(tuple(steps))
        self.prepared[full_name] = prepare
        return prepare

    def _define(self, schema: Mapping[str, Any], prepare: Prepare | None) -> str:
        name = schema["name"]
        full_name = name if "." in name else f"{schema.get('namespace', self.namespace)}.{name}"
        self.named[full_name] = schema
        self.prepared[full_name] = prepare
        return full_name

    def _reference(self, name: str) -> Prepare | None:
        full_name = name if "." in name else f"{self.namespace}.{name}"
        schema = self.named.get(full_name)
        if schema is None:
            return None  # a primitive
        if schema["type"] == "enum":
            return _enum_value
        if full_name not in self.in_progress:
            return self.prepared[full_name]
        prepared = self.prepared
        # A recursive reference to a record still being walked: bind late.
        return lambda datum: (prepared[full_name] or _identity)(datum)

    def _aware(self, where: str) -> Prepare:
        event_name = self.event_name

        def check(value: datetime) -> datetime:
            if value.tzinfo is None or value.utcoffset() is None:
                raise EncodeError(
                    f"cannot encode {event_name}: field {where} holds the naive datetime "
                    f"{value.isoformat()}; Avro timestamps are UTC instants, so give it a "
                    "timezone (e.g. datetime.now(UTC)) or declare the field AwareDatetime"
                )
            return value

        return check


def _identity(value: Any) -> Any:
    return value


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _optional(step: Prepare | None) -> Prepare | None:
    if step is None:
        return None
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
    def prepare(datum: dict[str, Any]) -> dict[str, Any]:
        for name, step in steps:
            datum[name] = step(datum[name])
        return datum

    return prepare
