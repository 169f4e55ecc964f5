"""What a trusted plan is made of: the function that builds a model instance from a datum
without validation, and the combinators that compose values' checks and conversions.

Hot path: a builder runs once per decoded event. The common cases (no conversion, at most
one check) are written out in full instead of calling a shared helper; the cost of one
more call per event shows in ``benchmarks/replay.py``.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from eventsource.codec.trusted_checks import Check

__all__ = [
    "Builder",
    "Convert",
    "Plan",
    "Refused",
    "all_of",
    "build_model",
    "convert_all",
    "every_item",
    "every_value",
    "map_values",
    "nested",
    "optional",
]

#: a value's plan: (check, convert), either None. ``check(value)`` is True when pydantic's
#: constraints hold; ``convert(value)`` is the value as the model holds it, or raises.
Convert = Callable[[Any], Any]
Plan = tuple[Check | None, Convert | None]
Builder = Callable[[dict[str, Any]], Any]


class Refused(Exception):
    """A value does not convert (validation decides)."""


def build_model(
    model: type[BaseModel],
    checks: tuple[tuple[str, Check], ...],
    converts: tuple[tuple[str, Convert], ...],
) -> Builder:
    """Build ``model`` from a datum: None when a check fails, a value does not convert or
    the datum has not exactly the model's fields."""
    new = object.__new__
    # the instance's four slots set through their own descriptors: a third of the
    # instructions of object.__setattr__ by name (which looks each name up in the MRO)
    set_dict = _setter(model, "__dict__")
    set_fields = _setter(model, "__pydantic_fields_set__")
    set_extra = _setter(model, "__pydantic_extra__")
    set_private = _setter(model, "__pydantic_private__")
    size = len(model.model_fields)

    def make(datum: dict[str, Any]) -> Any:
        instance = new(model)
        set_dict(instance, datum)
        set_fields(instance, set(datum))
        set_extra(instance, None)
        set_private(instance, None)
        return instance

    if not checks and not converts:

        def build_plain(datum: dict[str, Any]) -> Any:  # make() inlined: the common case
            if len(datum) != size:
                return None
            instance = new(model)
            set_dict(instance, datum)
            set_fields(instance, set(datum))
            set_extra(instance, None)
            set_private(instance, None)
            return instance

        return build_plain

    if len(checks) == 1 and not converts:
        ((name, check),) = checks

        def build_checked(datum: dict[str, Any]) -> Any:  # make() inlined: the common case
            if len(datum) != size or not check(datum[name]):
                return None
            instance = new(model)
            set_dict(instance, datum)
            set_fields(instance, set(datum))
            set_extra(instance, None)
            set_private(instance, None)
            return instance

        return build_checked

    def build(datum: dict[str, Any]) -> Any:
        if len(datum) != size:
            return None
        try:
            for name, check in checks:
                if not check(datum[name]):
                    return None
            converted = [(name, convert(datum[name])) for name, convert in converts]
        except Exception:  # a value that does not convert: validation decides
            return None
        for name, value in converted:
            datum[name] = value
        return make(datum)

    return build


def _setter(model: type[BaseModel], name: str) -> Callable[[Any, Any], None]:
    """The setter of the instance attribute ``name`` of ``model``: its slot's (or instance
    dict's) own descriptor, as ``object.__setattr__`` would find it first in the MRO."""
    for klass in model.__mro__:
        descriptor = vars(klass).get(name)
        if descriptor is not None:
            if isinstance(descriptor, (types.MemberDescriptorType, types.GetSetDescriptorType)):
                setter: Callable[[Any, Any], None] = descriptor.__set__
                return setter
            break
    return lambda instance, value: object.__setattr__(instance, name, value)


# -- composing checks and conversions ------------------------------------------------
def optional(plan: Plan) -> Plan:
    check, convert = plan
    return (
        None if check is None else (lambda v: v is None or check(v)),
        None if convert is None else (lambda v: None if v is None else convert(v)),
    )


def all_of(first: Check | None, second: Check | None) -> Check | None:
    if first is None:
        return second
    if second is None:
        return first
    return lambda v: first(v) and second(v)


def every_item(check: Check | None) -> Check | None:
    return None if check is None else (lambda values: all(map(check, values)))


def every_value(check: Check | None) -> Check | None:
    return None if check is None else (lambda values: all(map(check, values.values())))


def map_values(convert: Convert | None) -> Convert | None:
    if convert is None:
        return None
    return lambda values: {key: convert(value) for key, value in values.items()}


def convert_all(convert: Convert | None, container: Any, length: Check | None) -> Convert | None:
    if convert is None and container is None:
        return None

    def convert_all(values: Any) -> Any:
        out = list(map(convert, values)) if convert is not None else values
        if container is not None:
            out = container(out)
        if length is not None and not length(out):
            raise Refused(len(out))
        return out

    return convert_all


def nested(build: Builder) -> Convert:
    def nested(value: dict[str, Any]) -> Any:
        # a copy: the event's datum is only changed when the whole event could be built
        built = build(dict(value))
        if built is None:
            raise Refused(value)
        return built

    return nested
