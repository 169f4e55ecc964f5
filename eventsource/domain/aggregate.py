"""Aggregates: consistency boundaries that decide, emit events and fold them into state."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from eventsource.domain.event import Event
from eventsource.errors import DomainError, MissingHandlerError

A = TypeVar("A", bound="Aggregate")
E = TypeVar("E", bound=Event)

_APPLY_MARK = "__eventsource_apply__"
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$")


def apply(handler: Callable[[A, E], None]) -> Callable[[A, E], None]:
    """Mark a method as the state change for the event type of its second parameter.

    The event type is read from the type annotation, so the handler is fully typed::

        @apply
        def _deposited(self, event: Deposited) -> None:
            self.balance += event.amount
    """
    setattr(handler, _APPLY_MARK, True)
    return handler


class Aggregate:
    """Base class of aggregates.

    Command methods validate, then call :meth:`emit`; ``@apply`` methods change state and
    must not fail or do I/O. ``version`` counts the events applied so far (0 = new).

    Class attributes:
        aggregate_type: stable lowercase dotted name, e.g. ``"bank.account"``; the events
            topic is ``<aggregate_type>.events``.
        snapshot_version: bump when the state layout changes so old snapshots are ignored.
    """

    aggregate_type: ClassVar[str]
    snapshot_version: ClassVar[int] = 1
    _handlers: ClassVar[dict[type[Event], Callable[[Any, Any], None]]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "aggregate_type" not in cls.__dict__:
            cls.aggregate_type = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        if not _TYPE_NAME.match(cls.aggregate_type):
            raise DomainError(
                f"aggregate_type {cls.aggregate_type!r} of {cls.__qualname__} must be "
                "lowercase dotted words, e.g. 'bank.account'"
            )
        handlers: dict[type[Event], Callable[[Any, Any], None]] = {}
        for base in reversed(cls.__mro__[1:]):
            handlers.update(getattr(base, "_handlers", {}))
        for name, member in cls.__dict__.items():
            if callable(member) and getattr(member, _APPLY_MARK, False):
                handlers[_event_type_of(cls, name, member)] = member
        cls._handlers = handlers

    def __init__(self, aggregate_id: str) -> None:
        if not aggregate_id:
            raise DomainError(f"{type(self).__name__} needs a non-empty aggregate id")
        self.id = aggregate_id
        self.version = 0
        # Nothing pending: the empty tuple, not a list. An aggregate whose attributes are all
        # plain values (str, int, Decimal, ...) then has a __dict__ the cyclic GC does not
        # track: the event store keeps one folded copy per aggregate and makes a new one per
        # append, and a list here made three GC-tracked objects of each instead of one.
        self._pending: list[Event] | tuple[()] = ()

    @classmethod
    def event_types(cls) -> tuple[type[Event], ...]:
        """Every event type this aggregate can apply."""
        return tuple(cls._handlers)

    @classmethod
    def rehydrate(cls: type[A], aggregate_id: str, events: Iterable[Event]) -> A:
        """Build an aggregate from its history (no pending events)."""
        aggregate = cls(aggregate_id)
        for event in events:
            aggregate.apply_event(event)
        return aggregate

    def snapshot_state(self) -> dict[str, Any]:
        """The state a snapshot keeps: every public instance attribute but ``id``/``version``.

        Override (together with :meth:`restore_state`) when the state holds values a snapshot
        codec cannot write, or to keep a smaller or more stable layout; bump
        :attr:`snapshot_version` whenever the layout changes. Pending events are not state.
        """
        return {
            name: value
            for name, value in vars(self).items()
            if not name.startswith("_") and name not in ("id", "version")
        }

    @classmethod
    def restore_state(cls: type[A], aggregate_id: str, version: int, state: dict[str, Any]) -> A:
        """The aggregate at ``version`` from a :meth:`snapshot_state` dictionary."""
        aggregate = cls(aggregate_id)
        for name, value in state.items():
            setattr(aggregate, name, value)
        aggregate.version = version
        return aggregate

    def emit(self, event: Event) -> None:
        """Apply a new event to the state and queue it for the next append."""
        self.apply_event(event)
        pending = self._pending
        if isinstance(pending, list):
            pending.append(event)
        else:
            self._pending = [event]

    def apply_event(self, event: Event) -> None:
        """Apply an already recorded event; increments :attr:`version`."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise MissingHandlerError(
                f"{type(self).__name__} has no @apply handler for {type(event).__name__} "
                f"(aggregate {self.id!r}, version {self.version + 1}): add a method "
                f"decorated with @apply taking a {type(event).__name__} parameter"
            )
        handler(self, event)
        self.version += 1

    @property
    def pending_events(self) -> tuple[Event, ...]:
        """Events emitted since the last commit, oldest first."""
        return tuple(self._pending)

    @property
    def committed_version(self) -> int:
        """The version the store holds: :attr:`version` minus the pending events."""
        return self.version - len(self._pending)

    def mark_committed(self) -> list[Event]:
        """Forget the pending events once the store accepted them; returns them."""
        pending, self._pending = self._pending, ()
        return list(pending) if isinstance(pending, tuple) else pending


def _event_type_of(cls: type, name: str, method: Callable[..., object]) -> type[Event]:
    params = list(inspect.signature(method).parameters)
    hints = typing.get_type_hints(
        method, globalns=vars(inspect.getmodule(cls)), localns=dict(vars(cls))
    )
    if len(params) != 2 or params[1] not in hints:
        raise DomainError(
            f"@apply handler {cls.__qualname__}.{name} must take (self, event: SomeEvent) "
            "with the event parameter annotated"
        )
    event_type = hints[params[1]]
    if not (isinstance(event_type, type) and issubclass(event_type, Event)):
        raise DomainError(
            f"@apply handler {cls.__qualname__}.{name} annotates its event as "
            f"{event_type!r}, which is not an Event subclass"
        )
    return event_type
