"""The Kafka event store passes the same contract suite as the in-memory store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.port import EventStore
from eventsource.testing.contract import EventStoreContract
from eventsource.testing.contract_domain import Account

pytestmark = pytest.mark.integration


class TestKafkaEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, kafka_settings: KafkaSettings, unique_name: str) -> Iterator[EventStore]:
        settings = kafka_settings.model_copy(update={"application_id": unique_name})
        with KafkaEventStore(
            settings, [Account], partitions=3, topic_prefix=f"{unique_name}."
        ) as store:
            yield store
