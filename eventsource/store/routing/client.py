"""RemoteEventStore: append through the owner of the partitions, from any process."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Self

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from eventsource.errors import (
    StoreError,
    StoreUnavailableError,
    UncertainCommitError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import reader_group
from eventsource.lifecycle import ServiceThread, ThreadState
from eventsource.store.appending import AppendCall, AppenderBase
from eventsource.store.port import AppendResult
from eventsource.store.routing import wire
from eventsource.store.routing.ports import EventEncoder
from eventsource.store.routing.replies import PendingReplies
from eventsource.store.routing.topics import (
    ensure_topic,
    next_batch,
    partitions_at_end,
    replies_topic,
    requests_topic,
)

__all__ = ["RemoteEventStore"]

log = logging.getLogger(__name__)

LISTENER_MARGIN_S = 5.0
"""Extra wait of a blocking call beyond ``timeout``: the reply listener fails the future at
the deadline, so waiting longer only happens when the listener thread died."""


class RemoteEventStore(AppenderBase, ServiceThread):
    """An :class:`~eventsource.store.port.Appender` whose calls the owner executes.

    ``append``, ``append_async`` and ``version``, nothing else: a process that does not own
    the partitions has no index to load aggregates from. To load too, use
    :class:`~eventsource.store.routing.ScanningRemoteEventStore` (a full event store that
    folds aggregates from their partitions), or pass a
    :class:`~eventsource.store.routing.PartitionScanLoader` where a loader is wanted.

    Each call becomes a request on ``<application_id>.append-requests`` that the owner's
    :class:`AppendServer` executes through its store; the reply comes back on
    ``<application_id>.append-replies``. Errors are the owner's typed errors
    (``ConcurrencyError``, ``FencedError``, ...). No reply within ``timeout`` seconds
    raises ``UncertainCommitError``: the owner may still have executed the append.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        codec: EventEncoder,
        *,
        timeout: float = 10.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.settings = settings
        self.codec = codec
        self.timeout = timeout
        self.client_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().__init__(f"remote-store-{self.client_id}")
        self.requests_topic = requests_topic(settings.application_id)
        self.replies_topic = replies_topic(settings.application_id)
        self._replies = PendingReplies(settings.application_id, self.client_id)
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> Self:
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
        # Delivery reports only for failures (the only ones that complete a request here).
        self._producer = Producer(
            self.settings.producer_config(**{"linger.ms": 0, "delivery.report.only.error": True})
        )
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # the Appender port: append / append_async come from AppenderBase ------------------
    def _start_append(self, call: AppendCall) -> Future[AppendResult]:
        """Send the append now; the future completes with the owner's answer or times out."""
        encoded = tuple(
            wire.EncodedEvent(e.event_type(), self.codec.encode(e)) for e in call.events
        )
        return self._send(
            "append",
            call.aggregate_type,
            call.aggregate_id,
            call.expected_version,
            encoded,
            call.correlation_id,
            call.causation_id,
        )

    def _outcome(
        self, future: Future[AppendResult], call: AppendCall, timeout: float | None
    ) -> AppendResult:
        return await_reply(future, call.aggregate_id, self.timeout if timeout is None else timeout)

    def version(self, aggregate_type: str, aggregate_id: str) -> int:
        """The aggregate's version as the owner knows it (0 when unknown)."""
        reply = self._send("version", aggregate_type, aggregate_id, 0, (), None, None)
        return reply.result(timeout=self.timeout + LISTENER_MARGIN_S).version

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
    ) -> Future[AppendResult]:
        producer = self._producer
        if producer is None or self.stopping:
            raise StoreUnavailableError(
                "RemoteEventStore is not started: call start() or use it as a context manager",
                retriable=False,
            )
        request_id = os.urandom(16).hex()  # a random 128-bit id, like uuid4().hex, cheaper
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


def await_reply(future: Future[AppendResult], aggregate_id: str, timeout: float) -> AppendResult:
    """The owner's answer to a sent append, waited for up to ``timeout`` s (plus the listener
    margin: the reply listener fails the future at its deadline, so only a stuck listener or
    a shorter ``timeout`` than the request's leaves it pending)."""
    try:
        return future.result(timeout=timeout + LISTENER_MARGIN_S)
    except FutureTimeout:
        raise UncertainCommitError(
            f"append to {aggregate_id!r} got no answer within {timeout:g}s; the owner may "
            "have executed it: reload the aggregate before retrying"
        ) from None


def _too_large(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
