"""Users and ACLs on a secure cluster, through the admin API (as a super user).

    admin = AclAdmin(cluster.bootstrap_servers, cluster.client_config())
    admin.add_user("orders-writer", password)
    admin.grant("orders-writer", "topic", "orders.events", ["DESCRIBE", "READ", "WRITE"])
    admin.grant("orders-writer", "transactional_id", "orders.", ["DESCRIBE", "WRITE"],
                prefixed=True)

:func:`store_acls` and :func:`projector_acls` list what each eventsource component needs
(see ``docs/how-to/production.md``, section Security).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
)
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from eventsource.errors import BrokerError
from eventsource.kafka.client_logs import admin_log_config
from eventsource.kafka.names import (
    append_server_group,
    member_application_id,
    replies_topic,
    requests_topic,
    transactional_id_prefix,
    unique_reader_prefix,
    writers_group,
)
from eventsource.kafka.security import MECHANISM

__all__ = [
    "AclAdmin",
    "Grant",
    "append_server_acls",
    "group_router_acls",
    "grouped_member_acls",
    "grouped_store_acls",
    "projector_acls",
    "remote_client_acls",
    "store_acls",
]

_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Grant:
    """One ACL: ``operations`` on a resource (``topic``, ``group``, ``transactional_id``,
    ``cluster``) named ``name`` (a prefix when ``prefixed``)."""

    resource_type: str
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False


def store_acls(topic: str, application_id: str) -> list[Grant]:
    """What a :class:`~eventsource.store.kafka.KafkaEventStore` needs on an existing topic:
    the topic's metadata and configuration (DESCRIBE, DESCRIBE_CONFIGS), catch-up (READ),
    appends (WRITE), and its writers' transactional ids ``<application_id>.<topic>.<n>``."""
    return [
        Grant("topic", topic, ("DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE")),
        Grant(
            "transactional_id",
            transactional_id_prefix(application_id),
            ("DESCRIBE", "WRITE"),
            prefixed=True,
        ),
    ]


def grouped_store_acls(topic: str, snapshots: str, application_id: str) -> list[Grant]:
    """What a :class:`~eventsource.store.kafka.scaleout.GroupedKafkaEventStore` needs
    besides :func:`store_acls`: its snapshots topic (``CREATE`` too unless it exists) and
    READ on the writers group ``<application_id>.writers`` that assigns partitions."""
    return [
        *store_acls(topic, application_id),
        Grant("topic", snapshots, ("DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE")),
        Grant("group", writers_group(application_id), ("DESCRIBE", "READ")),
    ]


def append_server_acls(application_id: str) -> list[Grant]:
    """What the owner's :class:`~eventsource.store.routing.AppendServer` needs besides its
    store's ACLs: READ on the requests topic and its group, WRITE on the replies topic
    (CREATE on both unless they exist)."""
    return [
        Grant("topic", requests_topic(application_id), ("DESCRIBE", "DESCRIBE_CONFIGS", "READ")),
        Grant("topic", replies_topic(application_id), ("DESCRIBE", "DESCRIBE_CONFIGS", "WRITE")),
        Grant("group", append_server_group(application_id), ("DESCRIBE", "READ")),
    ]


def grouped_member_acls(
    topic: str, snapshots: str, application_id: str, member: str
) -> list[Grant]:
    """What one scale-out writer process needs: :func:`grouped_store_acls` and, for
    ``serve_routing``, :func:`append_server_acls` of its member application id
    ``<application_id>.<member>`` with CREATE on its two routing topics (each member makes
    its own, named after it; leave CREATE out if the operator makes them beforehand)."""
    routing = member_application_id(application_id, member)
    return [
        *grouped_store_acls(topic, snapshots, application_id),
        *append_server_acls(routing),
        Grant("topic", requests_topic(routing), ("CREATE",)),
        Grant("topic", replies_topic(routing), ("CREATE",)),
    ]


def group_router_acls(application_id: str, members: Iterable[str]) -> list[Grant]:
    """What a :class:`~eventsource.store.kafka.scaleout.GroupRouter` needs: DESCRIBE on the
    writers group (it looks the owners up there) and :func:`remote_client_acls` of every
    member it may send to (one client per member, on the member's routing topics)."""
    return [
        Grant("group", writers_group(application_id), ("DESCRIBE",)),
        *(g for m in members for g in remote_client_acls(member_application_id(application_id, m))),
    ]


