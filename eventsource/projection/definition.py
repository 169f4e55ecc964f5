"""Declaring a projection: its name, version, topics, tables and typed handlers.

A projection is a class. Its handlers are methods decorated with :func:`on`; its tables are
class attributes made with :func:`table`. Each *instance* binds the tables to physical,
versioned names (``<name>_v<version>_<table>``), so version N+1 of a projection never
touches the tables version N serves from::

    class Balances(Projection):
        name = "balances"
        aggregates = (Account,)
        accounts = table("accounts", Column("account_id", String(64), primary_key=True))

        @on(MoneyDeposited)
        def _deposited(self, event: MoneyDeposited, ctx: Context) -> None:
            ctx.upsert(self.accounts, {"account_id": ctx.meta.aggregate_id}, key=["account_id"])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from sqlalchemy import Column, Constraint, Index, MetaData, Table

from eventsource.domain import Aggregate, Event
from eventsource.errors import ConfigurationError, InvalidIdentifierError
from eventsource.kafka.names import events_topic
from eventsource.projection.types import DeadLetterPolicy

if TYPE_CHECKING:
    from eventsource.projection.context import Context

__all__ = [
    "MAX_PHYSICAL_NAME",
    "Handler",
    "Projection",
    "TableSpec",
    "on",
    "table",
    "validate_identifier",
]

P = TypeVar("P", bound="Projection")
E = TypeVar("E", bound=Event)

Handler = Callable[[Any, Any, "Context"], None]

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_HANDLES = "__eventsource_handles__"
#: PostgreSQL truncates identifiers longer than 63 bytes; we refuse them instead.
MAX_PHYSICAL_NAME = 63


def validate_identifier(value: object, what: str) -> str:
    """Return ``value`` if it is a safe SQL identifier, else raise InvalidIdentifierError.

    Allowed: lowercase letter first, then lowercase letters, digits or ``_``; 1-41 chars.
    Identifiers are spliced into DDL (table and view names), so nothing else is accepted.
    """
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise InvalidIdentifierError(
            f"{what} {value!r} is not allowed: use 1-41 characters, a lowercase letter "
            "first, then lowercase letters, digits or '_' (pattern ^[a-z][a-z0-9_]{0,40}$)"
        )
    return value


def on(
    event_type: type[E],
) -> Callable[[Callable[[P, E, Context], None]], Callable[[P, E, Context], None]]:
    """Mark a method as the projection's handler for ``event_type``.

    The handler receives the decoded, typed event and the batch :class:`Context`.
    """
    if not (isinstance(event_type, type) and issubclass(event_type, Event)):
        raise ConfigurationError(f"@on needs an Event subclass, got {event_type!r}")

    def mark(handler: Callable[[P, E, Context], None]) -> Callable[[P, E, Context], None]:
        handled: tuple[type[Event], ...] = getattr(handler, _HANDLES, ())
        setattr(handler, _HANDLES, (*handled, event_type))
        return handler

    return mark


class TableSpec:
    """A table declared on a projection class; each projection instance gets its own copy.

    On an instance, the attribute returns that instance's bound :class:`sqlalchemy.Table`
    (physical name ``<projection>_v<version>_<table>``); on the class, this spec. The
    projection's ``__init__`` stores each bound table in the instance's ``__dict__``, so a
    handler's ``self.accounts`` is a plain attribute read (no descriptor call per event).
    """

    def __init__(self, name: str, *elements: Column[Any] | Constraint | Index) -> None:
        self.name = validate_identifier(name, "table name")
        self.template = Table(name, MetaData(), *elements)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> TableSpec: ...
    @overload
    def __get__(self, instance: Projection, owner: type[Any]) -> Table: ...
    def __get__(self, instance: Projection | None, owner: type[Any]) -> TableSpec | Table:
        if instance is None:
            return self
        return instance.tables[self.name]


def table(name: str, *elements: Column[Any] | Constraint | Index) -> Any:
    """Declare a read-model table of a projection (columns as in ``sqlalchemy.Table``).

    Typed as ``Any`` so that ``self.accounts`` reads as a ``Table`` in handlers.
    """
    return TableSpec(name, *elements)


class Projection:
    """Base class of projections.

    Class attributes:
        name: identifier ``^[a-z][a-z0-9_]{0,40}$``; prefixes tables and the consumer group.
        version: integer >= 1; version N+1 builds its own tables (blue/green rebuild).
        aggregates: aggregate classes whose topics ``<topic_prefix><aggregate_type>.events``
            are read.
        topics: explicit topic names instead of (or besides) ``aggregates`` (taken as they
            are: the prefix is not added).
        topic_prefix: the prefix the event store was given (``topic_prefix=``), so that
            the projection reads the topics the store writes; its DLQ topic carries it too.
        policy, retries, retry_backoff_s: what happens to poison records (see
            :class:`DeadLetterPolicy`); handler errors are retried ``retries`` times first.

    ``name``, ``version``, ``topics`` and ``topic_prefix`` can be overridden per instance
    (tests use unique names; a rebuild instantiates version N+1).
    """

    name: str
    version: int = 1
    aggregates: ClassVar[Sequence[type[Aggregate]]] = ()
    topics: Sequence[str] = ()
    topic_prefix: str = ""
    policy: ClassVar[DeadLetterPolicy] = DeadLetterPolicy.STOP
    retries: ClassVar[int] = 3
    retry_backoff_s: ClassVar[float] = 0.1

    _handlers: ClassVar[dict[type[Event], Handler]]
    _table_specs: ClassVar[dict[str, TableSpec]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type[Event], Handler] = {}
        specs: dict[str, TableSpec] = {}
        for base in reversed(cls.__mro__[1:]):
            handlers.update(getattr(base, "_handlers", {}))
            specs.update(getattr(base, "_table_specs", {}))
        own: dict[type[Event], str] = {}
        for attr, member in cls.__dict__.items():
            for event_type in getattr(member, _HANDLES, ()):
                if event_type in own:
                    raise ConfigurationError(
                        f"{cls.__qualname__} has two handlers for {event_type.__name__}: "
                        f"{own[event_type]} and {attr}; keep one"
                    )
                own[event_type] = attr
                handlers[event_type] = member
            if isinstance(member, TableSpec):
                specs[member.name] = member
        cls._handlers = handlers
        cls._table_specs = specs

    def __init__(
        self,
        *,
        name: str | None = None,
        version: int | None = None,
        topics: Sequence[str] | None = None,
        topic_prefix: str | None = None,
    ) -> None:
        cls = type(self)
        self.topic_prefix = cls.topic_prefix if topic_prefix is None else topic_prefix
        self.name = validate_identifier(name or getattr(cls, "name", None), "projection name")
        self.version = cls.version if version is None else version
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ConfigurationError(
                f"projection {self.name!r} has version {self.version!r}: use an integer >= 1"
            )
        if topics is None:
            topics = [
                *cls.topics,
                *(events_topic(a.aggregate_type, self.topic_prefix) for a in cls.aggregates),
            ]
        self.topics = tuple(dict.fromkeys(topics))
        if not self.topics:
            raise ConfigurationError(
                f"projection {self.name!r} reads no topic: set `aggregates` or `topics`"
            )
        if cls.policy not in DeadLetterPolicy:
            raise ConfigurationError(f"projection {self.name!r} has unknown policy {cls.policy!r}")
        self.metadata = MetaData()
        self.tables: Mapping[str, Table] = {
            logical: spec.template.to_metadata(self.metadata, name=self.physical_name(logical))
            for logical, spec in cls._table_specs.items()
        }
        # handlers read their tables once per event: found in the instance's __dict__,
        # they skip TableSpec.__get__ (a non-data descriptor, so the instance wins)
        seen: set[str] = set()
        for klass in cls.__mro__:
            for attr, member in vars(klass).items():
                if attr not in seen:
                    seen.add(attr)
                    if isinstance(member, TableSpec):
                        self.__dict__[attr] = self.tables[member.name]
        self.handlers_by_type: dict[str, tuple[type[Event], Handler]] = {
            event_type.event_type(): (event_type, handler)
            for event_type, handler in cls._handlers.items()
        }
        #: the same entries by event class: dispatch on the decoded event without a lookup
        #: of its type name (a codec with other classes of the same names falls back to it)
        self.handlers_by_class: dict[type[Event], tuple[type[Event], Handler]] = {
            event_type: (event_type, handler) for event_type, handler in cls._handlers.items()
        }

    def physical_name(self, logical: str, version: int | None = None) -> str:
        """Physical table name of a logical table, for this or another version."""
        name = f"{self.name}_v{self.version if version is None else version}_{logical}"
        if len(name) > MAX_PHYSICAL_NAME:
            raise InvalidIdentifierError(
                f"table name {name!r} of projection {self.name!r} is {len(name)} characters; "
                f"the limit is {MAX_PHYSICAL_NAME}: shorten the projection or table name"
            )
        return name

    def view_name(self, logical: str) -> str:
        """Name of the view that always shows the live version of a logical table."""
        return f"{self.name}_{logical}"

    @classmethod
    def event_types(cls) -> tuple[type[Event], ...]:
        """Event types the projection handles plus every event type of its aggregates."""
        types: dict[type[Event], None] = dict.fromkeys(cls._handlers)
        for aggregate in cls.aggregates:
            types.update(dict.fromkeys(aggregate.event_types()))
        return tuple(types)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version})"
