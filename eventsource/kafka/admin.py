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

from eventsource.errors import (
    ConfigurationError,
    EventSourceError,
    StoreUnavailableError,
    TopicNotFoundError,
)
from eventsource.kafka.access import AUTHORIZATION_CODES, denied, secured
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import reader_group
from eventsource.kafka.reach import check_reachable, is_unreachable, unreachable_error

__all__ = [
    "EVENTS_TOPIC_CONFIG",
    "TopicInfo",
    "cluster_defaults",
    "describe_topic",
    "end_offsets",
    "ensure_topic",
    "topic_not_found",
    "topic_partitions",
]

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
    leaderless: tuple[int, ...] = ()
    """Partitions that have no leader right now (their replicas' brokers are down)."""
    brokers: int = 0
    """Brokers registered in the cluster when the topic was described."""
    min_insync_replicas: int = 1
    """Effective ``min.insync.replicas`` (the topic's own, else the broker default)."""
    in_sync: tuple[int, ...] = ()
    """How many replicas of each partition are in sync, by partition."""


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

    ``config`` defaults to :data:`EVENTS_TOPIC_CONFIG`. ``replication_factor=-1`` means
    ``min(3, brokers registered now)``, and with three copies or more the topic gets
    ``min.insync.replicas=2`` unless ``config``/``min_insync_replicas`` say otherwise: an
    acknowledged write then lives on two brokers at least. Raises ``ConfigurationError`` if
    the topic exists with a different partition count, ``StoreUnavailableError`` if the
    broker does not answer in time.
    """
    if partitions < 1:
        raise ConfigurationError(f"topic {name!r} needs at least one partition, got {partitions}")
    topic_config = dict(EVENTS_TOPIC_CONFIG if config is None else config)
    if min_insync_replicas is not None:
        topic_config["min.insync.replicas"] = str(min_insync_replicas)
    admin = AdminClient(settings.admin_config())
    deadline = time.monotonic() + timeout
    existing = _partition_count(
        admin, name, _first_contact(settings, timeout), need_leaders=False, settings=settings
    )
    if existing is None:
        replication_factor, topic_config = cluster_defaults(
            _broker_count(admin, name, timeout), replication_factor, topic_config
        )
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
                raise _wrap(
                    exc,
                    f"topic {name!r} is not visible to this client (DESCRIBE) and creating it "
                    "was refused",
                    settings,
                    topic=name,
                    operation="CREATE",
                ) from exc
    # A new topic is ready once every partition has a leader; an existing one may lack a
    # leader for a while (its brokers are down), which is no reason to refuse it.
    while existing is None:
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
    return _describe(admin, name, timeout, settings)


def describe_topic(settings: KafkaSettings, name: str, *, timeout: float = 10.0) -> TopicInfo:
    """Partition count, replication factor and explicitly set configuration of a topic."""
    admin = AdminClient(settings.admin_config())
    first = _first_contact(settings, timeout)
    if _partition_count(admin, name, first, need_leaders=False, settings=settings) is None:
        raise topic_not_found(name, settings)
    return _describe(admin, name, timeout, settings)


def topic_partitions(settings: KafkaSettings, *, timeout: float = 10.0) -> dict[str, int]:
    """Every topic of the cluster but Kafka's internal ones (``__...``): name -> partitions."""
    admin = AdminClient(settings.admin_config())
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _wrap(exc, "could not list topics", settings, timeout) from exc
    # A topic whose partitions lack a leader right now (brokers down) still exists.
    return {
        name: len(topic.partitions)
        for name, topic in sorted(metadata.topics.items())
        if not name.startswith("__")
        and topic.partitions
        and (topic.error is None or topic.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART)
    }


def topic_not_found(
    name: str, settings: KafkaSettings | None, owner: str = ""
) -> TopicNotFoundError:
    """The one message for a missing topic: which, where, and how to find or make it."""
    where = f" on {settings.bootstrap_servers}" if settings is not None else ""
    return TopicNotFoundError(
        f"topic {name!r}{owner} does not exist{where}: see the topics with "
        "'eventsource topics list', or create it with 'eventsource topics create'"
    )


def end_offsets(settings: KafkaSettings, name: str, *, timeout: float = 10.0) -> dict[int, int]:
    """High watermark (offset of the next record) of every partition of ``name``.

    A partition without a leader has no readable end offset: that is a retriable
    ``StoreUnavailableError`` naming the partition, not a missing topic.
    """
    admin = AdminClient(settings.admin_config())
    first = _first_contact(settings, timeout)
    count = _partition_count(admin, name, first, need_leaders=False, settings=settings)
    if count is None:
        raise topic_not_found(name, settings)
    leaderless = _describe(admin, name, timeout, settings).leaderless
    if leaderless:
        raise StoreUnavailableError(
            f"cannot read end offsets of {name!r}: partition "
            f"{', '.join(map(str, leaderless))} has no leader (its replicas' brokers are down); "
            "retry when a broker holding a replica is back",
            retriable=True,
        )
    consumer = Consumer(settings.consumer_config(reader_group(settings.application_id, "admin")))
    try:
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)[1])
            for p in range(count)
        }
    except KafkaException as exc:
        raise _wrap(
            exc, f"could not read end offsets of {name!r}", settings, topic=name, operation="READ"
        ) from exc
    finally:
        consumer.close()


