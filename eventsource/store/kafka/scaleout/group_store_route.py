"""Routing commands to whichever writer process owns the aggregate's partition.

Each writer process serves its own routing topics: :func:`serve_routing` runs an
:class:`~eventsource.store.routing.AppendServer` over its :class:`GroupedKafkaEventStore`
with the application id ``<application_id>.<member>`` (so its requests topic is
``<application_id>.<member>.append-requests``). A :class:`GroupRouter`, in any process,
looks up the partition's owner in the writers group, sends the command to that member, and
retries when the answer says nothing was written and ownership moved (``NotOwnerError``,
``StoreUnavailableError``, ``OverloadedError``) until ``retry_for`` seconds
have passed. It never retries an ``UncertainCommitError`` (the owner may have committed:
the caller reloads the version) nor a deterministic refusal (``ConcurrencyError``,
``ApplyError``, ``EventTooLargeError``). Its
clients, one per owner member, are bounded (``max_clients``, least recently used first) and
closed once their member owns no partition (:mod:`.client_pool`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from eventsource.codec import EventCodec
from eventsource.domain import Event
from eventsource.errors import NotOwnerError, StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import member_application_id
from eventsource.store.kafka.scaleout.client_pool import ClientPool
from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from eventsource.store.kafka.scaleout.ownership import OwnerDirectory
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import AppendResult, check_append_arguments, events_topic
from eventsource.store.routing import AppendServer, RemoteEventStore

__all__ = ["GroupRouter", "member_settings", "serve_routing"]

T = TypeVar("T")


def member_settings(settings: KafkaSettings, member: str) -> KafkaSettings:
    """The settings whose application id names one member's routing topics."""
    return settings.model_copy(
        update={"application_id": member_application_id(settings.application_id, member)}
    )


def serve_routing(store: GroupedKafkaEventStore, *, timeout: float = 30.0) -> AppendServer:
    """Start serving other processes' commands for the partitions ``store`` owns."""
    server = AppendServer(
        store, member_settings(store.settings, store.member), store.codec, member_id=store.member
    )
    return server.start(timeout)


class GroupRouter:
    """``append`` / ``append_async`` / ``version`` executed by the aggregate's owner.

    An :class:`~eventsource.store.port.Appender`. ``append_async`` runs the routed append
    (lookup, send, retries) on one of ``workers`` threads and returns its future.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: EventCodec,
        *,
        partitions: int,
        topic_prefix: str = "",
        timeout: float = 10.0,
        retry_for: float = 30.0,
        workers: int = 32,
        max_clients: int = 16,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.partitions = partitions
        self.topic_prefix = topic_prefix
        self.timeout = timeout
        self.retry_for = retry_for
        self.owners = OwnerDirectory(settings, max_age=2.0)
        self.clients = ClientPool(self._new_client, max_clients=max_clients)
        """One client per owner member: bounded, closed once its member owns nothing."""
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="group-router")

    def __enter__(self) -> GroupRouter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.clients.close()

    def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> AppendResult:
        """Append at the owner; same contract as :meth:`EventStore.append`."""

        def call(client: RemoteEventStore) -> AppendResult:
            return client.append(
                aggregate_type,
                aggregate_id,
                events,
                expected_version,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )

        return self._routed(aggregate_type, aggregate_id, call)

    def append_async(
        self,
        aggregate_type: str,
        aggregate_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Future[AppendResult]:
        """:meth:`append` on a router thread; the future holds its result or error."""
        check_append_arguments(aggregate_id, events, expected_version)
        return self._executor.submit(
            self.append,
            aggregate_type,
            aggregate_id,
            events,
            expected_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        """The aggregate's version as its owner knows it."""
        return self._routed(
            aggregate_type, aggregate_id, lambda c: c.version(aggregate_type, aggregate_id)
        )

    def owner_of(self, aggregate_type: str, aggregate_id: str) -> str | None:
        """The member name of the aggregate's owner now (``None`` during a rebalance)."""
        owner = self.owners.owner_of(*self._where(aggregate_type, aggregate_id))
        return None if owner is None else owner.member

    def _where(self, aggregate_type: str, aggregate_id: str) -> tuple[str, int]:
        topic = events_topic(aggregate_type, self.topic_prefix)
        return topic, partition_for_id(aggregate_id, self.partitions)

    def _routed(
        self, aggregate_type: str, aggregate_id: str, call: Callable[[RemoteEventStore], T]
    ) -> T:
        topic, partition = self._where(aggregate_type, aggregate_id)
        deadline = time.monotonic() + self.retry_for
        fresh = False
        while True:
            try:
                owner = self.owners.owner_of(topic, partition, fresh=fresh)
                if owner is None:
                    raise NotOwnerError(
                        f"{topic}[{partition}] of aggregate {aggregate_id!r} has no owner in "
                        f"the writers group {self.owners.group_id!r} (rebalancing, or no "
                        "writer runs); nothing was sent: retry"
                    )
                self.clients.retain(self.owners.members())
                with self.clients.use(owner.member) as client:
                    return call(client)
            except (NotOwnerError, StoreUnavailableError):
                # Nothing was written: ownership moved, the owner is still taking over or
                # is overloaded, or its writer stopped (its partition moves on). Refusals
                # that cannot change (ApplyError, EventTooLargeError, ConcurrencyError) are
                # other classes and are raised at once.
                if time.monotonic() > deadline:
                    raise
                fresh = True
                time.sleep(0.2)

    def _new_client(self, member: str) -> RemoteEventStore:
        return RemoteEventStore(
            member_settings(self.settings, member), self.codec, timeout=self.timeout
        ).start()
