"""A RemoteEventStore (with scan loads) passes the event store contract, through the owner.

Every append, version query and concurrency check of the contract travels over the routing
topics to an AppendServer in front of a real KafkaEventStore; loads fold the partition.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from eventsource.codec import EventCodec
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.port import EventStore
from eventsource.store.routing import AppendServer, ScanningRemoteEventStore
from eventsource.testing.contract import EventStoreContract
from eventsource.testing.contract_domain import Account

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def remote_store(kafka_settings: KafkaSettings) -> Iterator[ScanningRemoteEventStore]:
    app = f"t_routing_contract_{uuid.uuid4().hex[:8]}"
    settings = kafka_settings.model_copy(update={"application_id": app})
    owner = KafkaEventStore(settings, [Account], partitions=3, topic_prefix=f"{app}.")
    codec = EventCodec.for_events(Account.event_types())
    with (
        owner.start(),
        AppendServer(owner, settings, owner.codec),
        ScanningRemoteEventStore(settings, codec, timeout=30, topic_prefix=f"{app}.") as remote,
    ):
        yield remote


class TestRemoteEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, remote_store: ScanningRemoteEventStore) -> EventStore:
        return remote_store