def remote_client_acls(application_id: str) -> list[Grant]:
    """What a :class:`~eventsource.store.routing.RemoteEventStore` needs: WRITE on the
    requests topic, READ on the replies topic (it reads them assigned, never as a group;
    DESCRIBE on the group prefix ``<application_id>.append-client.`` spares a warning about
    its coordinator lookup)."""
    return [
        Grant("topic", requests_topic(application_id), ("DESCRIBE", "WRITE")),
        Grant("topic", replies_topic(application_id), ("DESCRIBE", "READ")),
        Grant("group", unique_reader_prefix(application_id, "append-client"), ("DESCRIBE",), True),
    ]


def projector_acls(
    topics: Iterable[str], group: str, dead_letter_topic: str | None = None
) -> list[Grant]:
    """What a projection runner needs: READ (and DESCRIBE) on its topics, READ on its group,
    and, with the dead-letter policy, DESCRIBE and WRITE on its dead-letter topic (plus
    CREATE there unless the topic is made beforehand)."""
    grants = [
        *(Grant("topic", t, ("DESCRIBE", "READ")) for t in topics),
        Grant("group", group, ("DESCRIBE", "READ")),
    ]
    if dead_letter_topic is not None:
        grants.append(Grant("topic", dead_letter_topic, ("DESCRIBE", "DESCRIBE_CONFIGS", "WRITE")))
    return grants


class AclAdmin:
    """Create SCRAM users and ACLs; ``config`` logs in as a super user."""

    def __init__(
        self, bootstrap_servers: str, config: Mapping[str, Any], mechanism: str = MECHANISM
    ) -> None:
        self.mechanism = mechanism
        self._admin = AdminClient(
            admin_log_config({"bootstrap.servers": bootstrap_servers, **config})
        )

    def add_user(self, name: str, password: str, iterations: int = 8192) -> None:
        """Create (or change the password of) a SCRAM user."""
        mechanism = ScramMechanism[self.mechanism.replace("-", "_")]
        upsert = UserScramCredentialUpsertion(
            name, ScramCredentialInfo(mechanism, iterations), password.encode()
        )
        futures = self._admin.alter_user_scram_credentials([upsert])
        self._wait(futures.values(), f"creating user {name!r}")

    def grant(
        self,
        user: str,
        resource_type: str,
        name: str,
        operations: Iterable[str],
        *,
        prefixed: bool = False,
    ) -> None:
        """Allow ``User:<user>`` ``operations`` on the resource, from any host."""
        bindings = _allow(AclBinding, user, resource_type, name, operations, prefixed, "*")
        self._wait(self._admin.create_acls(bindings).values(), f"granting {user!r} ACLs")

    def grant_all(self, user: str, grants: Iterable[Grant]) -> None:
        """Every grant of :func:`store_acls` / :func:`projector_acls` to ``user``."""
        for g in grants:
            self.grant(user, g.resource_type, g.name, g.operations, prefixed=g.prefixed)

    def revoke(
        self,
        user: str,
        resource_type: str,
        name: str,
        operations: Iterable[str],
        *,
        prefixed: bool = False,
    ) -> None:
        """Delete the ALLOW ACLs of ``User:<user>`` for ``operations`` on one resource only
        (the user's other permissions never lapse meanwhile, unlike revoke-all-then-grant)."""
        any_host: Any = None  # a filter's None matches every host
        matches = _allow(
            AclBindingFilter, user, resource_type, name, operations, prefixed, any_host
        )
        self._wait(self._admin.delete_acls(matches).values(), f"revoking {user!r} ACLs")

    def revoke_all(self, user: str) -> None:
        """Delete every ACL of ``User:<user>``."""
        any_name: Any = None  # a filter's None matches every name and host
        match = AclBindingFilter(
            ResourceType.ANY,
            any_name,
            ResourcePatternType.ANY,
            f"User:{user}",
            any_name,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        self._wait(self._admin.delete_acls([match]).values(), f"revoking {user!r} ACLs")

    @staticmethod
    def _wait(futures: Iterable[Any], what: str) -> None:
        for future in futures:
            try:
                future.result(timeout=_TIMEOUT_S)
            except KafkaException as exc:
                raise BrokerError(f"{what} failed: {exc.args[0]}") from exc


def _allow(
    kind: Any,
    user: str,
    resource_type: str,
    name: str,
    operations: Iterable[str],
    prefixed: bool,
    host: Any,
) -> list[Any]:
    """One ALLOW ``AclBinding`` (to create) or ``AclBindingFilter`` (to delete) per operation."""
    pattern = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
    return [
        kind(
            ResourceType[resource_type.upper()],
            name,
            pattern,
            f"User:{user}",
            host,
            AclOperation[op.upper()],
            AclPermissionType.ALLOW,
        )
        for op in operations
    ]
