"""Avro schemas generated from pydantic event models.

The mapping (documented in ``docs/reference/codec.md``):

=====================================  ==========================================
Python / pydantic                      Avro
=====================================  ==========================================
``str``                                ``string``
``int``                                ``long``
``float``                              ``double``
``bool``                               ``boolean``
``bytes``                              ``bytes``
``Decimal``                            ``bytes`` + ``decimal`` (precision, scale)
``datetime`` (timezone-aware)          ``long`` + ``timestamp-micros`` (UTC)
``date``                               ``int`` + ``date``
``UUID``                               ``string`` + ``uuid``
``Enum`` with string values            ``enum`` named after the class
``T | None``                           ``["null", T]`` (default null)
``list[T]``, ``tuple[T, ...]``, sets   ``array``
``dict[str, T]``                       ``map``
nested pydantic model                  ``record`` named after the class
=====================================  ==========================================

Nested records and enums take their class name in the event's namespace, are defined
at their first use and referenced by full name afterwards.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import pydantic
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from eventsource.codec.defaults import avro_default
from eventsource.domain import Event
from eventsource.errors import UnsupportedTypeError

__all__ = ["DEFAULT_DECIMAL_PRECISION", "DEFAULT_DECIMAL_SCALE", "avro_schema"]

DEFAULT_DECIMAL_PRECISION: Final = 38
"""Precision of a ``Decimal`` field that declares no ``max_digits``."""
DEFAULT_DECIMAL_SCALE: Final = 9
"""Scale of a ``Decimal`` field that declares no ``decimal_places`` (capped at precision)."""

_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRIMITIVES: Final[dict[Any, str]] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
}
_TIMESTAMP: Final = {"type": "long", "logicalType": "timestamp-micros"}
_DATE: Final = {"type": "int", "logicalType": "date"}
_UUID: Final = {"type": "string", "logicalType": "uuid"}
# pydantic's datetime/date marker classes (runtime classes, Annotated only for type checkers).
_AWARE_DATETIMES: Final = (pydantic.AwareDatetime, pydantic.PastDatetime, pydantic.FutureDatetime)
_DATES: Final = (pydantic.PastDate, pydantic.FutureDate)
_ARRAY_ORIGINS: Final = (list, set, frozenset, Sequence, tuple)
_MAP_ORIGINS: Final = (dict, Mapping)


def avro_schema(event_type: type[Event]) -> dict[str, Any]:
    """Return the Avro record schema of an event model (a fresh, JSON-ready dict).

    Raises :class:`UnsupportedTypeError` naming the model and the field when a field's
    type has no Avro mapping.
    """
    return _SchemaBuilder(event_type).event_record()


class _SchemaBuilder:
    """Walks one event model; remembers the named types it has already defined."""

    def __init__(self, event_type: type[Event]) -> None:
        self.event_type = event_type
        self.namespace = event_type.__namespace__
        self.named: dict[str, dict[str, Any]] = {}
        self.named_owner: dict[str, type] = {}

    def event_record(self) -> dict[str, Any]:
        name = self.event_type.__event_name__
        self._claim_name(name, self.event_type, "")
        schema: dict[str, Any] = {"type": "record", "name": name, "namespace": self.namespace}
        aliases = getattr(self.event_type, "__aliases__", ())
        if aliases:
            schema["aliases"] = [a if "." in a else f"{self.namespace}.{a}" for a in aliases]
        self.named[f"{self.namespace}.{name}"] = schema
        schema["fields"] = self._fields(self.event_type)
        return schema

    # -- records --------------------------------------------------------------------
    def _fields(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        fields = []
        for field_name, info in model.model_fields.items():
            where = f"{model.__qualname__}.{field_name}"
            self._check_field_name(field_name, info, where)
            annotation = info.annotation
            if annotation is None:
                raise self._unsupported(where, "it has no type annotation")
            avro_type = self._type(annotation, list(info.metadata), where)
            default = self._default(info, avro_type, where)
            if default is not _NO_DEFAULT:
                avro_type = _default_branch_first(avro_type, default)
                field: dict[str, Any] = {"name": field_name, "type": avro_type}
                field["default"] = avro_default(default, avro_type, self.named, where)
            else:
                field = {"name": field_name, "type": avro_type}
            fields.append(field)
        return fields

    def _nested_record(self, model: type[BaseModel], where: str) -> Any:
        full_name = f"{self.namespace}.{model.__name__}"
        if self._claim_name(model.__name__, model, where):
            return full_name
        schema: dict[str, Any] = {"type": "record", "name": model.__name__, "fields": []}
        self.named[full_name] = schema
        schema["fields"] = self._fields(model)
        return schema

    def _enum(self, enum_type: type[enum.Enum], where: str) -> Any:
        full_name = f"{self.namespace}.{enum_type.__name__}"
        if self._claim_name(enum_type.__name__, enum_type, where):
            return full_name
        symbols = [member.value for member in enum_type]
        bad = [s for s in symbols if not (isinstance(s, str) and _AVRO_NAME.match(s))]
        if bad or not symbols:
            raise self._unsupported(
                where,
                f"enum {enum_type.__name__} has values {bad or symbols!r} that are not Avro "
                "symbols: Avro enum symbols are the enum's values and must be non-empty "
                "names of letters, digits and underscores (use a str Enum)",
            )
        schema: dict[str, Any] = {"type": "enum", "name": enum_type.__name__, "symbols": symbols}
        default = getattr(enum_type, "__avro_default__", None)
        if default is not None:
            # Readers map symbols they do not know to this one (Avro enum default), so
            # removing a symbol later stays compatible.
            symbol = default.value if isinstance(default, enum.Enum) else default
            if symbol not in symbols:
                raise self._unsupported(
                    where,
                    f"enum {enum_type.__name__}'s __avro_default__ {symbol!r} is not "
                    f"one of its values {symbols!r}",
                )
            schema["default"] = symbol
        self.named[full_name] = schema
        return schema

    def _claim_name(self, name: str, owner: type, where: str) -> bool:
        """Reserve ``name`` in the namespace; True when ``owner`` already defined it."""
        full_name = f"{self.namespace}.{name}"
        if not _AVRO_NAME.match(name):
            raise self._unsupported(
                where, f"type name {name!r} is not an Avro name (letters, digits, underscores)"
            )
        previous = self.named_owner.get(full_name)
        if previous is owner:
            return True
        if previous is not None:
            raise self._unsupported(
                where,
                f"{owner.__module__}.{owner.__qualname__} and "
                f"{previous.__module__}.{previous.__qualname__} would both be named "
                f"{full_name!r} in Avro: rename one of the classes",
            )
        self.named_owner[full_name] = owner
        return False

    # -- types ----------------------------------------------------------------------
    def _type(self, annotation: Any, metadata: list[Any], where: str) -> Any:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            inner, *extra = typing.get_args(annotation)
            return self._type(inner, metadata + extra, where)
        if origin in (typing.Union, types.UnionType):
            return self._union(typing.get_args(annotation), metadata, where)
        if origin is not None:
            return self._generic(annotation, origin, metadata, where)
        if isinstance(annotation, type):
            return self._plain(annotation, metadata, where)
        raise self._unsupported(where, f"type {annotation!r} has no Avro mapping")

    def _plain(self, cls: type, metadata: list[Any], where: str) -> Any:
        if issubclass(cls, enum.Enum):
            return self._enum(cls, where)
        if cls in _PRIMITIVES:
            return _PRIMITIVES[cls]
        if cls is Decimal:
            return _decimal(metadata)
        if cls is dt.datetime or cls in _AWARE_DATETIMES:
            return dict(_TIMESTAMP)
        if cls is dt.date or cls in _DATES:
            return dict(_DATE)
        if cls is uuid.UUID:
            return dict(_UUID)
        if issubclass(cls, BaseModel):
            return self._nested_record(cls, where)
        if cls is pydantic.NaiveDatetime:
            reason = "naive datetimes are ambiguous: use datetime with a timezone (UTC)"
        elif cls in (list, dict, set, frozenset, tuple):
            reason = f"bare {cls.__name__} needs item types, e.g. {cls.__name__}[str]"
        else:
            reason = f"type {cls.__qualname__} has no Avro mapping"
        raise self._unsupported(where, reason)

    def _union(self, args: tuple[Any, ...], metadata: list[Any], where: str) -> Any:
        members = [a for a in args if a is not type(None)]
        if len(members) != 1 or len(args) != 2:
            raise self._unsupported(
                where,
                f"union {' | '.join(getattr(a, '__name__', repr(a)) for a in args)} is not "
                "supported: only Optional (T | None) maps to Avro",
            )
        return ["null", self._type(members[0], metadata, where)]

    def _generic(self, annotation: Any, origin: Any, metadata: list[Any], where: str) -> Any:
        args = typing.get_args(annotation)
        if origin in _ARRAY_ORIGINS:
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                raise self._unsupported(
                    where, "fixed-length tuples have no Avro mapping; use tuple[T, ...]"
                )
            return {"type": "array", "items": self._type(args[0], [], f"{where}[]")}
        if origin in _MAP_ORIGINS:
            if args[0] is not str:
                raise self._unsupported(where, "Avro maps need str keys: use dict[str, T]")
            return {"type": "map", "values": self._type(args[1], [], f"{where}[]")}
        raise self._unsupported(where, f"type {annotation!r} has no Avro mapping")

    # -- fields ---------------------------------------------------------------------
    def _check_field_name(self, name: str, info: FieldInfo, where: str) -> None:
        if not _AVRO_NAME.match(name):
            raise self._unsupported(where, f"field name {name!r} is not an Avro name")
        if info.alias or info.validation_alias or info.serialization_alias:
            raise self._unsupported(
                where, "field aliases are not supported: the Avro field name is the field name"
            )

    def _default(self, info: FieldInfo, avro_type: Any, where: str) -> Any:
        if info.default is not PydanticUndefined:
            if info.default is None and not _is_optional(avro_type):
                raise self._unsupported(where, "default None on a field that is not Optional")
            return info.default
        if info.default_factory is not None and not info.default_factory_takes_validated_data:
            # Only an empty collection is a safe constant; a factory such as uuid4 or
            # datetime.now must not be frozen into the schema.
            value = info.default_factory()  # type: ignore[call-arg]
            if isinstance(value, list | dict | set | frozenset | tuple) and not value:
                return value
        if _is_optional(avro_type):
            # Optional fields always default to null, so adding one stays compatible.
            return None
        return _NO_DEFAULT

    def _unsupported(self, where: str, reason: str) -> UnsupportedTypeError:
        model = self.event_type.__qualname__
        at = f"field {where}" if where else "its name"
        return UnsupportedTypeError(
            f"cannot generate the Avro schema of event {model} "
            f"({self.event_type.event_type()}): {at}: {reason}"
        )


_NO_DEFAULT: Final = object()


def _decimal(metadata: list[Any]) -> dict[str, Any]:
    precision: int | None = None
    scale: int | None = None
    for item in _flatten(metadata):
        precision = getattr(item, "max_digits", None) or precision
        places = getattr(item, "decimal_places", None)
        scale = places if places is not None else scale
    precision = precision or DEFAULT_DECIMAL_PRECISION
    if scale is None:
        scale = min(DEFAULT_DECIMAL_SCALE, precision)
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def _flatten(metadata: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            flat.extend(_flatten(list(item.metadata)))
        elif item is not None:
            flat.append(item)
    return flat


def _is_optional(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _default_branch_first(avro_type: Any, default: Any) -> Any:
    """Avro checks a union's default against its first branch: put null last if needed."""
    if _is_optional(avro_type) and default is not None:
        return [avro_type[1], "null"]
    return avro_type
