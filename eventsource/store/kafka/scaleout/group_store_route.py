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

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Final, TypeVar

from eventsource.codec import EventCodec
from eventsource.errors import NotOwnerError, StoreUnavailableError
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import member_application_id
from eventsource.store.appending import AppendCall, AppenderBase
from eventsource.store.kafka.scaleout.client_pool import ClientPool
from eventsource.store.kafka.scaleout.group_store import GroupedKafkaEventStore
from eventsource.store.kafka.scaleout.ownership import OwnerDirectory
from eventsource.store.kafka.scaleout.retry_timer import RetryTimer
from eventsource.store.kafka.scaleout.routed_append import RETRIABLE, RoutedAppend
from eventsource.store.partitioner import partition_for_id
from eventsource.store.port import AppendResult, events_topic
from eventsource.store.routing import AppendServer, RemoteEventStore
from eventsource.store.routing.client import LISTENER_MARGIN_S, await_reply

__all__ = ["GroupRouter", "member_settings", "serve_routing"]

T = TypeVar("T")

RETRY_PAUSE_S: Final = 0.2

ROUTED_TIMEOUT_S: Final = 30.0
"""The router's default wait for a reply: longer than a cluster's failover. A request or
reply whose partition leader died waits in the producer until the controller fences the
dead broker (``broker.session.timeout.ms``, 9 s by default; 8-14 s measured on a loaded
machine); with the former 10 s such a request reached the owner after its client had given
up, was skipped, and its caller got ``UncertainCommitError`` instead of the answer. The
cost: an owner process that dies with requests in flight leaves them uncertain this long."""


def member_settings(settings: KafkaSettings, member: str) -> KafkaSettings:
    """The settings whose application id names one member's routing topics."""
    return settings.model_copy(
        update={"application_id": member_application_id(settings.application_id, member)}
    )


def serve_routing(
    store: GroupedKafkaEventStore, *, timeout: float = 30.0, max_pending: int = 1000
) -> AppendServer:
    """Start serving other processes' commands for the partitions ``store`` owns
    (``max_pending``: the server's backlog bound, :class:`AppendServer`)."""
    server = AppendServer(
        store,
        member_settings(store.settings, store.member),
        store.codec,
        member_id=store.member,
        max_pending=max_pending,
    )
    return server.start(timeout)


