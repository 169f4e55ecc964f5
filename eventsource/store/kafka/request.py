"""One caller's append as the partition writer sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eventsource.domain import Event
from eventsource.store.kafka.future import AppendFuture

__all__ = ["AppendRequest"]


@dataclass(eq=False, slots=True)
class AppendRequest:
    """Events of one command, encoded by the caller, waiting for a group commit."""

    aggregate_type: str
    aggregate_id: str
    events: tuple[Event, ...]
    payloads: tuple[bytes, ...]
    event_ids: tuple[str, ...]
    expected_version: int
    time: datetime | None = None
    """When the events happened; ``None``: when the writer's transaction holding them began
    (one clock reading per group commit instead of one per append)."""
    correlation_id: str | None = None
    causation_id: str | None = None
    future: AppendFuture = field(default_factory=AppendFuture)
    """Resolved by the writer; the store passes one sharing the writer's condition."""
    base_version: int = 0
    """The aggregate's version before this append, decided by the writer."""

    @property
    def key(self) -> bytes:
        return self.aggregate_id.encode("utf-8")