def cluster_defaults(
    brokers: int, replication_factor: int, config: Mapping[str, str]
) -> tuple[int, dict[str, str]]:
    """Replication factor and config a new topic gets on a cluster of ``brokers``.

    Explicit settings win: a ``replication_factor`` other than -1, a ``min.insync.replicas``
    in ``config``.
    """
    rf = min(3, max(brokers, 1)) if replication_factor == -1 else replication_factor
    chosen = dict(config)
    if rf >= 3:
        chosen.setdefault("min.insync.replicas", "2")
    return rf, chosen


def _broker_count(admin: AdminClient, name: str, timeout: float) -> int:
    try:
        return len(admin.list_topics(timeout=timeout).brokers)
    except KafkaException as exc:
        raise _wrap(exc, f"could not read the cluster's brokers to create {name!r}") from exc


def _first_contact(settings: KafkaSettings, timeout: float) -> float:
    # The first request waits at most the connect timeout: no broker at all fails fast
    # (BrokerUnreachableError); the rest of ``timeout`` is for a slow broker's work.
    return min(timeout, settings.connect_timeout_s)


def _partition_count(
    admin: AdminClient,
    name: str,
    timeout: float,
    *,
    need_leaders: bool = True,
    settings: KafkaSettings | None = None,
) -> int | None:
    """Partition count of ``name``; None if it does not exist (or, with ``need_leaders``,
    while some partition still has no leader, as right after its creation)."""
    if settings is not None and secured(settings):
        # A first contact that logs in: a refused login is told within a second
        # (AuthenticationError) instead of after the whole connect timeout.
        check_reachable(settings, timeout)
    try:
        # Never ask for one topic by name: a metadata request naming a missing topic makes
        # brokers with auto.create.topics.enable create it with default settings.
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise _wrap(
            exc, f"could not read metadata of topic {name!r}", settings, timeout, topic=name
        ) from exc
    topic = metadata.topics.get(name)
    if topic is None or not topic.partitions:
        return None
    if topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return None
    if need_leaders and any(p.leader < 0 for p in topic.partitions.values()):
        return None  # still being created: not every partition has a leader yet
    return len(topic.partitions)


def _describe(
    admin: AdminClient, name: str, timeout: float, settings: KafkaSettings | None = None
) -> TopicInfo:
    # On a cluster each metadata request may go to another broker, and a broker learns of a
    # new topic a moment after the one that answered first: wait until this answer has it.
    deadline = time.monotonic() + timeout
    while True:
        try:
            cluster = admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise _wrap(exc, f"could not read metadata of topic {name!r}", topic=name) from exc
        metadata = cluster.topics.get(name)
        if metadata is not None and metadata.partitions:
            break
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"topic {name!r} vanished from the cluster's metadata while it was described"
            )
        time.sleep(0.1)
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    while True:  # the broker asked may not know the new topic yet, as above
        try:
            entries: dict[str, Any] = admin.describe_configs([resource])[resource].result(
                timeout=timeout
            )
            break
        except KafkaException as exc:
            unknown = exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not unknown or time.monotonic() > deadline:
                raise _wrap(
                    exc,
                    f"could not describe topic {name!r}",
                    settings,
                    topic=name,
                    operation="DESCRIBE_CONFIGS",
                ) from exc
        except TimeoutError as exc:  # the broker asked did not answer (it may be down)
            raise StoreUnavailableError(
                f"could not describe topic {name!r}: no broker answered within {timeout:g}s"
            ) from exc
        time.sleep(0.1)
    explicit = {k: str(v.value) for k, v in entries.items() if v.source == _TOPIC_LEVEL}
    replicas = len(next(iter(metadata.partitions.values())).replicas)
    leaderless = tuple(sorted(p.id for p in metadata.partitions.values() if p.leader < 0))
    min_isr = entries.get("min.insync.replicas")
    return TopicInfo(
        name,
        len(metadata.partitions),
        replicas,
        explicit,
        leaderless,
        len(cluster.brokers),
        int(min_isr.value) if min_isr is not None and min_isr.value is not None else 1,
        tuple(len(metadata.partitions[p].isrs) for p in sorted(metadata.partitions)),
    )


def _wrap(
    exc: KafkaException,
    what: str,
    settings: KafkaSettings | None = None,
    timeout: float | None = None,
    *,
    topic: str | None = None,
    operation: str = "DESCRIBE",
) -> EventSourceError:
    if settings is not None and timeout is not None and is_unreachable(exc):
        return unreachable_error(settings, timeout)  # no broker answered: say where, and how
    error = exc.args[0]
    if isinstance(error, KafkaError) and error.code() in AUTHORIZATION_CODES:
        return denied(settings, "topic", topic or "?", operation, what)
    return StoreUnavailableError(
        f"{what}: {error.str() if isinstance(error, KafkaError) else error}",
        retriable=bool(isinstance(error, KafkaError) and error.retriable()),
    )
