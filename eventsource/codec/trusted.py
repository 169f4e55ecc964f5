"""Building events from Avro-decoded data without validating again what the schema typed.

A payload written with the event model's *own* current schema decodes to exactly the
Python types pydantic would produce. :func:`trusted_builder` returns, per model, a plan
that builds the instance directly and does only what validation would still change
(enum members, nested models, tuples and sets) or check (simple comparisons and lengths:
:mod:`eventsource.codec.trusted_checks`). A failed check, or anything unexpected, answers
None and the caller validates with pydantic. Models whose validation could do more
(validators, custom ``__init__``, ``model_post_init``, private attributes, value-changing
configuration, other constraints) are not trusted at all. The rules and the equality
proof: ``docs/reference/codec.md`` ("Decoding without re-validation"),
``tests/unit/test_codec_trusted.py``.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import pydantic
from pydantic import BaseModel

from eventsource.codec.trusted_build import (
    Builder,
    Convert,
    Plan,
    all_of,
    build_model,
    convert_all,
    every_item,
    every_value,
    map_values,
    nested,
    optional,
)
from eventsource.codec.trusted_checks import (
    Check,
    Untrusted,
    decimal_bounds,
    flat_constraints,
    interval,
    length_check,
    no_constraints,
    number_bounds,
)

__all__ = ["trusted_builder"]

#: model_config keys that do not change what validating an Avro datum produces
_STRUCTURAL_CONFIG: Final = frozenset(
    {
        "title",
        "frozen",
        "extra",
        "defer_build",
        "protected_namespaces",
        "json_schema_extra",
        "json_schema_mode_override",
        "hide_input_in_errors",
        "use_attribute_docstrings",
        "ser_json_timedelta",
        "ser_json_bytes",
        "ser_json_inf_nan",
        "plugin_settings",
    }
)
_KEPT: Final = (str, bytes, int, float, bool, dt.date, uuid.UUID)
_DATETIMES: Final = (dt.datetime, pydantic.AwareDatetime)
_CONTAINERS: Final[dict[Any, Any]] = {
    list: list,
    Sequence: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
}
_NONE: Final[Plan] = (None, None)


def trusted_builder(model: type[BaseModel]) -> Builder | None:
    """A function building ``model`` from a datum of its own Avro schema, or None.

    The function returns the instance, or None when validation must decide (a constraint
    did not hold, or the datum is not what the schema guarantees). It changes the datum it
    is given (converted values) only when it returns an instance.
    """
    try:
        return _Planner().model(model)
    except Untrusted:
        return None
    except Exception:  # a type this planner does not understand: validation decides
        return None


class _Planner:
    def __init__(self) -> None:
        # recursive models: a model being planned is built through this late-bound cell
        self.cells: dict[type[BaseModel], list[Builder]] = {}

    def model(self, model: type[BaseModel]) -> Builder:
        known = self.cells.get(model)
        if known is not None:
            return lambda datum: known[0](datum)
        cell: list[Builder] = []
        self.cells[model] = cell
        _check_model(model)
        checks: list[tuple[str, Check]] = []
        converts: list[tuple[str, Convert]] = []
        for name, info in model.model_fields.items():
            if info.annotation is None:
                raise Untrusted(name)
            check, convert = self.value(info.annotation, [info])
            if check is not None:
                checks.append((name, check))
            if convert is not None:
                converts.append((name, convert))
        builder = build_model(model, tuple(checks), tuple(converts))
        cell.append(builder)
        return builder

    def value(self, annotation: Any, metadata: list[Any]) -> Plan:
        """The plan of one value of ``annotation`` (mirrors ``schema._SchemaBuilder._type``)."""
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            inner, *extra = typing.get_args(annotation)
            return self.value(inner, metadata + extra)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                raise Untrusted(annotation)
            return optional(self.value(members[0], metadata))
        constraints = flat_constraints(metadata)
        if origin is not None:
            return self.generic(annotation, origin, constraints)
        if not isinstance(annotation, type):
            raise Untrusted(annotation)
        return self.plain(annotation, constraints)

    def plain(self, cls: type, constraints: list[Any]) -> Plan:
        if issubclass(cls, enum.Enum):
            no_constraints(constraints)
            members = {member.value: member for member in cls}
            return None, members.__getitem__  # KeyError: not a symbol, validation decides
        if issubclass(cls, BaseModel):
            no_constraints(constraints)
            return None, nested(self.model(cls))
        if cls in _DATETIMES:
            no_constraints(constraints)
            return _NONE
        if cls is Decimal:
            return interval(*decimal_bounds(constraints)), None
        if cls in _KEPT:
            if cls is int or cls is float:
                return interval(*number_bounds(constraints, cls)), None
            if cls in (str, bytes):
                return length_check(constraints), None
            no_constraints(constraints)
            return _NONE
        raise Untrusted(cls)

    def generic(self, annotation: Any, origin: Any, constraints: list[Any]) -> Plan:
        args = typing.get_args(annotation)
        length = length_check(constraints)
        if origin in (dict, Mapping):
            check, convert = self.value(args[1], [])
            return all_of(length, every_value(check)), map_values(convert)
        container = _CONTAINERS.get(origin)
        if container is None:
            raise Untrusted(annotation)
        check, convert = self.value(args[0], [])
        each = every_item(check)
        if container in (set, frozenset):
            # pydantic counts a set's items after dropping duplicates
            return each, convert_all(convert, container, length)
        sequence = None if container is list else container
        return all_of(length, each), convert_all(convert, sequence, None)


def _check_model(model: type[BaseModel]) -> None:
    decorators = model.__pydantic_decorators__
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
        or model.__pydantic_custom_init__
        or model.__pydantic_post_init__ is not None
        or model.__private_attributes__
        or getattr(model, "__pydantic_root_model__", False)
        or not model.model_config.keys() <= _STRUCTURAL_CONFIG
        or model.model_config.get("extra") == "allow"
    ):
        raise Untrusted(model)
