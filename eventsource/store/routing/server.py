"""AppendServer: the owner's side of routing; executes other processes' appends."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from eventsource.errors import StoreUnavailableError, UncertainCommitError
from eventsource.gcpause import gc_paused
from eventsource.kafka.config import KafkaSettings
from eventsource.kafka.names import append_server_group, append_server_instance_id
from eventsource.kafka.static_member import duplicate_instance, fenced_instance, is_fatal
from eventsource.lifecycle import ServiceThread, ThreadState
from eventsource.store.port import AppendResult
from eventsource.store.routing import wire
from eventsource.store.routing.backlog import Backlog
from eventsource.store.routing.intake import Admitted, Intake
from eventsource.store.routing.outbox import ReplyOutbox
from eventsource.store.routing.ports import EventDecoder, OwnedStore
from eventsource.store.routing.topics import (
    ensure_topic,
    next_batch,
    replies_topic,
    requests_topic,
)

__all__ = ["AppendServer"]

log = logging.getLogger(__name__)


class AppendServer(ServiceThread):
    """Consumes append requests and executes them through the owner's store.

    Runs a thread; ``start()`` returns once the requests partitions are assigned and
    positioned at their end: requests sent before that are never executed (their clients
    time out with ``UncertainCommitError``, which is honest: nothing can tell them more).
    The request consumer is a consumer group (``<application_id>.append-server``), so each
    request is executed by one server even when several run. The appends of one consumed
    batch go through one ``append_many`` of the store (no thread per request, each writer's
    share queued at once, so the store group-commits them; each request is still checked,
    started and answered on its own); ``version`` requests run on up to ``workers`` threads.
    Requests are read and admitted by :class:`~.intake.Intake`; answers are sent by a
    :class:`~.outbox.ReplyOutbox` thread, one reply record per client per flush.

    When the store reports ``FencedError`` the server answers that request (nothing was
    written) and stops, so the requests partitions go to the new owner's server (at once if
    it uses the same ``member_id``).

    ``max_pending`` bounds the requests in flight: one more is refused with the retriable
    ``OverloadedError``; a request still waiting for the writer when its client's deadline
    passes is dropped (:mod:`.backlog`), so a backlog never executes abandoned appends.

    ``member_id`` makes the server a *static* group member
    (``group.instance.id = <application_id>.append-server.<member_id>``): a restarted owner
    with the same id takes the partitions over at once, instead of waiting for the crashed
    one's session to time out (45 s), and an older server with that id still running is
    fenced by the broker and stops (:attr:`stopped_by` is then a ``DuplicateInstanceError``
    naming the id, also logged). The default ``"owner"`` fits the default of one owner
    per application; give each process its own id when several own partitions, or pass
    ``None`` for dynamic membership.
    """

    def __init__(
        self,
        store: OwnedStore,
        settings: KafkaSettings,
        codec: EventDecoder,
        *,
        workers: int = 64,
        request_partitions: int = 6,
        member_id: str | None = "owner",
        max_pending: int = 1000,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.store = store
        self.settings = settings
        self.codec = codec
        self.server_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        super().__init__("append-server")
        self.requests_topic = requests_topic(settings.application_id)
        self.replies_topic = replies_topic(settings.application_id)
        self._request_partitions = request_partitions
        self.group_id = append_server_group(settings.application_id)
        self.group_instance_id = (
            None
            if member_id is None
            else append_server_instance_id(settings.application_id, member_id)
        )
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="append-server")
        self._assigned = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._outbox: ReplyOutbox | None = None
        self._intake: Intake | None = None
        self.backlog = Backlog(max_pending)
        self.stopped_by: Exception | None = None
        """Why the server stopped on its own: ``DuplicateInstanceError`` when another
        server joined with its ``member_id``, or the consumer's fatal error."""

    # lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> AppendServer:
        """Serve requests; returns once positioned at the end of the requests topic."""
        if self.thread_state is not ThreadState.NEW:
            return self
        ensure_topic(self.settings, self.requests_topic, self._request_partitions)
        ensure_topic(self.settings, self.replies_topic)
        # Delivery reports only for failures: a delivered reply needs no Python callback.
        self._producer = Producer(
            self.settings.producer_config(**{"linger.ms": 1, "delivery.report.only.error": True})
        )
        overrides: dict[str, object] = {"fetch.wait.max.ms": 10, "auto.offset.reset": "latest"}
        if self.group_instance_id is not None:
            overrides["group.instance.id"] = self.group_instance_id
        self._consumer = Consumer(self.settings.consumer_config(self.group_id, **overrides))
        self._outbox = ReplyOutbox(self._producer, self.server_id, self.backlog, self.stop)
        self._outbox.start_thread()
        self._intake = Intake(
            self.codec, self.replies_topic, self.server_id, self.backlog, self._outbox
        )
        self.start_thread()
        if not self.wait_ready(timeout):
            self.close()
            raise StoreUnavailableError(
                f"AppendServer got no partition of {self.requests_topic!r} within "
                f"{timeout:g}s: is the broker down, or are they held by another server of "
                f"application {self.settings.application_id!r}? (A crashed server with a "
                "different member_id keeps them until its session times out, 45 s by default.)"
            )
        if self.start_error is not None:
            error = self.start_error
            self.close()
            raise StoreUnavailableError(f"AppendServer failed to start: {error}") from error
        return self

    @property
    def running(self) -> bool:
        """Whether the server is consuming requests (false after close, fencing or a crash)."""
        return self.alive and not self.stopping

    def close(self, timeout: float = 60.0) -> None:
        """Stop consuming, finish in-flight requests and flush their replies.

        A static member (``member_id`` set) does not leave the group on close, so that its
        restart takes its partitions back at once.
        """
        super().close(timeout)
        drain = self.settings.close_timeout_s
        # append_async futures are not the executor's: wait for their replies too.
        self.backlog.wait_idle(drain)
        self._executor.shutdown(wait=True)
        if self._outbox is not None:  # sends what is queued (refusals too), then ends
            self._outbox.close(drain)
        if self._producer is not None:
            self._producer.flush(drain)

    def __enter__(self) -> AppendServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # the loop -----------------------------------------------------------------------------
    def _prepare(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        consumer.subscribe(
            [self.requests_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        while not self._assigned.is_set() and not self.stopping:
            self._step()

    def _loop(self) -> None:
        while not self.stopping:
            self._step()

    def _step(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        producer.poll(0)
        try:
            messages = next_batch(consumer, 0.02)
        except KafkaException as exc:
            self._on_consumer_error(exc.args[0])
            return
        if messages:
            # The batch's requests stay alive until answered: collections set off while
            # they are made would traverse and promote them (eventsource.gcpause).
            with gc_paused():
                assert self._intake is not None
                appends, queries = self._intake.read(messages, self._on_consumer_error)
                for request in queries:
                    self._follow([request], [self._executor.submit(self._version, request)])
                if appends:
                    self._start_appends(appends)
        self.backlog.expire(time.time() * 1000)

    def _cleanup(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Start at the end: a request older than this server is never executed.
        for tp in partitions:
            tp.offset = consumer.get_watermark_offsets(tp, timeout=self.settings.admin_timeout_s)[1]
        consumer.assign(partitions)
        log.info("append server %s serves %s", self.server_id, [p.partition for p in partitions])
        self._assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.unassign()

    def _start_appends(self, appends: list[Admitted]) -> None:
        """Start a batch's appends with one ``append_many`` (each writer's share queued at
        once); each gets its own answer, as if started alone."""
        refuse = self._outbox_or_fail().refuse
        try:
            futures = self.store.append_many([call for _, call in appends])
        except (ValueError, TypeError):
            # Refused before anything started (arguments are checked one by one first,
            # so this is a store's own check): start them one by one, each answered alone.
            for request, call in appends:
                try:
                    future = self.store.append_async(
                        call.aggregate_type,
                        call.aggregate_id,
                        call.events,
                        call.expected_version,
                        correlation_id=call.correlation_id,
                        causation_id=call.causation_id,
                    )
                except Exception as exc:  # refused before anything was written
                    refuse(request, exc)
                    continue
                self._follow([request], [future])
            return
        except Exception as exc:  # a store's bug: some of them may have been queued
            for request, _ in appends:
                refuse(
                    request,
                    UncertainCommitError(
                        f"the owner's store failed while starting a batch of appends "
                        f"({type(exc).__name__}: {exc}); the append to "
                        f"{request.aggregate_id!r} may or may not be committed: reload the "
                        "aggregate before retrying"
                    ),
                )
            log.error("append server %s: append_many failed: %s", self.server_id, exc)
            return
        self._follow([request for request, _ in appends], futures)

    def _follow(self, requests: list[wire.Request], futures: list[Future[AppendResult]]) -> None:
        """Answer each request when its future completes; bound and expire it meanwhile."""
        follow = self._outbox_or_fail().follow
        tracked = self.backlog.track_all(
            zip(futures, [request.expires_at_ms for request in requests], strict=True)
        )
        for request, future, entry in zip(requests, futures, tracked, strict=True):
            follow(request, future, entry)

    def _outbox_or_fail(self) -> ReplyOutbox:
        assert self._outbox is not None  # made by start()
        return self._outbox

    def _on_consumer_error(self, error: object) -> None:
        if isinstance(error, KafkaError) and fenced_instance(error):
            # A newer server with our group.instance.id took over (a restart of this
            # owner, or a second process given the same member_id).
            self.stopped_by = duplicate_instance(
                self.group_id, self.group_instance_id or "", "AppendServer(member_id=...)"
            )
            log.error("append server %s stops: %s", self.server_id, self.stopped_by)
            self.stop()
        elif isinstance(error, KafkaError) and is_fatal(error):
            self.stopped_by = KafkaException(error)
            log.error("append server %s stops on a fatal consumer error: %s", self.server_id, error)
            self.stop()
        elif not (isinstance(error, KafkaError) and error.code() == KafkaError._PARTITION_EOF):
            log.warning("append server %s: %s", self.server_id, error)

    def _version(self, request: wire.Request) -> AppendResult:
        version = self.store.version(request.aggregate_type, request.aggregate_id)
        return AppendResult(request.aggregate_id, version, ())
