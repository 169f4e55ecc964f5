"""Topic administration: create-if-missing, describe, end offsets.

Events topics keep events forever (``retention.ms=-1``, ``retention.bytes=-1``,
``cleanup.policy=delete``, never compacted) and have a fixed partition count: an existing
topic with another count is a configuration error, because re-partitioning would move
aggregates between partitions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from eventsource.errors import ConfigurationError, StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import reader_group

__all__ = ["EVENTS_TOPIC_CONFIG", "TopicInfo", "describe_topic", "end_offsets", "ensure_topic"]

EVENTS_TOPIC_CONFIG: Mapping[str, str] = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
}
"""Topic configuration of events topics: keep everything, never compact."""

_TOPIC_LEVEL = 1  # ConfigSource.DYNAMIC_TOPIC_CONFIG: set on the topic itself


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What the cluster says about a topic."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def ensure_topic(
    settings: KafkaSettings,
    name: str,
    partitions: int,
    *,
    config: Mapping[str, str] | None = None,
    min_insync_replicas: int | None = None,
    replication_factor: int = -1,
    timeout: float = 30.0,
) -> TopicInfo:
    """Create ``name`` if missing and wait until its metadata shows every partition.

    ``config`` defaults to :data:`EVENTS_TOPIC_CONFIG`; ``replication_factor=-1`` uses the
    broker default. Raises ``ConfigurationError`` if the topic exists with a different
    partition count, ``StoreUnavailableError`` if the broker does not answer in time.
    """
    if partitions < 1:
        raise ConfigurationError(f"topic {name!r} needs at least one partition, got {partitions}")
    topic_config = dict(EVENTS_TOPIC_CONFIG if config is None else config)
    if min_insync_replicas is not None:
        topic_config["min.insync.replicas"] = str(min_insync_replicas)
    admin = AdminClient(settings.admin_config())
    deadline = time.monotonic() + timeout
    existing = _partition_count(admin, name, timeout)
    if existing is None:
        new = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=topic_config,
        )
        future = admin.create_topics([new], operation_timeout=timeout, request_timeout=timeout)[
            name
        ]
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise _wrap(exc, f"could not create topic {name!r}") from exc
    while True:
        existing = _partition_count(admin, name, max(deadline - time.monotonic(), 0.1))
        if existing is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if existing is None:
        raise StoreUnavailableError(
            f"topic {name!r} was created but its metadata did not show up within {timeout:.0f}s: "
            f"check the broker at {settings.bootstrap_servers}"
        )
    if existing != partitions:
        raise ConfigurationError(
            f"topic {name!r} exists with {existing} partitions, but {partitions} were asked for: "
            "an events topic's partition count is fixed; configure partitions="
            f"{existing} (or use a new topic)"
        )
    return _describe(admin, name, timeout)


def describe_topic(settings: KafkaSettings, name: str, *, timeout: float = 10.0) -> TopicInfo:
    """Partition count, replication factor and explicitly set configuration of a topic."""
    admin = AdminClient(settings.admin_config())
    if _partition_count(admin, name, timeout) is None:
        raise ConfigurationError(
            f"topic {name!r} does not exist on {settings.bootstrap_servers}: create it first"
        )
    return _describe(admin, name, timeout)


def end_offsets(settings: KafkaSettings, name: str, *, timeout: float = 10.0) -> dict[int, int]:
    """High watermark (offset of the next record) of every partition of ``name``."""
    admin = AdminClient(settings.admin_config())
    count = _partition_count(admin, name, timeout)
    if count is None:
        raise ConfigurationError(f"topic {name!r} does not exist on {settings.bootstrap_servers}")
    consumer = Consumer(settings.consumer_config(reader_group(settings.application_id, "admin")))
    try:
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)[1])
            for p in range(count)
        }
    except KafkaException as exc:
        raise _wrap(exc, f"could not read end offsets of {name!r}") from exc
    finally:
        consumer.close()


def _partition_count(admin: AdminClient, name: str, timeout: float) -> int | None:
    try:
        # Never ask for one topic by name: a metadata request naming a missing topic makes
        # brokers with auto.create.topics.enable create it with default settings.
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _wrap(exc, f"could not read metadata of topic {name!r}") from exc
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None or not topic.partitions:
        return None
    if any(p.leader < 0 for p in topic.partitions.values()):
        return None  # still being created: not every partition has a leader yet
    return len(topic.partitions)


def _describe(admin: AdminClient, name: str, timeout: float) -> TopicInfo:
    metadata = admin.list_topics(timeout=timeout).topics[name]
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    try:
        entries: dict[str, Any] = admin.describe_configs([resource])[resource].result(
            timeout=timeout
        )
    except KafkaException as exc:
        raise _wrap(exc, f"could not describe topic {name!r}") from exc
    explicit = {k: str(v.value) for k, v in entries.items() if v.source == _TOPIC_LEVEL}
    replicas = len(next(iter(metadata.partitions.values())).replicas)
    return TopicInfo(name, len(metadata.partitions), replicas, explicit)


def _wrap(exc: KafkaException, what: str) -> StoreUnavailableError:
    error = exc.args[0]
    return StoreUnavailableError(
        f"{what}: {error.str() if isinstance(error, KafkaError) else error}",
        retriable=bool(isinstance(error, KafkaError) and error.retriable()),
    )
