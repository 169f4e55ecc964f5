"""What routing needs from its collaborators: the codec's and the owner store's methods.

Structural types, so :class:`eventsource.codec.EventCodec` and
:class:`eventsource.store.kafka.KafkaEventStore` fit without importing them here, and tests
can pass small fakes.
"""

from __future__ import annotations

from typing import Protocol

from eventsource.domain import Event
from eventsource.store.port import Appender

__all__ = ["ClientCodec", "EventDecoder", "EventEncoder", "EventReader", "OwnedStore"]


class EventDecoder(Protocol):
    """The part of the codec the owner needs: decoding with the record's coordinates (the
    codec's fast path for current schemas; errors name the request record)."""

    def decode_at(
        self, payload: bytes | None, topic: str, partition: int, offset: int
    ) -> Event: ...


class EventReader(Protocol):
    """The part of the codec a partition scan needs."""

    def decode_at(
        self, payload: bytes | None, topic: str, partition: int, offset: int
    ) -> Event: ...


class EventEncoder(Protocol):
    """The part of the codec a :class:`RemoteEventStore` needs (it only appends)."""

    def encode(self, event: Event) -> bytes: ...


class ClientCodec(EventEncoder, EventReader, Protocol):
    """The part of the codec a :class:`ScanningRemoteEventStore` needs (appends and scans)."""


OwnedStore = Appender
"""What the server needs of the owner's store: :class:`~eventsource.store.port.Appender`
(``append_async`` and ``version``; every store has them)."""
