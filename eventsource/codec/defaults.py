"""Python field defaults rendered as Avro JSON default values.

Avro writes defaults in its JSON encoding: ``bytes`` as a string of code points 0-255,
logical types as their underlying value (a decimal's two's-complement unscaled integer,
microseconds since the epoch, days since the epoch), enums as their symbol and unions as
a value of their first branch.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from decimal import Context, Decimal
from typing import Any

from pydantic import BaseModel

from eventsource.errors import UnsupportedTypeError

__all__ = ["avro_default", "decimal_to_bytes", "timestamp_micros"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
_EXACT = Context(prec=1000)


def avro_default(value: Any, avro_type: Any, named: Mapping[str, Any], where: str) -> Any:
    """Render ``value`` as the Avro JSON default of a field of type ``avro_type``.

    ``named`` resolves references to named types defined earlier in the same schema.
    """
    try:
        return _render(value, avro_type, named)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise UnsupportedTypeError(
            f"field {where}: default {value!r} cannot be written as an Avro default of "
            f"type {_describe(avro_type)}: {exc}"
        ) from exc


def _render(value: Any, avro_type: Any, named: Mapping[str, Any]) -> Any:
    if isinstance(avro_type, list):  # a union: the default belongs to the first branch
        return None if value is None else _render(value, avro_type[0], named)
    if isinstance(avro_type, str):
        if avro_type in named:
            return _render(value, named[avro_type], named)
        return _primitive(value, avro_type)
    kind = avro_type["type"]
    logical = avro_type.get("logicalType")
    if logical == "decimal":
        raw = decimal_to_bytes(Decimal(value), avro_type["scale"])
        return raw.decode("latin-1")
    if logical == "timestamp-micros":
        return timestamp_micros(value)
    if logical == "date":
        return (value - _EPOCH_DATE).days
    if logical == "uuid":
        return str(uuid.UUID(str(value)))
    if kind == "enum":
        symbol = value.value if isinstance(value, enum.Enum) else value
        if symbol not in avro_type["symbols"]:
            raise ValueError(f"{symbol!r} is not one of {avro_type['symbols']}")
        return symbol
    if kind == "array":
        return [_render(item, avro_type["items"], named) for item in value]
    if kind == "map":
        return {str(k): _render(v, avro_type["values"], named) for k, v in value.items()}
    if kind == "record":
        if not isinstance(value, BaseModel):
            raise TypeError(f"expected a model instance, got {type(value).__name__}")
        return {
            field["name"]: _render(getattr(value, field["name"]), field["type"], named)
            for field in avro_type["fields"]
        }
    return _primitive(value, kind)


def _primitive(value: Any, kind: str) -> Any:
    if kind == "null":
        if value is not None:
            raise ValueError("only None fits null")
        return None
    if kind == "boolean":
        return bool(value)
    if kind == "long":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("not an int")
        return value
    if kind == "double":
        return float(value)
    if kind == "string":
        return value.value if isinstance(value, enum.Enum) else str(value)
    if kind == "bytes":
        return bytes(value).decode("latin-1")
    raise TypeError(f"unknown Avro type {kind!r}")


def decimal_to_bytes(value: Decimal, scale: int) -> bytes:
    """Two's-complement big-endian unscaled integer of ``value`` at ``scale`` (exact)."""
    scaled = _EXACT.scaleb(value, scale)
    unscaled = int(scaled)
    if scaled != unscaled:
        raise ValueError(f"{value} has more than {scale} decimal places")
    length = (unscaled.bit_length() + 8) // 8
    return unscaled.to_bytes(length, byteorder="big", signed=True)


def timestamp_micros(value: dt.datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (naive ones are rejected)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: give it a timezone (UTC)")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _describe(avro_type: Any) -> str:
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType") or avro_type.get("type"))
    return str(avro_type)
