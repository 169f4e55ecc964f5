"""A scan reads up to the partition's high watermark, not its last stable offset.

``commit_transaction()`` returns before the broker writes the commit markers, so right after
an acknowledged append the last stable offset (what a ``read_committed`` watermark query
returns) can still be below the append's records. A scan that stopped there said "no
events" for an aggregate the owner had just acknowledged. An open transaction of another
producer, begun before the append, holds the last stable offset below it the same way, and
deterministically: the scan must wait for it (and time out retriably), never say not found.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from eventsource.codec import EventCodec
from eventsource.domain import Event
from eventsource.errors import StoreUnavailableError
from eventsource.kafka.admin import ensure_topic
from eventsource.kafka.config import KafkaSettings
from eventsource.store.routing.scan import load_by_scan
from examples.bank.domain import Account, AccountOpened, MoneyDeposited
from tests.integration.foreign_records import produce_foreign

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"
CODEC = EventCodec.for_events(Account.event_types())


def transactional(settings: KafkaSettings, name: str) -> Producer:
    producer = Producer(settings.transactional_producer_config(f"{name}.{uuid.uuid4().hex}"))
    producer.init_transactions(30)
    producer.begin_transaction()
    return producer


def produce_events(producer: Producer, topic: str, events: list[Event]) -> None:
    produce_foreign(producer, topic, [(e, v) for v, e in enumerate(events, start=1)], "/tests/scan")


def test_a_scan_waits_for_committed_records_behind_an_open_transaction(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    topic = f"{unique_name}.{ACCOUNT}.events"
    ensure_topic(kafka_settings, topic, 1)
    other = transactional(kafka_settings, unique_name)
    other.produce(topic, b"pending", b"someone-else", partition=0)
    assert other.flush(10) == 0
    writer = transactional(kafka_settings, unique_name)
    produce_events(writer, topic, [AccountOpened(owner="Ada"), MoneyDeposited(amount=Decimal(5))])
    writer.commit_transaction(30)
    # The last stable offset is 0 (the open transaction's first record): the committed
    # records of acc-1 lie behind it. The scan waits, then fails retriably.
    with pytest.raises(StoreUnavailableError, match=r"\[0\] up to offset 4 to load 'acc-1'"):
        load_by_scan(kafka_settings, CODEC, topic, Account, "acc-1", timeout=3)
    other.abort_transaction(30)
    account = load_by_scan(kafka_settings, CODEC, topic, Account, "acc-1", timeout=30)
    assert (account.version, account.balance) == (2, Decimal(5))
