"""Upcasters: typed functions that carry old event data over changes Avro cannot express.

Avro schema resolution already reads any released version into the current model when
the change is one it understands (a field added with a default, a removed field, a
renamed record or field with an alias, an enum with a default, ``int`` to ``long``).
Everything else (a field split in two, a unit changed, an event type renamed) is an
upcaster: a plain function from the datum of version ``N`` of an event type to the datum
of version ``N + 1`` (or of another event type)::

    @upcaster("bank.account.MoneyDeposited", from_version=1)
    def cents_to_amount(data: Datum) -> Datum:
        return {"amount": Decimal(data["cents"]) / 100, "note": data["note"]}

A datum is the dict fastavro decodes (decimals as ``Decimal``, timestamps as aware
``datetime``, enums as their symbol), before pydantic validation. Versions are the ``N``
of the ``<full name>.v<N>.avsc`` files in ``schemas/``.

How a payload written with version ``N`` of ``X`` becomes today's event (see
:meth:`Upcasters.route`): Avro resolution reads it into the version the first upcaster of
``X`` at or after ``N`` expects; that upcaster runs; the chain continues from the version
it produced, and Avro resolution reads the last datum into the current model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, TypeAlias

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from eventsource.codec.compatibility import read_problems
from eventsource.errors import EventSourceError, SchemaError, UpcastError

__all__ = [
    "DEFAULT_UPCASTERS",
    "Datum",
    "Route",
    "UpcastFunction",
    "Upcaster",
    "Upcasters",
    "plan_route",
    "upcaster",
]

Datum: TypeAlias = dict[str, Any]
"""An event's data as Avro decodes it, keyed by field name."""

UpcastFunction: TypeAlias = Callable[[Datum], Datum]
"""An upcaster's function: the datum of one version in, the datum of the next out."""


@dataclass(frozen=True, slots=True)
class Upcaster:
    """One step: data of ``event_type`` version ``from_version`` to ``to_type`` ``to_version``.

    ``to_version`` None means the next version of the same event type, or the current
    model when ``to_type`` names another event type.
    """

    event_type: str
    from_version: int
    function: UpcastFunction
    to_type: str
    to_version: int | None

    @property
    def name(self) -> str:
        """``module.function`` of the upcaster, for messages."""
        function = self.function
        return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"

    def target_version(self) -> int | None:
        """The version this upcaster produces (None: the current model of ``to_type``)."""
        if self.to_version is not None:
            return self.to_version
        return self.from_version + 1 if self.to_type == self.event_type else None


