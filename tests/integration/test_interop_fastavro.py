"""Interop: records written through the codec are readable with fastavro and schemas/ alone.

The decoding helper below imports nothing from eventsource: it is what a consumer in
another code base (or another language, with its Avro library) would do.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import EventMetadata
from eventsource.kafka.config import KafkaSettings
from examples.bank.domain import AccountClosed, AccountOpened, MoneyDeposited, MoneyWithdrawn

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
BANK_EVENTS = (AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed)


def decode_with_schema_files(payload: bytes, schema_dir: Path) -> tuple[str, dict[str, Any]]:
    """(writer full name, datum) of a single-object payload, using only fastavro + .avsc."""
    by_fingerprint = {}
    for path in schema_dir.glob("*.avsc"):
        schema = json.loads(path.read_text())
        key = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
        by_fingerprint[key] = schema
    assert payload[:2] == b"\xc3\x01", "not Avro single-object encoding"
    schema = by_fingerprint[payload[2:10].hex()]
    datum = fastavro.schemaless_reader(io.BytesIO(payload[10:]), fastavro.parse_schema(schema))
    assert isinstance(datum, dict)
    return f"{schema['namespace']}.{schema['name']}", datum


def test_produced_events_decode_with_plain_fastavro_and_the_schema_files(
    kafka_settings: KafkaSettings, create_topic: Callable[..., str], unique_name: str
) -> None:
    topic = create_topic(partitions=1)
    codec = EventCodec.for_events(BANK_EVENTS, schema_dir=SCHEMAS)
    events = [
        AccountOpened(owner="Ada", currency="GBP"),
        MoneyDeposited(amount=Decimal("100.25")),
        MoneyWithdrawn(amount=Decimal("0.25")),
        AccountClosed(reason="moved abroad"),
    ]
    producer = Producer(kafka_settings.producer_config())
    delivered: list[Any] = []
    for version, event in enumerate(events, start=1):
        meta = EventMetadata(
            event_id=str(uuid.uuid4()),
            event_type=event.event_type(),
            aggregate_type="bank.account",
            aggregate_id="acc-1",
            version=version,
            time=dt.datetime.now(dt.UTC),
        )
        producer.produce(
            topic,
            key=b"acc-1",
            value=codec.encode(event),
            headers=build_headers(meta, source="/tests/interop"),
            on_delivery=lambda err, msg: delivered.append(err or msg),
        )
    assert producer.flush(30) == 0
    assert all(not isinstance(d, Exception) and d.error() is None for d in delivered)

    consumer = Consumer(kafka_settings.consumer_config(unique_name))
    received = []
    try:
        consumer.subscribe([topic])
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        while len(received) < len(events) and dt.datetime.now(dt.UTC) < deadline:
            message = consumer.poll(1.0)
            if message is not None:
                assert message.error() is None, message.error()
                received.append(message)
    finally:
        consumer.close()

    assert len(received) == len(events)
    decoded = [decode_with_schema_files(m.value(), SCHEMAS) for m in received]
    assert decoded == [
        ("bank.account.AccountOpened", {"owner": "Ada", "currency": "GBP"}),
        ("bank.account.MoneyDeposited", {"amount": Decimal("100.25")}),
        ("bank.account.MoneyWithdrawn", {"amount": Decimal("0.25")}),
        ("bank.account.AccountClosed", {"reason": "moved abroad"}),
    ]
    types = [dict(m.headers())["ce_type"].decode() for m in received]
    assert types == [name for name, _ in decoded]
    assert [codec.decode(m.value()) for m in received] == events
