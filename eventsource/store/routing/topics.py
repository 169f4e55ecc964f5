"""The two routing topics of an application and the Kafka calls both sides share."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

# NewTopic is public in confluent_kafka.admin, re-exported there without __all__.
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventsource.errors import StoreUnavailableError
from eventsource.kafka.admin import cluster_defaults
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.fetch import next_batch
from eventsource.kafka.names import replies_topic, requests_topic

__all__ = ["ensure_topic", "next_batch", "partitions_at_end", "replies_topic", "requests_topic"]

DEFAULT_PARTITIONS = 6

ROUTING_TOPIC_TIMEOUT_S = 15.0
"""How long a routing client or server start waits for the broker to create (or list) a
routing topic and to resolve its partitions' ends; then ``StoreUnavailableError``."""


def ensure_topic(
    settings: KafkaSettings,
    topic: str,
    partitions: int = DEFAULT_PARTITIONS,
    timeout: float = ROUTING_TOPIC_TIMEOUT_S,
) -> None:
    """Create ``topic`` if it is missing (short retention: requests are worthless later).

    Returns once the topic's partitions show in the metadata, so a consumer subscribing
    right after gets them assigned. An existing topic is used whatever its partition count.
    """
    admin = AdminClient(settings.admin_config())
    existing, brokers = _counts(admin, topic, timeout)
    if existing:
        return
    # Replicated like events topics (min(3, brokers) copies): a node down must not stop the
    # routing of the partitions it led. min.insync.replicas stays the broker's: a request
    # or reply lost with a leader makes that one call uncertain, which callers handle.
    new = NewTopic(
        topic,
        num_partitions=partitions,
        replication_factor=cluster_defaults(brokers, -1, {})[0],
        config={"retention.ms": str(24 * 3600 * 1000), "cleanup.policy": "delete"},
    )
    try:
        admin.create_topics([new], operation_timeout=timeout)[topic].result(timeout)
    except KafkaException as exc:
        error = exc.args[0]
        if not (isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise StoreUnavailableError(
                f"cannot create routing topic {topic!r} on {settings.bootstrap_servers}: "
                f"{exc}; check that the broker is reachable and that this principal may "
                "create topics (or create the topic beforehand)"
            ) from exc
    deadline = time.monotonic() + timeout
    while not _counts(admin, topic, timeout)[0]:
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"routing topic {topic!r} was created but its metadata did not show up within "
                f"{timeout:g}s: check the broker at {settings.bootstrap_servers}"
            )
        time.sleep(0.05)


def _counts(admin: AdminClient, topic: str, timeout: float) -> tuple[int, int]:
    """The topic's partitions (0 while it is missing) and the cluster's brokers."""
    try:
        # All topics, never one by name: a metadata request naming a missing topic makes
        # brokers with auto.create.topics.enable create it with default settings.
        cluster = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise StoreUnavailableError(
            f"cannot read the metadata of {topic!r}: {exc}; is the broker up?"
        ) from exc
    described = cluster.topics.get(topic)
    if described is None or described.error is not None:
        return 0, len(cluster.brokers)
    return len(described.partitions), len(cluster.brokers)


def partitions_at_end(
    consumer: Consumer, topic: str, timeout: float = ROUTING_TOPIC_TIMEOUT_S
) -> list[TopicPartition]:
    """Every partition of ``topic`` positioned at its current end (high watermark).

    Explicit offsets, not ``OFFSET_END``: the logical end is resolved lazily by the fetcher,
    so a record produced right after ``assign`` could be skipped. A resolved offset makes
    "everything produced after this call is seen" exact.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout)
            described = metadata.topics.get(topic)
            if described is not None and described.error is None and described.partitions:
                return [
                    TopicPartition(
                        topic,
                        p,
                        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[
                            1
                        ],
                    )
                    for p in sorted(described.partitions)
                ]
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"cannot read the end offsets of {topic!r}: {exc}; is the broker up?"
                ) from exc
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"topic {topic!r} has no partitions after {timeout:.0f}s: "
                "create it or check the broker"
            )
        time.sleep(0.1)
