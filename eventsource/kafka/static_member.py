"""Static group members (``group.instance.id``) and the fatal error of a duplicate one.

A consumer that joins a group with the ``group.instance.id`` of a member already there
takes that member's place: the broker fences the earlier one (``FENCED_INSTANCE_ID``), and
librdkafka makes that a fatal error of the earlier consumer. ``poll``/``consume`` then
return it as a ``_FATAL`` error whose ``fatal()`` is False and whose text carries the
broker's error; the consumer never fetches again. Two replicas configured with the same
instance id would take each other's place at every restart, each one polling a dead
consumer in between: the fenced one must stop with an error that names the id.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from eventsource.errors import DuplicateInstanceError

__all__ = ["duplicate_instance", "fenced_instance", "is_fatal"]

_FENCED_INSTANCE = KafkaError(KafkaError.FENCED_INSTANCE_ID).str()


def fenced_instance(error: KafkaError) -> bool:
    """Whether ``error`` says another consumer took this static member's place."""
    code = error.code()
    return code == KafkaError.FENCED_INSTANCE_ID or (
        code == KafkaError._FATAL and _FENCED_INSTANCE in error.str()
    )


def is_fatal(error: KafkaError) -> bool:
    """Whether the client is dead after ``error`` (a consumer's fatal error is ``_FATAL``
    with ``fatal()`` False)."""
    return bool(error.fatal()) or error.code() == KafkaError._FATAL


def duplicate_instance(group_id: str, instance_id: str, where: str) -> DuplicateInstanceError:
    """The error of a member fenced by another with its instance id; ``where`` says how
    the id was set (``--instance-id, EVENTSOURCE_INSTANCE_ID or the pod name``)."""
    return DuplicateInstanceError(
        f"another consumer joined group {group_id!r} with this one's instance id "
        f"{instance_id!r} and the broker fenced this one (FENCED_INSTANCE_ID): two replicas "
        f"run with the same instance id ({where}); give each replica its own",
        instance_id=instance_id,
        group_id=group_id,
    )