class Upcasters:
    """A registry of upcasters keyed by (writer full name, writer version)."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[int, Upcaster]] = {}
        # Catalogs cache reader plans built from these steps; a registration tells them
        # to forget the plans (weakly held: a registry never keeps a catalog alive).
        self._listeners: list[weakref.WeakMethod[Callable[[], None]]] = []

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call the bound method ``callback`` after every registration (held weakly)."""
        self._listeners.append(weakref.WeakMethod(callback))

    def upcaster(
        self,
        event_type: str,
        *,
        from_version: int,
        to_type: str | None = None,
        to_version: int | None = None,
    ) -> Callable[[UpcastFunction], UpcastFunction]:
        """Decorator registering a function as the upcaster of ``event_type`` ``from_version``.

        The function is returned unchanged, so it stays a plain, unit-testable function.
        """

        def register(function: UpcastFunction) -> UpcastFunction:
            self.register(
                event_type,
                from_version=from_version,
                function=function,
                to_type=to_type,
                to_version=to_version,
            )
            return function

        return register

    def register(
        self,
        event_type: str,
        *,
        from_version: int,
        function: UpcastFunction,
        to_type: str | None = None,
        to_version: int | None = None,
    ) -> Upcaster:
        """Register ``function`` (see :meth:`upcaster`); returns the registered step."""
        if "." not in event_type:
            raise SchemaError(
                f"upcaster {getattr(function, '__qualname__', function)!r}: {event_type!r} "
                "is not a full event name: give namespace and name, e.g. "
                "'bank.account.MoneyDeposited'"
            )
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise SchemaError(
                f"upcaster for {event_type}: from_version must be an integer >= 1 (the N of "
                f"{event_type}.v<N>.avsc), got {from_version!r}"
            )
        if not callable(function):
            raise SchemaError(f"upcaster for {event_type} v{from_version} is not callable")
        step = Upcaster(event_type, from_version, function, to_type or event_type, to_version)
        target = step.target_version()
        if step.to_type == event_type and target is not None and target <= from_version:
            raise SchemaError(
                f"upcaster {step.name} for {event_type} v{from_version} produces version "
                f"{target}: an upcaster must move data forward to a later version"
            )
        versions = self._steps.setdefault(event_type, {})
        if from_version in versions:
            raise SchemaError(
                f"two upcasters for {event_type} v{from_version}: {versions[from_version].name} "
                f"and {step.name}; keep one (chain them as v{from_version} -> "
                f"v{from_version + 1} -> ...)"
            )
        versions[from_version] = step
        alive = []
        for ref in self._listeners:
            callback = ref()
            if callback is not None:
                callback()
                alive.append(ref)
        self._listeners = alive
        return step

    def get(self, event_type: str, from_version: int) -> Upcaster | None:
        """The upcaster registered for exactly this writer version, if any."""
        return self._steps.get(event_type, {}).get(from_version)

    def next_step(self, event_type: str, version: int) -> Upcaster | None:
        """The upcaster with the lowest ``from_version`` >= ``version``, if any."""
        versions = self._steps.get(event_type, {})
        later = [v for v in versions if v >= version]
        return versions[min(later)] if later else None

    def event_types(self) -> frozenset[str]:
        """Event type names that have at least one upcaster."""
        return frozenset(self._steps)

    def steps(self, event_type: str) -> list[Upcaster]:
        """Upcasters of ``event_type``, by ``from_version``."""
        versions = self._steps.get(event_type, {})
        return [versions[v] for v in sorted(versions)]

    def merged(self, other: Upcasters) -> Upcasters:
        """A registry holding the upcasters of both (a step in both must be the same)."""
        result = Upcasters()
        for registry in (self, other):
            for name in registry.event_types():
                for step in registry.steps(name):
                    if result.get(name, step.from_version) == step:
                        continue
                    result.register(
                        name,
                        from_version=step.from_version,
                        function=step.function,
                        to_type=step.to_type,
                        to_version=step.to_version,
                    )
        return result

    def __len__(self) -> int:
        return sum(len(v) for v in self._steps.values())

    def __repr__(self) -> str:
        return f"Upcasters({len(self)} upcasters for {sorted(self._steps)})"


DEFAULT_UPCASTERS = Upcasters()
"""The registry :func:`upcaster` registers into; codecs use it unless given another."""


def upcaster(
    event_type: str,
    *,
    from_version: int,
    to_type: str | None = None,
    to_version: int | None = None,
) -> Callable[[UpcastFunction], UpcastFunction]:
    """Register the decorated function in :data:`DEFAULT_UPCASTERS` (see
    :meth:`Upcasters.upcaster`)."""
    return DEFAULT_UPCASTERS.upcaster(
        event_type, from_version=from_version, to_type=to_type, to_version=to_version
    )


SchemaOf = Callable[[str, int], dict[str, Any] | None]
CurrentOf = Callable[[str], tuple[int, dict[str, Any]] | None]
_MAX_STEPS = 100


@dataclass(slots=True)
class Route:
    """How data written with one writer schema reaches a current model."""

    first_reader: dict[str, Any]  # the schema the payload is read into first
    final_type: str  # full name of the current model the last datum validates as
    run: Callable[[Datum], Datum]  # upcasters and the Avro resolutions between them
    problems: list[str] = field(default_factory=list)  # why this route cannot work


