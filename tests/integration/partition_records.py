"""Reading one partition of a topic to its end, as the store's write tests check it."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from eventsource.kafka.config import KafkaSettings

__all__ = ["read_partition"]


def read_partition(
    settings: KafkaSettings, topic: str, partition: int, isolation: str = "read_committed"
) -> list[Message]:
    """Every record of ``topic[partition]`` that ``isolation`` shows, in order, to its end."""
    consumer = Consumer(
        settings.consumer_config(
            "reader", **{"enable.partition.eof": True, "isolation.level": isolation}
        )
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    records: list[Message] = []
    try:
        while True:
            message = consumer.poll(10)
            assert message is not None, f"no end of {topic}[{partition}] within 10s"
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                return records
            assert error is None, error
            records.append(message)
    finally:
        consumer.close()
