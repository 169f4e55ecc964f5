"""The constraint checks of :mod:`eventsource.codec.trusted`: what pydantic would check
on a value the Avro schema already typed, as one comparison per value where possible.

Every function raises :class:`Untrusted` for a constraint it cannot check exactly as
pydantic does; the model is then always validated.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import annotated_types
from pydantic.fields import FieldInfo

__all__ = [
    "Check",
    "Untrusted",
    "decimal_bounds",
    "flat_constraints",
    "interval",
    "length_check",
    "no_constraints",
    "number_bounds",
]

#: True when pydantic's constraints hold for the value
Check = Callable[[Any], bool]
#: (bound, inclusive) or None, for the low and the high end
Bound = tuple[Any, bool] | None

_GENERAL_DECIMAL: Final = frozenset({"max_digits", "decimal_places"})
_EXACT_FLOAT_INT: Final = 2**53
_DEFAULT_PRECISION: Final = 38
_DEFAULT_SCALE: Final = 9


class Untrusted(Exception):
    """The model (or a type in it) cannot be built without validation."""


def flat_constraints(metadata: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            flat.extend(flat_constraints(list(item.metadata)))
        elif item is not None:
            flat.append(item)
    return flat


def no_constraints(constraints: list[Any]) -> None:
    if constraints:
        raise Untrusted(constraints)


def number_bounds(constraints: list[Any], cls: type) -> tuple[Bound, Bound]:
    """The interval that ``gt``/``ge``/``lt``/``le`` leave; bounds of another type than the
    field's (where pydantic may compare otherwise than Python) are not trusted."""
    low: Bound = None
    high: Bound = None
    for item in constraints:
        kind = type(item)
        if kind is annotated_types.Gt:
            low = _tighter(low, (_bound(item.gt, cls), False), low=True)
        elif kind is annotated_types.Ge:
            low = _tighter(low, (_bound(item.ge, cls), True), low=True)
        elif kind is annotated_types.Lt:
            high = _tighter(high, (_bound(item.lt, cls), False), low=False)
        elif kind is annotated_types.Le:
            high = _tighter(high, (_bound(item.le, cls), True), low=False)
        else:
            raise Untrusted(item)
    return low, high


def _bound(value: Any, cls: type) -> Any:
    kind = type(value)
    if cls is float and kind is int and abs(value) <= _EXACT_FLOAT_INT:
        return float(value)
    if (kind is cls or (cls is Decimal and kind is int)) and value == value:  # not NaN
        return value
    raise Untrusted(value)


def _tighter(old: Bound, new: tuple[Any, bool], *, low: bool) -> tuple[Any, bool]:
    value, inclusive = new
    if old is None:
        return new
    if old[0] == value:
        return value, old[1] and inclusive  # exclusive is the tighter
    keep_new = value > old[0] if low else value < old[0]
    return new if keep_new else old


def decimal_bounds(constraints: list[Any]) -> tuple[Bound, Bound]:
    """Comparisons, plus the digits bound when ``max_digits``/``decimal_places`` are set.

    The schema's precision and scale are those constraints (see ``schema._decimal``);
    fastavro reads with that precision and scale, rounding only values that do not fit, so
    a value whose magnitude is below ``10 ** (precision - scale)`` has exactly ``scale``
    decimal places and at most ``precision`` digits: it satisfies both.
    """
    general = [c for c in constraints if _is_general(c)]
    low, high = number_bounds([c for c in constraints if not _is_general(c)], Decimal)
    if not general:
        return low, high
    precision: int | None = None
    scale: int | None = None
    for item in general:
        given = vars(item)
        if not given.keys() <= _GENERAL_DECIMAL:
            raise Untrusted(item)
        precision = given.get("max_digits") or precision
        places = given.get("decimal_places")
        scale = places if places is not None else scale
    precision = precision or _DEFAULT_PRECISION
    scale = min(_DEFAULT_SCALE, precision) if scale is None else scale
    bound = Decimal(10) ** (precision - scale)
    return _tighter(low, (-bound, False), low=True), _tighter(high, (bound, False), low=False)


def _is_general(item: Any) -> bool:
    return isinstance(item, annotated_types.BaseMetadata) and type(item).__module__.startswith(
        "pydantic."
    )


def interval(low: Bound, high: Bound) -> Check | None:
    if low is None and high is None:
        return None
    if low is None:
        assert high is not None
        hi, hi_in = high
        return (lambda v: v <= hi) if hi_in else (lambda v: v < hi)
    lo, lo_in = low
    if high is None:
        return (lambda v: v >= lo) if lo_in else (lambda v: v > lo)
    hi, hi_in = high
    if lo_in and hi_in:
        return lambda v: lo <= v <= hi
    if lo_in:
        return lambda v: lo <= v < hi
    if hi_in:
        return lambda v: lo < v <= hi
    return lambda v: lo < v < hi


def length_check(constraints: list[Any]) -> Check | None:
    least, most = 0, None
    for item in constraints:
        kind = type(item)
        if kind is annotated_types.MinLen:
            least = max(least, item.min_length)
        elif kind is annotated_types.MaxLen:
            most = item.max_length if most is None else min(most, item.max_length)
        else:
            raise Untrusted(item)
    if most is None:
        return None if least == 0 else (lambda v: len(v) >= least)
    return lambda v: least <= len(v) <= most
