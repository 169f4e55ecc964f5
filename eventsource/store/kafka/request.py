"""One caller's append as the partition writer sees it."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import KafkaError, Message

from eventsource.domain import Event
from eventsource.store.port import AppendResult

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
    time: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    future: Future[AppendResult] = field(default_factory=Future)
    base_version: int = 0
    """The aggregate's version before this append, decided by the writer."""
    offsets: list[int] = field(default_factory=list)
    error: KafkaError | None = None

    @property
    def key(self) -> bytes:
        return self.aggregate_id.encode("utf-8")

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        """Delivery report: one call per event, in produce order within the partition."""
        if error is not None:
            if self.error is None:
                self.error = error
        else:
            offset = message.offset()
            assert offset is not None  # a delivered record always has an offset
            self.offsets.append(offset)
