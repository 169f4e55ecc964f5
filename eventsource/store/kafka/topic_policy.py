"""What an events topic must be before a store writes to it, read once at start.

Two facts come from the topic's effective configuration (``describe_configs``: values set
on the topic, else the broker's defaults):

* **it keeps every record**: ``cleanup.policy=delete`` with ``retention.ms=-1`` and
  ``retention.bytes=-1``. Versions are rebuilt from the topic, so a record Kafka deletes
  or compacts away makes every later version check of its aggregate wrong. A topic that
  can lose records is refused with :class:`~eventsource.errors.TopicRetentionError`,
  unless ``KafkaSettings.allow_lossy_events_topics`` says the operator knows better;
* **the largest record it takes**: the smaller of the topic's ``max.message.bytes`` and the
  producer's ``message.max.bytes``. An event over it is refused before it joins a group
  commit (:mod:`.admission`), so it cannot fail the commit of its batch-mates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from eventsource.errors import StoreUnavailableError, TopicRetentionError
from eventsource.kafka.admin import EVENTS_TOPIC_CONFIG
from eventsource.kafka.config import KafkaSettings

__all__ = [
    "KEEP_FOREVER",
    "PRODUCER_MAX_BYTES",
    "check_events_topic",
    "lossy_settings",
    "lossy_topic_error",
]

log = logging.getLogger(__name__)

KEEP_FOREVER: Mapping[str, str] = {
    key: EVENTS_TOPIC_CONFIG[key] for key in ("cleanup.policy", "retention.ms", "retention.bytes")
}
"""The settings under which Kafka never deletes or compacts a record (those the stores
create events topics with)."""

PRODUCER_MAX_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes`` (used unless ``kafka_extra`` sets it)."""

_TOPIC_MAX_BYTES = 1_048_588  # the broker's default max.message.bytes


def lossy_settings(config: Mapping[str, str]) -> dict[str, str]:
    """The settings of ``config`` that let Kafka drop records (empty: it keeps them all)."""
    return {
        key: config.get(key, "(unknown)")
        for key, wanted in KEEP_FOREVER.items()
        if config.get(key) != wanted
    }


def lossy_topic_error(topic: str, lossy: Mapping[str, str], fix: str) -> TopicRetentionError:
    """The refusal of an events topic whose ``lossy`` settings let Kafka drop records;
    ``fix`` says how to correct it where the caller found it."""
    found = ", ".join(f"{k}={v}" for k, v in sorted(lossy.items()))
    return TopicRetentionError(
        f"events topic {topic!r} can lose records ({found}): the store rebuilds "
        "versions from it, so a deleted or compacted event would make appends "
        f"check against wrong versions. {fix}; or, if losing old "
        "events is what you want, opt out with allow_lossy_events_topics=True "
        "(EVENTSOURCE_ALLOW_LOSSY_EVENTS_TOPICS=true)"
    )


def check_events_topic(settings: KafkaSettings, topic: str, *, timeout: float = 30.0) -> int:
    """Refuse a topic that can lose records; return the largest record it takes (bytes)."""
    config = _effective_config(settings, topic, timeout)
    lossy = lossy_settings(config)
    if lossy:
        found = ", ".join(f"{k}={v}" for k, v in sorted(lossy.items()))
        if not settings.allow_lossy_events_topics:
            wanted = ",".join(f"{k}={v}" for k, v in KEEP_FOREVER.items())
            raise lossy_topic_error(
                topic,
                lossy,
                "Fix the topic: kafka-configs.sh "
                f"--bootstrap-server {settings.bootstrap_servers} --alter --entity-type "
                f"topics --entity-name {topic} --add-config {wanted}",
            )
        log.warning(
            "events topic %s can lose records (%s); accepted because "
            "allow_lossy_events_topics is set",
            topic,
            found,
        )
    topic_max = _int(config.get("max.message.bytes"), _TOPIC_MAX_BYTES)
    producer_max = _int(settings.kafka_extra.get("message.max.bytes"), PRODUCER_MAX_BYTES)
    return min(topic_max, producer_max)


def _effective_config(settings: KafkaSettings, topic: str, timeout: float) -> dict[str, str]:
    admin = AdminClient(settings.admin_config())
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + timeout
    while True:
        try:
            entries: dict[str, Any] = admin.describe_configs([resource])[resource].result(
                timeout=max(deadline - time.monotonic(), 0.1)
            )
            return {key: str(entry.value) for key, entry in entries.items()}
        except KafkaException as exc:
            # On a cluster the broker asked may learn of a topic just created a moment
            # after the one that created it: ask again until the deadline.
            unknown = exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not unknown or time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"could not read the configuration of events topic {topic!r} from "
                    f"{settings.bootstrap_servers}: {exc}; retry"
                ) from exc
        except TimeoutError as exc:
            raise StoreUnavailableError(
                f"could not read the configuration of events topic {topic!r}: no broker at "
                f"{settings.bootstrap_servers} answered within {timeout:g}s; retry"
            ) from exc
        time.sleep(0.1)


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default
