"""The owner writes a routed append's payloads as its client encoded them only when they
are in the owner's current schema: an older client's events are encoded again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from eventsource.codec import EventCodec, avro_schema
from eventsource.codec.files import render_schema
from eventsource.codec.upcasting import Upcasters
from eventsource.domain import Event
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.partitioner import partition_for_id
from eventsource.store.routing import AppendServer, RemoteEventStore
from examples.bank.domain import Account, AccountOpened

pytestmark = pytest.mark.integration

PARTITIONS = 2


class AccountOpenedBefore(Event):
    """``AccountOpened`` as an older release had it (no currency yet)."""

    __namespace__ = "bank.account"
    __event_name__ = "AccountOpened"
    owner: str


def test_current_payloads_are_written_as_sent_and_older_ones_encoded_again(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    (tmp_path / "bank.account.AccountOpened.v1.avsc").write_text(
        render_schema(avro_schema(AccountOpenedBefore))
    )
    (tmp_path / "bank.account.AccountOpened.v2.avsc").write_text(
        render_schema(avro_schema(AccountOpened))
    )
    app = f"t_rp_{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers, application_id=app)
    codec = EventCodec.for_events(Account.event_types(), tmp_path, Upcasters())
    older = EventCodec.for_events([AccountOpenedBefore])
    store = KafkaEventStore(
        settings, [Account], codec=codec, partitions=PARTITIONS, topic_prefix=f"{app}."
    )
    current_bytes = codec.encode(AccountOpened(owner="new"))
    older_bytes = older.encode(AccountOpenedBefore(owner="old"))
    assert older_bytes[:10] != current_bytes[:10]  # another writer schema
    with store.start(), AppendServer(store, settings, codec):
        with RemoteEventStore(settings, codec, timeout=20) as client:
            client.append(Account.aggregate_type, "acc-new", [AccountOpened(owner="new")], 0)
        with RemoteEventStore(settings, older, timeout=20) as client:
            client.append(Account.aggregate_type, "acc-old", [AccountOpenedBefore(owner="old")], 0)
        assert store.load(Account, "acc-old").owner == "old"
        topic = store.topic_for(Account.aggregate_type)
    written = _payloads(settings, topic, ["acc-new", "acc-old"])
    assert written["acc-new"] == current_bytes
    assert written["acc-old"][:10] == current_bytes[:10]  # the owner's current schema
    assert written["acc-old"] == codec.encode(AccountOpened(owner="old", currency="EUR"))


def _payloads(settings: KafkaSettings, topic: str, keys: list[str]) -> dict[str, bytes]:
    """The committed payload of each key's record in ``topic``."""
    consumer = Consumer(settings.consumer_config(f"{settings.application_id}.spy"))
    try:
        partitions = {partition_for_id(key, PARTITIONS) for key in keys}
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(partitions)])
        found: dict[str, bytes] = {}
        deadline = time.monotonic() + 30
        while len(found) < len(keys) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=100, timeout=0.2):
                key = message.key()
                if message.error() is None and key is not None and key.decode() in keys:
                    value = message.value()  # (the store's own records have other keys)
                    assert value is not None
                    found[key.decode()] = value
        assert sorted(found) == sorted(keys), f"records of {keys} not found in {topic!r}"
        return found
    finally:
        consumer.close()
