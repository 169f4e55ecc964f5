"""Telling a fenced static member from other consumer errors (texts as librdkafka gives them)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from eventsource.errors import ConfigurationError, DuplicateInstanceError
from eventsource.kafka.static_member import duplicate_instance, fenced_instance, is_fatal

# What poll() returned to the fenced consumer on Kafka 4.1.1 with confluent-kafka 2.16.1.
FENCED = KafkaError(
    KafkaError._FATAL,
    "Fatal error: Broker: Static consumer fenced by other consumer with same "
    "group.instance.id: Fatal consumer error: Broker: Static consumer fenced by other "
    "consumer with same group.instance.id",
)


def test_the_fatal_error_of_a_fenced_static_member_is_told_apart() -> None:
    assert fenced_instance(FENCED) and is_fatal(FENCED) and not FENCED.fatal()
    assert fenced_instance(KafkaError(KafkaError.FENCED_INSTANCE_ID))
    other_fatal = KafkaError(KafkaError._FATAL, "Fatal error: Broker: something else")
    assert not fenced_instance(other_fatal) and is_fatal(other_fatal)
    transport = KafkaError(KafkaError._TRANSPORT)
    assert not fenced_instance(transport) and not is_fatal(transport)


def test_the_duplicate_instance_error_names_the_id_the_group_and_the_remedy() -> None:
    error = duplicate_instance("app.projection.p.v1", "replica-0", "--instance-id")
    assert isinstance(error, DuplicateInstanceError) and isinstance(error, ConfigurationError)
    assert (error.instance_id, error.group_id) == ("replica-0", "app.projection.p.v1")
    text = str(error)
    assert "'replica-0'" in text and "'app.projection.p.v1'" in text and "--instance-id" in text
    assert "give each replica its own" in text and "\n" not in text and not error.retriable
