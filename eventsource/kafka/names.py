"""Every Kafka resource name eventsource uses, built in one place.

Topics carry the store's ``topic_prefix`` (e.g. per environment or per test); consumer
groups and transactional ids carry the ``application_id``. Nothing else in eventsource
formats a topic, group or transactional id: it calls a function here.

=========================  ================================================================
events topic               ``<prefix><aggregate_type>.events``
snapshots topic            ``<prefix><aggregate_type>.snapshots``
dead-letter topic          ``<prefix><projection>.dlq``
append requests / replies  ``<application_id>.append-requests`` / ``.append-replies``
writers group              ``<application_id>.writers``
append-server group        ``<application_id>.append-server``
projection group           ``<application_id>.projection.<name>.v<version>``
DLQ reader group           ``<application_id>.dlq-reader``
other readers' groups      ``<application_id>.<purpose>[.<uuid>]`` (assign-only, never commit)
append-server instance     ``<application_id>.append-server.<member_id>`` (static member)
scale-out member           ``<application_id>.<member>`` (an application id per writer member)
writer transactional id    ``<application_id>.<topic>.<partition>``
=========================  ================================================================
"""

from __future__ import annotations

import uuid

__all__ = [
    "append_server_group",
    "append_server_instance_id",
    "dlq_reader_group",
    "dlq_topic",
    "events_topic",
    "member_application_id",
    "projection_group",
    "reader_group",
    "replies_topic",
    "requests_topic",
    "snapshots_topic",
    "transactional_id_prefix",
    "unique_reader_prefix",
    "writer_transactional_id",
    "writers_group",
]


def events_topic(aggregate_type: str, prefix: str = "") -> str:
    """The events topic of an aggregate type: ``<prefix><aggregate_type>.events``."""
    return f"{prefix}{aggregate_type}.events"


def snapshots_topic(aggregate_type: str, prefix: str = "") -> str:
    """The snapshot topic of an aggregate type: ``<prefix><aggregate_type>.snapshots``."""
    return f"{prefix}{aggregate_type}.snapshots"


def dlq_topic(projection_name: str, prefix: str = "") -> str:
    """The dead-letter topic of a projection: ``<prefix><projection>.dlq``."""
    return f"{prefix}{projection_name}.dlq"


def requests_topic(application_id: str) -> str:
    """``<application_id>.append-requests``: commands on their way to the owner."""
    return f"{application_id}.append-requests"


def replies_topic(application_id: str) -> str:
    """``<application_id>.append-replies``: outcomes on their way back, shared by clients."""
    return f"{application_id}.append-replies"


def writers_group(application_id: str) -> str:
    """The consumer group whose assignment decides which process writes which partition."""
    return f"{application_id}.writers"


def append_server_group(application_id: str) -> str:
    """The consumer group of the append servers (routed appends)."""
    return f"{application_id}.append-server"


def projection_group(application_id: str, projection_name: str, version: int) -> str:
    """The consumer group of a projection version."""
    return f"{application_id}.projection.{projection_name}.v{version}"


def dlq_reader_group(application_id: str) -> str:
    """The group id of the (assign-only, never committing) dead-letter topic reader."""
    return f"{application_id}.dlq-reader"


def writer_transactional_id(application_id: str, topic: str, partition: int) -> str:
    """The ``transactional.id`` of the writer of one partition (fences older writers)."""
    return f"{application_id}.{topic}.{partition}"


def transactional_id_prefix(application_id: str) -> str:
    """What every transactional id of an application starts with (a PREFIXED ACL)."""
    return f"{application_id}."


def reader_group(application_id: str, purpose: str, *, unique: bool = False) -> str:
    """The group id of an assign-only reader (status, replay bounds, catch-up, scans...):
    ``<application_id>.<purpose>``, with a random suffix when ``unique``."""
    name = f"{application_id}.{purpose}"
    return f"{name}.{uuid.uuid4().hex}" if unique else name


def unique_reader_prefix(application_id: str, purpose: str) -> str:
    """What every ``reader_group(..., unique=True)`` of ``purpose`` starts with (an ACL)."""
    return f"{reader_group(application_id, purpose)}."


def append_server_instance_id(application_id: str, member_id: str) -> str:
    """The ``group.instance.id`` of an append server (a restarted owner keeps its place)."""
    return f"{append_server_group(application_id)}.{member_id}"


def member_application_id(application_id: str, member: str) -> str:
    """The application id of one member of scale-out writers (its own topics and groups)."""
    return f"{application_id}.{member}"
