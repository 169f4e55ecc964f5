"""End offsets as a ``read_committed`` consumer sees them, and checkpoint sanity checks."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventsource.errors import ProjectionError
from eventsource.kafka.metadata import existing_topics
from eventsource.projection.checkpoints import TopicPartition as TP
from eventsource.projection.definition import Projection

__all__ = ["check_within_topic", "end_offsets", "positions"]


def end_offsets(consumer: Consumer, projection: Projection, timeout: float) -> dict[TP, int]:
    """Per partition of the projection's topics, the end offset now.

    For a ``read_committed`` consumer that is the last stable offset: records of a
    transaction still open are not counted, since they cannot be read yet.
    """
    metadata = existing_topics(consumer, projection.topics, max(1.0, timeout))
    targets: dict[TP, int] = {}
    for topic in projection.topics:
        info = metadata[topic]
        if info is None:
            raise ProjectionError(
                f"topic {topic!r} of projection {projection.name!r} does not exist: "
                "create it (eventsource topics create) or append events first"
            )
        for partition in info.partitions:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10.0, cached=False
            )
            targets[(topic, partition)] = high
    return targets


def check_within_topic(
    consumer: Consumer, projection: Projection, topic: str, partition: int, checkpoint: int
) -> None:
    """Raise ProjectionError when a stored checkpoint lies beyond the partition's end.

    Seeking past the end would make ``auto.offset.reset`` rewind to the beginning while the
    stored checkpoint skips everything below it: a silently empty read model. Refuse.
    """
    try:
        _, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10.0, cached=False
        )
    except KafkaException:
        return  # cannot tell now; the broker is unreachable and consume() will say so
    if high >= 0 and checkpoint > high:
        raise ProjectionError(
            f"checkpoint {checkpoint} of projection {projection.name!r} v{projection.version} "
            f"on {topic}[{partition}] is beyond the partition's end offset {high}: the topic "
            "was deleted and recreated, or the read-model database belongs to another "
            "cluster. Rebuild the projection (a new version) or delete its checkpoints to "
            "fold the topic again"
        )


def positions(consumer: Consumer, partitions: set[TP]) -> dict[TP, int]:
    """The consumer's positions (next offset to return; past transaction markers)."""
    if not partitions:
        return {}
    asked = [TopicPartition(t, p) for t, p in partitions]
    return {
        (tp.topic, tp.partition): tp.offset for tp in consumer.position(asked) if tp.offset >= 0
    }
