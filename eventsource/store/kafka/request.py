"""One caller's append as the partition writer sees it, and the future its caller holds."""

from __future__ import annotations

import threading
from datetime import datetime

from eventsource.domain import Event
from eventsource.store.kafka.future import AppendFuture

__all__ = ["AppendRequest"]


class AppendRequest(AppendFuture):
    """Events of one command, encoded by the caller, waiting for a group commit.

    The request is also the future ``append_async`` returns (one object per append in
    flight, not two); the writer resolves it once the batch holding it is committed. Pass
    the writer's ``condition`` (:attr:`PartitionWriter.lock`), which it shares.
    """

    __slots__ = (
        "aggregate_id",
        "aggregate_type",
        "base_version",
        "causation_id",
        "correlation_id",
        "event_ids",
        "events",
        "expected_version",
        "payloads",
        "time",
    )

    def __init__(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: tuple[Event, ...],
        payloads: tuple[bytes, ...],
        event_ids: tuple[str, ...],
        expected_version: int,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        time: datetime | None = None,
        condition: threading.Condition | None = None,
    ) -> None:
        # AppendFuture.__init__ inlined (its state starts from class-level defaults): one
        # is made per append, in the caller's thread (positional arguments: cheaper too).
        self._condition = threading.Condition() if condition is None else condition
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.events = events
        self.payloads = payloads
        self.event_ids = event_ids
        self.expected_version = expected_version
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.time = time
        """When the events happened; ``None``: when the writer's transaction holding them
        began (one clock reading per group commit instead of one per append)."""
        self.base_version = 0
        """The aggregate's version before this append, decided by the writer."""

    @property
    def key(self) -> bytes:
        return self.aggregate_id.encode("utf-8")
