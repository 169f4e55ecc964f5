"""Topic administration used by the store and the CLI: create, describe, end offsets."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from eventsource.errors import BrokerUnreachableError, ConfigurationError, StoreUnavailableError
from eventsource.kafka.admin import describe_topic, end_offsets, ensure_topic
from eventsource.kafka.broker_process import free_port
from eventsource.kafka.config import KafkaSettings

pytestmark = pytest.mark.integration


def test_ensure_topic_creates_once_with_the_requested_settings(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    created = ensure_topic(kafka_settings, unique_name, 4, min_insync_replicas=1)
    again = ensure_topic(kafka_settings, unique_name, 4)
    assert created == again
    assert (created.partitions, created.replication_factor) == (4, 1)
    assert created.config == {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": "1",
    }


def test_ensure_topic_accepts_an_explicit_configuration(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    info = ensure_topic(kafka_settings, unique_name, 1, config={"cleanup.policy": "compact"})
    assert info.config == {"cleanup.policy": "compact"}


def test_end_offsets_count_the_records_of_each_partition(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    ensure_topic(kafka_settings, unique_name, 2)
    producer = Producer(kafka_settings.producer_config())
    for _ in range(3):
        producer.produce(unique_name, b"x", partition=1)
    assert producer.flush(10) == 0
    assert end_offsets(kafka_settings, unique_name) == {0: 0, 1: 3}


def test_missing_topics_and_impossible_partition_counts_are_configuration_errors(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        describe_topic(kafka_settings, unique_name)
    with pytest.raises(ConfigurationError, match="does not exist"):
        end_offsets(kafka_settings, unique_name)
    with pytest.raises(ConfigurationError, match="at least one partition"):
        ensure_topic(kafka_settings, unique_name, 0)


def test_an_unreachable_broker_is_reported_as_unavailable_within_the_timeout() -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailableError, match="no Kafka broker answered at") as info:
        ensure_topic(settings, "anything", 1, timeout=2)
    assert isinstance(info.value, BrokerUnreachableError)
    assert settings.bootstrap_servers in str(info.value)
    assert "EVENTSOURCE_BOOTSTRAP_SERVERS" in str(info.value)
