"""Metadata of the named topics only, for consumers.

``list_topics()`` without a topic returns every topic of the cluster: on a cluster with
thousands of topics (the test broker holds several thousand after a suite run) one call
took 0.5 s and delayed the consumer's next requests, and ``run_until_caught_up`` paid it
on every call. Asking for the topics by name costs one small metadata request each.

Consumers only: a librdkafka consumer never asks the broker to auto-create a topic it
names (``allow.auto.create.topics`` is false for consumers), whereas producer and admin
handles may, on brokers with ``auto.create.topics.enable``.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer

# TopicMetadata is public in confluent_kafka.admin, re-exported there without __all__.
from confluent_kafka.admin import TopicMetadata  # type: ignore[attr-defined]

__all__ = ["existing_topics"]


def existing_topics(
    consumer: Consumer, topics: Iterable[str], timeout: float
) -> dict[str, TopicMetadata | None]:
    """Per named topic, its metadata, or ``None`` when it does not exist (or has no
    partitions yet)."""
    found: dict[str, TopicMetadata | None] = {}
    for topic in topics:
        info = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        usable = info is not None and info.error is None and bool(info.partitions)
        found[topic] = info if usable else None
    return found
