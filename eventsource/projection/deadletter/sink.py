"""The Kafka side of dead letters: create the DLQ topic and produce to it durably."""

from __future__ import annotations

from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from eventsource.errors import DeadLetterError
from eventsource.kafka.admin import EVENTS_TOPIC_CONFIG, ensure_topic
from eventsource.kafka.config import KafkaSettings

__all__ = ["DLQ_PARTITIONS", "DeadLetterSink", "KafkaDeadLetterSink", "ensure_dlq_topic"]

Headers = list[tuple[str, bytes | None]]

#: One partition: dead letters are few, and a single partition keeps them in the order they
#: were written, which ``dlq replay`` relies on for parked aggregates.
DLQ_PARTITIONS = 1


class DeadLetterSink(Protocol):
    """Where dead letters go: the Kafka producer, or a list in unit tests."""

    def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> None: ...

    def flush(self) -> None:
        """Block until everything sent is durable; raise DeadLetterError if not."""

    def close(self) -> None: ...


def ensure_dlq_topic(settings: KafkaSettings, topic: str, *, timeout: float = 30.0) -> None:
    """Create the DLQ topic (kept forever, never compacted) unless it exists.

    An existing DLQ topic is used as it is, whatever its partition count: dead letters are
    keyed by aggregate id, and ``dlq replay`` orders them by source position anyway.
    """
    admin = AdminClient(settings.admin_config())
    info = admin.list_topics(timeout=timeout).topics.get(topic)  # no topic arg: no auto-create
    if info is not None and info.error is None and info.partitions:
        return
    ensure_topic(settings, topic, DLQ_PARTITIONS, config=EVENTS_TOPIC_CONFIG, timeout=timeout)


class KafkaDeadLetterSink:
    """Idempotent ``acks=all`` producer to one DLQ topic; :meth:`flush` proves durability."""

    def __init__(
        self, settings: KafkaSettings, topic: str, *, flush_timeout: float = 30.0, **config: Any
    ) -> None:
        self.topic = topic
        self.flush_timeout = flush_timeout
        self._producer = Producer(settings.producer_config(**config))
        self._failures: list[str] = []
        self._unacked = 0

    def send(self, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self._unacked += 1
        wire: list[tuple[str, str | bytes | None]] = list(headers)
        self._producer.produce(
            self.topic, value=value, key=key, headers=wire, on_delivery=self._delivered
        )
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        self._unacked -= 1
        if error is not None:
            self._failures.append(f"{error} (key {message.key()!r})")

    def flush(self) -> None:
        """Wait for every sent dead letter; raise DeadLetterError unless all were acked."""
        remaining = self._producer.flush(self.flush_timeout)
        failures, self._failures = self._failures, []
        if remaining or self._unacked or failures:
            raise DeadLetterError(
                f"{len(failures)} dead letter(s) to {self.topic!r} failed "
                f"({'; '.join(failures[:3]) or 'none reported'}) and {remaining} are still "
                f"unacknowledged after {self.flush_timeout}s; the batch was not committed "
                "and will be re-read: check that the broker is reachable and the topic exists",
                retriable=True,
            )

    def close(self) -> None:
        self._producer.flush(self.flush_timeout)
