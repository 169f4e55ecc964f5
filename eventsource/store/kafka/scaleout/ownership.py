"""Partition ownership through a consumer group on the events topics.

Every writer process of an application joins the group ``<application_id>.writers`` on the
events topics it serves; the group's assignment *is* the ownership. The member never reads
the records (its partitions are paused): it only takes part in rebalances. Assignment is
cooperative-sticky, so a rebalance moves only the partitions that must move, and a member
revokes a partition (stops serving it, finishing its queued appends) before the group gives
it to the next owner. The new owner then fences the old one (``init_transactions`` on the
partition's ``transactional.id``), so even a member that lost the group without noticing
(paused, partitioned away) can never commit again.

Each member's ``client.id`` is its *member name* (``host:pid`` by default); who owns a
partition is read from the group description (:class:`OwnerDirectory`), which is how a
``NotOwnerError`` names the owner and how the routing helper finds it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from eventsource.errors import StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.group_session import heartbeat_interval_ms
from eventsource.kafka.names import writers_group
from eventsource.lifecycle import ServiceThread

__all__ = [
    "SESSION_TIMEOUT_MS",
    "Owner",
    "OwnerDirectory",
    "PartitionOwnership",
    "writers_group",
]

log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS: Final = 20_000
"""The writers group's default ``session.timeout.ms``: longer than a group coordinator's
failover. librdkafka also counts the session on the client side: after that long without a
successful heartbeat it drops the member's whole assignment (``on_lost``) and rejoins under
a new member id, which the new coordinator holds back until the old ids expire. A
coordinator killed with ``kill -9`` answers nobody until the controller fences it
(``broker.session.timeout.ms``, 9 s by default; 8-14 s measured on a loaded machine) and
its successor loads the group: with the former 6 s every member then released every
partition and took it over again (fencing, restoring, catching up), pausing all appends
about 7 s beyond the cluster's failover. The cost: a crashed member's partitions wait this
long for a new owner (a member that closes leaves at once)."""

Partitions = list[tuple[str, int]]
Listener = Callable[[Partitions], None]


@dataclass(frozen=True, slots=True)
class Owner:
    """A member of the writers group, as the group coordinator describes it."""

    member: str
    """The member name (the owner's ``client.id``)."""
    host: str

    def __str__(self) -> str:
        return f"{self.member} (at {self.host})"


class PartitionOwnership(ServiceThread):
    """Group membership of one writer process; calls back on assignment and revocation.

    ``on_assign`` / ``on_revoke`` run on the membership thread, inside the rebalance: a
    revocation is complete (the partitions may go to another member) when ``on_revoke``
    returns, so it must stop serving them first. ``session_timeout_ms`` bounds how long the
    partitions of a crashed member stay unowned (the broker's minimum is 6 s by default);
    it must outlast a group coordinator's failover (see :data:`SESSION_TIMEOUT_MS`).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        *,
        member: str,
        on_assign: Listener,
        on_revoke: Listener,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
    ) -> None:
        if not topics:
            raise ValueError("PartitionOwnership needs at least one events topic")
        super().__init__(f"ownership-{member}")
        self.settings = settings
        self.topics = list(topics)
        self.member = member
        self.group_id = writers_group(settings.application_id)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._config = settings.consumer_config(
            self.group_id,
            **{
                "client.id": member,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": session_timeout_ms,
                # Rebalances are told through heartbeats: at most a second apart.
                "heartbeat.interval.ms": heartbeat_interval_ms(session_timeout_ms),
                "auto.offset.reset": "latest",
            },
        )
        self._owned: set[tuple[str, int]] = set()
        self.released = 0
        """Partitions released so far: revoked, lost with the session, or left."""
        self._rejoin = threading.Event()
        self._rejoin_after = 0.0
        self._joined = threading.Event()
        self._consumer: Consumer | None = None

    @property
    def owned(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._owned)

    def start(self, timeout: float = 30.0) -> PartitionOwnership:
        """Join the group; returns after the first assignment (possibly empty)."""
        self.start_thread()
        if not self.wait_ready(timeout) or self.start_error is not None:
            cause = self.start_error
            self.close()
            raise StoreUnavailableError(
                f"writer {self.member!r} got no assignment from group {self.group_id!r} "
                f"within {timeout:g}s ({cause or 'no answer'}): is the broker at "
                f"{self.settings.bootstrap_servers} up?"
            ) from cause
        return self

    def close(self, timeout: float = 60.0) -> None:
        """Revoke everything (``on_revoke``) and leave the group, so the others take over."""
        super().close(timeout)

    def rejoin(self, after: float) -> None:
        """Leave the group (revoking every partition) and join it again ``after`` seconds
        later: meanwhile the group gives the partitions to the other members."""
        self._rejoin_after = after
        self._rejoin.set()

    # -- the membership thread ------------------------------------------------------
    def _prepare(self) -> None:
        consumer = self._consumer = self._subscribed()
        while not self._joined.is_set() and not self.stopping:
            self._poll(consumer)

    def _loop(self) -> None:
        while not self.stopping:
            consumer = self._consumer
            assert consumer is not None
            self._poll(consumer)
            if self._rejoin.is_set():
                self._leave()
                log.warning(
                    "writer %s left group %s; it rejoins in %.0fs",
                    self.member,
                    self.group_id,
                    self._rejoin_after,
                )
                self._stopping.wait(self._rejoin_after)
                self._rejoin.clear()
                if not self.stopping:
                    self._consumer = self._subscribed()

    def _cleanup(self) -> None:
        self._leave()

    def _subscribed(self) -> Consumer:
        consumer = Consumer(self._config)
        consumer.subscribe(
            self.topics,
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._revoked,
        )
        return consumer

    def _poll(self, consumer: Consumer) -> None:
        message = consumer.poll(0.2)
        if message is not None and message.error() is not None:
            log.warning("writer %s: %s", self.member, message.error())

    def _leave(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()  # revokes (on_revoke) and leaves the group
            except KafkaException:
                log.warning(
                    "writer %s could not leave group %s cleanly", self.member, self.group_id
                )
        if self._owned:
            self.released += len(self._owned)
            self._safe(self._on_revoke, sorted(self._owned))
            self._owned.clear()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        if partitions:
            consumer.pause(partitions)  # membership only: never fetch the events
        added = [(tp.topic, tp.partition) for tp in partitions]
        self._owned.update(added)
        log.info("writer %s takes %s", self.member, added)
        if added:
            self._safe(self._on_assign, added)
        self._joined.set()

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        removed = [(tp.topic, tp.partition) for tp in partitions]
        log.info("writer %s releases %s", self.member, removed)
        self.released += len(removed)
        if removed:
            self._safe(self._on_revoke, removed)
        self._owned.difference_update(removed)
        consumer.incremental_unassign(partitions)

    def _safe(self, listener: Listener, partitions: Partitions) -> None:
        try:
            listener(partitions)
        except Exception:  # a listener must not break the membership
            log.exception("writer %s: listener failed for %s", self.member, partitions)


class OwnerDirectory:
    """Who owns which partition, from the writers group description (cached briefly)."""

    def __init__(self, settings: KafkaSettings, *, max_age: float = 1.0) -> None:
        self.group_id = writers_group(settings.application_id)
        self.max_age = max_age
        self._timeout = settings.admin_timeout_s
        self._config = settings.admin_config()
        self._admin: AdminClient | None = None  # created on first use
        self._owners: dict[tuple[str, int], Owner] = {}
        self._members = 0
        self._at = 0.0
        self._lock = threading.Lock()

    def owner_of(
        self, topic: str, partition: int, *, fresh: bool = False, described_after: float = 0.0
    ) -> Owner | None:
        """The member that owns ``topic[partition]``; ``None`` while it is unassigned.

        ``fresh`` describes the group now; ``described_after`` (a ``time.monotonic()``)
        only if the last description was asked for before then, so that many callers told
        at once that the owner moved share one description.
        """
        with self._lock:
            if fresh or self._at < described_after or time.monotonic() - self._at > self.max_age:
                self._refresh()
            return self._owners.get((topic, partition))

    def cached_owner(self, topic: str, partition: int) -> Owner | None:
        """The owner in the last description if it is younger than ``max_age``, else ``None``.

        Never asks the broker and never waits for a lookup in progress (it reads the last
        description without the lock: it is replaced whole), so it may run anywhere.
        """
        if time.monotonic() - self._at > self.max_age:
            return None
        return self._owners.get((topic, partition))

    def assignment(self) -> tuple[int, dict[tuple[str, int], Owner]]:
        """``(number of members, owner of each assigned partition)``, described now."""
        with self._lock:
            self._refresh()
            return self._members, dict(self._owners)

    def invalidate(self) -> None:
        with self._lock:
            self._at = 0.0

    def members(self) -> set[str]:
        """Names of the members that owned a partition when last described (no request)."""
        with self._lock:
            return {owner.member for owner in self._owners.values()}

    def _refresh(self) -> None:
        asked_at = time.monotonic()
        if self._admin is None:
            self._admin = AdminClient(self._config)
        futures = self._admin.describe_consumer_groups(
            [self.group_id], request_timeout=self._timeout
        )
        try:
            group = futures[self.group_id].result()
        except KafkaException as exc:
            raise StoreUnavailableError(
                f"cannot describe the writers group {self.group_id!r}: {exc}; retry"
            ) from exc
        owners: dict[tuple[str, int], Owner] = {}
        for member in group.members:
            owner = Owner(member.client_id, member.host)
            assignment = member.assignment
            for tp in assignment.topic_partitions if assignment is not None else []:
                owners[(tp.topic, tp.partition)] = owner
        self._owners = owners
        self._members = len(group.members)
        self._at = asked_at