class GroupRouter(AppenderBase):
    """``append`` / ``append_async`` / ``version`` executed by the aggregate's owner.

    An :class:`~eventsource.store.port.Appender`. ``append_async`` sends the append to the
    owner and chains on the client's future (:class:`RoutedAppend`): no thread waits for
    an answer, so the appends in flight are bounded by the owners' backlogs
    (``AppendServer(max_pending=...)``), not by the router. Appends waiting to be sent again
    wait on one timer thread. ``version`` waits in the caller's thread.

    ``timeout``: how long a sent request waits for its reply before it is uncertain
    (:data:`ROUTED_TIMEOUT_S`); ``retry_for``: how long an append is sent again while the
    answer says nothing was written.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: EventCodec,
        *,
        partitions: int,
        topic_prefix: str = "",
        timeout: float = ROUTED_TIMEOUT_S,
        retry_for: float = 30.0,
        max_clients: int = 16,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.partitions = partitions
        self.topic_prefix = topic_prefix
        self.timeout = timeout
        self.retry_for = retry_for
        self.owners = OwnerDirectory(settings, max_age=2.0)
        self._retries = RetryTimer("group-router-retries")
        self._retries.start_thread()
        self.clients = ClientPool(
            self._new_client,
            max_clients=max_clients,
            close_later=lambda client: self._retries.call_later(0.0, client.close),
        )
        """One client per owner member: bounded, closed once its member owns nothing."""
        self.retried = 0
        """Appends sent again so far (their owner moved, was busy, or was not found)."""
        self._in_flight = 0
        self._idle = threading.Condition()
        self._closing = False

    def __enter__(self) -> GroupRouter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def retries_waiting(self) -> int:
        """Appends waiting to be sent again (their owner moved or was busy)."""
        return self._retries.waiting

    def close(self) -> None:
        """Let the appends in flight end, then close the clients.

        Appends waiting to be sent again fail at once (``StoreUnavailableError``: nothing
        was written); those sent wait for their answer up to ``timeout`` s more, then get
        ``UncertainCommitError`` from their closed client.
        """
        with self._idle:
            self._closing = True
        self._retries.close()
        with self._idle:
            self._idle.wait_for(lambda: not self._in_flight, self.timeout + LISTENER_MARGIN_S)
        self.clients.close()

    def _start_append(self, call: AppendCall) -> Future[AppendResult]:
        with self._idle:
            if self._closing:
                raise self.closed_error(call.aggregate_id, None)
            self._in_flight += 1
        routed = RoutedAppend(self, call)
        routed.result.add_done_callback(self._ended)
        member = self._member_now(call)
        if member is None:  # a lookup or a new client may block: not in the caller's thread
            self._retries.call_later(0.0, routed.send)
        else:
            routed.send_to(member)
        return routed.result

    def _member_now(self, call: AppendCall) -> str | None:
        """The owner if it is known without waiting (a fresh description, an open client)."""
        owner = self.owners.cached_owner(*self._where(call.aggregate_type, call.aggregate_id))
        if owner is None or self.clients.prune_due or not self.clients.has(owner.member):
            return None
        return owner.member

    def _outcome(
        self, future: Future[AppendResult], call: AppendCall, timeout: float | None
    ) -> AppendResult:
        longest = self.retry_for + self.timeout if timeout is None else timeout
        return await_reply(future, call.aggregate_id, longest)

    def _ended(self, _: Future[AppendResult]) -> None:
        with self._idle:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.notify_all()

    def closed_error(self, aggregate_id: str, cause: BaseException | None) -> StoreUnavailableError:
        error = StoreUnavailableError(
            f"the GroupRouter is closed: the append to {aggregate_id!r} was not sent "
            "(again); nothing was written: use an open router",
            retriable=False,
        )
        error.__cause__ = cause
        return error

    def retry_later(self, routed: RoutedAppend) -> None:
        """Send ``routed`` again after a pause, to the owner described from now on."""
        with self._idle:
            self.retried += 1
        seen = time.monotonic()
        self._retries.call_later(RETRY_PAUSE_S, lambda: routed.send(described_after=seen))

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        """The aggregate's version as its owner knows it."""
        return self._routed(
            aggregate_type, aggregate_id, lambda c: c.version(aggregate_type, aggregate_id)
        )

    def owner_of(self, aggregate_type: str, aggregate_id: str) -> str | None:
        """The member name of the aggregate's owner now (``None`` during a rebalance)."""
        owner = self.owners.owner_of(*self._where(aggregate_type, aggregate_id))
        return None if owner is None else owner.member

    def current_owner(self, aggregate_type: str, aggregate_id: str, described_after: float) -> str:
        """The owner's member name, or ``NotOwnerError`` (retriable) when there is none."""
        topic, partition = self._where(aggregate_type, aggregate_id)
        owner = self.owners.owner_of(topic, partition, described_after=described_after)
        if owner is None:
            raise NotOwnerError(
                f"{topic}[{partition}] of aggregate {aggregate_id!r} has no owner in "
                f"the writers group {self.owners.group_id!r} (rebalancing, or no "
                "writer runs); nothing was sent: retry"
            )
        self.clients.retain(self.owners.members())
        return owner.member

    def _where(self, aggregate_type: str, aggregate_id: str) -> tuple[str, int]:
        topic = events_topic(aggregate_type, self.topic_prefix)
        return topic, partition_for_id(aggregate_id, self.partitions)

    def _routed(
        self, aggregate_type: str, aggregate_id: str, call: Callable[[RemoteEventStore], T]
    ) -> T:
        deadline = time.monotonic() + self.retry_for
        seen = 0.0
        while True:
            try:
                member = self.current_owner(aggregate_type, aggregate_id, seen)
                with self.clients.use(member) as client:
                    return call(client)
            except RETRIABLE:
                if time.monotonic() > deadline:
                    raise
                seen = time.monotonic()
                time.sleep(RETRY_PAUSE_S)

    def _new_client(self, member: str) -> RemoteEventStore:
        return RemoteEventStore(
            member_settings(self.settings, member), self.codec, timeout=self.timeout
        ).start()
