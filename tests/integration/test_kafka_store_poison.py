"""Poison records on an events topic stop catch-up with an error that names the record.

The store refuses to serve a partition it cannot fold: skipping an unreadable event would
make every later version check of that aggregate wrong. The operator fixes the cause (a
missing schema, an upcaster) and restarts.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
import pytest
from confluent_kafka import Producer

from eventsource.codec import EventCodec, build_headers
from eventsource.domain import EventMetadata
from eventsource.errors import (
    BadMagicError,
    CorruptPayloadError,
    DecodeError,
    PayloadValidationError,
    UnknownSchemaError,
)
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

CODEC = EventCodec.for_events(Account.event_types())
OPENED = CODEC.encode(AccountOpened(owner="Ada Lovelace"))


def headers(event_type: str, version: int = 2) -> list[tuple[str, bytes]]:
    metadata = EventMetadata(
        event_id=str(uuid.uuid4()),
        event_type=event_type,
        aggregate_type="bank.account",
        aggregate_id="acc-1",
        version=version,
        time=datetime.now(UTC),
    )
    return build_headers(metadata, source="/tests/poison")


def negative_deposit() -> bytes:
    """A well-formed Avro MoneyDeposited whose amount breaks the model (gt=0)."""
    body = io.BytesIO()
    schema = fastavro.parse_schema(CODEC.catalog.schema(MoneyDeposited))
    fastavro.schemaless_writer(body, schema, {"amount": Decimal("-5.00")})
    return b"\xc3\x01" + CODEC.catalog.fingerprint(MoneyDeposited) + body.getvalue()


DEPOSITED = MoneyDeposited.event_type()
POISON = {
    "no key": (None, OPENED, headers(AccountOpened.event_type()), DecodeError, "no key"),
    "key not utf-8": (b"\xff\xfe", OPENED, headers(DEPOSITED), DecodeError, "not UTF-8"),
    "no headers": (b"acc-1", OPENED, [], DecodeError, "lacks the CloudEvents header"),
    "bad magic": (b"acc-1", b"\x01\x02{json}", headers(DEPOSITED), BadMagicError, "neither"),
    "unknown fingerprint": (
        b"acc-1",
        b"\xc3\x01" + bytes(8) + b"\x02",
        headers(DEPOSITED),
        UnknownSchemaError,
        "fingerprint",
    ),
    "truncated body": (b"acc-1", OPENED[:14], headers(DEPOSITED), CorruptPayloadError, "."),
    "tombstone": (b"acc-1", None, headers(DEPOSITED), CorruptPayloadError, "tombstone"),
    "invalid datum": (
        b"acc-1",
        negative_deposit(),
        headers(DEPOSITED),
        PayloadValidationError,
        "amount",
    ),
}


@pytest.mark.parametrize("kind", sorted(POISON))
def test_catch_up_stops_at_a_poison_record_with_a_typed_error_naming_its_position(
    kind: str, kafka_settings: KafkaSettings, unique_name: str
) -> None:
    key, value, record_headers, error_type, message = POISON[kind]
    topic = f"{unique_name}.bank.account.events"
    ensure_topic(kafka_settings, topic, 1)
    producer = Producer(kafka_settings.producer_config())
    producer.produce(
        topic, OPENED, b"acc-1", partition=0, headers=headers(AccountOpened.event_type(), 1)
    )
    producer.produce(topic, value, key, partition=0, headers=record_headers)  # type: ignore[arg-type]
    assert producer.flush(10) == 0

    settings = kafka_settings.model_copy(update={"application_id": unique_name})
    store = KafkaEventStore(settings, [Account], partitions=1, topic_prefix=f"{unique_name}.")
    with pytest.raises(error_type, match=message) as caught:
        store.start(timeout=60)
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == (topic, 0, 1)
    assert f"{topic}[0]@1" in str(caught.value)
