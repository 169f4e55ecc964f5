"""The owner's in-memory version index: per aggregate id, its version and folded state.

Only the partition writer thread changes it (after a commit, or while catching up); loads
and version checks from other threads read under the same lock and get deep copies, so a
caller can never change the owner's state or observe half of a multi-event append.
"""

from __future__ import annotations

import copy
import datetime
import threading
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Generic, TypeVar, cast

from eventsource.domain import Aggregate, Event

__all__ = ["VersionIndex", "scratch_copy"]

A = TypeVar("A", bound=Aggregate)

_PLAIN: dict[type, bool] = {}
_IMMUTABLE = frozenset(
    {str, int, float, bool, bytes, Decimal, type(None), datetime.datetime, datetime.date}
    | {uuid.UUID, frozenset}
)


def scratch_copy(state: Aggregate) -> Aggregate:
    """A copy of ``state`` that events can be applied to without touching the original.

    Faster than ``copy.deepcopy`` for the usual aggregate (a few scalar attributes): values
    of immutable types are shared, everything else is deep-copied.
    """
    cls = type(state)
    plain = _PLAIN.get(cls)
    if plain is None:  # a copy of the instance __dict__ is faithful: no custom copying or slots
        plain = _PLAIN[cls] = not hasattr(cls, "__deepcopy__") and "__slots__" not in dir(cls)
    if not plain:
        return copy.deepcopy(state)
    attributes = state.__dict__.copy()
    for name, value in attributes.items():
        kind = type(value)
        if kind not in _IMMUTABLE and not (kind is tuple and not value):  # () is immutable
            attributes[name] = [] if kind is list and not value else copy.deepcopy(value)
    clone = cls.__new__(cls)
    clone.__dict__ = attributes
    return clone


class VersionIndex(Generic[A]):
    """Folded state of every aggregate of one partition, keyed by aggregate id."""

    def __init__(self, aggregate_cls: type[A]) -> None:
        self.aggregate_cls = aggregate_cls
        self._lock = threading.Lock()
        self._states: dict[str, A] = {}

    def version(self, aggregate_id: str) -> int:
        """Number of events folded for ``aggregate_id`` (0 when unknown)."""
        with self._lock:
            state = self._states.get(aggregate_id)
            return 0 if state is None else state.version

    def versions(self, aggregate_ids: Iterable[str]) -> dict[str, int]:
        """The versions of ``aggregate_ids`` (0 when unknown), read under one lock."""
        with self._lock:
            states = self._states
            return {
                aggregate_id: 0 if (state := states.get(aggregate_id)) is None else state.version
                for aggregate_id in aggregate_ids
            }

    def snapshot(self, aggregate_id: str) -> A | None:
        """A deep copy of the aggregate's state, or ``None`` if it has no events."""
        with self._lock:
            state = self._states.get(aggregate_id)
            return None if state is None else copy.deepcopy(state)

    def scratch(self, aggregate_id: str) -> A:
        """A private copy of the aggregate's state (a new aggregate if unknown) to try
        events on before they are committed; cheaper than :meth:`snapshot`."""
        with self._lock:
            state = self._states.get(aggregate_id)
            if state is None:
                return self.aggregate_cls(aggregate_id)
            return cast("A", scratch_copy(state))

    def scratch_many(self, aggregate_ids: Iterable[str]) -> dict[str, A]:
        """:meth:`scratch` of each aggregate (once per id), read under one lock."""
        with self._lock:
            states = self._states
            copies: dict[str, A] = {}
            for aggregate_id in aggregate_ids:
                if aggregate_id not in copies:
                    state = states.get(aggregate_id)
                    copies[aggregate_id] = (
                        self.aggregate_cls(aggregate_id)
                        if state is None
                        else cast("A", scratch_copy(state))
                    )
            return copies

    def install(self, states: Mapping[str, A]) -> None:
        """Make ``states`` the aggregates' committed states (a group commit's trial fold,
        once the commit succeeded); the index keeps them, so nobody may change them after."""
        with self._lock:
            self._states.update(states)

    def apply(self, aggregate_id: str, events: Iterable[Event]) -> int:
        """Fold committed ``events`` into the aggregate; returns its new version."""
        with self._lock:
            state = self._states.get(aggregate_id)
            if state is None:
                state = self.aggregate_cls(aggregate_id)
                self._states[aggregate_id] = state
            for event in events:
                state.apply_event(event)
            return state.version

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
