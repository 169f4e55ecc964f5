"""The values that cross the routing wire: requests, replies, their constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

from eventsource.domain import Position

__all__ = [
    "CLIENT_HEADER",
    "PROTOCOL_VERSION",
    "REQUEST_ID_HEADER",
    "SUPPORTED_VERSIONS",
    "AppendReply",
    "EncodedEvent",
    "ErrorReply",
    "Reply",
    "Request",
    "RequestKind",
]

PROTOCOL_VERSION: Final = 2
"""What this process sends. 2: replies come batched per client (``docs/reference/routing.md``)."""
SUPPORTED_VERSIONS: Final = (1, 2)
"""What an owner serves: a version-1 request (an older client) is answered in version 1."""
REQUEST_ID_HEADER: Final = "es-request-id"
CLIENT_HEADER: Final = "es-client"
"""Header of a version-2 reply record: the client whose replies it holds."""

RequestKind = Literal["append", "version"]


class EncodedEvent(NamedTuple):
    """One event as the codec encoded it, with its type name for logs and checks."""

    event_type: str
    payload: bytes


class Request(NamedTuple):
    """An append (or version query) sent to the owner of the aggregate's partition.

    A named tuple: the owner makes one per request it consumes (a frozen dataclass costs
    five times as much to build).
    """

    kind: RequestKind
    request_id: str
    reply_topic: str
    client: str
    expires_at_ms: int
    aggregate_type: str
    aggregate_id: str
    expected_version: int = 0
    events: tuple[EncodedEvent, ...] = ()
    correlation_id: str | None = None
    causation_id: str | None = None
    version: int = PROTOCOL_VERSION
    """The wire version the client speaks (its reply comes in that version)."""


@dataclass(frozen=True, slots=True)
class AppendReply:
    """Success: the aggregate's new version (for ``version`` requests: its current one)."""

    request_id: str
    server: str
    version: int
    positions: tuple[Position, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Failure: the typed error the owner raised, by class name, with its fields."""

    request_id: str
    server: str
    error_type: str
    message: str
    retriable: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


Reply = AppendReply | ErrorReply
