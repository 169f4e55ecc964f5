"""RemoteEventStore: append through the owner of the partitions, from any process."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from eventsource.domain import Aggregate, Event
from eventsource.errors import (
    NotOwnerError,
    StoreError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import reader_group
from eventsource.lifecycle import ServiceThread, ThreadState
from eventsource.store.port import AppendResult, check_append_arguments, events_topic
from eventsource.store.routing import wire
from eventsource.store.routing.ports import ClientCodec
from eventsource.store.routing.replies import PendingReplies
from eventsource.store.routing.scan import load_by_scan
from eventsource.store.routing.topics import (
    ensure_topic,
    next_batch,
    partitions_at_end,
    replies_topic,
    requests_topic,
)

__all__ = ["RemoteEventStore"]

A = TypeVar("A", bound=Aggregate)
log = logging.getLogger(__name__)


class RemoteEventStore(ServiceThread):
    """The ``append`` and ``version`` of an :class:`EventStore`, executed by the owner.

    Each call becomes a request on ``<application_id>.append-requests`` that the owner's
    :class:`AppendServer` executes through its store; the reply comes back on
    ``<application_id>.append-replies``. Errors are the owner's typed errors
    (``ConcurrencyError``, ``FencedError``, ...). No reply within ``timeout`` seconds
    raises ``UncertainCommitError``: the owner may still have executed the append.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: ClientCodec,
        *,
        timeout: float = 10.0,
        scan_loads: bool = False,
        topic_prefix: str = "",
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.settings = settings
        self.codec = codec
        self.timeout = timeout
        self.scan_loads = scan_loads
        self.topic_prefix = topic_prefix
        self.client_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().__init__(f"remote-store-{self.client_id}")
        self.requests_topic = requests_topic(settings.application_id)
        self.replies_topic = replies_topic(settings.application_id)
        self._replies = PendingReplies(settings.application_id)
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> RemoteEventStore:
        """Create the routing topics if missing and listen for replies from now on."""
        if self.thread_state is not ThreadState.NEW:
            return self
        ensure_topic(self.settings, self.requests_topic)
        ensure_topic(self.settings, self.replies_topic)
        self._consumer = Consumer(
            self.settings.consumer_config(
                reader_group(self.settings.application_id, "append-client", unique=True),
                **{"fetch.wait.max.ms": 10},
            )
        )
        # Listen before sending anything, so no reply can slip past.
        self._consumer.assign(partitions_at_end(self._consumer, self.replies_topic))
        self._producer = Producer(self.settings.producer_config(**{"linger.ms": 0}))
        self.start_thread()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop listening; calls still waiting fail with ``UncertainCommitError``."""
        if self.thread_state is ThreadState.NEW or self.stopping:
            return
        super().close(timeout)
        self._replies.fail_all("the client was closed before the reply")
        if self._producer is not None:
            self._producer.flush(self.settings.close_timeout_s)
        if self._consumer is not None:
            self._consumer.close()

    @property
    def last_owner(self) -> str | None:
        """The server id in the latest reply (``host:pid:random`` of the owner process)."""
        return self._replies.last_owner

    def __enter__(self) -> RemoteEventStore:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # the EventStore port ---------------------------------------------------------------------
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
        """Append through the owner; same contract as :meth:`EventStore.append`."""
        future = self.append_async(
            aggregate_type,
            aggregate_id,
            events,
            expected_version,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        try:
            # The listener fails the future at the deadline; the margin only guards
            # against a listener thread that died.
            return future.result(timeout=self.timeout + 5)
        except FutureTimeout:
            raise UncertainCommitError(
                f"append to {aggregate_id!r} got no answer and the reply listener is stuck; "
                "the owner may have executed it: reload the aggregate before retrying"
            ) from None

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
        """Send the append now; the future completes with the owner's answer or times out."""
        check_append_arguments(aggregate_id, events, expected_version)
        encoded = tuple(wire.EncodedEvent(e.event_type(), self.codec.encode(e)) for e in events)
        reply = self._send(
            "append",
            aggregate_type,
            aggregate_id,
            expected_version,
            encoded,
            correlation_id,
            causation_id,
        )
        result: Future[AppendResult] = Future()

        def done(f: Future[wire.AppendReply]) -> None:
            error = f.exception()
            if error is not None:
                result.set_exception(error)
            else:
                r = f.result()
                result.set_result(AppendResult(aggregate_id, r.version, r.positions))

        reply.add_done_callback(done)
        return result

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        """The aggregate's version as the owner knows it (0 when unknown)."""
        reply = self._send("version", aggregate_type, aggregate_id, 0, (), None, None)
        return reply.result(timeout=self.timeout + 5).version

    def load(self, aggregate_cls: type[A], aggregate_id: str) -> A:
        """``NotOwnerError`` naming the owner; with ``scan_loads=True``, a partition scan.

        The owner loads from memory. A non-owner has no index: with ``scan_loads`` it folds
        the aggregate's committed records, read from its whole partition (slow; see
        :mod:`eventsource.store.routing.scan`). The version it returns is a snapshot: an
        append at that version still fails with ``ConcurrencyError`` if the owner moved on.
        """
        if self.scan_loads:
            topic = events_topic(aggregate_cls.aggregate_type, self.topic_prefix)
            return load_by_scan(self.settings, self.codec, topic, aggregate_cls, aggregate_id)
        owner = self.last_owner or "unknown until it has answered a request"
        raise NotOwnerError(
            f"this process ({self.client_id}) does not own the partition of "
            f"{aggregate_cls.aggregate_type} {aggregate_id!r}, so it cannot load it from "
            f"memory: run the command in the owner process (last seen owner: {owner}), or "
            "create the RemoteEventStore with scan_loads=True to fold the aggregate from its "
            "partition (slow: reads the whole partition)"
        )

    # sending and receiving --------------------------------------------------------------
    def _send(
        self,
        kind: wire.RequestKind,
        aggregate_type: str,
        aggregate_id: str,
        expected_version: int,
        events: tuple[wire.EncodedEvent, ...],
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Future[wire.AppendReply]:
        producer = self._producer
        if producer is None or self.stopping:
            raise StoreUnavailableError(
                "RemoteEventStore is not started: call start() or use it as a context manager",
                retriable=False,
            )
        request_id = uuid.uuid4().hex
        request = wire.Request(
            kind=kind,
            request_id=request_id,
            reply_topic=self.replies_topic,
            client=self.client_id,
            expires_at_ms=int((time.time() + self.timeout) * 1000),
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            expected_version=expected_version,
            events=events,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        value = wire.encode_request(request)
        reply = self._replies.add(request_id, kind, aggregate_id, self.timeout)

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._replies.fail(request_id, f"the request was not delivered: {err}")

        try:
            producer.produce(
                self.requests_topic,
                key=aggregate_id.encode("utf-8"),
                value=value,
                headers=[(wire.REQUEST_ID_HEADER, request_id.encode("ascii"))],
                on_delivery=delivered,
            )
        except (BufferError, KafkaException) as exc:
            self._replies.forget(request_id)
            if isinstance(exc, KafkaException) and _too_large(exc):
                raise StoreError(
                    f"the {kind} request for {aggregate_id!r} ({len(value)} bytes) is larger "
                    "than the producer's message.max.bytes; nothing was sent: split the "
                    "events over several commands, or raise message.max.bytes (producer) "
                    f"and max.message.bytes (topic {self.requests_topic!r})",
                    retriable=False,
                ) from exc
            raise StoreUnavailableError(
                f"cannot queue the {kind} request for {aggregate_id!r} to "
                f"{self.requests_topic!r}: {exc}; nothing was sent: retry later"
            ) from exc
        return reply

    def _loop(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        while not self.stopping:
            try:
                producer.poll(0)
                for message in next_batch(consumer, 0.02):
                    if message.error() is None:
                        self._replies.on_reply(message)
                    else:
                        log.warning("reply listener of %s: %s", self.client_id, message.error())
            except KafkaException as exc:  # keep listening; waiting calls time out honestly
                log.warning("reply listener of %s: %s", self.client_id, exc)
                time.sleep(0.1)
            self._replies.expire(time.monotonic())


def _too_large(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
