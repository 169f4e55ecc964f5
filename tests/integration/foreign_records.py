"""Event records of the bank account ``acc-1`` written by hand, as a producer outside the
store would write them (any versions, on partition 0), for tests of what readers make of
them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from confluent_kafka import Producer

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import Event, EventMetadata
from examples.bank.domain import Account

ACCOUNT = "bank.account"
CODEC = EventCodec.for_events(Account.event_types())


def produce_foreign(
    producer: Producer, topic: str, history: list[tuple[Event, int]], source: str
) -> None:
    """Write ``(event, version)`` records of ``acc-1`` to ``topic[0]`` and flush."""
    for event, version in history:
        metadata = EventMetadata(
            event_id=str(uuid.uuid4()),
            event_type=event.event_type(),
            aggregate_type=ACCOUNT,
            aggregate_id="acc-1",
            version=version,
            time=datetime.now(UTC),
        )
        headers = build_headers(metadata, source=source)
        producer.produce(topic, CODEC.encode(event), b"acc-1", partition=0, headers=headers)
    assert producer.flush(10) == 0