def plan_route(
    upcasters: Upcasters,
    writer_name: str,
    writer_version: int,
    writer: dict[str, Any],
    *,
    schema_of: SchemaOf,
    current_of: CurrentOf,
) -> Route:
    """The route of data written with ``writer`` (``writer_name`` ``writer_version``).

    ``schema_of(name, version)`` gives a released (or the current) schema; ``current_of``
    gives a current model's ``(version, schema)``, None when no model has that name.
    """
    steps: list[Callable[[Datum], Datum]] = []
    problems: list[str] = []
    first_reader: dict[str, Any] | None = None
    name, version, schema = writer_name, writer_version, writer
    for _ in range(_MAX_STEPS):
        step = upcasters.next_step(name, version)
        if step is None:
            break
        expected = schema_of(name, step.from_version)
        if expected is None:
            problems.append(
                f"upcaster {step.name} reads {name} v{step.from_version}, but no such "
                "schema is known: add its .avsc file to the schema directory"
            )
            break
        if first_reader is None:
            first_reader = expected
        elif expected != schema:
            steps.append(_resolution(schema, expected, problems))
        steps.append(_applying(step))
        name, target = step.to_type, step.target_version()
        produced = schema_of(name, target) if target is not None else _current(current_of, name)
        if produced is None:
            problems.append(
                f"upcaster {step.name} produces {name} v{target or 'current'}, but no such "
                "schema is known: add its .avsc file or register the event type"
            )
            break
        current = current_of(name)
        version, schema = (target if target is not None else current[0] if current else 0), produced
    else:
        problems.append(f"the upcasters of {writer_name} loop: check their to_type/to_version")
    current = current_of(name)
    if current is None and not problems:
        problems.append(
            f"data of {writer_name} v{writer_version} upcasts to {name}, but no registered "
            "event type has that name: register it or add an upcaster for it"
        )
    elif current is not None and current[1] != schema:
        if first_reader is None:
            first_reader = current[1]
        else:
            steps.append(_resolution(schema, current[1], problems))
    return Route(first_reader or writer, name, _chain(tuple(steps)), problems)


def _current(current_of: CurrentOf, name: str) -> dict[str, Any] | None:
    current = current_of(name)
    return current[1] if current else None


def _resolution(
    writer: dict[str, Any], reader: dict[str, Any], problems: list[str]
) -> Callable[[Datum], Datum]:
    """Avro resolution of a datum of ``writer`` into ``reader`` (re-encoded, then read)."""
    problems += read_problems(reader=reader, writer=writer)
    parsed_writer, parsed_reader = parse_schema(writer), parse_schema(reader)
    label = f"{writer.get('namespace')}.{writer.get('name')}"

    def resolve(datum: Datum) -> Datum:
        out = BytesIO()
        try:
            schemaless_writer(out, parsed_writer, datum)
        except Exception as exc:  # fastavro raises ValueError/TypeError/KeyError/...
            raise UpcastError(
                f"an upcaster returned data that does not fit the schema of {label} it "
                f"claims to produce: {type(exc).__name__}: {exc}; fix the upcaster (its "
                "unit test should compare its output with that version's fields)"
            ) from exc
        out.seek(0)
        resolved: Datum = schemaless_reader(out, parsed_writer, parsed_reader)  # type: ignore[assignment]
        return resolved

    return resolve


def _applying(step: Upcaster) -> Callable[[Datum], Datum]:
    function = step.function

    def apply(datum: Datum) -> Datum:
        try:
            result = function(dict(datum))  # a copy: an upcaster may not corrupt its input
        except EventSourceError:
            raise
        except Exception as exc:
            raise UpcastError(
                f"upcaster {step.name} ({step.event_type} v{step.from_version} -> "
                f"{step.to_type}) raised {type(exc).__name__}: {exc}; fix it and add the "
                "payload to its unit tests"
            ) from exc
        if not isinstance(result, dict):
            raise UpcastError(
                f"upcaster {step.name} returned {type(result).__name__}, not a dict: an "
                "upcaster returns the datum of the next version"
            )
        return result

    return apply


def _chain(steps: tuple[Callable[[Datum], Datum], ...]) -> Callable[[Datum], Datum]:
    def run(datum: Datum) -> Datum:
        for step in steps:
            datum = step(datum)
        return datum

    return run
